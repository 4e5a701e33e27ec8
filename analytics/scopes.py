"""Which customers each user may see: a user's scope (branches and portfolios), and the
:class:`~analytics.access.Viewer` that every reader of customer rows takes.

A scope lives in ``user_scopes``: rows ``(username, kind, value)`` with kind ``branch`` (a
``branches.branch_id``) or ``portfolio`` (a ``customers.relationship_manager`` value). A user with
no row is bank-wide, except a role in :data:`analytics.access.SCOPE_REQUIRED_ROLES`
(``relationship_manager``), which then sees nothing: a relationship manager must be given a
portfolio, and an empty scope never widens to everything.

Changing a scope ends the user's live sessions (like a role change), so the next rerun or KPI-wall
tick of an open page carries no data until the user logs in again under the new scope.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import Engine, delete, insert, select, text

from analytics import i18n
from analytics.access import SCOPE_REQUIRED_ROLES, Scope, Viewer, normalise_roles
from analytics.errors import AnalyticsError
from analytics.schema import user_scopes, users


class ScopeError(AnalyticsError, ValueError):
    """A scope that names an unknown branch or portfolio, or a role that needs a scope without one."""


def scope_words(scope: Scope | None, lang: str = "en", quote=str) -> str:
    """A scope in words of ``lang``: "whole bank", "branches BR001, BR006; portfolios RM0101", or
    "no customers" for an empty scope. ``quote`` escapes the branch and portfolio names (markdown)."""
    if scope is None:
        return i18n.tr("scope_word.whole bank", lang)
    parts = []
    if scope.branches:
        parts.append(i18n.tr("scope.branches", lang, names=quote(", ".join(sorted(scope.branches)))))
    if scope.portfolios:
        parts.append(i18n.tr("scope.portfolios", lang, names=quote(", ".join(sorted(scope.portfolios)))))
    return "; ".join(parts) or i18n.tr("scope.nothing", lang)


def _clean(values: Iterable[str] | None) -> list[str]:
    return sorted({str(v).strip() for v in (values or ()) if str(v).strip()})


def check_scope_values(engine: Engine, branches: Iterable[str] | None, portfolios: Iterable[str] | None) -> None:
    """Raise :class:`ScopeError` naming the first branch or portfolio the store does not know."""
    with engine.connect() as conn:
        for value in _clean(branches):
            found = conn.execute(text("SELECT 1 FROM branches WHERE branch_id = :v"), {"v": value}).first()
            if found is None:
                raise ScopeError(f"Unknown branch {value!r}: no such branches.branch_id in the store.")
        for value in _clean(portfolios):
            found = conn.execute(text("SELECT 1 FROM customers WHERE relationship_manager = :v LIMIT 1"),
                                 {"v": value}).first()
            if found is None:
                raise ScopeError(f"Unknown portfolio {value!r}: no customer has this relationship_manager.")


def check_roles_scope(roles: str | Iterable[str], portfolios: Iterable[str] | None) -> None:
    """Raise :class:`ScopeError` when a role that needs a portfolio is given none."""
    needing = [r for r in normalise_roles(roles) if r in SCOPE_REQUIRED_ROLES]
    if needing and not _clean(portfolios):
        raise ScopeError(f"Role {needing[0]} needs a portfolio: give --portfolio RM (a relationship_manager value).")


def get_scope(engine: Engine, username: str) -> Scope | None:
    """The user's scope, or None when the user is bank-wide (no ``user_scopes`` row)."""
    with engine.connect() as conn:
        rows = conn.execute(select(user_scopes.c.kind, user_scopes.c.value)
                            .where(user_scopes.c.username == username)).all()
    if not rows:
        return None
    return Scope(branches=frozenset(v for k, v in rows if k == "branch"),
                 portfolios=frozenset(v for k, v in rows if k == "portfolio"))


def set_scope(engine: Engine, username: str, *, branches: Iterable[str] | None = None,
              portfolios: Iterable[str] | None = None, bank_wide: bool = False,
              now: dt.datetime | None = None) -> Scope | None:
    """Replace the user's scope and end their live sessions; returns the new scope.

    ``bank_wide=True`` removes the scope (and refuses a role that needs one). Otherwise at least
    one branch or portfolio must be given; each must exist in the store.

    Raises
    ------
    ScopeError
        Unknown branch or portfolio, an empty scope, or a relationship manager without a portfolio.
    analytics.users.UnknownUserError
        No such user.
    """
    from analytics import users as user_store  # users imports access; scopes sits above both

    name = user_store.normalise_username(username)
    user = user_store.get_user(engine, name)
    if user is None:
        raise user_store.UnknownUserError(f"No user {name!r}. Hint: list users with `python -m analytics users`.")
    branches, portfolios = _clean(branches), _clean(portfolios)
    if bank_wide and (branches or portfolios):
        raise ScopeError("Give either --all or branches/portfolios, not both.")
    if not bank_wide and not (branches or portfolios):
        raise ScopeError("Give at least one --branch or --portfolio, or --all for the whole bank.")
    check_roles_scope(user.roles, portfolios)
    check_scope_values(engine, branches, portfolios)
    with engine.begin() as conn:
        conn.execute(delete(user_scopes).where(user_scopes.c.username == name))
        rows = ([{"username": name, "kind": "branch", "value": b} for b in branches]
                + [{"username": name, "kind": "portfolio", "value": p} for p in portfolios])
        if rows:
            conn.execute(insert(user_scopes), rows)
    user_store.end_user_sessions(engine, name, "revoked", now=now)
    return get_scope(engine, name)


def viewer_for(engine: Engine, username: str, roles: Iterable[str] | None = None, *,
               purpose: str = "service") -> Viewer:
    """The :class:`Viewer` of a logged-in user: their roles (``roles``, as the session holds them,
    or the store's) and their scope from the store."""
    if roles is None:
        with engine.connect() as conn:
            stored = conn.execute(select(users.c.roles).where(users.c.username == username)).scalar()
        roles = tuple(r for r in (stored or "").split(",") if r)
    return Viewer(username=username, roles=tuple(roles), scope=get_scope(engine, username), purpose=purpose)


__all__ = ["ScopeError", "check_roles_scope", "check_scope_values", "get_scope", "set_scope", "viewer_for"]
