"""The early-warning digest: one HTML and one CSV per relationship manager with open alerts (new
and overdue alerts, masked, escaped, formula-safe), mailed through a local SMTP server with
STARTTLS and a login, and an unreachable or clear-text server refused with one line, files kept."""

from __future__ import annotations

import datetime as dt
import email
import socket
import ssl
from email import policy
from pathlib import Path

import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import text

from analytics import cli, scopes, users
from analytics.alerts import digest, merge
from analytics.alerts.detect import detect
from tests.analytics.test_alerts import AS_OF, CUSTOMERS, _run, store  # noqa: F401  (store is a fixture)

NASTY_NAMES = {"C0001": "=HYPERLINK(\"http://x\")张", "C0006": "<script>alert(1)</script>"}
PW = "a long enough password"


@pytest.fixture
def alerting(store):  # noqa: F811  (the fixture imported above)
    """Run 1 merged, then run 2 (current) where only C0006's suitability mismatch is new."""
    with store.begin() as conn:
        for cid, name in NASTY_NAMES.items():
            conn.execute(text("UPDATE customers SET name = :n WHERE customer_id = :c"), {"n": name, "c": cid})
    merge(store, 1, AS_OF, detect(store, 1, AS_OF))
    _run(store, 2, mismatch=("C0001", "C0006"))
    merge(store, 2, AS_OF, detect(store, 2, AS_OF))
    return store


def _raw_values(engine) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name, id_number, phone FROM customers")).all()
    return {v for row in rows for v in row if v and len(v) >= 2}


def _files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_bytes().decode("utf-8-sig") for p in sorted(folder.iterdir())}


def test_digest_writes_each_managers_new_and_overdue_alerts(alerting, tmp_path):
    # on the reference day nothing is overdue yet: each digest holds the alerts new in run 2
    summary = digest.run(alerting, outbox=str(tmp_path / "out"), today=AS_OF)
    assert summary["managers"] == 2 and summary["files"] == 4 and summary["alerts"] == 1
    files = _files(tmp_path / "out")
    assert sorted(files) == ["digest-2026-10-31-RM_A.csv", "digest-2026-10-31-RM_A.html",
                             "digest-2026-10-31-RM_B.csv", "digest-2026-10-31-RM_B.html"]
    rows = pd.read_csv(tmp_path / "out" / "digest-2026-10-31-RM_A.csv", encoding="utf-8-sig")
    assert list(rows[["customer_id", "kind"]].itertuples(index=False, name=None)) == [
        ("C0006", "suitability_mismatch")]
    assert "No new or overdue alerts" in files["digest-2026-10-31-RM_B.html"]
    # four days later: C0001's birthday (3 Nov), C0006's expired ID (due 31 Oct) and C0003's and
    # C0005's assessments (31 Oct, 1 Nov) are overdue
    summary = digest.run(alerting, outbox=str(tmp_path / "later"), today=dt.date(2026, 11, 4))
    got = {name: pd.read_csv(tmp_path / "later" / f"digest-2026-11-04-{name}.csv", encoding="utf-8-sig")
           for name in ("RM_A", "RM_B")}
    assert set(got["RM_A"][["customer_id", "kind"]].itertuples(index=False, name=None)) == {
        ("C0006", "suitability_mismatch"), ("C0001", "birthday"), ("C0006", "id_expiring")}
    assert set(got["RM_B"][["customer_id", "kind"]].itertuples(index=False, name=None)) == {
        ("C0003", "assessment_expiring"), ("C0005", "assessment_expiring")}
    assert got["RM_A"]["overdue"].sum() == 2


def test_digest_files_hold_no_raw_personal_value_and_are_escaped(alerting, tmp_path):
    digest.run(alerting, outbox=str(tmp_path / "out"), today=dt.date(2026, 11, 4))
    files = _files(tmp_path / "out")
    raw = _raw_values(alerting)
    for name, body in files.items():
        assert [v for v in raw if v in body] == [], name
    html_a = files["digest-2026-11-04-RM_A.html"]
    assert "<script>" not in html_a and "&lt;****" in html_a  # the masked name "<***...", escaped
    rows = pd.read_csv(tmp_path / "out" / "digest-2026-11-04-RM_A.csv", encoding="utf-8-sig", dtype=str)
    names = dict(zip(rows["customer_id"], rows["name"], strict=False))
    assert names["C0001"].startswith("'=*")  # the masked name "=***..." would be a formula: neutralised
    assert names["C0006"].startswith("<*")


def test_unsafe_manager_code_gets_a_safe_file_name():
    assert digest.file_stem("RM_A", dt.date(2026, 1, 2)) == "digest-2026-01-02-RM_A"
    stem = digest.file_stem("../../etc/passwd", dt.date(2026, 1, 2))
    assert stem.startswith("digest-2026-01-02-rm-") and "/" not in stem and ".." not in stem


# --- mail ---------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made for the test (no file from elsewhere)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "smtp.pem", folder / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append((list(envelope.rcpt_tos), envelope.content, session.ssl is not None))
        return "250 OK"


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"digest", b"s3cret")
    return AuthResult(success=ok)


@pytest.fixture
def smtp_server(tmp_path):
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            authenticator=_authenticator, auth_require_tls=True)
    controller.start()
    yield {"inbox": inbox, "port": port, "cert": cert}
    controller.stop()


def _smtp_env(monkeypatch, port: int, cert: Path | None = None) -> None:
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    monkeypatch.setenv("SMTP_FROM", "digest@bank.example")
    monkeypatch.setenv("SMTP_USER", "digest")
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("SMTP_TIMEOUT_SECONDS", "10")
    if cert is not None:
        monkeypatch.setenv("SMTP_CA_FILE", str(cert))


def _rm_user(engine, username: str, portfolio: str, email_address: str) -> None:
    users.add_user(engine, username, PW, ["relationship_manager"], email=email_address)
    scopes.set_scope(engine, username, portfolios=[portfolio])


def test_send_through_a_local_server_with_starttls_and_read_it_back(alerting, tmp_path, monkeypatch, smtp_server):
    _smtp_env(monkeypatch, smtp_server["port"], smtp_server["cert"])
    _rm_user(alerting, "li", "RM_A", "li@bank.example")
    summary = digest.run(alerting, outbox=str(tmp_path / "out"), send_mail=True, today=dt.date(2026, 11, 4))
    assert summary["sent"] == 1 and summary["without_email"] == ["RM_B"]
    [(to, content, over_tls)] = smtp_server["inbox"].messages
    assert to == ["li@bank.example"] and over_tls
    msg = email.message_from_bytes(content, policy=policy.default)
    assert msg["Subject"] == "Worklist digest 2026-11-04: 1 new, 2 overdue"
    html_part = msg.get_body(("html",)).get_content()
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == "digest-2026-11-04-RM_A.csv"
    csv_text = attachment.get_payload(decode=True).decode("utf-8-sig")
    assert csv_text == (tmp_path / "out" / "digest-2026-11-04-RM_A.csv").read_bytes().decode("utf-8-sig")
    assert "C0001" in csv_text and "C0001" in html_part
    raw = _raw_values(alerting)
    assert [v for v in raw if v in content.decode("utf-8", "replace") or v in html_part or v in csv_text] == []


def test_a_wrong_login_is_one_line(alerting, tmp_path, monkeypatch, smtp_server):
    _smtp_env(monkeypatch, smtp_server["port"], smtp_server["cert"])
    monkeypatch.setenv("SMTP_PASSWORD", "wrong")
    _rm_user(alerting, "li", "RM_A", "li@bank.example")
    with pytest.raises(digest.DigestError, match="refused the login of SMTP_USER"):
        digest.run(alerting, outbox=str(tmp_path), send_mail=True, today=AS_OF)
    assert smtp_server["inbox"].messages == []


def test_a_server_without_starttls_is_refused(alerting, tmp_path, monkeypatch):
    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        _smtp_env(monkeypatch, port)
        _rm_user(alerting, "li", "RM_A", "li@bank.example")
        with pytest.raises(digest.DigestError, match="does not offer STARTTLS"):
            digest.run(alerting, outbox=str(tmp_path), send_mail=True, today=AS_OF)
    finally:
        controller.stop()
    assert inbox.messages == []


def test_unreachable_server_fails_the_send_with_one_line_and_keeps_the_files(alerting, tmp_path, monkeypatch,
                                                                                capsys):
    _smtp_env(monkeypatch, _free_port())  # nothing listens there
    _rm_user(alerting, "li", "RM_A", "li@bank.example")
    outbox = tmp_path / "out"
    url = alerting.url.render_as_string(hide_password=False)
    code = cli.main(["digest", "--db", url, "--outbox", str(outbox), "--send"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.splitlines() == [err] and err.startswith("error: cannot reach the mail server 127.0.0.1:")
    assert "ConnectionRefusedError" in err and str(outbox) in err and "s3cret" not in err
    assert len(list(outbox.glob("digest-*-RM_A.*"))) == 2 and len(list(outbox.glob("*"))) == 4
    with alerting.connect() as conn:  # audited, without the SMTP password
        params = conn.execute(text("SELECT parameters FROM audit_log WHERE event = 'cli_command' "
                                   "ORDER BY seq DESC")).scalars().first()
    assert '"send":true' in params.replace(" ", "") and "s3cret" not in params


def test_send_without_a_server_setting_is_one_line(alerting, tmp_path, monkeypatch):
    monkeypatch.delenv("SMTP_HOST", raising=False)
    with pytest.raises(digest.DigestError, match="SMTP_HOST is not set"):
        digest.run(alerting, outbox=str(tmp_path / "out"), send_mail=True, today=AS_OF)
    assert len(list((tmp_path / "out").glob("digest-*"))) == 4


@pytest.mark.slow
def test_demo_digest_covers_every_manager_with_open_alerts_without_a_raw_value(demo_engine, tmp_path):
    """The done-when check on the demo store: one HTML and one CSV for every relationship manager
    owning an open alert, and no raw name, ID, phone, e-mail, address or account number in any."""
    from tests.app.test_leaks import _raw_values as leak_test_raw_values

    with demo_engine.connect() as conn:
        owners = set(conn.execute(text("SELECT DISTINCT owner FROM alerts WHERE status IN ('new', 'contacted') "
                                       "AND owner IS NOT NULL")).scalars())
    assert len(owners) > 50  # the demo run has alerts across many portfolios
    summary = digest.run(demo_engine, outbox=str(tmp_path / "out"), today=dt.date(2026, 11, 15))
    assert summary["managers"] == len(owners) and summary["files"] == 2 * len(owners)
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert written == {f"digest-2026-11-15-{o}.{ext}" for o in owners for ext in ("html", "csv")}
    assert summary["alerts"] > 0
    blob = "\n".join(_files(tmp_path / "out").values())
    leaked = [v for v in leak_test_raw_values(demo_engine) if v in blob]
    assert leaked == []


def test_an_outbox_that_cannot_be_made_is_one_line(alerting, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the outbox should be")
    code = cli.main(["digest", "--db", alerting.url.render_as_string(hide_password=False), "--outbox", str(blocker)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.splitlines() == [err]
    assert err.startswith(f"error: cannot create the outbox {blocker}")
    assert blocker.read_text() == "a file where the outbox should be"
