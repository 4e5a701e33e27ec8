"""The ``users`` sub-commands for privileged access (issue 18): ``mfa-enrol``, ``mfa-reset`` and
``review``; :mod:`analytics.cli` registers them and hands them over here.

Nothing secret reaches the audit log: the provisioning URI (which holds the TOTP secret) is printed
to the terminal only, and the command's audited parameters are the action, the username and the
options.
"""

from __future__ import annotations

import getpass
from pathlib import Path

from analytics import access_review, audit, mfa, settings, users
from analytics.errors import AnalyticsError

ACTIONS = ("mfa-enrol", "mfa-reset", "review")


class ReviewFileError(AnalyticsError):
    """The review's CSV file cannot be written."""


def _operator() -> str:
    return f"cli:{getpass.getuser()}"


def run(engine, args) -> int:
    """Run ``users ACTION`` for one of :data:`ACTIONS`; the exit code."""
    if args.action == "review":
        return _review(engine, args)
    if not args.username:
        raise users.UserError(f"users {args.action} needs a username")
    name = users.normalise_username(args.username)
    if args.action == "mfa-enrol":
        enrolment = users.enrol_mfa(engine, name)
        audit.append(engine, "mfa_enrol", username=_operator(), target={"user": name},
                     parameters={"action": "mfa-enrol"})
        print(f"two-factor enrolment for {name} (pending until the first code at the next login):")
        print(f"  provisioning URI: {enrolment.uri}")
        print(mfa.qr_text(enrolment.uri))
        print(f"Hand the URI or the QR code to {name} only; at the next login the app shows it again, "
              "asks for the first code and then shows ten recovery codes once.")
        return 0
    had = users.reset_mfa(engine, name)
    audit.append(engine, "mfa_reset", username=_operator(), target={"user": name},
                 parameters={"action": "mfa-reset", "had_enrolment": had})
    print(f"reset two-factor login of {name} and ended their sessions"
          + ("" if had else " (there was no enrolment)")
          + ("; they enrol again at the next login" if users.mfa_required(users.get_user(engine, name).roles) else ""))
    return 0


def _review(engine, args) -> int:
    frame = access_review.report(engine)
    previous = access_review.last_review(engine)
    print(f"access review: {len(frame)} accounts; last sign-off: "
          + (f"{previous['at']:%Y-%m-%d %H:%M} UTC by {previous['reviewer']}" if previous else "never"))
    shown = frame.assign(
        last_login=frame["last_login"].map(lambda v: f"{v:%Y-%m-%d}" if v is not None and v == v else "never"),
        last_activity=frame["last_activity"].map(lambda v: f"{v:%Y-%m-%d %H:%M}" if v is not None and v == v else "-"),
    ).drop(columns=["display_name"])
    print(shown.to_string(index=False) if not frame.empty else "no users")
    dormant = frame.loc[frame["dormant"], "username"].tolist()
    granted = frame.loc[frame["roles_granted_since_review"] != "", ["username", "roles_granted_since_review"]]
    print(f"dormant (no login in {settings.get('ACCESS_REVIEW_DORMANT_DAYS')} days): "
          + (", ".join(dormant) or "none"))
    print("roles granted since the last review: "
          + (", ".join(f"{u} ({r})" for u, r in granted.itertuples(index=False)) or "none"))
    if args.csv:
        path = Path(args.csv)
        try:
            frame.to_csv(path, index=False)
        except OSError as exc:
            raise ReviewFileError(f"Cannot write the review to {path}: {exc.strerror or exc}.") from None
        print(f"wrote {len(frame)} rows to {path}")
    if args.sign_off:
        seq = access_review.sign_off(engine, _operator())
        print(f"signed off by {_operator()} (audit entry {seq})")
    return 0
