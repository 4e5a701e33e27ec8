"""The access policy: which role sees which page, and how much of a customer's personal data.

Everything about access is decided here, in one table each, so a page never decides for itself:

* :data:`PAGE_ACCESS` — role -> pages. ``app.py`` builds ``st.navigation`` from :func:`pages_for`,
  so a page a role may not see is not even routable for that user.
* :data:`ROLE_ACCESS_LEVEL` — role -> how much customer-level data it may see:

  ==================  ===========================================================================
  ``none``            no customer-level rows and no personal data (admin: runs the system, not
                      the business)
  ``aggregate``       aggregates only, no customer-level rows (executive: the KPI wall)
  ``masked``          customer-level rows with every personal field masked (marketing, risk)
  ``masked_unmask``   as ``masked``; may unmask one customer's field with a written reason,
                      which the app logs (compliance)
  ==================  ===========================================================================

  **A user with several roles gets the most permissive level among them** (the order is the one
  above), because roles are granted deliberately by an admin and each grant is logged; taking the
  least permissive would silently withdraw what a grant was made for. Pages are likewise the union.

Masking happens in the data layer (:func:`mask_frame`), before a frame reaches a page or an export,
so a page for a masked role never holds a raw value. The maskers follow common Chinese bank practice
and are pure functions ``str | None -> str | None``: ``None`` and ``""`` are returned as they are,
and the masked output never depends on the hidden characters.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analytics.errors import AnalyticsError

# "display" is a big-screen account: the KPI wall alone, aggregates only (a kiosk in a lobby or
# a boardroom should not be able to open anything else if its session is hijacked).
# "relationship_manager" (客户经理) looks after a portfolio of customers: it always has a portfolio
# scope, sees marketing's masking, and exact balances of its own customers.
ROLES: tuple[str, ...] = ("executive", "marketing", "risk", "compliance", "admin", "display",
                          "relationship_manager")

# Ordered: the navigation shows pages in this order. Values are (English title, Chinese title).
PAGES: dict[str, tuple[str, str]] = {
    "overview": ("Overview", "概览"),
    "kpi_wall": ("KPI wall", "数据大屏"),
    "segments": ("Segments", "客户分群"),
    "lifecycle": ("Lifecycle value", "生命周期价值"),
    "churn": ("Churn", "流失预警"),
    "cross_sell": ("Cross-sell", "交叉销售"),
    "campaigns": ("Campaigns", "营销活动"),
    "risk": ("Risk tiers", "风险分层"),
    "data_quality": ("Data quality", "数据质量"),
    "customer_360": ("Customer 360", "客户360"),
    "worklist": ("Worklist", "工作台"),
    "approvals": ("Approvals", "审批"),
    "audit_log": ("Audit log", "审计日志"),
    "admin": ("Admin", "系统管理"),
}

PAGE_ACCESS: dict[str, frozenset[str]] = {
    "overview": frozenset(ROLES) - {"display"},
    "kpi_wall": frozenset({"executive", "admin", "display"}),
    "segments": frozenset({"executive", "marketing", "risk"}),
    "lifecycle": frozenset({"executive", "marketing"}),
    "churn": frozenset({"executive", "marketing", "risk", "relationship_manager"}),
    "cross_sell": frozenset({"marketing", "relationship_manager"}),
    "risk": frozenset({"executive", "risk"}),
    "data_quality": frozenset({"executive", "compliance", "admin"}),
    "customer_360": frozenset({"marketing", "risk", "compliance", "relationship_manager"}),
    # alerts to act on: a manager's own portfolio, risk's risk kinds (analytics.alerts.read.KIND_ACCESS)
    "worklist": frozenset({"relationship_manager", "risk"}),
    "audit_log": frozenset({"compliance", "admin"}),
    "admin": frozenset({"admin"}),
    # Four eyes (issue 18): compliance decides; every role that exports or unmasks sees its requests.
    "approvals": frozenset(ROLES) - {"display"},
    # marketing and relationship managers plan (within their scope); executives read the results
    "campaigns": frozenset({"executive", "marketing", "relationship_manager"}),
}

# Least to most permissive; a multi-role user gets the highest level among their roles.
ACCESS_LEVELS: tuple[str, ...] = ("none", "aggregate", "masked", "masked_unmask")

ROLE_ACCESS_LEVEL: dict[str, str] = {
    "executive": "aggregate",
    "marketing": "masked",
    "risk": "masked",
    "compliance": "masked_unmask",
    "admin": "none",
    "display": "aggregate",
    "relationship_manager": "masked",
}

# Balances and transactions are need-to-know (the bank's guidance: only authorised posts see
# them). These roles see a customer's exact amounts, within their scope; every other role that
# sees customer rows gets the value tier and an AUM band instead (see :func:`band_amounts`).
EXACT_BALANCE_ROLES: frozenset[str] = frozenset({"risk", "compliance", "relationship_manager"})

# Roles that must have a scope: a relationship manager sees their portfolio, never the bank.
SCOPE_REQUIRED_ROLES: frozenset[str] = frozenset({"relationship_manager"})

# What a reader of customer rows is reading them for. Contact purposes drop customers without a
# live consent for that purpose (they are counted, not listed); oversight purposes see everyone in
# scope, because risk and compliance work is a legal duty that needs no marketing consent.
PURPOSES: dict[str, str | None] = {
    "marketing": "marketing",        # campaign, cross-sell, churn early-warning and top-CLV lists
    "service": None,                 # one customer's record (Customer 360)
    "risk": None,                    # suitability mismatches, balance drops
    "compliance": None,              # data-quality drill-downs, unmasking
}
CONSENT_PURPOSES: tuple[str, ...] = ("marketing", "profiling", "third_party")

# What the Segments tag builder's customer list is read for, by role. A risk manager selects a
# population to review (every customer in scope, marketing consent being the wrong population for
# risk work); for every other role it is a campaign list, consent-filtered. A user who also holds
# any other role gets the campaign list: a contact list must fail closed.
SEGMENT_LIST_PURPOSE: dict[str, str] = {"risk": "risk"}


def segment_list_purpose(roles: str | Iterable[str] | None) -> str:
    """The :data:`PURPOSES` key the tag builder's list is read for by a user with ``roles``:
    ``"risk"`` (no consent filter) only when every role is a risk role, else ``"marketing"``."""
    purposes = {SEGMENT_LIST_PURPOSE.get(r, "marketing") for r in normalise_roles(roles)}
    return "risk" if purposes == {"risk"} else "marketing"

# Columns that identify a person. ``account_number`` is a card or account number.
PERSONAL_FIELDS: tuple[str, ...] = (
    "name", "id_number", "account_number", "phone", "email", "address", "birth_date",
)

# Money columns of customer rows: exact amounts for EXACT_BALANCE_ROLES, bands for the others.
BALANCE_FIELDS: tuple[str, ...] = (
    "aum", "balance", "deposit_balance", "loan_balance", "txn_amount", "aum_prev", "aum_change",
)

# AUM bands (CNY) shown instead of an exact balance: 5万, 50万, 600万 are the value-tier edges.
AUM_BAND_EDGES: tuple[float, ...] = (10_000, 50_000, 200_000, 500_000, 1_000_000, 6_000_000)

# A frame with one of these columns holds customer-level rows.
CUSTOMER_ROW_COLUMNS: tuple[str, ...] = ("customer_id",)

# An unmask reason must say something; "ok" or "x" is not a reason an auditor can check.
MIN_UNMASK_REASON_CHARS = 10


class AccessDenied(AnalyticsError):
    """The user's roles do not allow what was asked (a page, customer rows, a field, an unmask)."""


# ---------------------------------------------------------------------------------------------
# Roles and pages
# ---------------------------------------------------------------------------------------------

def normalise_roles(roles: str | Iterable[str] | None) -> tuple[str, ...]:
    """Return ``roles`` as a tuple of known role names in :data:`ROLES` order, without repeats.

    Parameters
    ----------
    roles : str or iterable of str or None
        Role names. A string is one role or a comma-separated list (as stored in ``users.roles``),
        never iterated character by character.

    Raises
    ------
    ValueError
        For a name that is not in :data:`ROLES` (failing closed: a typo must not grant or drop
        access silently).
    """
    if roles is None:
        return ()
    if isinstance(roles, str):
        roles = roles.split(",")
    wanted = set()
    for role in roles:
        role = role.strip()
        if not role:
            continue
        if role not in ROLE_ACCESS_LEVEL:
            raise ValueError(f"Unknown role {role!r}. Known roles: {', '.join(ROLES)}.")
        wanted.add(role)
    return tuple(r for r in ROLES if r in wanted)


def pages_for(roles: str | Iterable[str] | None) -> list[str]:
    """Page keys the roles may see: the union over the roles, in :data:`PAGES` order."""
    have = set(normalise_roles(roles))
    return [page for page in PAGES if PAGE_ACCESS[page] & have]


def can_view_page(roles: str | Iterable[str] | None, page: str) -> bool:
    """True if any of ``roles`` may see ``page``; False for an unknown page."""
    allowed = PAGE_ACCESS.get(page)
    return bool(allowed and allowed & set(normalise_roles(roles)))


def require_page(roles: str | Iterable[str] | None, page: str) -> None:
    """Raise :class:`AccessDenied` unless the roles may see ``page`` (a guard for page scripts)."""
    if not can_view_page(roles, page):
        raise AccessDenied(f"Your role may not open the page {page!r}. Hint: ask an admin for access.",
                           key="errors.page_denied")


# ---------------------------------------------------------------------------------------------
# Field access
# ---------------------------------------------------------------------------------------------

def access_level(roles: str | Iterable[str] | None) -> str:
    """The most permissive level among ``roles``: one of :data:`ACCESS_LEVELS`.

    No roles at all means ``"none"``. The app uses the result as part of every cache key, so
    two users with different levels never share a cached frame.
    """
    levels = [ACCESS_LEVELS.index(ROLE_ACCESS_LEVEL[r]) for r in normalise_roles(roles)]
    return ACCESS_LEVELS[max(levels, default=0)]


def can_see_customer_rows(roles: str | Iterable[str] | None) -> bool:
    """True if the roles may see customer-level rows (masked)."""
    return access_level(roles) in ("masked", "masked_unmask")


def can_unmask(roles: str | Iterable[str] | None) -> bool:
    """True if the roles may unmask one customer's field (with a reason, logged by the app)."""
    return access_level(roles) == "masked_unmask"


def check_unmask(roles: str | Iterable[str] | None, field: str, reason: str | None) -> str:
    """Check an unmask request and return the cleaned reason.

    Raises
    ------
    AccessDenied
        If the roles may not unmask, ``field`` is not a personal field, or the reason is shorter
        than :data:`MIN_UNMASK_REASON_CHARS` characters.
    """
    if not can_unmask(roles):
        raise AccessDenied("Your role may not unmask personal data. Hint: ask a compliance officer.",
                           key="errors.may_not_unmask")
    if field not in PERSONAL_FIELDS:
        raise AccessDenied(f"{field!r} is not a masked field; nothing to unmask.", key="errors.not_masked_field",
                           field=field)
    cleaned = (reason or "").strip()
    if len(cleaned) < MIN_UNMASK_REASON_CHARS:
        raise AccessDenied(
            f"Give a reason of at least {MIN_UNMASK_REASON_CHARS} characters for unmasking "
            "(it is written to the audit log).", key="errors.reason_too_short", n=MIN_UNMASK_REASON_CHARS,
        )
    return cleaned


def filterable_columns(roles: str | Iterable[str] | None, columns: Iterable[str]) -> list[str]:
    """The columns of ``columns`` the roles may filter or sort on, in the given order.

    No role may filter or sort on a personal field: a masked field shown as ``138****5678`` must
    not be recoverable by filtering ``phone = 13812345678`` and watching which row stays, nor by
    sorting. Unmasking one customer is the only way to a raw value.
    """
    normalise_roles(roles)  # validate: an unknown role is an error, not "no restriction"
    return [c for c in columns if c not in PERSONAL_FIELDS]


# ---------------------------------------------------------------------------------------------
# Maskers
# ---------------------------------------------------------------------------------------------

def _keep_ends(value: str, head: int, tail: int, min_len: int) -> str:
    # Values too short to hide at least one character between head and tail are masked entirely.
    if len(value) < min_len:
        return "*" * len(value)
    return value[:head] + "*" * (len(value) - head - tail) + value[len(value) - tail:]


def mask_name(value: str | None) -> str | None:
    """Keep the first character, mask the rest: ``张三丰`` -> ``张**``, ``欧阳娜娜`` -> ``欧***``.

    A one-character name is masked entirely (``*``): keeping it would show the whole name.
    Compound surnames keep only their first character too; the rule is positional, so it never
    needs a surname dictionary.
    """
    if not value:
        return value
    if len(value) == 1:
        return "*"
    return value[0] + "*" * (len(value) - 1)


def mask_id_number(value: str | None) -> str | None:
    """Keep the first 6 (region code) and last 4 characters of an ID number.

    ``11010519491231002X`` -> ``110105********002X``; a 15-digit legacy number
    ``110105491231002`` -> ``110105*****1002``. The check character is kept as written (``x``
    stays lower case). A value of 10 characters or fewer is masked entirely, since keeping 6 + 4
    would hide nothing.
    """
    if not value:
        return value
    return _keep_ends(value, 6, 4, 11)


def mask_card(value: str | None) -> str | None:
    """Keep the first 6 (issuer) and last 4 digits of a card or account number.

    ``6222021234567891234`` -> ``622202*********1234``; 10 characters or fewer: masked entirely.
    """
    if not value:
        return value
    return _keep_ends(value, 6, 4, 11)


def mask_phone(value: str | None) -> str | None:
    """Keep the first 3 and last 4 characters: ``13812345678`` -> ``138****5678``.

    Shorter than 8 characters: masked entirely.
    """
    if not value:
        return value
    return _keep_ends(value, 3, 4, 8)


def mask_email(value: str | None) -> str | None:
    """Keep the first character of the local part and the domain: ``z***@example.com``.

    The hidden part is always ``***`` whatever its length, so the mask does not reveal it (and may
    be longer than a very short address). A one-character local part is not kept (``***@x.cn``).
    A value without ``@`` is masked entirely, keeping its length.
    """
    if not value:
        return value
    if "@" not in value:
        return "*" * len(value)
    local, domain = value.rsplit("@", 1)
    keep = local[0] if len(local) >= 2 else ""
    return f"{keep}***@{domain}"


_PROVINCE_ENDS = ("特别行政区", "自治区", "省")
_CITY_ENDS = ("自治州", "地区", "市", "盟")
_DISTRICT_ENDS = ("区", "县", "市", "旗")
# Administrative names are short and never contain these (after their first character: 路北区,
# 道里区, 镇平县 and 乡宁县 are real districts/counties); meeting one means we are past that level.
_STREET_CHARS = frozenset("镇乡街路道号村巷弄楼室栋幢座层")


def _admin_level_end(value: str, start: int, markers: tuple[str, ...], stops: frozenset[str],
                     max_chars: int) -> int | None:
    """End (exclusive) of an administrative name starting at ``start`` and ending with a marker.

    The name is at least two characters; a stop character or a digit before the marker, or no
    marker within ``max_chars``, means there is no such level here.
    """
    if start >= len(value) or not _is_han(value[start]):
        return None
    for j in range(start + 1, min(len(value), start + max_chars)):
        for marker in markers:
            if value.startswith(marker, j):
                return j + len(marker)
        if value[j] in stops or not _is_han(value[j]):  # a digit, space or letter: not an admin name
            return None
    return None


def _is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def _address_prefix(value: str) -> str | None:
    """The province/city/district prefix of a Chinese address, or None if it has none."""
    # A province name never contains a city or district marker (北京市 is a city-level name).
    province_end = _admin_level_end(value, 0, _PROVINCE_ENDS, _STREET_CHARS | set("市区县旗"), 10)
    start = province_end or 0
    # 地区 and 自治州 are matched as markers before their 区/州 could stop the scan.
    city_end = _admin_level_end(value, start, _CITY_ENDS, _STREET_CHARS | set("区县旗"), 14)
    start = city_end or start
    district_end = _admin_level_end(value, start, _DISTRICT_ENDS, _STREET_CHARS, 18)
    end = district_end or city_end or province_end
    return value[:end] if end else None


def mask_address(value: str | None) -> str | None:
    """Keep the province/city/district prefix and replace the rest with ``****``.

    ``北京市朝阳区建国路88号`` -> ``北京市朝阳区****``; ``广东省深圳市南山区科技园`` ->
    ``广东省深圳市南山区****``. The district is the first ``区``/``县``/``市``/``旗`` after the city
    (or after the province, or at the start), provided no street-level character (镇, 路, 号, a
    digit, ...) comes first; otherwise the prefix ends with the city (or province). An
    administrative name is Chinese characters only, so text before it (``张三收 北京市...``, a
    recipient's name) means there is no such prefix. Without one, nothing is kept: the first
    characters of free text may be a name. The hidden part is always ``****``, whatever its length.
    """
    if not value:
        return value
    return (_address_prefix(value) or "") + "****"


_YEAR_FIRST = re.compile(r"^(\d{4})(\D?)\d{1,2}(\D?)\d{1,2}")


def mask_birth_date(value: str | dt.date | None) -> str | None:
    """Keep the year only: ``1990-05-17`` or ``date(1990, 5, 17)`` -> ``1990-**-**``.

    A string in another year-first form keeps its separators (``19900517`` -> ``1990****``);
    anything else is masked entirely.
    """
    if value is None or (isinstance(value, str) and not value):
        return value
    if value is pd.NaT:
        return None
    if isinstance(value, dt.date):  # also datetime and pandas.Timestamp
        return f"{value.year:04d}-**-**"
    text = str(value)
    m = _YEAR_FIRST.match(text)
    if not m:
        return "*" * len(text)
    return m.group(1) + "".join(c if c in "-/. 年月日" else "*" for c in text[4:])


FIELD_MASKERS: dict[str, Callable] = {
    "name": mask_name,
    "id_number": mask_id_number,
    "account_number": mask_card,
    "phone": mask_phone,
    "email": mask_email,
    "address": mask_address,
    "birth_date": mask_birth_date,
}


def mask_value(field: str, value):
    """Mask one value of personal field ``field`` (see :data:`FIELD_MASKERS`)."""
    return FIELD_MASKERS[field](value)


def mask_series(series: pd.Series, field: str) -> pd.Series:
    """Mask a whole column: each distinct value is masked once, then mapped back.

    Missing values stay missing. For 100k rows this costs one Python call per distinct value.
    """
    masker = FIELD_MASKERS[field]
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    masked = np.array([masker(v) for v in uniques] + [None], dtype=object)
    # code -1 (missing) indexes the trailing None.
    return pd.Series(masked[codes], index=series.index, name=series.name)


def mask_frame(df: pd.DataFrame, roles: str | Iterable[str] | None) -> pd.DataFrame:
    """Apply the roles' policy to a frame about to reach a page or an export.

    Parameters
    ----------
    df : DataFrame
        Any result frame. Columns named in :data:`PERSONAL_FIELDS` are personal; a
        ``customer_id`` column marks customer-level rows. ``name`` always means a customer's
        name: a frame with branch or product names must call them ``branch_name`` /
        ``product_name``, or they are masked (and refused for aggregate roles).
    roles : str or iterable of str
        The user's roles.

    Returns
    -------
    DataFrame
        A copy with every personal column masked (levels ``masked`` and ``masked_unmask``: unmasking
        is a separate, per-customer, logged action), or an unchanged copy of an aggregate frame.

    Raises
    ------
    AccessDenied
        For levels ``none`` and ``aggregate`` when the frame holds personal columns or
        customer-level rows.
    """
    level = access_level(roles)
    personal = [c for c in df.columns if c in PERSONAL_FIELDS]
    if level in ("none", "aggregate"):
        rows = [c for c in df.columns if c in CUSTOMER_ROW_COLUMNS]
        if personal or rows:
            raise AccessDenied(
                "Your role sees aggregates only, not customer-level data"
                f" (asked for: {', '.join(personal + rows)}).", key="errors.aggregates_only",
            )
        return df.copy()
    out = df.copy()
    for col in personal:
        out[col] = mask_series(df[col], col)
    return out


# ---------------------------------------------------------------------------------------------
# The viewer: who reads customer data, within which scope, for what purpose
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scope:
    """Which customers a scoped user may see: those of ``branches`` and those whose
    ``customers.relationship_manager`` is one of ``portfolios`` (the union of the two).

    A user without a scope (``Viewer.scope is None``) sees the whole bank. A ``Scope`` with neither
    branches nor portfolios sees nothing: an empty scope must never widen to everything.
    """

    branches: frozenset[str] = frozenset()
    portfolios: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "branches", frozenset(str(b) for b in self.branches))
        object.__setattr__(self, "portfolios", frozenset(str(p) for p in self.portfolios))

    @property
    def empty(self) -> bool:
        return not self.branches and not self.portfolios

    def key(self) -> tuple:
        """A hashable, order-free value for cache keys."""
        return (tuple(sorted(self.branches)), tuple(sorted(self.portfolios)))


@dataclass(frozen=True)
class Viewer:
    """A user reading customer data: name, roles, scope and purpose. Every reader that returns
    customer-level rows takes one (``viewer=``) and returns rows already scoped and masked.

    Parameters
    ----------
    username : str
    roles : str or iterable of str
        Normalised (unknown roles raise ``ValueError``).
    scope : Scope or None
        None: the whole bank. A role in :data:`SCOPE_REQUIRED_ROLES` without a scope gets an empty
        one (sees nothing): failing closed.
    purpose : str
        A key of :data:`PURPOSES`; contact purposes leave out customers without a live consent.
    """

    username: str
    roles: tuple[str, ...]
    scope: Scope | None = None
    purpose: str = "service"

    def __post_init__(self) -> None:
        roles = normalise_roles(self.roles)
        object.__setattr__(self, "roles", roles)
        if self.purpose not in PURPOSES:
            raise ValueError(f"Unknown purpose {self.purpose!r}. Known purposes: {', '.join(PURPOSES)}.")
        if self.scope is None and SCOPE_REQUIRED_ROLES & set(roles):
            object.__setattr__(self, "scope", Scope())

    def for_purpose(self, purpose: str) -> Viewer:
        """The same viewer reading for another purpose."""
        return replace(self, purpose=purpose)

    @property
    def level(self) -> str:
        return access_level(self.roles)

    @property
    def sees_rows(self) -> bool:
        """May see customer-level rows (masked)."""
        return self.level in ("masked", "masked_unmask")

    @property
    def aggregate_only(self) -> bool:
        """Sees aggregates only: the small-cell rule applies to every figure it is shown."""
        return self.level == "aggregate"

    @property
    def exact_balances(self) -> bool:
        """Sees exact balances and transaction amounts of the customers in scope (else bands)."""
        return bool(EXACT_BALANCE_ROLES & set(self.roles))

    @property
    def scoped(self) -> bool:
        return self.scope is not None

    @property
    def consent_purpose(self) -> str | None:
        """The consent a customer must have given to appear in this viewer's lists, or None."""
        return PURPOSES[self.purpose]

    def key(self) -> tuple:
        """Everything that changes what this viewer may see, hashable: part of every cache key of
        customer rows, so two viewers who may see different rows never share a cached frame."""
        return (self.level, self.exact_balances, self.scope.key() if self.scope is not None else None,
                self.purpose)

    def scope_sql(self, customers_alias: str = "c") -> tuple[str, dict]:
        """A SQL condition over a ``customers`` alias that keeps the customers in scope, with its
        bound parameters (``1 = 1`` for the whole bank, ``1 = 0`` for an empty scope)."""
        if self.scope is None:
            return "1 = 1", {}
        if self.scope.empty:
            return "1 = 0", {}
        parts, params = [], {}
        for column, values, prefix in (("branch_id", self.scope.branches, "scope_b"),
                                       ("relationship_manager", self.scope.portfolios, "scope_p")):
            if values:
                names = []
                for i, value in enumerate(sorted(values)):
                    params[f"{prefix}{i}"] = value
                    names.append(f":{prefix}{i}")
                parts.append(f"{customers_alias}.{column} IN ({', '.join(names)})")
        return "(" + " OR ".join(parts) + ")", params

    def scope_condition(self, customers_table):
        """The SQLAlchemy Core twin of :meth:`scope_sql`, over a ``customers`` table or alias."""
        from sqlalchemy import false, or_, true

        if self.scope is None:
            return true()
        parts = []
        if self.scope.branches:
            parts.append(customers_table.c.branch_id.in_(sorted(self.scope.branches)))
        if self.scope.portfolios:
            parts.append(customers_table.c.relationship_manager.in_(sorted(self.scope.portfolios)))
        return or_(*parts) if parts else false()

    def in_scope(self, branch_id: pd.Series, relationship_manager: pd.Series | None = None) -> np.ndarray:
        """A boolean mask of the rows whose customer is in scope (pandas twin of :meth:`scope_sql`)."""
        n = len(branch_id)
        if self.scope is None:
            return np.ones(n, dtype=bool)
        keep = branch_id.astype("string").isin(self.scope.branches).fillna(False).to_numpy(dtype=bool, copy=True)
        if relationship_manager is not None and self.scope.portfolios:
            keep = keep | relationship_manager.astype("string").isin(self.scope.portfolios).fillna(False).to_numpy(
                dtype=bool)
        return keep

    def describe_scope(self) -> str:
        """The scope in words for an on-screen notice (branch and portfolio codes only)."""
        if self.scope is None:
            return "all customers"
        if self.scope.empty:
            return "no customers"
        parts = []
        if self.scope.branches:
            parts.append("branches " + ", ".join(sorted(self.scope.branches)))
        if self.scope.portfolios:
            parts.append("portfolios " + ", ".join(sorted(self.scope.portfolios)))
        return "; ".join(parts)


def require_rows(viewer: Viewer) -> None:
    """Raise :class:`AccessDenied` unless ``viewer`` may see customer-level rows."""
    if not viewer.sees_rows:
        raise AccessDenied("Your role sees aggregates only, not customer-level data.", key="errors.aggregates_only")


def aum_band(value) -> str | None:
    """The AUM band code of an amount: ``"50000-200000"``, ``"6000000+"``, ``"<10000"``; None when
    unknown. Band codes are rendered per language by :func:`analytics.formatting.band`."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    amount = float(value)
    if amount < AUM_BAND_EDGES[0]:
        return f"<{AUM_BAND_EDGES[0]:.0f}"
    for low, high in itertools.pairwise(AUM_BAND_EDGES):
        if low <= amount < high:
            return f"{low:.0f}-{high:.0f}"
    return f"{AUM_BAND_EDGES[-1]:.0f}+"


def band_amounts(df: pd.DataFrame) -> pd.DataFrame:
    """Replace each exact balance column (:data:`BALANCE_FIELDS`) by its band, named ``<col>_band``."""
    out = df.copy()
    for col in [c for c in df.columns if c in BALANCE_FIELDS]:
        position = out.columns.get_loc(col)
        banded = pd.Series([aum_band(v) for v in pd.to_numeric(out[col], errors="coerce")],
                           index=out.index, dtype=object)
        out = out.drop(columns=[col])
        out.insert(position, f"{col}_band", banded)
    return out


def release(df: pd.DataFrame, viewer: Viewer) -> pd.DataFrame:
    """The last step of every reader of customer rows: the frame as ``viewer`` may see it.

    Personal fields are masked (:func:`mask_frame`), exact balances become bands for a viewer
    without :attr:`Viewer.exact_balances`, and aggregate-only or no-access roles are refused
    customer rows. Scope and consent are applied by the reader's SQL (:meth:`Viewer.scope_sql`,
    :func:`analytics.consent.live_consent_sql`) before the rows are read at all.
    """
    out = mask_frame(df, viewer.roles)
    if not viewer.exact_balances:
        out = band_amounts(out)
    return out


def min_cell_customers() -> int:
    """The ``MIN_CELL_CUSTOMERS`` setting (at least 1)."""
    from analytics import settings  # settings reads the environment; access stays importable without it

    value = int(settings.get("MIN_CELL_CUSTOMERS"))
    if value < 1:
        raise ValueError(f"MIN_CELL_CUSTOMERS must be at least 1, got {value}")
    return value


def suppress_small_cells(frame: pd.DataFrame, *, count: str = "customers", sums: Iterable[str] = (),
                         k: int | None = None, groups: Iterable[str] = ()) -> pd.DataFrame:
    """Hide every cell of fewer than ``k`` customers (but more than none) from an aggregate-only role.

    The cell's count becomes missing and ``<count>_suppressed`` True (shown as "<k"); its ``sums``
    become missing. A lone suppressed cell in a group could be recovered from the group's total,
    so when exactly one cell of a group (rows sharing ``groups``; the whole frame without) is hidden,
    the next smallest non-empty cell is hidden too (secondary suppression).
    """
    k = min_cell_customers() if k is None else int(k)
    out = frame.copy()
    counts = pd.to_numeric(out[count], errors="coerce")
    hide = (counts > 0) & (counts < k)
    groups = list(groups)
    if not groups:
        by = pd.Series(0, index=out.index)
    else:
        by = groups[0] if len(groups) == 1 else groups
    for _, index in out.groupby(by, dropna=False, sort=False).groups.items():
        part = hide.loc[index]
        if int(part.sum()) == 1:
            shown = counts.loc[index][~part & (counts.loc[index] > 0)]
            if not shown.empty:
                hide.loc[shown.idxmin()] = True
    out[count] = counts.astype(float).where(~hide)
    for col in sums:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float).where(~hide)
    out[f"{count}_suppressed"] = hide.to_numpy(dtype=bool)
    return out


__all__ = [
    "ACCESS_LEVELS", "CUSTOMER_ROW_COLUMNS", "FIELD_MASKERS", "MIN_UNMASK_REASON_CHARS", "PAGES",
    "PAGE_ACCESS", "PERSONAL_FIELDS", "ROLES", "ROLE_ACCESS_LEVEL", "AccessDenied", "access_level",
    "can_see_customer_rows", "can_unmask", "can_view_page", "check_unmask", "filterable_columns",
    "mask_address", "mask_birth_date", "mask_card", "mask_email", "mask_frame", "mask_id_number",
    "mask_name", "mask_phone", "mask_series", "mask_value", "normalise_roles", "pages_for",
    "require_page", "AUM_BAND_EDGES", "BALANCE_FIELDS", "CONSENT_PURPOSES", "EXACT_BALANCE_ROLES", "PURPOSES",
    "SCOPE_REQUIRED_ROLES", "SEGMENT_LIST_PURPOSE", "Scope", "Viewer", "segment_list_purpose", "aum_band", "band_amounts", "min_cell_customers", "release",
    "require_rows", "suppress_small_cells",
]


def _check_tables(pages: Mapping[str, object] = PAGES) -> None:
    # The policy is two tables that must agree; a page added to one and not the other would be
    # either unreachable or unguarded. Checked at import so the mistake cannot ship.
    if set(pages) != set(PAGE_ACCESS):
        raise RuntimeError("PAGES and PAGE_ACCESS list different pages")
    if set(ROLE_ACCESS_LEVEL) != set(ROLES):
        raise RuntimeError("ROLE_ACCESS_LEVEL and ROLES list different roles")


_check_tables()
