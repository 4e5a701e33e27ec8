"""The deployment files of deploy/ (issue 17), parsed: the systemd units verified by
``systemd-analyze verify`` when it is installed, the nginx site checked for structure and the
directives the guide relies on, the PostgreSQL roles run against the test server."""

from __future__ import annotations

import re
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
GUIDE = ROOT / "docs" / "deployment.md"
UNITS = ["customer-insight.service", "insight-refresh.service", "insight-refresh.timer"]


def test_guide_names_every_deploy_file_and_each_exists():
    guide = GUIDE.read_text(encoding="utf-8")
    files = sorted(p.name for p in DEPLOY.iterdir())
    assert files, "deploy/ is empty"
    for name in files:
        assert f"deploy/{name}" in guide, f"docs/deployment.md does not mention deploy/{name}"
    for named in set(re.findall(r"deploy/([\w.-]+\w)", guide)):
        assert (DEPLOY / named).is_file(), f"docs/deployment.md names deploy/{named}, which is not in the repo"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_verify(tmp_path):
    # verify checks that ExecStart's program exists: point the install folder at this checkout.
    for name in UNITS:
        unit = (DEPLOY / name).read_text().replace("/opt/customer-insight", str(ROOT))
        (tmp_path / name).write_text(unit)
    proc = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in UNITS)],
                          capture_output=True, text=True, timeout=120)
    # systemd ignores a bad line with only a warning: any output is a finding.
    assert proc.returncode == 0 and not proc.stderr.strip() and not proc.stdout.strip(), proc.stderr + proc.stdout


def test_systemd_units_run_the_commands_the_guide_names():
    refresh = (DEPLOY / "insight-refresh.service").read_text()
    starts = re.findall(r"^ExecStart=\S+ -m analytics (\w+)", refresh, flags=re.M)
    assert starts[:2] == ["refresh", "digest"], starts
    assert "Unit=" not in (DEPLOY / "insight-refresh.timer").read_text()  # same name: the service above
    app = (DEPLOY / "customer-insight.service").read_text()
    assert re.search(r"^ExecStart=.*-m streamlit run app\.py --server\.address 127\.0\.0\.1", app, flags=re.M)


def _nginx_blocks(conf: str) -> list[tuple[str, str]]:
    """(block header, block body) for every ``{...}``; raises AssertionError when braces don't balance."""
    body = re.sub(r"#[^\n]*", "", conf)
    body = re.sub(r'"[^"]*"', '""', body)
    stack, blocks = [], []
    for m in re.finditer(r"[{}]", body):
        if m.group() == "{":
            header = body[:m.start()].rsplit(";", 1)[-1].rsplit("}", 1)[-1].rsplit("{", 1)[-1].strip()
            stack.append((header, m.end()))
        else:
            assert stack, f"unbalanced '}}' at offset {m.start()}"
            header, start = stack.pop()
            blocks.append((header, body[start:m.start()]))
    assert not stack, f"unclosed block {stack[-1][0]!r}"
    return blocks


def test_nginx_structure_and_required_directives():
    blocks = dict(_nginx_blocks((DEPLOY / "nginx-customer-insight.conf").read_text()))
    ws = blocks["location /_stcore/stream"]
    for directive in ("proxy_pass http://customer_insight;", "proxy_http_version 1.1;",
                      "proxy_set_header Upgrade $http_upgrade;", "proxy_set_header Connection",
                      "proxy_read_timeout 86400s;", "proxy_set_header X-Forwarded-For $remote_addr;"):
        assert directive in ws, directive
    assert 'proxy_set_header Connection "upgrade";' in (DEPLOY / "nginx-customer-insight.conf").read_text()
    servers = [body for header, body in _nginx_blocks((DEPLOY / "nginx-customer-insight.conf").read_text())
               if header == "server"]
    tls = [s for s in servers if "listen 443 ssl;" in s]
    assert len(tls) == 1 and "ssl_certificate " in tls[0] and "ssl_certificate_key " in tls[0]
    # Replace, never append ($proxy_add_x_forwarded_for would pass on what the browser claimed).
    assert "$proxy_add_x_forwarded_for" not in (DEPLOY / "nginx-customer-insight.conf").read_text()
    assert "server 127.0.0.1:8501;" in blocks["upstream customer_insight"]
    assert any("return 301 https://" in s for s in servers)


def test_nginx_check_finds_a_missing_brace():
    with pytest.raises(AssertionError, match="unclosed block"):
        _nginx_blocks("server { location / { proxy_pass x; }")
    with pytest.raises(AssertionError, match="unbalanced"):
        _nginx_blocks("server { } }")


# ---------------------------------------------------------------------------------------------
# PostgreSQL roles
# ---------------------------------------------------------------------------------------------

APP_ROLE, WRITER_ROLE = "ci_insight_app", "ci_insight_writer"


@contextmanager
def pg_roles(engine):
    """Run deploy/postgres-roles.sql on the test database (roles prefixed ``ci_``); yield the store URL
    as the app role and as the writer role; drop the roles afterwards."""
    from analytics.backup import _pg_args_env

    psql = shutil.which("psql") or "/usr/bin/psql"
    args, env = _pg_args_env(engine)
    db = str(engine.url.database)
    proc = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"app_role={APP_ROLE}", "-v",
                           f"writer_role={WRITER_ROLE}", *args, "-d", db, "-f", str(DEPLOY / "postgres-roles.sql")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    url = engine.url
    try:
        yield (url.set(username=APP_ROLE).render_as_string(hide_password=False),
               url.set(username=WRITER_ROLE).render_as_string(hide_password=False))
    finally:
        with engine.begin() as conn:
            for role in (APP_ROLE, WRITER_ROLE):
                conn.execute(text(f'DROP OWNED BY "{role}"'))
                conn.execute(text(f'DROP ROLE "{role}"'))


@pytest.mark.postgres
def test_postgres_roles_app_reads_and_appends_but_cannot_change_data(pg_engine):
    from analytics import audit
    from analytics.store import make_engine
    from tests.analytics import store_rows

    store_rows.fill(pg_engine)
    with pg_roles(pg_engine) as (app_url, writer_url):
        app = make_engine(app_url)
        try:
            with app.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM customers")).scalar() == 3
            assert audit.append(app, "page_view", username="u1") == 1  # the audit log: insert only
            for statement in ("UPDATE customers SET name = 'x'", "DELETE FROM audit_log",
                              "UPDATE audit_log SET username = 'x'", "INSERT INTO refresh_runs (status) VALUES ('x')",
                              "CREATE TABLE intruder (x int)"):
                with pytest.raises(ProgrammingError, match="permission denied"), app.begin() as conn:
                    conn.execute(text(statement))
        finally:
            app.dispose()
        writer = make_engine(writer_url)
        try:
            with writer.begin() as conn:
                assert conn.execute(text("UPDATE customers SET status = status")).rowcount == 3
        finally:
            writer.dispose()
