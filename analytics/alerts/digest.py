"""The early-warning digest: one HTML and one CSV file per relationship manager, optionally mailed.

What a manager's digest holds
-----------------------------
Their **new** alerts (first seen in the published run) and their **overdue** ones (open and due
before the digest's day), read through :func:`analytics.alerts.read.worklist` as that manager
(role ``relationship_manager``, scope their portfolio): personal fields are masked as on
marketing's screens and no amount is shown. Every relationship manager who owns an open alert gets
both files, even when none of their alerts is new or overdue (the file then says so), so a missing
file always means "no open alert".

Files
-----
``<outbox>/digest-<YYYY-MM-DD>-<manager>.html`` and ``.csv``. The HTML escapes every value
(:func:`html.escape`); the CSV goes through :func:`analytics.exports.to_csv` (UTF-8 with BOM, every
field quoted, formula triggers neutralised). A manager code that is not a safe file name is written
by its hex digest instead.

Mail
----
``--send`` mails each digest (HTML body, CSV attached) to the e-mail addresses of the active users
with role ``relationship_manager`` whose portfolio scope names that manager, through ``SMTP_HOST``:
``SMTP_PORT`` with STARTTLS, always. A server that does not offer STARTTLS is refused rather than
sent to in clear; ``SMTP_CA_FILE`` names the authority of a server certificate the system does not
trust. A server that cannot be reached fails the send with one line; the files stay in the outbox.
"""

from __future__ import annotations

import hashlib
import html
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine

from analytics import exports, settings
from analytics.access import Scope, Viewer
from analytics.alerts.detect import detail_text
from analytics.alerts.read import worklist
from analytics.errors import AnalyticsError
from analytics.runs import utcnow
from analytics.settings import PROJECT_ROOT
from analytics.store import read_frame

DIGEST_COLUMNS = ("alert_id", "customer_id", "name", "branch_id", "kind", "status", "due_date", "overdue",
                  "first_seen", "detail")
MAX_ROWS_PER_MANAGER = 10_000
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class DigestError(AnalyticsError):
    """The digest could not be written or sent."""


@dataclass
class ManagerDigest:
    """One relationship manager's digest: the rows, the counts and, once written, the files."""

    owner: str
    rows: pd.DataFrame
    open_alerts: int
    new: int
    overdue: int
    left_out_consent: int
    files: list[Path] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)


def file_stem(owner: str, day: date) -> str:
    """``digest-<day>-<owner>``; an owner code unsafe in a file name becomes its SHA-256 prefix."""
    safe = owner if _SAFE_NAME.match(owner) and owner not in (".", "..") else \
        "rm-" + hashlib.sha256(owner.encode("utf-8")).hexdigest()[:16]
    return f"digest-{day.isoformat()}-{safe}"


def _current_run(engine: Engine) -> int | None:
    frame = read_frame(engine, "SELECT run_id FROM current_run WHERE id = 1")
    return None if frame.empty else int(frame["run_id"].iloc[0])


def owners_with_open_alerts(engine: Engine) -> list[str]:
    """Every relationship manager code that owns at least one open alert."""
    frame = read_frame(engine, "SELECT DISTINCT owner FROM alerts WHERE status IN ('new', 'contacted') "
                               "AND owner IS NOT NULL ORDER BY owner")
    return [str(v) for v in frame["owner"]]


def manager_viewer(owner: str) -> Viewer:
    """The reader a manager's digest is built as: that manager, scoped to their portfolio."""
    return Viewer(username=f"digest:{owner}", roles=("relationship_manager",),
                  scope=Scope(portfolios=frozenset({owner})))


def build(engine: Engine, *, today: date | None = None) -> list[ManagerDigest]:
    """The digest of every relationship manager who owns an open alert (see the module docstring)."""
    today = today or utcnow().date()
    run_id = _current_run(engine)
    # the counts of every manager in one query each, not one per manager
    open_counts = read_frame(engine, "SELECT owner, COUNT(*) AS n FROM alerts WHERE status IN ('new', 'contacted') "
                                     "AND owner IS NOT NULL GROUP BY owner").set_index("owner")["n"]
    new_counts = read_frame(engine, "SELECT owner, COUNT(*) AS n FROM alerts WHERE status IN ('new', 'contacted') "
                                    "AND owner IS NOT NULL AND first_seen_run = :r GROUP BY owner",
                            {"r": -1 if run_id is None else run_id}).set_index("owner")["n"]
    out = []
    for owner in owners_with_open_alerts(engine):
        rows, left = worklist(engine, viewer=manager_viewer(owner), owner=owner, today=today, overdue_only=True,
                              new_in_run=run_id if run_id is not None else -1, limit=MAX_ROWS_PER_MANAGER)
        rows = rows.assign(detail=rows["detail"].map(detail_text))  # the stored code in words (English)
        out.append(ManagerDigest(owner=owner, rows=rows[list(DIGEST_COLUMNS)].reset_index(drop=True),
                                 open_alerts=int(open_counts.get(owner, 0)), new=int(new_counts.get(owner, 0)),
                                 overdue=int(rows["overdue"].sum()), left_out_consent=left["consent"]))
    return out


def render_html(digest: ManagerDigest, day: date) -> str:
    """The digest as a standalone HTML page; every value escaped."""
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in DIGEST_COLUMNS)
    body = []
    for row in digest.rows.itertuples(index=False):
        cells = []
        for value in row:
            text = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
            cells.append(f"<td>{e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        table = "<p>No new or overdue alerts today. 今日无新增或逾期预警。</p>"
    else:
        table = f"<table border=\"1\" cellpadding=\"4\"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    consent = (f"<p>{digest.left_out_consent} birthday alert(s) left out: no live marketing consent.</p>"
               if digest.left_out_consent else "")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Worklist digest · 工作台摘要 "
            f"{e(day.isoformat())}</title></head><body>"
            f"<h1>Worklist digest · 工作台摘要</h1>"
            f"<p>Relationship manager {e(digest.owner)} · {e(day.isoformat())}: {digest.open_alerts} open alert(s), "
            f"{digest.new} new in the latest refresh, {digest.overdue} overdue.</p>{consent}{table}"
            f"<p>Personal fields are masked. Open the Worklist page to record outcomes.</p></body></html>\n")


def write(digests: list[ManagerDigest], outbox: Path, day: date) -> list[Path]:
    """Write each digest's HTML and CSV into ``outbox`` (created); returns every file written."""
    try:
        outbox.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DigestError(f"cannot create the outbox {outbox} ({type(exc).__name__})") from None
    written = []
    for digest in digests:
        stem = file_stem(digest.owner, day)
        csv_export = exports.to_csv(digest.rows, stem, max_rows=MAX_ROWS_PER_MANAGER)
        files = [(outbox / f"{stem}.html", render_html(digest, day).encode("utf-8")),
                 (outbox / csv_export.file_name, csv_export.data)]
        for path, data in files:
            try:
                path.write_bytes(data)
            except OSError as exc:
                raise DigestError(f"cannot write {path} ({type(exc).__name__})") from None
        digest.files = [p for p, _ in files]
        written.extend(digest.files)
    return written


def recipients(engine: Engine) -> dict[str, list[str]]:
    """Manager code -> the e-mail addresses of the active relationship-manager users scoped to it."""
    frame = read_frame(engine, """
        SELECT s.value AS owner, u.email, u.roles FROM user_scopes s JOIN users u ON u.username = s.username
        WHERE s.kind = 'portfolio' AND NOT u.disabled AND u.email IS NOT NULL AND u.email <> ''
        ORDER BY s.value, u.email""")
    out: dict[str, list[str]] = {}
    for owner, email, roles in zip(frame["owner"], frame["email"], frame["roles"], strict=True):
        if "relationship_manager" in str(roles).split(","):
            out.setdefault(str(owner), []).append(str(email))
    return out


def outbox_path(value: str | None) -> Path:
    """``--outbox`` or ``DIGEST_OUTBOX``; a relative path is relative to the project folder."""
    path = Path(value or settings.get("DIGEST_OUTBOX"))
    return path if path.is_absolute() else PROJECT_ROOT / path


def _message(digest: ManagerDigest, day: date, sender: str, to: list[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"Worklist digest {day.isoformat()}: {digest.new} new, {digest.overdue} overdue"
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg.set_content(f"{digest.open_alerts} open alert(s), {digest.new} new, {digest.overdue} overdue. "
                    "The list is attached; open the Worklist page to record outcomes.")
    msg.add_alternative(render_html(digest, day), subtype="html")
    csv_file = next(p for p in digest.files if p.suffix == ".csv")
    msg.add_attachment(csv_file.read_bytes(), maintype="text", subtype="csv", filename=csv_file.name)
    return msg


def smtp_settings() -> dict:
    """The SMTP_* settings; raises :class:`DigestError` when the server or sender is not set."""
    conf = {"host": str(settings.get("SMTP_HOST")), "port": int(settings.get("SMTP_PORT")),
            "user": str(settings.get("SMTP_USER")), "password": str(settings.get("SMTP_PASSWORD")),
            "sender": str(settings.get("SMTP_FROM")), "ca_file": str(settings.get("SMTP_CA_FILE")),
            "timeout": int(settings.get("SMTP_TIMEOUT_SECONDS"))}
    if not conf["host"]:
        raise DigestError("SMTP_HOST is not set: name the mail server to --send through (the files are in the outbox)")
    if not conf["sender"]:
        raise DigestError("SMTP_FROM is not set: name the sender address of the digest mails")
    return conf


def send(digests: list[ManagerDigest], day: date, *, host: str, port: int, sender: str, user: str = "",
         password: str = "", ca_file: str = "", timeout: int = 20) -> int:
    """Mail every digest that has recipients through one STARTTLS session; returns how many were sent.

    Raises
    ------
    DigestError
        One line naming the problem: the server cannot be reached, does not offer STARTTLS, refuses
        the login, or refuses a message. Files already written stay where they are.
    """
    to_send = [d for d in digests if d.recipients]
    if not to_send:
        return 0
    where = f"{host}:{port}"
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise DigestError(f"cannot read SMTP_CA_FILE {ca_file} ({type(exc).__name__})") from None
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise DigestError(f"the mail server {where} does not offer STARTTLS; the digest is never sent in clear")
            smtp.starttls(context=context)
            smtp.ehlo()
            if user:
                try:
                    smtp.login(user, password)
                except (smtplib.SMTPAuthenticationError, smtplib.SMTPServerDisconnected) as exc:
                    # some servers hang up after refusing every mechanism smtplib tries
                    raise DigestError(f"the mail server {where} refused the login of SMTP_USER "
                                      f"({type(exc).__name__})") from None
            for digest in to_send:
                smtp.send_message(_message(digest, day, sender, digest.recipients))
    except DigestError:
        raise
    except smtplib.SMTPException as exc:
        raise DigestError(f"the mail server {where} refused the digest ({type(exc).__name__})") from None
    except (OSError, ssl.SSLError) as exc:  # refused, unreachable, timed out, TLS failure
        raise DigestError(f"cannot reach the mail server {where} ({type(exc).__name__})") from None
    return len(to_send)


def run(engine: Engine, *, outbox: str | None = None, send_mail: bool = False, today: date | None = None) -> dict:
    """What ``python -m analytics digest`` does: build, write, and with ``send_mail`` mail.

    Returns the counts ``managers``, ``alerts``, ``files``, ``sent``, ``without_email`` and the outbox.
    """
    day = today or utcnow().date()
    digests = build(engine, today=day)
    folder = outbox_path(outbox)
    files = write(digests, folder, day)
    summary = {"managers": len(digests), "alerts": int(sum(len(d.rows) for d in digests)), "files": len(files),
               "outbox": str(folder), "sent": 0, "without_email": []}
    if send_mail:
        conf = smtp_settings()
        emails = recipients(engine)
        for digest in digests:
            digest.recipients = emails.get(digest.owner, [])
        summary["without_email"] = [d.owner for d in digests if not d.recipients]
        try:
            summary["sent"] = send(digests, day, **conf)
        except DigestError as exc:
            raise DigestError(f"{exc}; the digest files stay in {folder}") from None
    return summary


__all__ = ["DIGEST_COLUMNS", "DigestError", "ManagerDigest", "build", "file_stem", "manager_viewer",
           "outbox_path", "owners_with_open_alerts", "recipients", "render_html", "run", "send", "smtp_settings",
           "write"]
