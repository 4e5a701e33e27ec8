"""Two-factor login: time-based one-time passwords (TOTP, RFC 6238) and recovery codes.

Glossary
--------
time-step
    ``floor(unix_time / 30)``; a TOTP code is the HOTP (RFC 4226) of the secret at that step.
skew
    A code of the step before or after the current one is also accepted (RFC 6238 section 6
    recommends at most one step of network delay / clock drift).
last_step
    The step of the last code accepted for a user. A code is accepted only for a step *later*
    than it, so a code is never accepted twice, nor an older one after a newer (RFC 6238 section 5.2).
pending enrolment
    A secret made by ``users mfa-enrol`` or at the first login, waiting for its first code;
    ``confirmed_at`` is set when that code arrives, and the recovery codes are made then.

Secrets are stored only encrypted: AES-256-GCM (``cryptography``), an authenticated cipher, under
a key derived with HKDF-SHA256 from the ``MFA_KEY`` setting, with the username as associated data,
so a secret copied onto another user's row fails to decrypt instead of logging them in. The key
follows the rules of the other keys (``AUTH_COOKIE_KEY``, ``AUDIT_HMAC_KEY``): set, at least 32
bytes, and not a value from documentation.

Recovery codes are 80 random bits (16 base-32 characters, shown as four groups of four); they are
stored as SHA-256 digests of the username and the code: at 80 bits a slow hash adds nothing, and a
lookup by digest stays one indexed query.

This module stores and checks; the login sequence (which roles must use it, the lockout) is
:mod:`analytics.users`. Times are naive UTC and every clock-dependent function takes ``now=``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Engine, delete, insert, or_, select, update

from analytics import settings
from analytics.clock import naive_utc
from analytics.errors import AnalyticsError, ConfigError
from analytics.schema import user_mfa, user_mfa_recovery

STEP_SECONDS = 30
DIGITS = 6
SKEW_STEPS = 1
RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_CHARS = 16
ISSUER = "Customer Insight"
MIN_KEY_BYTES = 32
# Values that appear in documentation and examples (the same list as the cookie key's).
KNOWN_DEFAULT_KEYS = {"some_key", "some_signature_key", "abcdef", "changeme", "secret", "random_signature_key"}
_CIPHER_VERSION = "v1"
_RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


class MfaError(AnalyticsError):
    """A two-factor request cannot be done (the message says why)."""


class MfaKeyError(MfaError, ConfigError):
    """``MFA_KEY`` is missing, too short, an example value, or does not decrypt a stored secret."""


@dataclass(frozen=True)
class Enrolment:
    """A new secret: what the user's authenticator app needs. Shown once, never stored in clear."""

    username: str
    secret: str
    uri: str


@dataclass(frozen=True)
class CodeCheck:
    """The outcome of :func:`check_code`.

    ``ok`` is True when the code is accepted (and now spent). ``reason`` says why not, for the audit
    log: ``wrong code``, ``reused code``, ``used recovery code``, ``not enrolled``. ``recovery`` is
    True when a recovery code was used.
    """

    ok: bool
    reason: str | None = None
    recovery: bool = False


_utc = naive_utc  # now as naive UTC (analytics.clock)


def _unix(now: dt.datetime) -> float:
    return now.replace(tzinfo=dt.UTC).timestamp()


def step_of(now: dt.datetime) -> int:
    """The RFC 6238 time-step of a naive-UTC time."""
    return int(_unix(now) // STEP_SECONDS)


# ---------------------------------------------------------------------------------------------
# The key and the cipher
# ---------------------------------------------------------------------------------------------

def key_problem(key: str | None) -> str | None:
    """Why ``key`` is not acceptable as ``MFA_KEY``, or None when it is."""
    if not key:
        return "MFA_KEY is not set."
    if key.strip().lower() in KNOWN_DEFAULT_KEYS or "random bytes" in key:
        return "MFA_KEY is a default or example value."
    if len(key.encode("utf-8")) < MIN_KEY_BYTES:
        return f"MFA_KEY is shorter than {MIN_KEY_BYTES} bytes."
    return None


def _cipher() -> AESGCM:
    key = settings.get("MFA_KEY")
    problem = key_problem(key)
    if problem:
        raise MfaKeyError(f"{problem} Hint: set MFA_KEY in the environment or .streamlit/secrets.toml "
                          f"(at least {MIN_KEY_BYTES} bytes, e.g. the output of "
                          "`python -c \"import secrets; print(secrets.token_urlsafe(48))\"`).")
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"customer-insight totp secrets v1").derive(key.encode("utf-8"))
    return AESGCM(derived)


def check_key() -> None:
    """Raise :class:`MfaKeyError` unless ``MFA_KEY`` is usable."""
    _cipher()


def encrypt_secret(username: str, secret: str) -> str:
    """``secret`` encrypted for ``username``'s row: ``v1:`` + base64(nonce + ciphertext + tag)."""
    nonce = secrets.token_bytes(12)
    sealed = _cipher().encrypt(nonce, secret.encode("ascii"), f"mfa:{username}".encode())
    return f"{_CIPHER_VERSION}:" + base64.b64encode(nonce + sealed).decode("ascii")


def decrypt_secret(username: str, token: str) -> str:
    """The clear secret of ``username``'s row; :class:`MfaKeyError` when ``MFA_KEY`` cannot open it."""
    cipher = _cipher()
    version, _, body = (token or "").partition(":")
    try:
        raw = base64.b64decode(body, validate=True)
        if version != _CIPHER_VERSION or len(raw) < 12 + 16:
            raise ValueError("not a sealed secret")
        return cipher.decrypt(raw[:12], raw[12:], f"mfa:{username}".encode()).decode("ascii")
    except (InvalidTag, ValueError):
        raise MfaKeyError(
            f"The stored two-factor secret of {username!r} cannot be decrypted with this MFA_KEY (the key "
            f"changed, or the row was altered). Hint: restore the old MFA_KEY, or run "
            f"`python -m analytics users mfa-reset {username}` and enrol again."
        ) from None


# ---------------------------------------------------------------------------------------------
# Enrolment
# ---------------------------------------------------------------------------------------------

def provisioning_uri(username: str, secret: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads (from a QR code or typed)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(name=username,
                                                                                      issuer_name=ISSUER)


def status(engine: Engine, username: str) -> str:
    """``enrolled``, ``pending`` (a secret waits for its first code) or ``none``."""
    with engine.connect() as conn:
        row = conn.execute(select(user_mfa.c.confirmed_at).where(user_mfa.c.username == username)).first()
    if row is None:
        return "none"
    return "enrolled" if row.confirmed_at is not None else "pending"


def statuses(engine: Engine) -> dict[str, str]:
    """:func:`status` of every user that has a row (others are ``none``)."""
    with engine.connect() as conn:
        rows = conn.execute(select(user_mfa.c.username, user_mfa.c.confirmed_at)).all()
    return {r.username: "enrolled" if r.confirmed_at is not None else "pending" for r in rows}


def begin_enrolment(engine: Engine, username: str, *, replace: bool = False,
                    now: dt.datetime | None = None) -> Enrolment:
    """Make a new secret for ``username`` (pending until its first code, :func:`confirm_enrolment`).

    A pending enrolment is kept and shown again (the user may have scanned it already) unless
    ``replace``. An enrolled user is refused: reset first (:func:`reset`), which is audited.
    """
    now = _utc(now)
    with engine.connect() as conn:
        row = conn.execute(select(user_mfa).where(user_mfa.c.username == username)).first()
    if row is not None and row.confirmed_at is not None:
        raise MfaError(f"{username!r} is already enrolled for two-factor login. Hint: "
                       f"`python -m analytics users mfa-reset {username}` first.")
    if row is not None and not replace:
        secret = decrypt_secret(username, row.secret_enc)
        return Enrolment(username, secret, provisioning_uri(username, secret))
    secret = pyotp.random_base32(32)  # 160 bits, the HMAC-SHA1 key size RFC 4226 recommends
    sealed = encrypt_secret(username, secret)
    with engine.begin() as conn:
        conn.execute(delete(user_mfa).where(user_mfa.c.username == username))
        conn.execute(delete(user_mfa_recovery).where(user_mfa_recovery.c.username == username))
        conn.execute(insert(user_mfa).values(username=username, secret_enc=sealed, created_at=now,
                                             confirmed_at=None, last_step=None))
    return Enrolment(username, secret, provisioning_uri(username, secret))


def _normalise_recovery(code: str) -> str:
    return "".join(ch for ch in (code or "").lower() if ch not in " -")


def _recovery_hash(username: str, code: str) -> str:
    return hashlib.sha256(f"{username}:{_normalise_recovery(code)}".encode()).hexdigest()


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_CHARS))
    return "-".join(raw[i:i + 4] for i in range(0, RECOVERY_CODE_CHARS, 4))


def _matching_step(secret: str, code: str, now: dt.datetime) -> int | None:
    """The step within ±:data:`SKEW_STEPS` of ``now`` whose code is ``code``, or None."""
    code = (code or "").strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = step_of(now)
    found = None
    for step in range(max(0, current - SKEW_STEPS), current + SKEW_STEPS + 1):
        # Every candidate is compared (no early exit), in constant time.
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code) and found is None:
            found = step
    return found


def _spend_step(conn, username: str, step: int) -> bool:
    """Record ``step`` as used, only if it is later than the last one used (atomic)."""
    return conn.execute(
        update(user_mfa).where(user_mfa.c.username == username,
                               or_(user_mfa.c.last_step.is_(None), user_mfa.c.last_step < step))
        .values(last_step=step)
    ).rowcount == 1


def confirm_enrolment(engine: Engine, username: str, code: str,
                      now: dt.datetime | None = None) -> list[str] | None:
    """Confirm a pending enrolment with its first code; return the ten recovery codes (shown once).

    Returns None when the code is wrong (the caller counts it as a failed login). Raises
    :class:`MfaError` when there is no pending enrolment.
    """
    now = _utc(now)
    with engine.connect() as conn:
        row = conn.execute(select(user_mfa).where(user_mfa.c.username == username)).first()
    if row is None or row.confirmed_at is not None:
        raise MfaError(f"{username!r} has no pending two-factor enrolment.")
    step = _matching_step(decrypt_secret(username, row.secret_enc), code, now)
    if step is None:
        return None
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    with engine.begin() as conn:
        if not _spend_step(conn, username, step):
            return None
        done = conn.execute(update(user_mfa).where(user_mfa.c.username == username,
                                                   user_mfa.c.confirmed_at.is_(None))
                            .values(confirmed_at=now)).rowcount
        if not done:  # confirmed meanwhile by a concurrent attempt: its codes stand
            return None
        conn.execute(delete(user_mfa_recovery).where(user_mfa_recovery.c.username == username))
        conn.execute(insert(user_mfa_recovery), [
            {"username": username, "code_hash": _recovery_hash(username, c), "used_at": None} for c in codes
        ])
    return codes


def check_code(engine: Engine, username: str, code: str, now: dt.datetime | None = None) -> CodeCheck:
    """Check a TOTP code (or a recovery code) of an enrolled user, and spend it if accepted.

    A six-digit code is a TOTP code: accepted for the current step ±:data:`SKEW_STEPS` when that
    step is later than the last accepted one. Anything else is tried as a recovery code, which is
    accepted once. Never raises for a wrong code; raises :class:`MfaKeyError` when the secret
    cannot be decrypted.
    """
    now = _utc(now)
    with engine.connect() as conn:
        row = conn.execute(select(user_mfa).where(user_mfa.c.username == username)).first()
    if row is None or row.confirmed_at is None:
        return CodeCheck(False, "not enrolled")
    text = (code or "").strip()
    if text.replace(" ", "").isdigit():
        step = _matching_step(decrypt_secret(username, row.secret_enc), text, now)
        if step is None:
            return CodeCheck(False, "wrong code")
        with engine.begin() as conn:
            if not _spend_step(conn, username, step):
                return CodeCheck(False, "reused code")
        return CodeCheck(True)
    if len(_normalise_recovery(text)) != RECOVERY_CODE_CHARS:
        return CodeCheck(False, "wrong code", recovery=True)
    digest = _recovery_hash(username, text)
    with engine.begin() as conn:
        spent = conn.execute(update(user_mfa_recovery)
                             .where(user_mfa_recovery.c.username == username,
                                    user_mfa_recovery.c.code_hash == digest,
                                    user_mfa_recovery.c.used_at.is_(None))
                             .values(used_at=now)).rowcount
        if spent:
            return CodeCheck(True, recovery=True)
        used = conn.execute(select(user_mfa_recovery.c.used_at)
                            .where(user_mfa_recovery.c.username == username,
                                   user_mfa_recovery.c.code_hash == digest)).first()
    return CodeCheck(False, "used recovery code" if used else "wrong code", recovery=True)


def recovery_codes_left(engine: Engine, username: str) -> int:
    """How many unused recovery codes ``username`` has."""
    with engine.connect() as conn:
        rows = conn.execute(select(user_mfa_recovery.c.code_hash)
                            .where(user_mfa_recovery.c.username == username,
                                   user_mfa_recovery.c.used_at.is_(None))).all()
    return len(rows)


def reset(engine: Engine, username: str) -> bool:
    """Forget ``username``'s secret and recovery codes (a lost phone); True if there was any.

    The user enrols again at the next login when their roles require it.
    """
    with engine.begin() as conn:
        n = conn.execute(delete(user_mfa).where(user_mfa.c.username == username)).rowcount
        conn.execute(delete(user_mfa_recovery).where(user_mfa_recovery.c.username == username))
    return n > 0


def qr_png(uri: str) -> bytes:
    """A PNG of the QR code of ``uri``, drawn by qrcode's Pillow factory (Pillow comes with Streamlit)."""
    import io

    import qrcode
    from qrcode.image.pil import PilImage

    buf = io.BytesIO()
    qrcode.make(uri, image_factory=PilImage, box_size=6, border=2).save(buf)
    return buf.getvalue()


def qr_text(uri: str) -> str:
    """The QR code of ``uri`` drawn with block characters, for a terminal."""
    import io

    import qrcode

    qr = qrcode.QRCode(border=1)
    qr.add_data(uri)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()


__all__ = [
    "CodeCheck", "DIGITS", "Enrolment", "MfaError", "MfaKeyError", "RECOVERY_CODE_COUNT", "SKEW_STEPS",
    "STEP_SECONDS", "begin_enrolment", "check_code", "check_key", "confirm_enrolment", "decrypt_secret",
    "encrypt_secret", "key_problem", "provisioning_uri", "qr_png", "qr_text", "recovery_codes_left", "reset",
    "status", "statuses", "step_of",
]
