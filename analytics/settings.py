"""Every setting of the product, declared once.

Each setting has a name, a default, the environment variable that overrides it and a help text.
Values come from, in order: the environment, ``.streamlit/secrets.toml`` (top-level keys of the same
name), the default. The README's configuration table is tested against :data:`SETTINGS`, so a setting
added here without documentation fails the tests.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRETS_FILE = PROJECT_ROOT / ".streamlit" / "secrets.toml"


@dataclass(frozen=True)
class Setting:
    """One configurable value: its environment variable, default, type and help text."""

    env: str
    default: Any
    help: str
    kind: type = str
    secret: bool = False


SETTINGS: dict[str, Setting] = {
    s.env: s
    for s in [
        Setting("CUSTOMER_STORE_URL", "sqlite:///data/bank.db",
                "SQLAlchemy URL of the customer store; `--db` on the command line wins. "
                "A relative SQLite path is relative to the project folder.", secret=True),
        Setting("SQLITE_BUSY_TIMEOUT_MS", 30000,
                "How long a SQLite connection waits for a lock held by another process.", int),
        Setting("REFRESH_KEEP_RUNS", 10,
                "How many completed refresh runs keep their result rows; older runs keep only their record.",
                int),
        # Partitioned per-customer work (issue 16, analytics/partitions.py)
        Setting("REFRESH_PARTITIONS", 1,
                "Customer partitions the refresh scores churn in, one after another or in parallel; each is "
                "read, scored and written on its own, so more partitions hold fewer rows in memory at once.", int),
        Setting("REFRESH_WORKERS", 0,
                "Local worker processes the partitions run on; 0 runs them in the refresh's own process.", int),
        Setting("DASK_SCHEDULER_ADDRESS", "",
                "Address of a Dask scheduler (e.g. tcp://10.0.0.5:8786); when set, the partitions run on that "
                "cluster, whose workers need the project and must reach the store."),
        Setting("LOAD_CHUNK_ROWS", 50000, "Rows per chunk when importing or writing large tables.", int),
        Setting("LOAD_MAX_COLUMNS", 1000,
                "`load` refuses a file whose header has more columns than this, before reading any row.", int),
        Setting("FRESHNESS_MONTHS", 24,
                "A customer record not updated within this many months counts as stale.", int),
        Setting("FRESHNESS_MONTHS_HIGH_RISK", 6,
                "The same for a customer with risk tolerance C4-C5 or credit grade B and below (B, CCC).", int),
        Setting("RISK_ASSESSMENT_VALID_DAYS", 365,
                "A risk-tolerance assessment older than this many days has expired.", int),
        Setting("AUTH_COOKIE_KEY", "",
                "Key that signs the login cookie; at least 32 bytes. `make run` generates one for the demo.",
                secret=True),
        Setting("AUDIT_HMAC_KEY", "",
                "Key of the HMAC-SHA256 chain over the audit log; at least 32 bytes.", secret=True),
        Setting("AUDIT_HMAC_KEYS_RETIRED", "",
                "Earlier audit keys, comma-separated, kept after `audit rotate-key` so the entries they "
                "signed still verify (docs/deployment.md).", secret=True),
        Setting("KPI_REFRESH_SECONDS", 60, "How often the KPI wall reloads its figures (without reloading the page).",
                int),
        Setting("DATA_STALE_HOURS", 36,
                "Pages warn that the figures are stale when the published refresh finished longer ago than this.",
                int),
        Setting("EXPORT_MAX_ROWS", 100000, "Most rows one CSV/Excel export may hold.", int),
        Setting("MIN_CELL_CUSTOMERS", 5,
                "Aggregate-only roles (executive, display) see a figure only when it counts at least this many "
                "customers; a smaller cell shows \"<N\" and its sums are hidden, on screen and in exports.", int),
        Setting("LOAD_REJECTS_RETENTION_DAYS", 30,
                "Rejected import rows (`load_rejects`) older than this are deleted by `load` and `audit prune`; "
                "their personal fields are masked when they are stored.", int),
        Setting("LOGIN_MAX_FAILED_ATTEMPTS", 5, "Consecutive failed logins that lock an account.", int),
        Setting("LOGIN_LOCKOUT_MINUTES", 30, "How long a locked account stays locked.", int),
        Setting("SESSION_IDLE_MINUTES", 15, "A login session idle this long is ended; the user logs in again.", int),
        Setting("AUDIT_RETENTION_DAYS", 400,
                "`prune` deletes audit entries older than this; the chain stays verifiable.", int),
        Setting("AUDIT_CHECKPOINT_FILE", "data/audit.checkpoint",
                "File outside the database holding the signed head of the audit chain (detects truncation)."),
        Setting("AUDIT_KEY_FILE", "data/audit.key",
                "Where a random audit key is generated (mode 0600) when AUDIT_HMAC_KEY is unset and the store is SQLite."),
        Setting("AUDIT_CHECKPOINT_SYSLOG", 0,
                "1: also send each new audit head to syslog (facility authpriv), a copy outside the host's "
                "writable files.", int),
        # Four-eyes approval and audit-log analytics (issue 18)
        Setting("EXPORT_APPROVAL_ROWS", 5000,
                "An export of more rows than this becomes a request that a second person (compliance) "
                "must approve before the requester can download it, once.", int),
        Setting("APPROVAL_TTL_HOURS", 24,
                "A pending request expires this many hours after it was made; an approved one must be used "
                "within this many hours of the approval.", int),
        Setting("WORKING_HOURS", "08:00-20:00",
                "Audit signal: activity outside these local hours (HH:MM-HH:MM) is flagged."),
        Setting("WORKING_HOURS_TZ", "Asia/Shanghai", "Time zone of WORKING_HOURS (an IANA name)."),
        Setting("SIGNAL_EXPORT_MEDIAN_FACTOR", 3.0,
                "Audit signal: a user's exports on one day above this many times their median of the "
                "previous 30 days (and above SIGNAL_EXPORT_MIN_DAY) are flagged.", float),
        Setting("SIGNAL_EXPORT_MIN_DAY", 5,
                "Audit signal: fewest exports on one day that can be flagged against the 30-day median.", int),
        Setting("SIGNAL_UNMASK_REPEAT", 3,
                "Audit signal: this many unmask requests or unmasks for one customer within "
                "SIGNAL_WINDOW_HOURS are flagged.", int),
        Setting("SIGNAL_DENIED_BURST", 5,
                "Audit signal: this many access-denied entries of one user within SIGNAL_WINDOW_HOURS "
                "are flagged.", int),
        Setting("SIGNAL_WINDOW_HOURS", 24,
                "Audit signal: the window of the repeated-unmask and access-denied signals.", int),
        # Two-factor login and access review (issue 18)
        Setting("MFA_KEY", "",
                "Key that encrypts the stored TOTP secrets; at least 32 bytes, not an example value. Without it "
                "accounts that need two-factor login cannot log in.", secret=True),
        Setting("MFA_REQUIRED_ROLES", "compliance,admin",
                "Roles that must log in with a TOTP code (comma-separated); other roles may enrol. "
                "The display (kiosk) role is always exempt."),
        Setting("ACCESS_REVIEW_DORMANT_DAYS", 90,
                "The access review flags an account with no login in this many days.", int),
        # Segmentation and lifecycle value (issue 4)
        Setting("VALUE_TIER_THRESHOLDS", "50000,500000,6000000",
                "AUM thresholds (CNY) of the value tiers: mass below the first, affluent from it, "
                "wealth from the second, private from the third."),
        Setting("CLUSTER_K_RANGE", "3,8",
                "Smallest and largest number of behavioural clusters tried; k is chosen by silhouette."),
        Setting("CLUSTER_SAMPLE_SIZE", 50000,
                "Customers sampled to choose k and fit the clusters; every customer is then assigned.", int),
        Setting("CLV_HORIZON_YEARS", 3,
                "Headline horizon of the bank-margin CLV: 1, 3 or 5 years (all three are stored).", int),
        Setting("CLV_DISCOUNT_RATE", 0.08, "Yearly discount rate of the bank-margin CLV (0.08 = 8 %).", float),
        Setting("TAGS_FILE", "data/tags.yaml",
                "The tag rule file (标签); a relative path is relative to the project folder."),
        # Cross-sell and risk tiers (issue 5)
        Setting("CROSS_SELL_MIN_SUPPORT", 0.005,
                "Smallest support of an association rule: the share of customers holding all its product categories.",
                float),
        Setting("CROSS_SELL_MIN_CONFIDENCE", 0.1, "Smallest confidence of an association rule that is kept.", float),
        Setting("CROSS_SELL_HORIZON_MONTHS", 3,
                "Propensity horizon: the models predict acquiring a product category within this many months.", int),
        Setting("CONTACT_COOLDOWN_DAYS", 30,
                "A campaign leaves out customers contacted for marketing within this many days before the "
                "run's as-of day.", int),
        Setting("CONTROL_SHARE", 0.1,
                "Share of a campaign's eligible audience held out at random as its control group (0 to 0.5); "
                "`campaign create --control-share` wins.", float),
        Setting("CROSS_SELL_SAMPLE_SIZE", 200000,
                "Customers sampled to fit the propensity models; every customer is then scored.", int),
        Setting("CROSS_SELL_TOP_N", 3, "Offers kept per customer; the first is the next-best product.", int),
        Setting("CROSS_SELL_CAMPAIGN_SIZE", 20000,
                "Most customers a campaign list for one product category can hold.", int),
        Setting("CREDIT_OFFER_MIN_GRADE", "BBB",
                "Lowest credit grade (AAA best .. CCC) offered a credit product (mortgage, consumer loan, "
                "credit card); a customer below it, or without a grade, is excluded with the reason credit_grade.",
                str),
        Setting("BALANCE_DROP_MAD_Z", 3.5,
                "An AUM change this many robust standard deviations (1.4826 x MAD) below its value tier's "
                "median month-on-month change is abnormal.", float),
        Setting("BALANCE_DROP_MIN_PCT", 0.3,
                "An abnormal AUM drop must also be a fall of at least this fraction (0.3 = 30 %).", float),
        Setting("BALANCE_DROP_MIN_AUM", 10000,
                "Customers with less AUM than this (CNY) in the previous month are not checked for drops.", int),
        # Churn early warning (issue 5)
        Setting("CHURN_HORIZON_MONTHS", 3,
                "Churn horizon: a customer churns if, within this many months, they close every product, "
                "their AUM falls by CHURN_AUM_DROP or they make no transaction.", int),
        Setting("CHURN_AUM_DROP", 0.8,
                "An AUM fall of at least this fraction over the churn horizon counts as churn (0.8 = 80 %).", float),
        Setting("CHURN_SAMPLE_SIZE", 200000,
                "Customers sampled per period to fit and evaluate the churn model; every customer is then scored.",
                int),
        # Alert worklists and the digest (issue 13)
        Setting("ALERT_CHURN_MIN_VALUE_AT_RISK", 500,
                "An active customer whose churn value at risk (probability x margin CLV, CNY) is at least this "
                "gets a churn alert.", float),
        Setting("ALERT_DUE_DAYS", 7,
                "Days after a run's reference day that an alert without a date of its own is due.", int),
        Setting("DIGEST_OUTBOX", "data/outbox",
                "Folder `digest` writes its files to (`--outbox` wins); relative to the project folder."),
        Setting("SMTP_HOST", "", "Mail server `digest --send` sends through (STARTTLS required)."),
        Setting("SMTP_PORT", 587, "Port of SMTP_HOST.", int),
        Setting("SMTP_USER", "", "Login at the mail server (none: send without logging in)."),
        Setting("SMTP_PASSWORD", "", "Password of SMTP_USER.", secret=True),
        Setting("SMTP_FROM", "", "Sender address of the digest mails."),
        Setting("SMTP_CA_FILE", "",
                "PEM file of the certificate authority that signed the mail server's certificate, when it "
                "is not one the system trusts (none: the system's)."),
        Setting("SMTP_TIMEOUT_SECONDS", 20, "How long `digest --send` waits for the mail server.", int),
    ]
}


def _secrets() -> dict[str, Any]:
    try:
        with SECRETS_FILE.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        # A broken secrets file must not take the whole app down with a traceback; name the file.
        raise ValueError(f"{SECRETS_FILE} is not valid TOML: {exc}") from None


def get(name: str) -> Any:
    """Return the value of setting ``name`` (environment, then secrets file, then default)."""
    setting = SETTINGS[name]
    raw = os.environ.get(name)
    if raw is None:
        raw = _secrets().get(name)
    if raw is None or raw == "":
        return setting.default
    try:
        return setting.kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"Setting {name}={raw!r} is not a valid {setting.kind.__name__}") from None
