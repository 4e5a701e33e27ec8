"""Command-line interface: ``python -m analytics COMMAND [options]``.

Every command takes ``--db URL`` (else ``CUSTOMER_STORE_URL``, else ``sqlite:///data/bank.db``).
Errors print one line on stderr and exit non-zero; no tracebacks for expected failures.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from analytics import settings
from analytics.errors import AnalyticsError
from analytics.store import redact_url


def _engine(args, *, create_dir: bool = False):
    from analytics.store import init_schema, make_engine

    engine = make_engine(args.db, create_dir=create_dir)
    init_schema(engine)
    return engine


def cmd_demo(args) -> int:
    from analytics import demo

    engine = _engine(args, create_dir=True)
    summary = demo.generate(engine, customers=args.customers, months=args.months, seed=args.seed,
                            progress=not args.quiet)
    from analytics import audit

    if audit.retire_checkpoint(engine, username="cli:demo") is not None:
        print("the audit checkpoint of a removed earlier store at this URL was retired (recorded in the log)")
    counts = summary.get("row_counts", summary)
    print("demo store built: " + ", ".join(f"{k} {v:,}" for k, v in counts.items() if isinstance(v, int)))
    return 0


def cmd_load(args) -> int:
    from analytics import loader

    engine = _engine(args)
    report = loader.load_files(engine, args.files, args.table, encoding=args.encoding)
    for line in report.summary_lines():
        print(line)
    if args.table == "customers":
        from analytics import consent

        synced = consent.sync_marketing_flags(engine)
        if any(synced.values()):
            print(f"marketing consent from the customers' flags: {synced['granted']} granted, "
                  f"{synced['withdrawn']} withdrawn (table consents)")
    pruned = loader.prune_rejects(engine)
    if pruned:
        print(f"deleted {pruned} rejected rows older than LOAD_REJECTS_RETENTION_DAYS")
    return 0


def cmd_refresh(args) -> int:
    from analytics.refresh import run_refresh

    engine = _engine(args)
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=100, desc="refresh", unit="%", file=sys.stderr, leave=False)

    def progress(stage: str, fraction: float) -> None:
        if bar is not None:
            bar.set_description(f"refresh: {stage}")
            bar.n = round(fraction * 100)
            bar.refresh()

    try:
        run_id = run_refresh(engine, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(f"refresh run {run_id} published")
    return 0


def cmd_status(args) -> int:
    from analytics.run_status import status

    engine = _engine(args)
    info = status(engine, limit=args.limit)
    if args.json:
        print(json.dumps(info, ensure_ascii=False, default=str, indent=2))
        return 0
    print(f"current run: {info['current_run'] or 'none (run `python -m analytics refresh`)'}"
          + (f", published {info['published_at']} UTC" if info["published_at"] else ""))
    for run in info["runs"]:
        line = f"  run {run['run_id']:>4}  {run['status']:<9}  started {run['started_at']}"
        if run["finished_at"]:
            line += f"  finished {run['finished_at']}"
        if run["status"] == "failed" and run.get("error"):
            line += f"  ({run['error'][:120]})"
        print(line)
    return 0


def cmd_digest(args) -> int:
    from analytics.alerts import digest

    engine = _engine(args)
    summary = digest.run(engine, outbox=args.outbox, send_mail=args.send)
    print(f"digest: {summary['managers']} relationship managers, {summary['alerts']} new or overdue alerts; "
          f"{summary['files']} files in {summary['outbox']}")
    if args.send:
        print(f"sent {summary['sent']} mails")
        if summary["without_email"]:
            print(f"{len(summary['without_email'])} managers have no user with an e-mail address and a portfolio "
                  f"scope naming them: {', '.join(summary['without_email'][:20])}")
    return 0


def cmd_approvals(args) -> int:
    from analytics import approvals

    return approvals.run_command(_engine(args), args.action)


def cmd_users(args) -> int:
    from analytics import audit, scopes, users, users_cli

    engine = _engine(args)
    if args.action in users_cli.ACTIONS:  # two-factor and access review (issue 18)
        return users_cli.run(engine, args)
    if args.action == "list":
        frame = users.list_users(engine)
        print(frame.to_string(index=False) if not frame.empty else "no users")
        return 0
    if args.action == "add":
        if not args.role:
            raise UsageError("users add needs at least one --role")
        # Check the scope before the user exists (and before asking for a password): a refused
        # scope must not leave a bank-wide user behind.
        scopes.check_roles_scope(args.role, args.portfolio)
        scopes.check_scope_values(engine, args.branch, args.portfolio)
    if args.action in ("add", "reset-password"):
        password = users.read_password_from_stdin_or_prompt()
    if args.action == "add":
        users.add_user(engine, args.username, password, args.role, display_name=args.name, email=args.email)
        if args.branch or args.portfolio:
            scopes.set_scope(engine, args.username, branches=args.branch, portfolios=args.portfolio)
        event, done = "user_change", f"added user {args.username} with roles {', '.join(args.role)}"
        if args.branch or args.portfolio:
            done += f" and scope {_scope_words(args.branch, args.portfolio)}"
    elif args.action == "set-scope":
        scopes.set_scope(engine, args.username, branches=args.branch, portfolios=args.portfolio,
                         bank_wide=args.all)
        event = "scope_change"
        done = (f"set the scope of {args.username} to "
                + ("the whole bank" if args.all else _scope_words(args.branch, args.portfolio))
                + " and ended their sessions")
    elif args.action == "disable":
        users.disable_user(engine, args.username)
        event, done = "user_change", f"disabled user {args.username} and ended their sessions"
    elif args.action == "set-roles":
        if not args.role:
            raise UsageError("users set-roles needs at least one --role")
        scope = scopes.get_scope(engine, users.normalise_username(args.username))
        scopes.check_roles_scope(args.role, scope.portfolios if scope else ())
        users.set_roles(engine, args.username, args.role)
        event, done = "role_change", f"set roles of {args.username} to {', '.join(args.role)}"
    else:
        users.reset_password(engine, args.username, password)
        event, done = "user_change", f"reset the password of {args.username} and ended their sessions"
    audit.append(engine, event, username=f"cli:{getpass.getuser()}", target={"user": args.username},
                 parameters={"action": args.action, "roles": args.role or [], "branches": args.branch or [],
                             "portfolios": args.portfolio or [], "bank_wide": bool(getattr(args, "all", False))})
    print(done)
    return 0


def _scope_words(branches, portfolios) -> str:
    from analytics import scopes
    from analytics.access import Scope

    return scopes.scope_words(Scope(branches=frozenset(branches or ()), portfolios=frozenset(portfolios or ())))


def cmd_audit(args) -> int:
    from analytics import audit

    engine = _engine(args)
    if args.action == "verify":
        who = f"cli:{getpass.getuser()}"
        if args.accept_missing_checkpoint:
            result = audit.accept_missing_checkpoint(engine, username=who)  # records the acceptance itself
        else:
            result = audit.verify(engine)
        # The finding first: a broken chain refuses the verify record below, and the operator must
        # still see what is wrong.
        print(result.message)
        if not result.accepted:
            try:
                audit.append(engine, "audit_verify", username=who,
                             parameters={"ok": result.ok, "checked": result.checked})
            except audit.AuditChainBroken:
                pass  # the append raised the audit_chain_broken alarm on stderr; the exit code says it
        return 0 if result.ok else 2
    if args.action == "rotate-key":
        result = audit.rotate_key(engine, username=f"cli:{getpass.getuser()}")
        print(result.message)
        return 0
    from analytics import loader

    if args.accept_missing_checkpoint:
        raise UsageError("--accept-missing-checkpoint goes with `audit verify`, not prune")
    removed = audit.prune(engine, args.older_than_days)
    print(f"pruned {removed} audit entries; the chain still verifies")
    rejects = loader.prune_rejects(engine)
    print(f"deleted {rejects} rejected import rows older than LOAD_REJECTS_RETENTION_DAYS")
    return 0


def cmd_campaign(args) -> int:
    from analytics.campaigns.cli import cmd_campaign as run

    return run(args, _engine(args))


def cmd_backup(args) -> int:
    from analytics import backup
    from analytics.store import make_engine

    report = backup.backup(make_engine(args.db), args.file)
    print(report.summary("backup written to"))
    return 0


def cmd_restore(args) -> int:
    from analytics import backup
    from analytics.store import make_engine

    report = backup.restore(make_engine(args.db, create_dir=True), args.file, force=args.force,
                            username=f"cli:{getpass.getuser()}")
    print(report.summary("restored from"))
    print(report.audit_message)
    return 0 if report.audit_ok else 2


class UsageError(AnalyticsError):
    """A command was called with arguments that don't fit together."""


def write_demo_secrets(path=None) -> bool:
    """Create a git-ignored ``.streamlit/secrets.toml`` with fresh random keys for the demo.

    Returns False (and changes nothing) when the file exists: a bank's own secrets are never
    overwritten.
    """
    import secrets as token_source

    path = path or settings.SECRETS_FILE
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ("# Generated by `make run` for the demo. Git-ignored. Replace for production.\n"
            f'AUTH_COOKIE_KEY = "{token_source.token_urlsafe(48)}"\n'
            f'AUDIT_HMAC_KEY = "{token_source.token_urlsafe(48)}"\n'
            f'MFA_KEY = "{token_source.token_urlsafe(48)}"\n')
    # Owner-only from the first byte (a chmod after writing leaves the keys readable for a moment);
    # O_EXCL: a file that appeared meanwhile is someone's own secrets, never overwritten.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(body)
    return True


# The demo logins, so a newcomer can find them after the terminal scrolled away (git-ignored, 0600).
DEMO_LOGINS_FILE = settings.PROJECT_ROOT / "data" / "demo-logins.txt"


def _shown_path(path) -> str:
    """A path as the user typed it from the project folder (relative when inside it)."""
    try:
        return str(path.relative_to(settings.PROJECT_ROOT))
    except ValueError:
        return str(path)


def _write_private(path, text_: str) -> None:
    """Write ``text_`` to a file readable by its owner only, from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text_)


DEMO_USERS = {f"demo_{role}": role for role in
              ("executive", "marketing", "risk", "compliance", "admin", "display")}


def create_demo_users(engine) -> dict[str, str]:
    """Create one demo user per role when the store has no users; print their passwords once.

    Returns the new usernames and passwords (empty when users already exist: passwords are never
    shown again; use `python -m analytics users reset-password NAME`).
    """
    import secrets as token_source

    from analytics import audit, users

    if not users.list_users(engine).empty:
        return {}
    created = {}
    for username, role in DEMO_USERS.items():
        password = token_source.token_urlsafe(12)
        users.add_user(engine, username, password, [role], display_name=f"Demo {role}")
        audit.append(engine, "user_change", username="cli:setup-demo", target={"user": username},
                     parameters={"action": "add", "roles": [role]})
        created[username] = password
    lines = [f"  {username:<18} {password}   role: {DEMO_USERS[username]}" for username, password in created.items()]
    print("demo users (reset a password with `python -m analytics users reset-password NAME`):")
    print("\n".join(lines))
    _write_private(DEMO_LOGINS_FILE, "# Demo logins written by `make run` (demo only; git-ignored). Delete this file,\n"
                   "# and these users, before a real deployment.\n" + "\n".join(lines) + "\n")
    print(f"(also written to {_shown_path(DEMO_LOGINS_FILE)}, readable by you only)")
    print("demo users whose role needs two-factor login (MFA_REQUIRED_ROLES) enrol at their first login: "
          "scan the QR code with an authenticator app")
    return created


# The demo's KPI targets, set from the demo store's own figures (git-ignored; edit and `load` it again).
DEMO_TARGETS_FILE = settings.PROJECT_ROOT / "data" / "demo-kpi-targets.csv"


def load_demo_targets(engine, seed: int = 42) -> None:
    """Set the demo's KPI targets from the new demo store's own figures, whatever its size
    (:mod:`analytics.demo.targets`), write them to DEMO_TARGETS_FILE and load that file through the
    loader, as a bank would load its own: ``load FILE --table kpi_targets``."""
    from analytics import loader
    from analytics.demo.targets import demo_targets, write_targets_file
    from analytics.refresh import latest_activity_month

    frame = demo_targets(engine, latest_activity_month(engine), seed=seed)
    path = write_targets_file(frame, DEMO_TARGETS_FILE)
    report = loader.load_files(engine, [path], "kpi_targets")
    print(f"KPI targets: {report.rows_loaded} loaded from {_shown_path(path)}, set from this demo store's own "
          "figures (edit the file and load it again: python -m analytics load FILE --table kpi_targets)"
          + (f", {report.rows_rejected} rejected (see load_rejects)" if report.rows_rejected else ""))


def cmd_setup_demo(args) -> int:
    """What `make run` does before serving: secrets, demo store if absent, a refresh if none."""
    from analytics.errors import StoreNotInitialisedError
    from analytics.runs import current_run_id
    from analytics.store import check_store

    if write_demo_secrets():
        print(f"wrote demo keys to {settings.SECRETS_FILE}")
    engine = _engine(args, create_dir=True)
    try:
        check_store(engine)
    except StoreNotInitialisedError:
        args.months, args.seed = 24, 42
        cmd_demo(args)
        load_demo_targets(engine, seed=args.seed)
    if current_run_id(engine) is None:
        cmd_refresh(args)
    if not create_demo_users(engine) and DEMO_LOGINS_FILE.exists():
        print(f"demo logins: see {_shown_path(DEMO_LOGINS_FILE)} "
              "(or set a password again: python -m analytics users reset-password NAME)")
    from analytics.mfa import key_problem

    problem = key_problem(settings.get("MFA_KEY"))
    if problem:  # a secrets file written before two-factor login existed
        print(f"warning: {problem} Users who need two-factor login (MFA_REQUIRED_ROLES) cannot log in; "
              f"add MFA_KEY to {settings.SECRETS_FILE}", file=sys.stderr)
    print("store ready")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analytics", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--db", metavar="URL", help="store URL (default: CUSTOMER_STORE_URL or sqlite:///data/bank.db)")
        p.set_defaults(func=func)
        return p

    p = add("demo", cmd_demo, "Build a realistic demo store (replaces the store tables).")
    p.add_argument("--customers", type=int, default=20000, metavar="N")
    p.add_argument("--months", type=int, default=24, metavar="M")
    p.add_argument("--seed", type=int, default=42, metavar="S")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add("load", cmd_load, "Import CSV or Parquet files into a store table, with validation.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--table", required=True, metavar="T")
    p.add_argument("--encoding", metavar="ENC",
                   help="the CSV files' encoding (e.g. shift_jis, big5, latin-1); default: UTF-8 or GB18030, "
                        "detected, and a file that looks like neither is refused")

    p = add("refresh", cmd_refresh, "Compute every analytic and publish the results as one run.")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add("users", cmd_users, "Manage dashboard users. Passwords are read from a prompt, or from stdin "
            "(password, then confirmation) when stdin is not a terminal; never from an argument.")
    p.add_argument("action", choices=["add", "disable", "set-roles", "set-scope", "reset-password", "list",
                                      "mfa-enrol", "mfa-reset", "review"])
    p.add_argument("username", nargs="?", default="")
    p.add_argument("--role", action="append", metavar="ROLE",
                   help="executive, marketing, risk, compliance, admin, display or relationship_manager "
                        "(repeat for several)")
    p.add_argument("--branch", action="append", metavar="B",
                   help="add/set-scope: limit the user to this branch's customers (repeat for several)")
    p.add_argument("--portfolio", action="append", metavar="RM",
                   help="add/set-scope: limit the user to the customers of this relationship manager "
                        "(customers.relationship_manager; repeat for several; required for relationship_manager)")
    p.add_argument("--all", action="store_true", help="set-scope: remove the scope (the whole bank)")
    p.add_argument("--name", help="display name (add only)")
    p.add_argument("--email", help="e-mail (add only)")
    p.add_argument("--csv", metavar="FILE", help="review only: also write the report to this CSV file")
    p.add_argument("--sign-off", action="store_true",
                   help="review only: record in the audit log that you reviewed every account now")

    p = add("audit", cmd_audit, "Verify the audit chain (exit 0 when intact), prune old entries, or rotate its "
            "key to AUDIT_HMAC_KEY (the old key in AUDIT_HMAC_KEYS_RETIRED; see docs/deployment.md).")
    p.add_argument("action", choices=["verify", "prune", "rotate-key"])
    p.add_argument("--accept-missing-checkpoint", action="store_true",
                   help="verify only: after a first install or a restore, accept that this store has no "
                        "checkpoint and anchor one at the current head (the acceptance is recorded)")
    p.add_argument("--older-than-days", type=int, default=None,
                   help="prune only: default AUDIT_RETENTION_DAYS")

    p = add("approvals", cmd_approvals, "Four-eyes requests: expire those past APPROVAL_TTL_HOURS (for a "
            "scheduler), or list the open ones.")
    p.add_argument("action", choices=["expire", "list"])

    p = add("setup-demo", cmd_setup_demo,
            "Prepare the demo: secrets, the demo store if absent, and a first refresh (used by `make run`).")
    # A first store small enough to serve within a minute on two cores; `make run DEMO_CUSTOMERS=20000`
    # (or `demo --customers N`) builds a larger one.
    p.add_argument("--customers", type=int, default=3000, metavar="N",
                   help="customers of a new demo store (default 3000)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add("digest", cmd_digest, "Write each relationship manager's new and overdue alerts as HTML and CSV "
            "(masked), and with --send mail them (SMTP_* settings, STARTTLS).")
    p.add_argument("--outbox", metavar="DIR", help="folder for the files (default DIGEST_OUTBOX)")
    p.add_argument("--send", action="store_true", help="also mail each digest to its manager")

    from analytics.campaigns.cli import add_parser as add_campaign_parser

    add_campaign_parser(add, cmd_campaign)

    p = add("backup", cmd_backup, "Write a consistent backup of the whole store to FILE (mode 0600): SQLite's "
            "online backup API, or pg_dump's custom format for PostgreSQL.")
    p.add_argument("file", metavar="FILE")

    p = add("restore", cmd_restore, "Check the backup FILE, replace the store's contents with it, and anchor "
            "the audit checkpoint at the restored head (exit 2 when the restored audit chain does not verify).")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--force", action="store_true", help="replace a store that already holds data")

    p = add("status", cmd_status, "Show the current refresh run and recent runs.")
    p.add_argument("--json", action="store_true", help="print a JSON object (current_run, runs)")
    p.add_argument("--limit", type=int, default=10)
    return parser


# Commands that change the store or its users, or send customer rows out (digest): each run is audited
# with the OS user and its arguments.
AUDITED_COMMANDS = {"load", "demo", "refresh", "users", "setup-demo", "digest", "campaign", "backup", "restore"}
# Arguments never written to the audit log (the store URL may hold a password; it is redacted).
_NOT_AUDITED = {"func", "command", "db"}


def command_parameters(args) -> dict:
    """The arguments of a command as the audit log records them: no secrets, the URL redacted."""
    params = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_AUDITED and v not in (None, False, [])}
    params["db"] = redact_url(args.db or settings.get("CUSTOMER_STORE_URL"))
    return params


def _audit_command(args, exit_code: int, error: str | None) -> None:
    """Append a ``cli_command`` entry; a store that cannot take it (it may be what failed) is
    reported on stderr, never hidden and never fatal to the command's own outcome."""
    if args.command not in AUDITED_COMMANDS and not (args.command == "audit" and args.action in ("prune", "rotate-key")) \
            and not (args.command == "approvals" and args.action == "expire"):
        return
    try:
        from analytics import audit
        from analytics.store import make_engine

        audit.append(make_engine(args.db), "cli_command", username=f"cli:{getpass.getuser()}",
                     target={"command": args.command, "exit_code": exit_code},
                     parameters=command_parameters(args), reason=error)
    except (AnalyticsError, SQLAlchemyError, OSError) as exc:
        print(f"warning: the command was not audited ({type(exc).__name__})", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    code, error = _run(args)
    _audit_command(args, code, error)
    return code


def _run(args) -> tuple[int, str | None]:
    """Run the command: its exit code, and the class of the error that ended it (for the audit)."""
    try:
        return args.func(args), None
    except AnalyticsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1, type(exc).__name__
    except SQLAlchemyError as exc:
        # The driver's message may hold a URL with a password: show the class and a redacted hint only.
        print(f"error: the store failed ({type(exc).__name__}); check that {redact_url(args.db or settings.get('CUSTOMER_STORE_URL'))} "
              "is reachable and has the expected schema", file=sys.stderr)
        return 1, type(exc).__name__
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130, "KeyboardInterrupt"
