"""The append-only, tamper-evident audit log.

Every entry of the ``audit_log`` table carries ``prev_hash`` (the previous entry's ``entry_hash``)
and ``entry_hash = HMAC-SHA256(key, canonical JSON of the entry's fields + prev_hash)``. The first
entry's ``prev_hash`` is :data:`GENESIS_HASH`. :func:`verify` recomputes the chain, so it finds:

* an edited field or hash: the entry's HMAC no longer matches;
* a deleted or inserted entry in the middle, or reordered entries: a gap in ``seq`` or a
  ``prev_hash`` that does not match (``seq`` is inside the HMAC too);
* a truncated tail: the **checkpoint**, a small file outside the table (mode 0600) holding the
  head ``(seq, entry_hash)`` of each store and the time it was written, HMAC-signed and rewritten
  atomically after each append;
* entries deleted from the front: the first entry must be seq 1, or follow a signed
  ``audit_prune`` entry naming the last pruned ``seq`` and its hash (the anchor).

**An append checks before it writes.** Under one lock (a file lock next to the checkpoint, then
the database's), it reads the stored head and requires it to equal the checkpoint's head, both
``seq`` and hash; only then does it insert, commit and move the checkpoint. So between appends the
head and the checkpoint are always equal, and any difference was made outside the appends: a tail
deleted (the checkpoint is ahead), an older checkpoint restored (the log is ahead), a checkpoint
deleted, unsigned or re-signed with another key. The append then writes nothing, raises
:class:`AuditChainBroken` and raises the ``audit_chain_broken`` alarm where the chain does not
reach: the server log (stderr for the CLI) and a state file beside the checkpoint that
:func:`chain_alarm` reads for the app's banner. :func:`verify` fails on the same findings (a store
with entries and no checkpoint included), keeps the alarm up while it fails and clears it when it
passes. :func:`accept_missing_checkpoint` is the one override (a first install, a restore), and is
itself an audit entry.

What it protects against: someone who can write to the database but does not hold the HMAC key
cannot change the record without :func:`verify` noticing. Limits: someone who holds the key can
rewrite everything; keep the key out of the database's reach. Someone who can write both the
database and the checkpoint file can roll *both* back to an earlier, consistent state (a saved copy
of the checkpoint plus deleting the entries after it); nothing on this host can tell that from a
quiet period. ``AUDIT_CHECKPOINT_SYSLOG=1`` sends each head to syslog, a copy outside the host's
writable files against which such a rollback shows. Several app hosts appending to one database
must share one checkpoint file (and its lock); with a file each, each would see the others'
appends as a stale checkpoint.

The key: ``AUDIT_HMAC_KEY`` (environment or ``.streamlit/secrets.toml``, at least 32 bytes). When
it is not set and the store is SQLite, a random key is generated once into ``AUDIT_KEY_FILE``
(default ``data/audit.key``, mode 0600, git-ignored) so ``demo``/``refresh`` work out of the box.
On any other database the key must be set: several app hosts would each generate their own. The
key cannot be rotated without breaking :func:`verify` for older entries, so back it up.

Appends are serialised, so the chain never forks: on PostgreSQL by
``pg_advisory_xact_lock`` inside the append transaction, on SQLite by ``BEGIN IMMEDIATE`` (the
write lock is taken before the head is read). ``seq`` is the head's ``seq`` + 1 under that lock.

Nothing in an entry may be a customer's raw personal data: :func:`append` passes ``parameters``,
``target`` and ``reason`` through :func:`safe_parameters` / :func:`scrub_text`, and stores a
digest of the session id, never the id itself (a live session id is a credential).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection, Engine, delete, func, insert, or_, select, text

from analytics import settings
from analytics.access import FIELD_MASKERS, normalise_roles
from analytics.errors import AnalyticsError, ConfigError
from analytics.schema import audit_log

EVENTS: tuple[str, ...] = (
    "login_ok", "login_failed", "login_locked", "logout", "timeout", "page_view", "filter",
    "export", "unmask", "access_denied", "user_change", "role_change", "audit_read", "audit_verify",
    "refresh_start", "refresh_commit", "refresh_fail",
    # A command-line run that changes the store or its users (analytics.cli.AUDITED_COMMANDS).
    "cli_command", "scope_change",
    # A worklist alert's status changed (analytics.alerts.read.change_status).
    "alert_change",
    # Four-eyes approval (analytics.approvals): a request, a decision, an expiry, a refused use.
    "approval_request", "approval_decision", "approval_expire", "approval_refused",
    # Two-factor login and access review (analytics.mfa, analytics.access_review).
    "mfa_enrol", "mfa_reset", "access_review",
    # A campaign planned on the Campaigns page (issue 13).
    "campaign_create",
    # Written by rotate_key() itself, signed with the old key: later entries use the key it names.
    "audit_key_rotate",
    # Written by prune() itself: the anchor that lets verify() start after the pruned entries.
    "audit_prune",
)

# Events whose reason is free text about a customer: shown in full to compliance only.
REASON_EVENTS = ("unmask", "approval_request", "approval_decision")

GENESIS_HASH = "0" * 64
MIN_KEY_BYTES = 32
# Any constant shared by every appender; it names "the audit log" among advisory locks.
PG_ADVISORY_LOCK_KEY = 0x61756469  # "audi"
MAX_QUERY_ROWS = 100_000
CHECKPOINT_VERSION = 2
# A checkpoint is written just after the entry it names, on the same host; a checkpoint stamped
# more than this before its entry was not written by an append (allowance for a clock step).
CHECKPOINT_CLOCK_SLACK = dt.timedelta(minutes=5)
# What an operator does once a finding is explained (a database restored on purpose, a crash).
REANCHOR_HINT = ("If that is explained (a restore, a crash), move the checkpoint file aside and run "
                 "`python -m analytics audit verify --accept-missing-checkpoint` (recorded).")

log = logging.getLogger(__name__)

# Fields covered by the HMAC, in the order of the table. seq is included, so moving an entry to
# another position breaks its hash.
HASHED_FIELDS = (
    "seq", "at_utc", "username", "roles", "session_id", "client_address", "event", "target",
    "parameters", "reason", "run_id", "prev_hash",
)



def _setting(name: str):
    return settings.get(name)


class AuditError(AnalyticsError):
    """The audit log cannot be written or read as asked."""


class AuditTamperedError(AuditError):
    """The audit chain does not verify; refuse to act on it (e.g. prune) until it is examined."""


class AuditChainBroken(AuditError):
    """An append was refused: the stored head does not continue the checkpoint (alarm raised)."""


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify`.

    Attributes
    ----------
    ok : bool
        True if the whole chain and the checkpoint agree.
    checked : int
        Entries checked (up to the first bad one).
    first_bad_seq : int or None
        The first ``seq`` where the chain breaks (for a truncated tail, the first missing seq).
    message : str
        What was found, for the admin/compliance page and the CLI.
    head_seq : int or None
        The newest entry when verification started.
    missing_checkpoint : bool
        True when the only problem is that the store has entries but no checkpoint (a first
        install, a restore, or a deleted checkpoint): :func:`accept_missing_checkpoint` applies.
    accepted : bool
        True when :func:`accept_missing_checkpoint` re-anchored the checkpoint (and recorded it).
    """

    ok: bool
    checked: int
    first_bad_seq: int | None
    message: str
    head_seq: int | None = None
    missing_checkpoint: bool = False
    accepted: bool = False
    head_key_id: str | None = None


# ---------------------------------------------------------------------------------------------
# Keys and the checkpoint file
# ---------------------------------------------------------------------------------------------

def _project_path(value) -> Path:
    path = Path(value)
    return path if path.is_absolute() else settings.PROJECT_ROOT / path


def _read_or_create_key_file(path: Path) -> bytes:
    try:
        key = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_urlsafe(48) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            # link() fails if another process created the key first; then use theirs. A plain
            # rename would silently replace it and fork the chain's key.
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        key = path.read_text(encoding="ascii").strip()
    if len(key.encode()) < MIN_KEY_BYTES:
        raise ConfigError(f"The audit key file {path} holds fewer than {MIN_KEY_BYTES} bytes. Hint: "
                          "restore it from backup; a new key cannot verify the existing log.")
    return key.encode()


def audit_key(engine: Engine | None = None) -> bytes:
    """The HMAC key of the audit chain.

    ``AUDIT_HMAC_KEY`` if set; otherwise, for a SQLite store (or no engine given), the key file
    ``AUDIT_KEY_FILE``, created with a random key on first use.

    Raises
    ------
    ConfigError
        If the key is shorter than 32 bytes, or it is unset and the store is not SQLite.
    """
    configured = settings.get("AUDIT_HMAC_KEY")
    if configured:
        key = str(configured).encode("utf-8")
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"AUDIT_HMAC_KEY is shorter than {MIN_KEY_BYTES} bytes. Hint: set it to the output of "
                "`python -c \"import secrets; print(secrets.token_urlsafe(48))\"`."
            )
        return key
    if engine is not None and engine.dialect.name != "sqlite":
        raise ConfigError(
            "AUDIT_HMAC_KEY is not set. Hint: on a shared database every app host needs the same key; "
            "set AUDIT_HMAC_KEY in the environment or .streamlit/secrets.toml (at least 32 bytes)."
        )
    return _read_or_create_key_file(_project_path(_setting("AUDIT_KEY_FILE")))


def key_id(key: bytes) -> str:
    """A key's public name in the chain: a keyed fingerprint (16 hex characters), not the key."""
    return hmac.new(key, b"audit-key-id", hashlib.sha256).hexdigest()[:16]


def retired_keys() -> list[bytes]:
    """The earlier audit keys of ``AUDIT_HMAC_KEYS_RETIRED`` (comma-separated), for :func:`verify`."""
    raw = str(_setting("AUDIT_HMAC_KEYS_RETIRED") or "")
    keys = [k.strip().encode("utf-8") for k in raw.split(",") if k.strip()]
    short = sum(len(k) < MIN_KEY_BYTES for k in keys)
    if short:
        raise ConfigError(f"AUDIT_HMAC_KEYS_RETIRED holds {short} keys shorter than {MIN_KEY_BYTES} bytes.")
    return keys


def _checkpoint_path() -> Path:
    return _project_path(_setting("AUDIT_CHECKPOINT_FILE"))


def _alarm_path(path: Path) -> Path:
    return path.with_name(path.name + ".alarm")


def _store_id(engine: Engine) -> str:
    # One checkpoint file serves every store the app has opened (demo, tests, a bank's server),
    # so entries are keyed by the store's URL without its password.
    return engine.url.render_as_string(hide_password=True)


def _sign_checkpoint(key: bytes, store: str, seq: int, entry_hash: str, at: str | None = None) -> str:
    if at is None:
        # Version 1 (before the checkpoint carried its time): still accepted, so an upgraded install
        # keeps verifying; the next append rewrites it as version 2.
        msg = json.dumps({"store": store, "seq": seq, "hash": entry_hash}, sort_keys=True).encode()
    else:
        msg = json.dumps({"version": CHECKPOINT_VERSION, "store": store, "seq": seq, "hash": entry_hash,
                          "at": at}, sort_keys=True).encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """This store's entry in the checkpoint file, its signature checked: the head it covers and when."""

    seq: int
    entry_hash: str
    at: dt.datetime | None  # None for a version-1 checkpoint (no time)


def _load_checkpoints(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"__corrupt__": True}
    if not isinstance(data, dict) or not isinstance(data.get("stores", {}), dict):
        return {"__corrupt__": True}
    return data.get("stores", {})


def _read_checkpoint(key: bytes, store: str, path: Path) -> tuple[Checkpoint | None, str | None]:
    """(checkpoint, None) when present and signed; (None, None) when absent; (None, problem) otherwise."""
    stores = _load_checkpoints(path)
    if stores.get("__corrupt__"):
        return None, "The checkpoint file is unreadable (altered?)."
    cp = stores.get(store)
    if cp is None:
        return None, None
    if not isinstance(cp, dict) or not cp.get("mac"):
        return None, "The checkpoint entry for this store is not signed (altered or forged)."
    try:
        seq, entry_hash, mac = int(cp["seq"]), str(cp["hash"]), str(cp["mac"])
        at_text = None if cp.get("at") is None else str(cp["at"])
        at = None if at_text is None else dt.datetime.fromisoformat(at_text)
    except (KeyError, TypeError, ValueError):
        return None, "The checkpoint entry for this store is malformed."
    if not hmac.compare_digest(_sign_checkpoint(key, store, seq, entry_hash, at_text), mac):
        return None, "The checkpoint is not signed by the audit key (altered, forged or from another key)."
    return Checkpoint(seq, entry_hash, at), None


def _private_replace(path: Path, text_: str) -> None:
    """Write ``text_`` to ``path`` atomically, the file being mode 0600 from its first byte."""
    # pid and thread in the name: without fcntl (not POSIX) the lock around callers is a no-op.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    # A leftover of a crashed write would keep its own (perhaps looser) mode: start afresh.
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text_)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)  # atomic: a reader sees the old or the new file, never half of one


@contextmanager
def _checkpoint_lock(path: Path) -> Iterator[None]:
    """Held around every append (database write *and* checkpoint write), verify's snapshot and prune.

    Appends check the checkpoint before writing and move it after committing; holding this lock
    across both keeps the table's head and the checkpoint equal between appends, so a head that
    differs from the checkpoint always means something outside the appends changed one of them.
    Not re-entrant: never take it twice in one thread.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, still atomic replace
        yield
        return
    fd = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _store_checkpoint(path: Path, key: bytes, store: str, seq: int, entry_hash: str) -> None:
    """Set this store's checkpoint to (seq, entry_hash), signed, with the time; the lock is held."""
    stores = _load_checkpoints(path)
    stores.pop("__corrupt__", None)
    if seq <= 0:
        stores.pop(store, None)
    else:
        at = _now_utc().isoformat(timespec="microseconds")
        stores[store] = {"seq": seq, "hash": entry_hash, "at": at,
                         "mac": _sign_checkpoint(key, store, seq, entry_hash, at)}
    _private_replace(path, json.dumps({"version": CHECKPOINT_VERSION, "stores": stores}, sort_keys=True, indent=1))
    if seq > 0 and int(_setting("AUDIT_CHECKPOINT_SYSLOG") or 0):
        _syslog_head(store, seq, entry_hash)


def _syslog_head(store: str, seq: int, entry_hash: str) -> None:
    # A copy of the head outside the host's writable files: someone who rolls back both the table
    # and the checkpoint file cannot also roll back what the log host has already received.
    try:
        import syslog
    except ImportError:  # not POSIX
        log.warning("AUDIT_CHECKPOINT_SYSLOG is set but this platform has no syslog")
        return
    syslog.openlog("customer-insight-audit", 0, syslog.LOG_AUTHPRIV)
    syslog.syslog(syslog.LOG_NOTICE, f"audit head store={store} seq={seq} hash={entry_hash}")


def _write_checkpoint(engine: Engine, key: bytes, seq: int, entry_hash: str) -> None:
    path = _checkpoint_path()
    with _checkpoint_lock(path):
        _store_checkpoint(path, key, _store_id(engine), seq, entry_hash)
        _clear_alarm(path, _store_id(engine))


def retire_checkpoint(engine: Engine, *, username: str | None = None) -> int | None:
    """Retire the checkpoint an earlier store left at this store's URL, when this store's log is empty.

    For a store built anew where one was deleted (``make run`` after removing ``data/bank.db``):
    the old checkpoint rightly calls the empty log truncated, and every append would be refused.
    Nothing is retired while the log has an entry (then the checkpoint is this log's, and a
    difference is a finding, see :func:`accept_missing_checkpoint`). The retirement is the new
    log's first entry (``audit_verify`` with ``retired_checkpoint``: the old head's seq, hash and
    time), so the rebuild stays on record.

    Returns
    -------
    int or None
        The seq of that entry; None when there was nothing to retire.
    """
    key = audit_key(engine)
    path, store = _checkpoint_path(), _store_id(engine)
    with _checkpoint_lock(path):
        with engine.connect() as conn:
            has_entry = conn.execute(select(audit_log.c.seq).limit(1)).first() is not None
        stores = _load_checkpoints(path)
        old = stores.get(store)
        if has_entry or not isinstance(old, dict):
            return None
        _store_checkpoint(path, key, store, 0, "")
        _clear_alarm(path, store)
    retired = {k: old.get(k) for k in ("seq", "hash", "at")}
    return append(engine, "audit_verify", username=username,
                  parameters={"ok": True, "retired_checkpoint": retired,
                              "reason": "a new store was built where an earlier one was removed"})


# ---------------------------------------------------------------------------------------------
# The audit_chain_broken alarm
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChainAlarm:
    """A raised ``audit_chain_broken`` alarm: when it was first and last raised, why, how often."""

    first_at: str
    last_at: str
    problem: str
    count: int


def _load_alarms(path: Path) -> dict:
    try:
        data = json.loads(_alarm_path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        # Unreadable is itself suspicious: keep alarming rather than go quiet.
        return {"__corrupt__": {"first_at": "", "last_at": "", "problem": "The alarm file is unreadable.",
                                "count": 1}}
    return data.get("stores", {}) if isinstance(data, dict) and isinstance(data.get("stores"), dict) else {}


def _raise_alarm(path: Path, store: str, problem: str) -> None:
    """Record the alarm where the chain does not reach: the server log (stderr for the CLI) and a
    state file next to the checkpoint, which the app reads for its banner. The lock is held."""
    log.critical("audit_chain_broken: store %s: %s The alarm stays raised until `python -m analytics audit "
                 "verify` passes.", store, problem)
    alarms = _load_alarms(path)
    alarms.pop("__corrupt__", None)
    now = _now_utc().isoformat(timespec="seconds")
    old = alarms.get(store) or {}
    alarms[store] = {"first_at": old.get("first_at") or now, "last_at": now, "problem": problem,
                     "count": int(old.get("count") or 0) + 1}
    try:
        _private_replace(_alarm_path(path), json.dumps({"version": 1, "stores": alarms}, sort_keys=True, indent=1))
    except OSError as exc:  # the log line above is the alarm of record; the banner state is a convenience
        log.error("audit_chain_broken state could not be written: %s", exc.strerror or type(exc).__name__)


def _clear_alarm(path: Path, store: str) -> None:
    alarms = _load_alarms(path)
    if store not in alarms and "__corrupt__" not in alarms:
        return
    alarms.pop(store, None)
    alarms.pop("__corrupt__", None)
    _private_replace(_alarm_path(path), json.dumps({"version": 1, "stores": alarms}, sort_keys=True, indent=1))


def chain_alarm(engine: Engine) -> ChainAlarm | None:
    """The raised ``audit_chain_broken`` alarm of this store, or None.

    Raised when an append was refused or ``verify`` failed; cleared when ``verify`` passes (or the
    checkpoint is reset on purpose). The app shows compliance and admin a banner while it is set.
    """
    alarms = _load_alarms(_checkpoint_path())
    raw = alarms.get(_store_id(engine)) or alarms.get("__corrupt__")
    if not raw:
        return None
    return ChainAlarm(str(raw.get("first_at", "")), str(raw.get("last_at", "")), str(raw.get("problem", "")),
                      int(raw.get("count") or 1))


def _continuity_problem(key: bytes, store: str, path: Path, head: tuple[int, str]) -> str | None:
    """Why the stored head does not continue the checkpoint's head, or None when it does."""
    cp, problem = _read_checkpoint(key, store, path)
    if problem:
        return problem
    head_seq, head_hash = head
    if cp is None:
        if head_seq == 0:
            return None  # a new, empty log: nothing to continue
        return (f"There is no checkpoint for this store although the log holds entries up to {head_seq}: "
                "a deleted tail cannot be ruled out.")
    if cp.seq > head_seq:
        return (f"Entries {head_seq + 1}..{cp.seq} are missing: the log was truncated "
                f"(checkpoint at entry {cp.seq}).")
    if cp.seq < head_seq:
        return (f"The checkpoint covers entries up to {cp.seq} but the log goes on to entry {head_seq}: the "
                "checkpoint is stale (an older copy restored, or an append interrupted after its commit).")
    if not hmac.compare_digest(cp.entry_hash, head_hash):
        return f"Entry {cp.seq} differs from the checkpoint: the log was rewritten."
    return None


# ---------------------------------------------------------------------------------------------
# Keeping personal data out
# ---------------------------------------------------------------------------------------------

# Parameter names that mean a personal field (normalised: lower case, '-'/' ' -> '_').
_FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("name", "customer_name", "full_name", "holder_name", "contact_name"),
    "id_number": ("id_number", "id_no", "id_card", "idcard", "resident_id", "id_num"),
    "account_number": ("account_number", "account_no", "card", "card_number", "card_no", "account"),
    "phone": ("phone", "mobile", "phone_number", "mobile_number", "tel", "telephone"),
    "email": ("email", "e_mail", "mail"),
    "address": ("address", "addr"),
    "birth_date": ("birth_date", "birthday", "dob", "date_of_birth"),
}
# Aliases also matched as a suffix/prefix token ("filter_phone", "phone_like"). Not "name":
# branch_name and product_name are not personal.
_TOKEN_ALIASES = {a: f for f, aliases in _FIELD_ALIASES.items() for a in aliases
                  if a not in ("name", "card", "account", "mail", "tel")}
_EXACT_ALIASES = {a: f for f, aliases in _FIELD_ALIASES.items() for a in aliases}
_SECRET_KEY = re.compile(r"(password|passwd|secret|token|cookie|dsn|api_?key|^key$|_key$|session_id)")
REDACTED = "[redacted]"

_B = r"(?<![0-9A-Za-z])"
_E = r"(?![0-9A-Za-z])"
# Values that look like personal data whatever the key: an email, an ID or card number (15-19
# characters, check character X allowed), a mainland mobile number.
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_LONG_NUMBER_RE = re.compile(_B + r"(\d{17}[Xx]|\d{15,19})" + _E)
_MOBILE_RE = re.compile(_B + r"((?:\+?86)?1[3-9]\d{9})" + _E)


def _field_for_key(key: str) -> str | None:
    norm = re.sub(r"[\s\-]+", "_", str(key).strip().lower())
    if norm in _EXACT_ALIASES:
        return _EXACT_ALIASES[norm]
    for alias, field in _TOKEN_ALIASES.items():
        if norm.endswith("_" + alias) or norm.startswith(alias + "_"):
            return field
    return None


def scrub_text(value: str) -> str:
    """Mask anything in free text that looks like an email, an ID/card number or a mobile number."""
    value = _EMAIL_RE.sub(lambda m: FIELD_MASKERS["email"](m.group(0)), value)
    value = _LONG_NUMBER_RE.sub(lambda m: FIELD_MASKERS["id_number"](m.group(1)), value)
    return _MOBILE_RE.sub(lambda m: FIELD_MASKERS["phone"](m.group(1)), value)


def _mask_as(field: str, value):
    if value is None:
        return None
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_mask_as(field, v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _mask_as(field, v) for k, v in value.items()}
    if isinstance(value, (dt.date, str)):
        return FIELD_MASKERS[field](value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return FIELD_MASKERS[field](str(value))
    return "***"


def _safe_value(value):
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return safe_parameters(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_safe_value(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub_text(str(value))


def safe_parameters(params: Mapping | None) -> dict:
    """A copy of ``params`` fit for the audit log.

    * a key naming a personal field (``phone``, ``id_number``, ``customer_name``, ``filter_phone``,
      ``birthday``, ...) has its value masked with that field's masker;
    * a key naming a secret (``password``, ``token``, ``*_key``, ``session_id``, ...) has its value
      replaced by ``"[redacted]"``;
    * every other string is scanned for emails, ID/card numbers and mobile numbers, which are
      masked (a search box may hold a phone number under any name);
    * nested mappings and lists are handled the same way; dates become ISO text.
    """
    out: dict = {}
    for key, value in (params or {}).items():
        key_text = str(key)
        if _SECRET_KEY.search(key_text.lower()):
            out[key_text] = REDACTED
            continue
        field = _field_for_key(key_text)
        out[key_text] = _mask_as(field, value) if field else _safe_value(value)
    return out


# Peers that are this host: behind the reverse proxy of docs/deployment.md every connection comes
# from it (the app listens on loopback only), and Streamlit reports them as no address at all.
_LOCAL_PEERS = (None, "", "127.0.0.1", "::1")


def client_address(peer: str | None, forwarded_for: str | None) -> str | None:
    """The client address an entry records, from the connection's peer and its ``X-Forwarded-For``.

    The header is trusted only on a connection from this host (the reverse proxy, which replaces
    whatever the browser sent with the address it sees); its last entry is the one the nearest
    proxy wrote. A connection from elsewhere is recorded by its own address and its header, which
    its sender chose, is ignored. A value that is not an IP address is not recorded.
    """
    import ipaddress

    if peer not in _LOCAL_PEERS:
        return peer
    if not forwarded_for:
        return peer or None
    candidate = forwarded_for.split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def session_ref(session_id: str | None) -> str | None:
    """A short digest of a session id: enough to group one session's entries, useless as a login."""
    if not session_id:
        return None
    return "s:" + hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:24]


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _entry_hash(key: bytes, entry: Mapping) -> str:
    payload = {name: entry[name] for name in HASHED_FIELDS}
    at = payload["at_utc"]
    payload["at_utc"] = at.isoformat(timespec="microseconds") if isinstance(at, dt.datetime) else at
    payload["run_id"] = None if payload["run_id"] is None else int(payload["run_id"])
    payload["seq"] = int(payload["seq"])
    return hmac.new(key, _canonical(payload).encode("utf-8"), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------------------------
# Append
# ---------------------------------------------------------------------------------------------

@contextmanager
def _serialised(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the audit log's write lock for its whole length."""
    dialect = engine.dialect.name
    with engine.connect() as conn:
        if dialect == "sqlite":
            # pysqlite would open a deferred transaction lazily at the INSERT, after we read the
            # head, letting two appenders read the same head. In AUTOCOMMIT mode pysqlite emits no
            # BEGIN of its own, so ours (IMMEDIATE: take the write lock now, waiting up to the
            # busy timeout) is the transaction. SQLAlchemy restores the isolation level when the
            # connection goes back to the pool.
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                # SQLite rolls back by itself on some errors (disk full); a second ROLLBACK would
                # then raise and hide the original error.
                if conn.connection.dbapi_connection.in_transaction:
                    conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
        else:
            if dialect == "postgresql":
                # READ COMMITTED: each statement sees what the previous lock holder committed
                # (a REPEATABLE READ snapshot taken at the lock call would not).
                conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                if dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_ADVISORY_LOCK_KEY})
                yield conn


def _now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _head(conn: Connection) -> tuple[int, str]:
    """(seq, entry_hash) of the newest entry, or (0, GENESIS_HASH) for an empty log."""
    row = conn.execute(select(audit_log.c.seq, audit_log.c.entry_hash)
                       .order_by(audit_log.c.seq.desc()).limit(1)).first()
    return (int(row.seq), row.entry_hash) if row else (0, GENESIS_HASH)


def _append_locked(conn: Connection, key: bytes, values: dict,
                   head: tuple[int, str] | None = None) -> tuple[int, str]:
    head_seq, head_hash = head if head is not None else _head(conn)
    entry = dict(values)
    entry["seq"] = head_seq + 1
    entry["prev_hash"] = head_hash
    # Taken under the lock, so at_utc never goes backwards along the chain on one host.
    entry["at_utc"] = _now_utc()
    entry["entry_hash"] = _entry_hash(key, entry)
    conn.execute(insert(audit_log).values(**entry))
    return entry["seq"], entry["entry_hash"]


def _clip(value: str | None, n: int) -> str | None:
    return None if value is None else str(value)[:n]


def append(engine: Engine, event: str, *, username: str | None = None, roles: str | Iterable[str] = (),
           session_id: str | None = None, client_address: str | None = None, target=None,
           parameters: Mapping | None = None, reason: str | None = None, run_id: int | None = None) -> int:
    """Append one entry to the audit log and return its ``seq``.

    Parameters
    ----------
    engine : Engine
        The store.
    event : str
        One of :data:`EVENTS`.
    username, roles, client_address : optional
        Who did it, from where. Roles are stored comma-separated.
    session_id : str, optional
        The login session; only its digest (:func:`session_ref`) is stored.
    target : str, mapping or list, optional
        What it was done to: a page key, ``{"customer_ids": [...], "fields": [...]}``, a count.
        A mapping or list is made safe like ``parameters`` and stored as canonical JSON. Put
        customer ids under ``customer_ids`` (or ``customer_id``) so :func:`query` can find them.
    parameters : mapping, optional
        Filters and options; passed through :func:`safe_parameters`.
    reason : str, optional
        Free text (an unmask reason); scanned with :func:`scrub_text`.
    run_id : int, optional
        The refresh run concerned.

    Raises
    ------
    ValueError
        For an unknown event.
    ConfigError
        If the HMAC key is missing (non-SQLite store) or too short.
    AuditChainBroken
        If the stored head does not continue the checkpoint's head (a deleted tail, a missing,
        stale or unsigned checkpoint): nothing is written, and the ``audit_chain_broken`` alarm
        is logged and recorded for :func:`chain_alarm`.
    """
    if event not in EVENTS or event in ("audit_prune", "audit_key_rotate"):
        raise ValueError(f"Unknown audit event {event!r}. Known events: {', '.join(EVENTS[:-1])}.")
    key = audit_key(engine)
    if target is not None and not isinstance(target, str):
        target = _canonical(safe_parameters(target) if isinstance(target, Mapping) else _safe_value(target))
    elif isinstance(target, str):
        target = scrub_text(target)
    values = {
        # A failed login records what was typed as the username, which may be anything.
        "username": _clip(scrub_text(username) if username else None, 64),
        "roles": ",".join(normalise_roles(roles)) or None,
        "session_id": session_ref(session_id),
        "client_address": _clip(client_address, 64),
        "event": event,
        "target": target,
        "parameters": _canonical(safe_parameters(parameters)) if parameters else None,
        "reason": scrub_text(reason) if reason else None,
        "run_id": run_id,
    }
    path, store = _checkpoint_path(), _store_id(engine)
    with _checkpoint_lock(path):
        with _serialised(engine) as conn:
            head = _head(conn)
            problem = _continuity_problem(key, store, path, head)
            if problem is None:
                seq, entry_hash = _append_locked(conn, key, values, head)
        if problem is not None:
            _raise_alarm(path, store, problem)
            raise AuditChainBroken(f"The audit log refused the {event} entry: its chain is broken "
                                   "(audit_chain_broken alarm raised). Hint: run `python -m analytics audit verify`.")
        _store_checkpoint(path, key, store, seq, entry_hash)
    return seq


# ---------------------------------------------------------------------------------------------
# Verify and prune
# ---------------------------------------------------------------------------------------------

def _anchor(conn: Connection) -> tuple[int, str]:
    """(last pruned seq, its entry_hash) from the newest prune record, or (0, GENESIS_HASH)."""
    best = (0, GENESIS_HASH)
    rows = conn.execute(select(audit_log.c.parameters).where(audit_log.c.event == "audit_prune"))
    for (params,) in rows:
        try:
            p = json.loads(params or "{}")
            through, anchor_hash = int(p["pruned_through_seq"]), str(p["anchor_hash"])
        except (ValueError, KeyError, TypeError):
            continue  # a damaged record fails its own HMAC check in the main pass
        if through > best[0]:
            best = (through, anchor_hash)
    return best


# Events that may go unrecorded while the chain is broken (the refused append already raised the
# audit_chain_broken alarm in the server log, and compliance and admin see the banner): refusing
# them would lock everyone out, the officers who must investigate included. Exports, unmasks,
# approvals and user changes are never done unrecorded.
MAY_PASS_A_BROKEN_CHAIN = frozenset({"login_ok", "login_failed", "login_locked", "logout", "timeout",
                                     "page_view", "filter", "access_denied", "audit_read", "audit_verify"})


def append_or_pass(engine: Engine, event: str, **fields) -> int | None:
    """:func:`append`, except that an event of :data:`MAY_PASS_A_BROKEN_CHAIN` passes a broken
    chain unrecorded (None; the server log names the event, the alarm stays raised). Every other
    event raises :class:`AuditChainBroken` as :func:`append` does."""
    try:
        return append(engine, event, **fields)
    except AuditChainBroken:
        if event not in MAY_PASS_A_BROKEN_CHAIN:
            raise
        log.error("audit chain broken: event %s not recorded", event)
        return None


def verify(engine: Engine) -> VerifyResult:
    """Recompute the whole chain and compare its head with the checkpoint.

    Returns
    -------
    VerifyResult
        ``ok`` is False at the first entry that was edited, inserted, moved or whose predecessor
        is missing; when entries after the checkpointed head are gone; when the store has entries
        but no checkpoint (``missing_checkpoint``); and when the checkpoint is unreadable, not
        signed by the key, stale (the log goes on past it) or stamped before the entry it names.
        A failure raises the ``audit_chain_broken`` alarm; success clears it.
    """
    key = audit_key(engine)
    path, store = _checkpoint_path(), _store_id(engine)
    # The checkpoint and the head are read together under the append lock: between appends they
    # are equal, so any difference found here was made outside the appends.
    with _checkpoint_lock(path):
        cp, cp_problem = _read_checkpoint(key, store, path)
        with engine.connect() as conn:
            head_seq, head_hash = _head(conn)
    result = _verify(engine, key, cp, cp_problem, head_seq, head_hash)
    with _checkpoint_lock(path):
        if result.ok:
            _clear_alarm(path, store)
        else:
            _raise_alarm(path, store, result.message)
    return result


def _verify(engine: Engine, key: bytes, cp: Checkpoint | None, cp_problem: str | None,
            head_seq: int, head_hash: str, *, allow_retired_head: bool = False) -> VerifyResult:
    checked = 0
    head_at = None
    # Each stretch of the chain is checked with the key the chain names for it: the first entry's
    # key is whichever configured key signed it; an audit_key_rotate entry names the next one.
    keys = {key_id(k): k for k in (key, *retired_keys())}
    segment_key = None
    with engine.connect() as conn:
        anchor_seq, anchor_hash = _anchor(conn)
        expected_seq, expected_prev = anchor_seq + 1, anchor_hash
        cols = [audit_log.c[name] for name in (*HASHED_FIELDS, "entry_hash")]
        # Entries appended after the snapshot are someone else's business: verify up to the head read.
        result = conn.execution_options(yield_per=2000).execute(
            select(*cols).where(audit_log.c.seq <= head_seq).order_by(audit_log.c.seq))
        for row in result:
            entry = row._asdict()
            seq = entry["seq"]
            if seq != expected_seq:
                if seq < expected_seq:
                    msg = f"Entry {seq} is out of order or duplicated (expected {expected_seq})."
                elif checked == 0 and anchor_seq == 0:
                    msg = (f"The log starts at entry {seq}: entries before it were deleted without a "
                           "prune record.")
                else:
                    msg = f"Entries {expected_seq}..{seq - 1} are missing (deleted)."
                return VerifyResult(False, checked, expected_seq, msg, head_seq)
            if entry["prev_hash"] != expected_prev:
                return VerifyResult(False, checked, seq,
                                    f"Entry {seq} does not follow entry {seq - 1} (broken link).", head_seq)
            if segment_key is None:
                segment_key = next((k for k in keys.values()
                                    if hmac.compare_digest(_entry_hash(k, entry), entry["entry_hash"] or "")), key)
            if not hmac.compare_digest(_entry_hash(segment_key, entry), entry["entry_hash"] or ""):
                return VerifyResult(False, checked, seq, f"Entry {seq} was altered (hash mismatch).", head_seq)
            if entry["event"] == "audit_key_rotate":
                new_id = str(json.loads(entry["parameters"] or "{}").get("new_key_id"))
                if new_id not in keys:
                    return VerifyResult(False, checked, seq, f"Entry {seq} rotated the audit key to key id {new_id}, "
                                        "which is neither AUDIT_HMAC_KEY nor in AUDIT_HMAC_KEYS_RETIRED.", head_seq)
                segment_key = keys[new_id]
            checked += 1
            expected_seq, expected_prev = seq + 1, entry["entry_hash"]
            head_at = entry["at_utc"]

    head_key = None if segment_key is None else key_id(segment_key)

    def fail(msg: str, bad: int | None = None, **kw) -> VerifyResult:
        return VerifyResult(False, checked, bad, msg, head_seq, head_key_id=head_key, **kw)

    if segment_key is not None and segment_key != key and not allow_retired_head:
        return fail(f"The newest audit entries are signed with a retired key (id {head_key}), not AUDIT_HMAC_KEY. "
                    "Hint: to rotate, run `python -m analytics audit rotate-key` (docs/deployment.md).")

    if cp_problem:
        return fail(cp_problem)
    if cp is None:
        if head_seq == 0:
            return VerifyResult(True, 0, None, "The audit log is empty; nothing to verify.", 0)
        return fail(f"{checked} entries verified, but there is no checkpoint for this store, so a deleted "
                    "tail cannot be ruled out. Hint: after a first install or a restore, run `python -m "
                    "analytics audit verify --accept-missing-checkpoint` (the acceptance is recorded).",
                    missing_checkpoint=True)
    if cp.seq > head_seq:
        return fail(f"Entries {head_seq + 1}..{cp.seq} are missing: the log was truncated "
                    f"(checkpoint at entry {cp.seq}). {REANCHOR_HINT}", head_seq + 1)
    if cp.seq < head_seq:
        return fail(f"The checkpoint covers entries up to {cp.seq} but the log goes on to entry {head_seq}: "
                    "the checkpoint is stale (an older copy was restored, or an append was interrupted "
                    f"after its commit). {REANCHOR_HINT}", cp.seq + 1)
    if not hmac.compare_digest(cp.entry_hash, head_hash):
        return fail(f"Entry {cp.seq} differs from the checkpoint: the log was rewritten.", cp.seq)
    if cp.at is not None and isinstance(head_at, dt.datetime) and cp.at + CHECKPOINT_CLOCK_SLACK < head_at:
        return fail(f"The checkpoint (written {cp.at:%Y-%m-%d %H:%M:%S} UTC) is older than entry {cp.seq} it "
                    f"covers (written {head_at:%Y-%m-%d %H:%M:%S} UTC): it was not written by an append.")
    return VerifyResult(True, checked, None, f"{checked} entries verified; head at entry {head_seq}.", head_seq,
                        head_key_id=head_key)


def accept_missing_checkpoint(engine: Engine, *, username: str | None = None) -> VerifyResult:
    """Verify; when the only problem is a missing checkpoint, anchor it at the head and record that.

    The explicit override for a first install, or a store restored from a backup (move the old
    checkpoint file aside first: it rightly calls the restored log truncated). The chain itself
    must verify; any other problem is returned unchanged and nothing is accepted. The acceptance is
    an ``audit_verify`` entry (``accepted_missing_checkpoint``) naming the head it anchored at.
    """
    result = verify(engine)
    if result.ok or not result.missing_checkpoint:
        return result
    key = audit_key(engine)
    path, store = _checkpoint_path(), _store_id(engine)
    with _checkpoint_lock(path):
        cp, problem = _read_checkpoint(key, store, path)
        with engine.connect() as conn:
            head_seq, head_hash = _head(conn)
        if cp is not None or problem or head_seq != result.head_seq:
            return VerifyResult(False, result.checked, None, "The log or its checkpoint changed while the missing "
                                "checkpoint was being accepted; nothing was accepted. Run the command again.",
                                head_seq)
        alarm = chain_alarm(engine)
        _store_checkpoint(path, key, store, head_seq, head_hash)
        _clear_alarm(path, store)
    parameters = {"ok": True, "checked": result.checked, "accepted_missing_checkpoint": True,
                  "anchored_at_seq": head_seq}
    if alarm is not None:
        # The alarm state is cleared now; the log keeps what it said, so the incident stays on record.
        parameters["alarm"] = {"first_at": alarm.first_at, "last_at": alarm.last_at, "count": alarm.count,
                               "problem": alarm.problem}
    seq = append(engine, "audit_verify", username=username, parameters=parameters)
    return VerifyResult(True, result.checked, None,
                        f"{result.checked} entries verified; the missing checkpoint was accepted at entry "
                        f"{head_seq} and the acceptance recorded as entry {seq}.", head_seq, accepted=True)


def anchor_restored(engine: Engine, *, username: str | None = None, source: str | None = None) -> VerifyResult:
    """After a restore (:mod:`analytics.backup`): verify the restored chain and anchor this store's
    checkpoint at its head, replacing the checkpoint of the store that was overwritten.

    The old checkpoint rightly calls the older, restored log truncated; the restore is the
    explained reason, so it is replaced, and the replacement is recorded as an ``audit_verify``
    entry (``restored``, the old checkpoint's head, the backup file's name). The entries themselves
    must verify with the current key: when they don't, nothing is anchored and the
    ``audit_chain_broken`` alarm is raised, as by :func:`verify`.
    """
    key = audit_key(engine)
    path, store = _checkpoint_path(), _store_id(engine)
    with _checkpoint_lock(path):
        with engine.connect() as conn:
            head_seq, head_hash = _head(conn)
        result = _verify(engine, key, None, None, head_seq, head_hash, allow_retired_head=True)
        if not (result.ok or result.missing_checkpoint):
            _raise_alarm(path, store, result.message)
            return result
        old = _load_checkpoints(path).get(store)
        if result.head_key_id not in (None, key_id(key)):
            # A backup from before a key rotation: anchor it with the key that signed its head, so
            # that `audit rotate-key` can carry it over to AUDIT_HMAC_KEY (recorded there).
            retired = {key_id(k): k for k in retired_keys()}[result.head_key_id]
            _store_checkpoint(path, retired, store, head_seq, head_hash)
            message = (f"{result.checked} restored audit entries verified and the checkpoint anchored at entry "
                       f"{head_seq}, but the newest are signed with the retired key id {result.head_key_id}. "
                       "Hint: run `python -m analytics audit rotate-key`, then `audit verify`.")
            _raise_alarm(path, store, message)
            return VerifyResult(False, result.checked, None, message, head_seq, head_key_id=result.head_key_id)
        _store_checkpoint(path, key, store, head_seq, head_hash)
        _clear_alarm(path, store)
    replaced = {k: old.get(k) for k in ("seq", "hash", "at")} if isinstance(old, dict) else None
    seq = append(engine, "audit_verify", username=username,
                 parameters={"ok": True, "checked": result.checked, "restored": True, "anchored_at_seq": head_seq,
                             "replaced_checkpoint": replaced, "backup_file": source})
    return VerifyResult(True, result.checked, None,
                        f"{result.checked} restored audit entries verified; the checkpoint was anchored at entry "
                        f"{head_seq} and the restore recorded as entry {seq}.", head_seq, accepted=True)


def rotate_key(engine: Engine, *, username: str | None = None) -> VerifyResult:
    """Move the audit chain to ``AUDIT_HMAC_KEY`` from the retired key that signs its newest entries.

    Under the append lock: the whole chain must verify (with the retired key for its newest
    stretch) and match the checkpoint signed with that key; then an ``audit_key_rotate`` entry,
    signed with the retired key, names :func:`key_id` of the new key, and the checkpoint is
    re-signed with the new key.

    Raises
    ------
    AuditTamperedError
        If the chain or its checkpoint does not verify (nothing is rotated), or no retired key
        signs the newest entries (the new key is not in ``AUDIT_HMAC_KEY``, or the old one is
        missing from ``AUDIT_HMAC_KEYS_RETIRED``).
    """
    key = audit_key(engine)
    path, store = _checkpoint_path(), _store_id(engine)
    with _checkpoint_lock(path):
        with engine.connect() as conn:
            head_seq, head_hash = _head(conn)
        probe = _verify(engine, key, None, None, head_seq, head_hash, allow_retired_head=True)
        if not (probe.ok or probe.missing_checkpoint):
            raise AuditTamperedError(f"Not rotating: the audit log does not verify. {probe.message}")
        if probe.head_key_id in (None, key_id(key)):
            raise AuditTamperedError("Not rotating: the newest audit entries are already signed with AUDIT_HMAC_KEY "
                                     "(or the log is empty). Hint: put the new key in AUDIT_HMAC_KEY and the old one "
                                     "in AUDIT_HMAC_KEYS_RETIRED.")
        old = {key_id(k): k for k in retired_keys()}[probe.head_key_id]
        cp, problem = _read_checkpoint(old, store, path)
        problem = problem or _continuity_problem(old, store, path, (head_seq, head_hash))
        if problem:
            raise AuditTamperedError(f"Not rotating: {problem}")
        with _serialised(engine) as conn:
            if _head(conn) != (head_seq, head_hash):
                raise AuditTamperedError("Not rotating: the audit log changed meanwhile; run the command again.")
            seq, entry_hash = _append_locked(conn, old, {
                "username": _clip(scrub_text(username) if username else None, 64), "roles": None,
                "session_id": None, "client_address": None, "event": "audit_key_rotate", "target": None,
                "parameters": _canonical({"old_key_id": key_id(old), "new_key_id": key_id(key)}),
                "reason": None, "run_id": None,
            }, head=(head_seq, head_hash))
        _store_checkpoint(path, key, store, seq, entry_hash)
        _clear_alarm(path, store)
    return VerifyResult(True, probe.checked + 1, None, f"{probe.checked} entries verified; the audit key was rotated "
                        f"from key id {key_id(old)} to {key_id(key)} at entry {seq}.", seq, head_key_id=key_id(key))


def prune(engine: Engine, older_than_days: int | None = None) -> int:
    """Delete entries older than ``older_than_days`` (default ``AUDIT_RETENTION_DAYS``) and return how many.

    Only a prefix of the chain is deleted: everything up to just before the first entry that is
    not old enough (an older-stamped entry after it is kept, never cut out of the middle). In the
    same transaction a signed ``audit_prune`` entry records the last deleted ``seq`` and its hash,
    from which :func:`verify` then starts.

    Raises
    ------
    AuditTamperedError
        If the chain does not verify: pruning would destroy the evidence.
    ValueError
        If ``older_than_days`` is less than 1.
    """
    days = int(older_than_days if older_than_days is not None else _setting("AUDIT_RETENTION_DAYS"))
    if days < 1:
        raise ValueError("older_than_days must be at least 1.")
    check = verify(engine)
    if not check.ok:
        raise AuditTamperedError(f"Not pruning: the audit log does not verify. {check.message}")
    key = audit_key(engine)
    cutoff = _now_utc() - dt.timedelta(days=days)
    path, store = _checkpoint_path(), _store_id(engine)
    with _checkpoint_lock(path):
        with _serialised(engine) as conn:
            if (problem := _continuity_problem(key, store, path, _head(conn))) is not None:
                raise AuditTamperedError(f"Not pruning: the audit log does not verify. {problem}")
            first_kept = conn.execute(select(func.min(audit_log.c.seq)).where(audit_log.c.at_utc >= cutoff)).scalar()
            through_q = select(func.max(audit_log.c.seq))
            if first_kept is not None:
                through_q = through_q.where(audit_log.c.seq < first_kept)
            through = conn.execute(through_q).scalar()
            if through is None:
                return 0
            anchor_hash = conn.execute(select(audit_log.c.entry_hash).where(audit_log.c.seq == through)).scalar_one()
            # Read the head before deleting: if every entry is old, the record must still continue
            # the chain from the last deleted entry rather than restart it at seq 1.
            head = _head(conn)
            deleted = conn.execute(delete(audit_log).where(audit_log.c.seq <= through)).rowcount
            seq, entry_hash = _append_locked(conn, key, {
                "username": None, "roles": None, "session_id": None, "client_address": None,
                "event": "audit_prune", "target": None,
                "parameters": _canonical({"pruned_through_seq": int(through), "anchor_hash": anchor_hash,
                                          "deleted": int(deleted), "older_than_days": days}),
                "reason": f"retention {days} days", "run_id": None,
            }, head=head)
        # Still under the checkpoint lock: no append can read the new head before it is checkpointed.
        _store_checkpoint(path, key, store, seq, entry_hash)
    return int(deleted)


# ---------------------------------------------------------------------------------------------
# Keyed references and what each role is shown
# ---------------------------------------------------------------------------------------------

def keyed_ref(engine: Engine, value: str, *, purpose: str = "login-name") -> str:
    """A keyed digest of ``value`` (HMAC-SHA256 with the audit key, 20 hex characters).

    For text that must not be stored but whose repeats must be countable: a failed login's
    username that names no account (it may be a password typed in the wrong box). Without the
    key, nobody can test guesses against it; the same text always gives the same reference.
    """
    msg = f"{purpose}\0{value}".encode()
    return hmac.new(audit_key(engine), msg, hashlib.sha256).hexdigest()[:20]


UNMASK_REASON_PLACEHOLDER = "(reason recorded, {n} characters)"
# Target and parameter keys that list customers; only compliance sees the ids themselves.
_CUSTOMER_KEYS = ("customer_ids", "customer_id")


def _customer_count_view(raw):
    """The JSON ``raw`` with any customer id list replaced by its count; other text unchanged."""
    if not isinstance(raw, str) or not raw.startswith("{"):
        return raw
    try:
        obj = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(obj, dict) or not any(k in obj for k in _CUSTOMER_KEYS):
        return raw
    count = 0
    for k in _CUSTOMER_KEYS:
        ids = obj.pop(k, None)
        count += len(ids) if isinstance(ids, list) else (ids is not None)
    obj["customer_count"] = count
    return _canonical(obj)


def entries_for_viewer(entries: pd.DataFrame, roles: str | Iterable[str]) -> pd.DataFrame:
    """Audit entries (as :func:`query` returns them) as a viewer with ``roles`` may see them.

    * **Unmask reasons** (and an approval request's reason, an approver's comment) are free text,
      and may name a customer or an address however well they are scrubbed: compliance sees them
      in full, anyone else "(reason recorded, N characters)".
    * **Customer ids** in a target or in the parameters (an export, an unmask, a lookup) are
      shown to compliance only; anyone else sees ``customer_count``. An export's file name,
      row count, SHA-256 and manifest id (when it has one) stay visible to all.

    Nothing else changes. Unknown roles raise ValueError (fail closed).
    """
    out = entries.copy()
    if "compliance" in normalise_roles(roles):
        return out
    if "reason" in out.columns and "event" in out.columns:
        # An unmask request's reason and the approver's comment are the same kind of free text.
        unmask = out["event"].isin(REASON_EVENTS) & out["reason"].notna()
        out["reason"] = out["reason"].astype(object)
        out.loc[unmask, "reason"] = [UNMASK_REASON_PLACEHOLDER.format(n=len(str(r)))
                                     for r in out.loc[unmask, "reason"]]
    for col in ("target", "parameters"):
        if col in out.columns:
            out[col] = out[col].astype(object).map(_customer_count_view)
    return out


# ---------------------------------------------------------------------------------------------
# Query
# ---------------------------------------------------------------------------------------------

QUERY_COLUMNS = ("seq", "at_utc", "username", "roles", "session_id", "client_address", "event",
                 "target", "parameters", "reason", "run_id")


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def query(engine: Engine, user: str | None = None, event: str | Iterable[str] | None = None,
          customer_id: str | None = None, since: dt.datetime | None = None, until: dt.datetime | None = None,
          limit: int = 1000) -> pd.DataFrame:
    """Audit entries, newest first, filtered with bound parameters.

    Parameters
    ----------
    user : str, optional
        Exact username.
    event : str or iterable of str, optional
        One event or several (each checked against :data:`EVENTS`).
    customer_id : str, optional
        Entries whose target or parameters name this customer id (as a JSON string value, e.g.
        in ``customer_ids``), or whose target is exactly this id.
    since, until : datetime, optional
        UTC bounds on ``at_utc``: ``since <= at_utc < until``.
    limit : int
        At most this many rows (1 to :data:`MAX_QUERY_ROWS`).

    Returns
    -------
    DataFrame
        Columns :data:`QUERY_COLUMNS` (no hashes: use :func:`verify` for integrity).
    """
    limit = int(limit)
    if not 1 <= limit <= MAX_QUERY_ROWS:
        raise ValueError(f"limit must be between 1 and {MAX_QUERY_ROWS}.")
    stmt = select(*[audit_log.c[c] for c in QUERY_COLUMNS])
    if user:
        stmt = stmt.where(audit_log.c.username == user)
    if event:
        events = [event] if isinstance(event, str) else list(event)
        unknown = [e for e in events if e not in EVENTS]
        if unknown:
            raise ValueError(f"Unknown audit event(s): {', '.join(map(repr, unknown))}.")
        stmt = stmt.where(audit_log.c.event.in_(events))
    if customer_id:
        pattern = "%" + _like_escape(json.dumps(str(customer_id), ensure_ascii=False)) + "%"
        stmt = stmt.where(or_(
            audit_log.c.target == str(customer_id),
            audit_log.c.target.like(pattern, escape="\\"),
            audit_log.c.parameters.like(pattern, escape="\\"),
        ))
    if since is not None:
        stmt = stmt.where(audit_log.c.at_utc >= _naive_utc(since))
    if until is not None:
        stmt = stmt.where(audit_log.c.at_utc < _naive_utc(until))
    stmt = stmt.order_by(audit_log.c.seq.desc()).limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return pd.DataFrame.from_records([tuple(r) for r in rows], columns=list(QUERY_COLUMNS))


def _naive_utc(value: dt.datetime | dt.date) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


__all__ = [
    "EVENTS", "GENESIS_HASH", "HASHED_FIELDS", "MAX_QUERY_ROWS", "QUERY_COLUMNS", "REDACTED",
    "AuditChainBroken", "AuditError", "AuditTamperedError", "ChainAlarm", "Checkpoint", "VerifyResult",
    "MAY_PASS_A_BROKEN_CHAIN", "UNMASK_REASON_PLACEHOLDER", "accept_missing_checkpoint", "append", "append_or_pass", "audit_key", "chain_alarm",
    "entries_for_viewer", "keyed_ref", "prune", "query", "retire_checkpoint", "safe_parameters", "scrub_text",
    "session_ref", "verify",
]
