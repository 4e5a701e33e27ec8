"""The customer store's relational schema (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Two groups of tables:

* the **bank's store**: ``branches``, ``customers``, ``products``, ``holdings``, ``customer_monthly``,
  ``contacts``. A bank points the app at its own copy of these (``python -m analytics load``).
* the **app's own tables**: refresh runs and the single "current run" pointer, per-run results,
  import batches and their quarantined rows, users, login sessions and the audit log.

Identifiers (resident ID, card/account number, phone) are text, never numbers: a leading zero or
the check character ``X`` must survive. Money is stored as ``Numeric(18, 2)`` on the store tables
(exact, as a bank's ledger) and read back as floats by the analytics.

Glossary of column names used across the package:

``aum``                assets under management: deposits + wealth/fund/insurance balances, CNY
``deposit_balance``    demand + time deposits, CNY
``loan_balance``       outstanding mortgage, consumer loan and credit-card balances, CNY
``txn_count``          customer-initiated transactions in the month
``txn_amount``         their total amount, CNY
``digital_logins``     mobile/online banking logins in the month
``risk_tolerance``     the customer's assessed risk tolerance, ``C1`` (lowest) .. ``C5``
``risk_level``         a product's risk level, ``R1`` (lowest) .. ``R5``
``annual_margin``      the bank's yearly margin on a product, as a fraction of the balance
``run_id``             the refresh run that produced a result row
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

Money = Numeric(18, 2, asdecimal=False)

RISK_TOLERANCES = ("C1", "C2", "C3", "C4", "C5")
RISK_LEVELS = ("R1", "R2", "R3", "R4", "R5")
CREDIT_GRADES = ("AAA", "AA", "A", "BBB", "BB", "B", "CCC")
CUSTOMER_STATUSES = ("active", "dormant", "closed")
RUN_STATUSES = ("running", "succeeded", "failed")

# ---------------------------------------------------------------------------------------------
# The bank's customer store
# ---------------------------------------------------------------------------------------------

branches = Table(
    "branches",
    metadata,
    Column("branch_id", String(16), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("city", String(50), nullable=False),
    Column("province", String(50), nullable=False),
    Column("region_code", String(6)),
    Column("opened_on", Date),
)

customers = Table(
    "customers",
    metadata,
    Column("customer_id", String(20), primary_key=True),
    Column("name", String(100)),
    Column("gender", String(1)),  # 'M' or 'F'
    Column("birth_date", Date),
    Column("id_type", String(20)),  # resident_id, passport, hk_macau_permit, ...
    Column("id_number", String(32)),
    Column("id_expiry_date", Date),
    Column("phone", String(32)),
    Column("email", String(200)),
    Column("address", String(300)),
    Column("city", String(50)),
    Column("province", String(50)),
    Column("branch_id", String(16), ForeignKey("branches.branch_id"), nullable=False),
    Column("relationship_manager", String(50)),
    Column("customer_type", String(20)),  # individual, private_banking, small_business_owner
    Column("occupation", String(50)),
    Column("income_band", String(20)),
    Column("onboarding_channel", String(20)),  # branch, mobile_app, online, partner, payroll
    Column("open_date", Date, nullable=False),
    Column("risk_tolerance", String(2)),
    Column("risk_assessed_at", Date),
    Column("credit_grade", String(3)),
    Column("status", String(10), nullable=False),
    Column("marketing_consent", Boolean, nullable=False),
    Column("updated_at", DateTime),
    CheckConstraint("gender IS NULL OR gender IN ('M', 'F')", name="ck_customers_gender"),
    CheckConstraint("status IN ('active', 'dormant', 'closed')", name="ck_customers_status"),
    CheckConstraint(
        "risk_tolerance IS NULL OR risk_tolerance IN ('C1', 'C2', 'C3', 'C4', 'C5')",
        name="ck_customers_risk_tolerance",
    ),
    Index("ix_customers_branch", "branch_id"),
    Index("ix_customers_id_number", "id_number"),
    Index("ix_customers_rm", "relationship_manager"),
    # The risk page's assessments falling due: a month of assessment dates out of every customer.
    Index("ix_customers_risk_assessed", "risk_assessed_at"),
)

products = Table(
    "products",
    metadata,
    Column("product_id", String(20), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("category", String(30), nullable=False),
    Column("risk_level", String(2), nullable=False),
    Column("annual_margin", Float, nullable=False),
    # asset: a balance the customer holds with the bank (counts toward AUM);
    # liability: a balance the customer owes (loans, cards).
    Column("balance_side", String(10), nullable=False),
    # The product's tier within its category (cards: 1 classic, 2 gold, 3 platinum): a higher rank is
    # the better tier, the card up-sell's next step. NULL: a product without tiers.
    Column("tier_rank", SmallInteger),
    CheckConstraint("risk_level IN ('R1', 'R2', 'R3', 'R4', 'R5')", name="ck_products_risk_level"),
    CheckConstraint("balance_side IN ('asset', 'liability')", name="ck_products_balance_side"),
)

holdings = Table(
    "holdings",
    metadata,
    Column("holding_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("customer_id", String(20), ForeignKey("customers.customer_id"), nullable=False),
    Column("product_id", String(20), ForeignKey("products.product_id"), nullable=False),
    Column("account_number", String(32)),  # card or account number: text, masked for most roles
    Column("opened_on", Date, nullable=False),
    Column("closed_on", Date),
    Column("balance", Money, nullable=False),
    Index("ix_holdings_customer", "customer_id"),
    Index("ix_holdings_product", "product_id"),
)

customer_monthly = Table(
    "customer_monthly",
    metadata,
    Column("customer_id", String(20), ForeignKey("customers.customer_id"), primary_key=True),
    Column("month", Date, primary_key=True),  # first day of the month
    Column("aum", Money, nullable=False),
    Column("deposit_balance", Money, nullable=False),
    Column("loan_balance", Money, nullable=False),
    Column("txn_count", Integer, nullable=False),
    Column("txn_amount", Money, nullable=False),
    Column("digital_logins", Integer, nullable=False),
    Index("ix_customer_monthly_month", "month"),
)

contacts = Table(
    "contacts",
    metadata,
    Column("contact_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("customer_id", String(20), ForeignKey("customers.customer_id"), nullable=False),
    Column("contacted_at", DateTime, nullable=False),
    Column("channel", String(20), nullable=False),  # branch, phone, app, online, wechat
    Column("kind", String(20), nullable=False),  # service, marketing, complaint
    Column("category", String(40)),
    Column("resolved", Boolean),
    Index("ix_contacts_customer", "customer_id"),
    Index("ix_contacts_kind_time", "kind", "contacted_at"),
)

# A customer's consent by purpose, with its dates (the bank's guidance: customer data is used only
# for what the customer agreed to). A consent is live at time t when granted_at <= t and it is not
# withdrawn by t; readers check it when a list is read, so a withdrawal needs no refresh.
consents = Table(
    "consents",
    metadata,
    Column("consent_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("customer_id", String(20), ForeignKey("customers.customer_id"), nullable=False),
    Column("purpose", String(20), nullable=False),
    Column("granted_at", DateTime, nullable=False),
    Column("withdrawn_at", DateTime),
    CheckConstraint("purpose IN ('marketing', 'profiling', 'third_party')", name="ck_consents_purpose"),
    Index("ix_consents_customer_purpose", "customer_id", "purpose"),
)

# Columns added to existing tables after their first release: nullable or with a server default, so
# :func:`analytics.store.init_schema` adds them to an older store (ALTER TABLE ... ADD COLUMN) and its
# rows stay valid. A new column of an existing table is appended here.
ADDED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cross_sell_categories", "excluded_credit_grade"), ("cross_sell_categories", "excluded_credit_complaint"),
    ("cross_sell_funnel_cells", "excluded_credit_grade"), ("cross_sell_funnel_cells", "excluded_credit_complaint"),
    ("products", "tier_rank"), ("next_best_product", "offer_kind"), ("cross_sell_customer", "next_best_offer_kind"),
    ("cross_sell_categories", "upsell_candidates"), ("cross_sell_categories", "upsell_eligible"),
)
# Indexes added after stores were built with their tables: init_schema creates each one a store
# lacks (create_all adds none to an existing table, and never creates the bank's tables in a store
# that has some of them).
ADDED_INDEXES: tuple[tuple[str, str], ...] = (("customers", "ix_customers_risk_assessed"), ("alerts", "ix_alerts_due"),
                                               ("risk_flags", "ix_risk_flags_drops"))
STORE_TABLES = ("branches", "products", "customers", "holdings", "customer_monthly", "contacts", "consents")

# ---------------------------------------------------------------------------------------------
# The app's own tables
# ---------------------------------------------------------------------------------------------

refresh_runs = Table(
    "refresh_runs",
    metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("status", String(10), nullable=False),
    Column("stage", String(40)),  # the stage running now, or the one that failed
    Column("host", String(100)),
    Column("pid", Integer),
    Column("row_counts", JSON),
    Column("metrics", JSON),
    Column("error", Text),
    CheckConstraint("status IN ('running', 'succeeded', 'failed')", name="ck_refresh_runs_status"),
)

# Exactly one row (id = 1). Publishing a refresh moves this pointer in one transaction, so a reader
# always sees one complete run.
current_run = Table(
    "current_run",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), nullable=False),
    Column("published_at", DateTime, nullable=False),
    CheckConstraint("id = 1", name="ck_current_run_single_row"),
)

# Named scalar results of a run (headline counts, model metrics). Per-customer results live in
# their own run-keyed tables, added by the analytics that produce them.
run_metrics = Table(
    "run_metrics",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("name", String(80), primary_key=True),
    Column("value", Float),
    Column("text_value", Text),
)

load_batches = Table(
    "load_batches",
    metadata,
    Column("batch_id", Integer, primary_key=True, autoincrement=True),
    Column("loaded_at", DateTime, nullable=False),
    Column("table_name", String(40), nullable=False),
    Column("source_file", String(500), nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("rows_read", Integer, nullable=False),
    Column("rows_loaded", Integer, nullable=False),
    Column("rows_rejected", Integer, nullable=False),
    Index("ix_load_batches_hash", "table_name", "file_sha256"),
)

# Rows an import rejected, with the reason: never dropped silently.
load_rejects = Table(
    "load_rejects",
    metadata,
    Column("reject_id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", Integer, ForeignKey("load_batches.batch_id"), nullable=False),
    Column("line_number", Integer, nullable=False),
    Column("reason", String(200), nullable=False),
    Column("row_data", Text, nullable=False),  # the raw row as JSON text, exactly as read
    Index("ix_load_rejects_batch", "batch_id"),
)

users = Table(
    "users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("display_name", String(100), nullable=False),
    Column("email", String(200)),
    Column("password_hash", String(100), nullable=False),  # bcrypt
    Column("roles", String(200), nullable=False),  # comma-separated role names
    Column("disabled", Boolean, nullable=False, default=False),
    Column("failed_attempts", Integer, nullable=False, default=0),
    Column("locked_until", DateTime),
    Column("password_changed_at", DateTime, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

# Server-side session registry: a login cookie is honoured only while its session row is live.
user_sessions = Table(
    "user_sessions",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("username", String(64), ForeignKey("users.username"), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("last_seen_at", DateTime, nullable=False),
    Column("ended_at", DateTime),
    Column("end_reason", String(20)),  # logout, timeout, revoked
    Index("ix_user_sessions_user", "username"),
)

# A scoped user's branches and portfolios (customers.relationship_manager values). A user with no
# row here sees the whole bank, unless a role requires a scope (relationship_manager), in which
# case they see nothing until one is set.
user_scopes = Table(
    "user_scopes",
    metadata,
    Column("username", String(64), ForeignKey("users.username"), primary_key=True),
    Column("kind", String(10), primary_key=True),  # branch or portfolio
    Column("value", String(50), primary_key=True),
    CheckConstraint("kind IN ('branch', 'portfolio')", name="ck_user_scopes_kind"),
)

# Every customer an export held: the audit entry names the manifest, so an export of 100,000 rows
# is fully accounted for without a 100,000-id audit entry.
export_manifests = Table(
    "export_manifests",
    metadata,
    Column("manifest_id", String(32), primary_key=True),  # random hex, named in the audit entry
    Column("created_at", DateTime, nullable=False),
    Column("username", String(64), nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("rows", Integer, nullable=False),
)

export_manifest_customers = Table(
    "export_manifest_customers",
    metadata,
    Column("manifest_id", String(32), ForeignKey("export_manifests.manifest_id"), primary_key=True),
    Column("customer_id", String(20), primary_key=True),
)

# What a user chose in the UI and expects to find again at the next login (the language).
user_preferences = Table(
    "user_preferences",
    metadata,
    Column("username", String(64), ForeignKey("users.username"), primary_key=True),
    Column("language", String(8), nullable=False),  # "en" or "zh"
    Column("updated_at", DateTime, nullable=False),
)

# --- Four-eyes approval (issue 18) ---
# One row per request to unmask a field or to download a large export (analytics/approvals.py).
# ``definition`` is canonical JSON of what was asked for; ``approval_mac`` an HMAC (audit key) over
# the request as approved, checked on use, so a changed request or expiry cannot be slipped past.
# ``payload`` holds the requested export file (already released for the requester) until it is
# downloaded, rejected or expires; ``used_at`` is the single-use marker.
approval_requests = Table(
    "approval_requests",
    metadata,
    Column("request_id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # unmask | export
    Column("requested_by", String(64), nullable=False),
    Column("requested_at", DateTime, nullable=False),
    Column("definition", Text, nullable=False),  # JSON: field+customer, or the export's definition
    Column("rows", Integer),
    Column("file_sha256", String(64)),
    Column("payload", LargeBinary),
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | approved | rejected | expired
    Column("expires_at", DateTime, nullable=False),
    Column("decided_by", String(64)),
    Column("decided_at", DateTime),
    Column("comment", Text),
    Column("approval_mac", String(64)),
    Column("used_at", DateTime),
    Column("manifest_id", String(32)),
    Index("ix_approval_requests_status", "status", "requested_at"),
    Index("ix_approval_requests_requester", "requested_by", "requested_at"),
)

# Two-factor login (TOTP, RFC 6238; analytics/mfa.py). The secret is stored only encrypted
# (AES-GCM under a key derived from MFA_KEY, bound to the username). confirmed_at is NULL while an
# enrolment waits for its first code; last_step is the last accepted time-step, so no code (and no
# earlier one) is accepted twice.
user_mfa = Table(
    "user_mfa",
    metadata,
    Column("username", String(64), ForeignKey("users.username"), primary_key=True),
    Column("secret_enc", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("confirmed_at", DateTime),
    Column("last_step", BigInteger),
)

# Single-use recovery codes, stored as SHA-256 digests (80 random bits each, so a fast hash is enough).
user_mfa_recovery = Table(
    "user_mfa_recovery",
    metadata,
    Column("username", String(64), ForeignKey("users.username"), primary_key=True),
    Column("code_hash", String(64), primary_key=True),
    Column("used_at", DateTime),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("at_utc", DateTime, nullable=False),
    Column("username", String(64)),
    Column("roles", String(200)),
    Column("session_id", String(64)),
    Column("client_address", String(64)),
    Column("event", String(40), nullable=False),
    Column("target", Text),  # page, customer ids or a count, fields (JSON text)
    Column("parameters", Text),  # masked parameters (JSON text)
    Column("reason", Text),
    Column("run_id", Integer),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Index("ix_audit_log_user_time", "username", "at_utc"),
    Index("ix_audit_log_event_time", "event", "at_utc"),
)

# --- Data-quality results (issue 6) ---
# Written by the refresh's "data_quality" stage (analytics/quality.py), one set per run. Rules and
# their denominators are documented in data/dq_rules.yaml.

# One row per rule per run. ``definition`` is the rule exactly as evaluated (JSON, settings such as
# FRESHNESS_MONTHS resolved to their values), so a drill-down re-runs that same rule at the run's
# ``as_of`` date even after the rule file or a setting changes.
dq_rule_results = Table(
    "dq_rule_results",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("rule", String(80), primary_key=True),
    Column("position", Integer, nullable=False),  # order in the rule file, for display
    Column("table_name", String(40), nullable=False),
    Column("column_name", String(200), nullable=False),  # the checked column(s), comma-separated
    Column("kind", String(20), nullable=False),
    Column("dimension", String(20), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("checked", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
    Column("pass_rate", Float),  # (checked - failed) / checked; NULL when nothing was checked
    Column("as_of", Date, nullable=False),
    Column("definition", Text, nullable=False),
)

# The same counts per branch and per onboarding channel, for rules on the customers table.
dq_rule_breakdown = Table(
    "dq_rule_breakdown",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("rule", String(80), primary_key=True),
    Column("scope", String(10), primary_key=True),  # branch, channel
    Column("scope_value", String(50), primary_key=True),  # branch_id or channel; "(missing)" for NULL
    Column("checked", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
)

# Scores in [0, 1]: scope overall (scope_value ""), table, branch, channel; dimension is one of the
# five dimensions or "overall" (the weighted score of the scope).
dq_scores = Table(
    "dq_scores",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("scope", String(10), primary_key=True),
    Column("scope_value", String(50), primary_key=True),
    Column("dimension", String(20), primary_key=True),
    Column("score", Float, nullable=False),
    Column("checked", BigInteger, nullable=False),  # rule checks summed over the scope's rules
    Column("failed", BigInteger, nullable=False),
)

DQ_TABLES = ("dq_rule_results", "dq_rule_breakdown", "dq_scores")


# --- Segmentation & lifecycle results (issue 4) ---
# customer_segments, cluster_profiles and cluster_cube are written by the refresh's "segments" stage
# (analytics/segmentation/stage.py::segments_stage); segment_summary, segment_cube and
# cohort_retention by its "aggregates" stage (analytics/aggregates.py), one set per run. Rules behind
# each column are documented in analytics/segmentation/__init__.py and analytics/lifecycle.py.

# One row per customer per run. retention_rate and clv_margin_<H>y are the lifecycle stage's: the
# churn stage values churn risk with them; the margin CLV the pages show is customer_clv_margin's.
customer_segments = Table(
    "customer_segments",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("customer_id", String(20), primary_key=True),
    Column("rfm_recency_months", Float, nullable=False),  # months since the last customer-initiated txn
    Column("rfm_frequency", Float, nullable=False),  # customer-initiated transactions over 12 months
    Column("rfm_monetary", Float, nullable=False),  # mean AUM over 12 months, CNY
    Column("rfm_r", SmallInteger, nullable=False),  # 1..5, 5 = best
    Column("rfm_f", SmallInteger, nullable=False),
    Column("rfm_m", SmallInteger, nullable=False),
    Column("rfm_score", String(3), nullable=False),  # e.g. "545"
    Column("rfm_segment", String(30), nullable=False),  # Champions, Loyal, ..., Lost
    Column("aum", Float, nullable=False),  # AUM of the as-of month, CNY
    Column("value_tier", String(10), nullable=False),  # mass, affluent, wealth, private
    Column("cluster", SmallInteger, nullable=False),  # 0 = largest behavioural cluster
    Column("cluster_name", String(100), nullable=False),
    Column("lifecycle_stage", String(10), nullable=False),  # new, growing, mature, declining, dormant, churned
    Column("annual_margin", Float, nullable=False),  # sum(balance * annual_margin) of open holdings, CNY
    Column("retention_rate", Float, nullable=False),  # annual retention of the lifecycle stage
    Column("clv_margin_1y", Float, nullable=False),  # discounted expected margin at that retention, CNY
    Column("clv_margin_3y", Float, nullable=False),
    Column("clv_margin_5y", Float, nullable=False),
    # The customer's tags (data/tags.yaml), comma-separated in file order; "" for none. Text, not a
    # row per tag: a million customers carry several million tags, too many rows to write per run.
    Column("tags", Text, nullable=False),
    CheckConstraint("rfm_r BETWEEN 1 AND 5 AND rfm_f BETWEEN 1 AND 5 AND rfm_m BETWEEN 1 AND 5",
                    name="ck_customer_segments_rfm_scores"),
)

# Counts and totals of customer_segments (with customer_clv_margin's CLV) by one dimension: rfm_segment, rfm_rf ("<R><F>" cell),
# value_tier, cluster (value = cluster name), lifecycle_stage, branch_id, tag (customers carrying
# it), or clv_band_<H>y (1-2-5 bands of the H-year CLV).
segment_summary = Table(
    "segment_summary",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("dimension", String(30), primary_key=True),
    Column("value", String(100), primary_key=True),
    Column("sort_order", Integer, nullable=False),
    Column("customers", BigInteger, nullable=False),
    Column("aum_total", Float, nullable=False),
    Column("annual_margin_total", Float, nullable=False),
    Column("clv_margin_1y_total", Float, nullable=False),
    Column("clv_margin_3y_total", Float, nullable=False),
    Column("clv_margin_5y_total", Float, nullable=False),
)

# One row per behavioural cluster: size, name, and its profile (JSON: median_<feature> and
# z_<feature>, the cluster mean in standard deviations from the overall mean).
cluster_profiles = Table(
    "cluster_profiles",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("cluster", SmallInteger, primary_key=True),
    Column("cluster_name", String(100), nullable=False),
    Column("customers", BigInteger, nullable=False),
    Column("share", Float, nullable=False),
    Column("sets_apart", Text, nullable=False),
    Column("profile", JSON, nullable=False),
)

# Share of each opening-month cohort active (a customer-initiated transaction) N months later.
cohort_retention = Table(
    "cohort_retention",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("cohort_month", Date, primary_key=True),
    Column("months_since_open", Integer, primary_key=True),
    Column("cohort_size", BigInteger, nullable=False),
    Column("active_customers", BigInteger, nullable=False),
    Column("retention", Float, nullable=False),
)

# The same counts and totals as segment_summary, split by the cells of the pages' filters: branch,
# age band (birth year at the run's year, analytics/segment_explorer.py::AGE_BANDS) and value tier.
# Summing a dimension's rows over the cells a filter keeps gives that filter's chart, so the
# Segments and Lifecycle pages never read customer rows. Dimensions: rfm_rf, rfm_segment, value_tier,
# cluster_name, lifecycle_stage, branch_id, clv_band_<H>y (band edges fixed per run, so bands add
# up across cells) and tag (one count per tag a customer carries). A city filter is the branches
# in those cities (branches.city). Only non-empty cells are stored.
segment_cube = Table(
    "segment_cube",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("dimension", String(30), primary_key=True),
    Column("value", String(100), primary_key=True),
    Column("branch_id", String(16), primary_key=True),
    Column("age_band", String(10), primary_key=True),
    Column("value_tier", String(10), primary_key=True),
    Column("customers", BigInteger, nullable=False),
    Column("aum_total", Float, nullable=False),
    Column("annual_margin_total", Float, nullable=False),
    Column("clv_margin_1y_total", Float, nullable=False),
    Column("clv_margin_3y_total", Float, nullable=False),
    Column("clv_margin_5y_total", Float, nullable=False),
)

# Each cluster's standardised clustering features summed by the same filter cells, so the Segments
# page's cluster profile follows its filters: a feature's mean over the cells a filter keeps is
# sum(z_sum) / sum(customers). One row per (cluster, feature, non-empty cell).
cluster_cube = Table(
    "cluster_cube",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("cluster_name", String(100), primary_key=True),
    Column("feature", String(40), primary_key=True),
    Column("branch_id", String(16), primary_key=True),
    Column("age_band", String(10), primary_key=True),
    Column("value_tier", String(10), primary_key=True),
    Column("customers", BigInteger, nullable=False),
    Column("z_sum", Float, nullable=False),
)

SEGMENT_TABLES = ("customer_segments", "segment_summary", "cluster_profiles", "cohort_retention", "segment_cube",
                  "cluster_cube")


# --- Cross-sell and risk results (issue 5) ---
# Written by the refresh's "cross_sell" stage (analytics/cross_sell.py::cross_sell_stage) and "risk"
# stage (analytics/risk.py::risk_stage), one set per run. No foreign key to customers: the demo
# generator drops and recreates the store tables, and a run's results must survive that.

# Association rules between product categories, in lift order (rule_no 1 = highest lift).
# antecedents/consequents are JSON arrays of category names, sorted, e.g. '["mortgage"]'.
cross_sell_rules = Table(
    "cross_sell_rules",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("rule_no", Integer, primary_key=True),
    Column("antecedents", Text, nullable=False),
    Column("consequents", Text, nullable=False),
    Column("antecedent_support", Float, nullable=False),
    Column("consequent_support", Float, nullable=False),
    Column("support", Float, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("lift", Float, nullable=False),
)

# Customers holding both categories (the diagonal: holders of one), over the holding matrix.
cross_sell_cooccurrence = Table(
    "cross_sell_cooccurrence",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("category_a", String(30), primary_key=True),
    Column("category_b", String(30), primary_key=True),
    Column("customers", BigInteger, nullable=False),
)

# Recommendations that pass every guard: each customer's top CROSS_SELL_TOP_N offers, plus each
# category's best CROSS_SELL_CAMPAIGN_SIZE consenting customers (the pool campaign lists draw on).
# rank = the offer's place among the customer's eligible offers by expected value (1 = next best).
next_best_product = Table(
    "next_best_product",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("customer_id", String(20), primary_key=True),
    Column("category", String(30), primary_key=True),
    Column("product_id", String(20), nullable=False),
    Column("rank", SmallInteger, nullable=False),
    Column("propensity", Float, nullable=False),  # P(acquires the category within the horizon)
    Column("expected_value", Float, nullable=False),  # propensity * annual margin * expected balance, CNY
    Column("marketing_consent", Boolean, nullable=False),  # at the run
    # cross_sell (a category the customer lacks) or up_sell (a better tier of a held category, or
    # wealth management to a time-deposit holder); NULL in runs before up-sell: cross_sell
    Column("offer_kind", String(10)),
    Index("ix_next_best_product_category", "run_id", "category", "expected_value"),
)

# One row per customer of the stage's population (every customer open at the run's month,
# closed ones included): the next-best product (rank 1 of next_best_product) or why there is none,
# and the propensities over every category the customer does not hold.
cross_sell_customer = Table(
    "cross_sell_customer",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("customer_id", String(20), primary_key=True),
    Column("next_best_category", String(30)),  # NULL when no offer
    Column("next_best_product_id", String(20)),
    Column("next_best_expected_value", Float),  # CNY
    Column("next_best_offer_kind", String(10)),  # cross_sell or up_sell; NULL when no offer (or before up-sell)
    # NULL when there is an offer; else holds_everything, expired_assessment, suitability, credit_grade,
    # credit_complaint, closed
    Column("no_offer_reason", String(30)),
    # JSON object {category: P(acquire within the horizon)}, 4 decimals, over the categories the
    # customer does not hold; '{}' for a closed customer (not scored) or one holding everything
    Column("propensities", Text, nullable=False),
)

# Per category: the propensity model and the guard funnel (non-holders -> expired or missing
# assessment -> no product within tolerance -> eligible -> no consent -> campaign pool).
cross_sell_categories = Table(
    "cross_sell_categories",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("category", String(30), primary_key=True),
    Column("holders", BigInteger, nullable=False),
    Column("non_holders", BigInteger, nullable=False),
    Column("excluded_expired_assessment", BigInteger, nullable=False),
    Column("excluded_suitability", BigInteger, nullable=False),
    # credit products only: grade below CREDIT_OFFER_MIN_GRADE, or a recent credit complaint
    Column("excluded_credit_grade", BigInteger, nullable=False, server_default="0"),
    Column("excluded_credit_complaint", BigInteger, nullable=False, server_default="0"),
    Column("eligible", BigInteger, nullable=False),
    Column("excluded_no_consent", BigInteger, nullable=False),
    Column("campaign_pool", BigInteger, nullable=False),
    # Tier up-sell (holders of a lower tier of the category): candidates and those past every guard.
    # They are not in the columns above, which count the category's non-holders.
    Column("upsell_candidates", BigInteger, nullable=False, server_default="0"),
    Column("upsell_eligible", BigInteger, nullable=False, server_default="0"),
    Column("expected_value_total", Float, nullable=False),  # over eligible customers, CNY
    Column("mean_propensity", Float),  # over eligible customers
    Column("expected_balance", Float),  # median balance of holders, all tiers, CNY
    Column("model", String(20), nullable=False),  # logistic, base_rate, none
    Column("train_rows", BigInteger, nullable=False),
    Column("train_positives", BigInteger, nullable=False),
    Column("holdout_rows", BigInteger, nullable=False),
    Column("holdout_positives", BigInteger, nullable=False),
    Column("holdout_auc", Float),
    Column("holdout_brier", Float),
)

# The same funnel per category and owner (the customer's branch and relationship manager, as at
# the run), so a scoped user's campaign exclusions count their own customers.
cross_sell_funnel_cells = Table(
    "cross_sell_funnel_cells",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), nullable=False),
    Column("category", String(30), nullable=False),
    Column("branch_id", String(16)),
    Column("relationship_manager", String(50)),  # NULL: a customer without one
    Column("non_holders", BigInteger, nullable=False),
    Column("excluded_expired_assessment", BigInteger, nullable=False),
    Column("excluded_suitability", BigInteger, nullable=False),
    # credit products only: grade below CREDIT_OFFER_MIN_GRADE, or a recent credit complaint
    Column("excluded_credit_grade", BigInteger, nullable=False, server_default="0"),
    Column("excluded_credit_complaint", BigInteger, nullable=False, server_default="0"),
    Column("eligible", BigInteger, nullable=False),
    Column("excluded_no_consent", BigInteger, nullable=False),
    Index("ix_cross_sell_funnel_cells_run", "run_id", "category"),
)

# Eligible opportunities by recommended product (a category's product depends on the tolerance).
cross_sell_opportunities = Table(
    "cross_sell_opportunities",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("category", String(30), primary_key=True),
    Column("product_id", String(20), primary_key=True),
    Column("customers", BigInteger, nullable=False),  # eligible customers offered this product
    Column("consenting_customers", BigInteger, nullable=False),
    Column("next_best_customers", BigInteger, nullable=False),  # of whom it is the top offer
    Column("expected_value_total", Float, nullable=False),
    Column("consenting_expected_value_total", Float, nullable=False),
    Column("mean_propensity", Float, nullable=False),
)

# One row per customer per run: risk profile and flags (rules in analytics/risk.py).
risk_flags = Table(
    "risk_flags",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("customer_id", String(20), primary_key=True),
    Column("branch_id", String(16)),
    Column("risk_tolerance", String(2)),  # NULL when never assessed
    Column("credit_grade", String(3)),
    Column("value_tier", String(10), nullable=False),
    Column("aum", Float, nullable=False),  # AUM of the as-of month, CNY
    Column("suitability_mismatch", Boolean, nullable=False),
    Column("mismatch_holdings", Integer, nullable=False),
    Column("mismatch_balance", Float, nullable=False),
    Column("assessment_expired", Boolean, nullable=False),  # expired or missing
    Column("assessment_missing", Boolean, nullable=False),
    Column("balance_drop", Boolean, nullable=False),
    Column("aum_change_pct", Float),  # month on month, fraction; NULL when not assessed
    Column("balance_drop_reason", Text),  # why it was flagged: a code and JSON parameters (risk_reason.*); NULL when not
    # The Risk page's balance drops, steepest first: the flagged rows only (a few per thousand).
    Index("ix_risk_flags_drops", "run_id", "aum_change_pct", sqlite_where=text("balance_drop"),
          postgresql_where=text("balance_drop")),
)

# Open holdings whose product risk level is above the holder's tolerance.
risk_mismatches = Table(
    "risk_mismatches",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("holding_id", BigInteger, primary_key=True),
    Column("customer_id", String(20), nullable=False),
    Column("branch_id", String(16)),
    Column("product_id", String(20), nullable=False),
    Column("category", String(30), nullable=False),
    Column("risk_level", String(2), nullable=False),
    Column("risk_tolerance", String(2), nullable=False),
    Column("balance", Float, nullable=False),
)

# Per branch: customers, suitability, assessments, drops and R4-R5 concentration of asset balances.
risk_branch_summary = Table(
    "risk_branch_summary",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("branch_id", String(16), primary_key=True),  # "(missing)" for customers without one
    Column("customers", BigInteger, nullable=False),
    Column("suitability_mismatch_customers", BigInteger, nullable=False),
    Column("mismatch_holdings", BigInteger, nullable=False),
    Column("mismatch_balance", Float, nullable=False),
    Column("assessments_expired", BigInteger, nullable=False),  # expired or missing
    Column("assessments_missing", BigInteger, nullable=False),
    Column("balance_drops", BigInteger, nullable=False),
    Column("asset_balance_total", Float, nullable=False),
    Column("asset_balance_r4_r5", Float, nullable=False),
    Column("r4_r5_share", Float),  # NULL when the branch holds no asset balance
)

CROSS_SELL_TABLES = ("cross_sell_rules", "cross_sell_cooccurrence", "next_best_product",
                     "cross_sell_customer", "cross_sell_categories", "cross_sell_opportunities")
RISK_TABLES = ("risk_flags", "risk_mismatches", "risk_branch_summary")


# --- Churn results (issue 5) ---
# Written by the refresh's "churn" stage (analytics/churn.py::churn_stage), one set per run. The
# label, population and model are documented in analytics/churn.py. Every metric table is computed
# on the time-based hold-out only. No foreign key to customers: the demo generator drops and
# recreates the store tables under the results.

# One row per customer open at the run's month.
churn_scores = Table(
    "churn_scores",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("customer_id", String(20), primary_key=True),
    # active: scored by the model; inactive: no transaction for the horizon (already dormant),
    # scored by the measured rate; closed: no open product (probability 1)
    Column("churn_state", String(10), nullable=False),
    Column("churn_probability", Float, nullable=False),  # of churning within CHURN_HORIZON_MONTHS
    Column("clv", Float, nullable=False),  # the margin CLV the probability is applied to, CNY
    Column("value_at_risk", Float, nullable=False),  # churn_probability * clv, CNY
    Column("reason_1", String(200)),  # the top reasons pushing the probability up: a code and JSON parameters (analytics.churn.reasons)
    Column("reason_2", String(200)),
    Column("reason_3", String(200)),
    CheckConstraint("churn_state IN ('active', 'inactive', 'closed')", name="ck_churn_scores_state"),
    Index("ix_churn_scores_value_at_risk", "run_id", "value_at_risk"),
)

# Hold-out lift and capture by score decile (1 = highest predicted probabilities).
churn_lift = Table(
    "churn_lift",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("decile", SmallInteger, primary_key=True),
    Column("customers", BigInteger, nullable=False),
    Column("churners", BigInteger, nullable=False),
    Column("mean_probability", Float, nullable=False),
    Column("churn_rate", Float, nullable=False),
    Column("lift", Float),  # churn_rate / overall rate; NULL when nobody churned
    Column("cumulative_customers", BigInteger, nullable=False),
    Column("cumulative_churners", BigInteger, nullable=False),
    Column("capture", Float),  # share of all churners in deciles 1..decile
    Column("cumulative_lift", Float),
)

# Hold-out calibration: equal-width probability bins, mean predicted vs observed churn rate.
churn_calibration = Table(
    "churn_calibration",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("bin", SmallInteger, primary_key=True),
    Column("lower", Float, nullable=False),
    Column("upper", Float, nullable=False),
    Column("customers", BigInteger, nullable=False),
    Column("mean_predicted", Float, nullable=False),
    Column("observed_rate", Float, nullable=False),
)

# Hold-out permutation importance: the drop in ROC AUC when a feature is shuffled (top features).
churn_importance = Table(
    "churn_importance",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("feature", String(80), primary_key=True),
    Column("rank", SmallInteger, nullable=False),
    Column("importance_mean", Float, nullable=False),
    Column("importance_std", Float, nullable=False),
    Column("description", Text, nullable=False),
)

# Churn by dimension (branch_id, value_tier, lifecycle_stage, rfm_segment): today's active customers
# with their mean predicted probability, and the hold-out period's observed churn rate.
churn_rates = Table(
    "churn_rates",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("dimension", String(30), primary_key=True),
    Column("value", String(100), primary_key=True),
    Column("sort_order", Integer, nullable=False),
    Column("customers", BigInteger, nullable=False),
    Column("mean_probability", Float),  # NULL for a value with no active customer today
    Column("expected_churners", Float, nullable=False),
    Column("holdout_customers", BigInteger, nullable=False),
    Column("holdout_churners", BigInteger, nullable=False),
    Column("holdout_churn_rate", Float),  # NULL for a value absent from the hold-out
)

# The churn headline and rates cut by owner, so a scoped user's figures are their own: one row per
# dimension value, branch and relationship manager of today's active customers (as at the run).
# A scope takes the cells whose branch or manager is in it (see analytics.churn.scope_churn).
churn_rate_cells = Table(
    "churn_rate_cells",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), nullable=False),
    Column("dimension", String(30), nullable=False),
    Column("value", String(100), nullable=False),
    Column("branch_id", String(16)),  # the customer's, as at the run
    Column("relationship_manager", String(50)),  # NULL: a customer without one
    Column("customers", BigInteger, nullable=False),
    Column("expected_churners", Float, nullable=False),
    Column("value_at_risk", Float, nullable=False),
    Index("ix_churn_rate_cells_run", "run_id", "dimension"),
)

CHURN_TABLES = ("churn_scores", "churn_lift", "churn_calibration", "churn_importance", "churn_rates",
                "churn_rate_cells")


# --- Transactional CLV results (issue 4) ---
# BG/NBD + Gamma-Gamma on monthly activity (analytics/clv_refresh.py): one row per customer of the
# store at the run. A purchase period is a month with txn_count > 0, over the 24 months up to the
# run's month; frequency, recency and T are NULL for a customer with no such month (p_alive and
# CLV 0). No foreign key to customers: the demo generator drops and recreates the store tables
# under the results.
customer_clv_txn = Table(
    "customer_clv_txn",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("customer_id", String(20), primary_key=True),
    Column("frequency", Float),  # repeat active months
    Column("recency", Float),  # months from the first to the last active month
    Column("T", Float),  # months from the first active month to the run's month
    Column("monetary_value", Float, nullable=False),  # mean txn_amount of the repeat months, CNY
    Column("p_alive", Float, nullable=False),  # BG/NBD probability the customer is still active
    Column("expected_purchases_12m", Float, nullable=False),  # expected active months in the next 12
    Column("clv_txn_12m", Float, nullable=False),  # discounted expected transaction amount, 12 months, CNY
    CheckConstraint("p_alive BETWEEN 0 AND 1", name="ck_customer_clv_txn_p_alive"),
)


# The bank-margin CLV of every segmented customer (analytics/clv_refresh.py::clv_margin_stage, the
# refresh's "clv_margin" stage): at the churn model's retention, (1 - churn_probability) ** (12 /
# horizon months), where the churn stage scored the customer, else at the lifecycle stage's retention
# (customer_segments' own CLV). What every page, list and total shows as margin CLV.
customer_clv_margin = Table(
    "customer_clv_margin",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("customer_id", String(20), primary_key=True),
    Column("retention_rate", Float, nullable=False),  # annual retention used for the CLV
    Column("retention_source", String(20), nullable=False),  # churn_model or lifecycle_stage
    Column("clv_margin_1y", Float, nullable=False),  # discounted expected margin, CNY
    Column("clv_margin_3y", Float, nullable=False),
    Column("clv_margin_5y", Float, nullable=False),
    CheckConstraint("retention_rate BETWEEN 0 AND 1", name="ck_customer_clv_margin_retention"),
    CheckConstraint("retention_source IN ('churn_model', 'lifecycle_stage')",
                    name="ck_customer_clv_margin_source"),
)


# --- KPI wall results ---
# The monthly KPI series of a run (analytics/kpi.py, written by the "aggregates" stage): customers,
# active, new, churned, aum, deposits, loans for the 13 months up to the run's as-of month.
kpi_monthly = Table(
    "kpi_monthly",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("month", Date, primary_key=True),
    Column("metric", String(20), primary_key=True),
    Column("value", Float, nullable=False),
)


# --- Alert worklists (issue 13) ---
# Written by the refresh's "alerts" stage (analytics/alerts/stage.py) and by the Worklist page's
# status changes. Not run-keyed result tables: an alert lives across refreshes. While its condition
# lasts (``cleared_run`` NULL) an alert is the one "standing" alert of its customer and kind, open
# (new, contacted) or closed by a user (resolved, dismissed): a partial unique index enforces it, and
# each run that still detects it only moves ``last_seen_run``, so it is never duplicated and a user's
# resolution is not undone while the data still shows the condition. The first run that no longer
# detects it sets ``cleared_run`` (and resolves it if still open, changed_by "refresh"); a later
# detection opens a new alert.
# Column names avoid ``run_id`` on purpose: the refresh prunes and deletes rows by ``run_id``.
ALERT_KINDS = ("churn_value_at_risk", "suitability_mismatch", "assessment_expiring", "balance_drop",
               "id_expiring", "birthday", "complaint_unresolved")
ALERT_STATUSES = ("new", "contacted", "resolved", "dismissed")
OPEN_ALERT_STATUSES = ("new", "contacted")

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("customer_id", String(20), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("owner", String(50)),  # the customer's relationship_manager at the last detection
    Column("status", String(10), nullable=False),
    Column("outcome_note", Text),
    Column("due_date", Date, nullable=False),
    Column("detail", Text),  # why, in words; no personal value and no exact amount
    Column("first_seen", Date, nullable=False),  # the reference day of the run that first detected it
    Column("first_seen_run", Integer, nullable=False),
    Column("last_seen_run", Integer, nullable=False),
    Column("cleared_run", Integer),  # the first run that no longer detected it; NULL while it stands
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("closed_at", DateTime),
    CheckConstraint("status IN ('new', 'contacted', 'resolved', 'dismissed')", name="ck_alerts_status"),
    Index("ix_alerts_owner_status", "owner", "status"),
    Index("ix_alerts_customer", "customer_id"),
    Index("ix_alerts_due", "due_date", "alert_id"),  # the worklist, most overdue first
    Index("ux_alerts_standing", "customer_id", "kind", unique=True,
          sqlite_where=text("cleared_run IS NULL"), postgresql_where=text("cleared_run IS NULL")),
)

# Every status change of an alert, the first (NULL -> new) included. ``during_run`` is the run that
# was current (or, for the refresh's own changes, running) when the change was made.
alert_history = Table(
    "alert_history",
    metadata,
    Column("history_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger().with_variant(Integer, "sqlite"), ForeignKey("alerts.alert_id"), nullable=False),
    Column("changed_at", DateTime, nullable=False),
    Column("changed_by", String(64), nullable=False),  # a username, or "refresh"
    Column("from_status", String(10)),
    Column("to_status", String(10), nullable=False),
    Column("note", Text),
    Column("during_run", Integer),
    Index("ix_alert_history_alert", "alert_id"),
    Index("ix_alert_history_run", "during_run", "to_status"),
)

# --- Campaigns (issue 13) ---
# A campaign is planned once (``python -m analytics campaign create`` or the Campaigns page) and
# kept across refreshes: ``campaigns`` holds its frozen definition, ``campaign_members`` who was
# eligible and their arm. No column is called ``run_id``: these rows belong to no refresh run and
# are never pruned with one (``source_run_id`` names the run the audience was drawn from).
campaigns = Table(
    "campaigns",
    metadata,
    Column("campaign_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("definition", Text, nullable=False),  # JSON: filters, tags, product, branch, control share
    Column("product_category", String(30)),  # NULL: no product (outcomes from imported responses only)
    Column("message", Text),  # the treatment, by default the segment playbook's
    Column("source_run_id", Integer, nullable=False),  # the refresh run the audience was drawn from
    Column("owner", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("control_share", Float, nullable=False),
    Column("seed", BigInteger, nullable=False),  # the random assignment's seed, to re-derive the arms
    Column("eligible", Integer, nullable=False),
    Column("excluded", Text, nullable=False),  # JSON {reason: customers}
    Column("expected_conversions", Float),  # treatment arm; NULL without a product
    Column("expected_margin", Float),  # yearly, CNY, treatment arm; NULL without a product
)

campaign_members = Table(
    "campaign_members",
    metadata,
    Column("campaign_id", Integer, ForeignKey("campaigns.campaign_id"), primary_key=True),
    Column("customer_id", String(20), primary_key=True),  # no foreign key: the demo rebuilds customers
    Column("arm", String(10), nullable=False),
    Column("propensity", Float),  # P(acquires the category within the horizon) at creation
    Column("value_if_converted", Float),  # yearly margin of one conversion, CNY
    Column("expected_value", Float),  # propensity * value_if_converted
    Column("value_tier", String(10)),  # frozen at creation, for the uplift by segment
    Column("rfm_segment", String(30)),
    CheckConstraint("arm IN ('treatment', 'control')", name="ck_campaign_members_arm"),
    Index("ix_campaign_members_customer", "customer_id"),
)

# Responses from the bank's execution system (``load FILE --table campaign_responses``). A row
# naming an unknown campaign or customer is rejected to ``load_rejects`` by the foreign keys.
campaign_responses = Table(
    "campaign_responses",
    metadata,
    Column("campaign_id", Integer, ForeignKey("campaigns.campaign_id"), primary_key=True),
    Column("customer_id", String(20), ForeignKey("customers.customer_id"), primary_key=True),
    Column("responded_at", DateTime, nullable=False),
    Column("outcome", String(20), nullable=False),
    CheckConstraint("outcome IN ('converted', 'declined', 'no_response')", name="ck_campaign_responses_outcome"),
)

# Targets for the KPI wall's monthly series (``load FILE --table kpi_targets``; the demo's are in
# data/kpi_targets.csv). ``period`` is a month (``2026-09``) or a year (``2026``); ``branch_id`` is a
# branch, or ``ALL`` for the bank. A row with an unknown KPI, a bad period, a negative target or an
# unknown branch is rejected to ``load_rejects`` (analytics.targets.check_rows).
kpi_targets = Table(
    "kpi_targets",
    metadata,
    Column("kpi", String(20), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("branch_id", String(16), primary_key=True),
    Column("target", Money, nullable=False),
    CheckConstraint("kpi IN ('customers', 'active', 'new', 'churned', 'aum', 'deposits', 'loans')",
                    name="ck_kpi_targets_kpi"),
    CheckConstraint("target >= 0", name="ck_kpi_targets_target"),
)

# Written by the refresh's "campaigns" stage: the members who acquired their campaign's product
# category within CROSS_SELL_HORIZON_MONTHS of its start (both arms alike), one set per run.
campaign_outcomes = Table(
    "campaign_outcomes",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("campaign_id", Integer, primary_key=True),
    Column("customer_id", String(20), primary_key=True),
    Column("converted_on", Date, nullable=False),
)

CAMPAIGN_TABLES = ("campaigns", "campaign_members", "campaign_responses")

APP_TABLES = (
    "refresh_runs", "current_run", "run_metrics", "load_batches", "load_rejects",
    "users", "user_sessions", "user_scopes", "audit_log", "export_manifests", "export_manifest_customers",
    "alerts", "alert_history",
    "approval_requests",
)

__all__ = [
    "ADDED_COLUMNS", "ADDED_INDEXES",
    "APP_TABLES", "CREDIT_GRADES", "approval_requests", "CUSTOMER_STATUSES", "RISK_LEVELS", "RISK_TOLERANCES",
    "RUN_STATUSES", "STORE_TABLES", "audit_log", "branches", "consents", "contacts", "export_manifest_customers",
    "export_manifests", "user_scopes",
    "current_run", "customer_monthly", "customers", "holdings", "load_batches", "load_rejects",
    "metadata", "products", "refresh_runs", "run_metrics", "user_sessions", "users",
]


# Written by the refresh's "customer_features" stage (analytics/features_stage.py): the frame of
# analytics.features.customer_features at every cut-off a later stage reads, built once per run and
# read back by segments, cross-sell and churn (analytics.features.read_features). One
# customer_feature_sets row per run and cut-off names the set and its product columns; the
# customer_features rows hold the fixed columns (FEATURE_COLUMNS, tests keep the two in step) and the
# customer's status; the per-category holding counts (products_<category>, one per category of the
# products table at run time) are long rows in customer_feature_products, only those above zero.
FEATURE_CATEGORICAL_COLUMNS = ("gender", "branch_id", "customer_type", "income_band", "onboarding_channel",
                               "risk_tolerance", "credit_grade")
FEATURE_NUMERIC_COLUMNS = (
    "age", "tenure_months", "risk_assessment_age_days", "days_to_id_expiry",
    "aum_latest", "deposit_balance_latest", "loan_balance_latest", "aum_avg_3m", "aum_avg_12m",
    "aum_change_3m", "aum_change_6m", "aum_change_12m", "aum_change_pct_3m", "aum_change_pct_6m",
    "aum_change_pct_12m", "aum_trend", "deposit_change_6m", "loan_change_6m",
    "txn_count_3m", "txn_count_12m", "txn_amount_3m", "txn_amount_12m", "txn_count_trend",
    "digital_logins_3m", "digital_logins_12m", "digital_logins_trend", "active_months_12m",
    "months_since_last_txn",
    "open_products", "open_asset_products", "open_liability_products", "open_product_categories",
    "complaints_3m", "complaints_6m", "complaints_12m", "unresolved_complaints_6m", "contacts_6m",
    "marketing_contacts_6m",
)

customer_feature_sets = Table(
    "customer_feature_sets",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("cutoff", Date, primary_key=True),  # the first day of the month the features describe
    Column("customers", Integer, nullable=False),
    Column("product_columns", JSON, nullable=False),  # ["products_deposit", ...], sorted
)

customer_features = Table(
    "customer_features",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("cutoff", Date, primary_key=True),
    Column("customer_id", String(20), primary_key=True),
    *(Column(name, Text) for name in FEATURE_CATEGORICAL_COLUMNS),
    Column("marketing_consent", Boolean, nullable=False),
    *(Column(name, Float) for name in FEATURE_NUMERIC_COLUMNS),
    Column("status", String(10)),  # the customer's status now (the same at every cut-off)
)

customer_feature_products = Table(
    "customer_feature_products",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("cutoff", Date, primary_key=True),
    Column("customer_id", String(20), primary_key=True),
    Column("product_column", String(80), primary_key=True),  # products_<category>
    Column("open_count", Float, nullable=False),
)

# --- Segments' risk and demographic filters (issue 14) ---
# Written by the refresh's "aggregates" stage with segment_cube: the same counts and totals, split
# further by ONE customer attribute at a time (filter_key: risk_tolerance, credit_grade,
# risk_level_held, gender, income_band, occupation or customer_type; filter_value: its value,
# "unknown" when missing, "none" for no open product held). Summing a filter_key's rows over every
# filter_value gives segment_cube back. Only non-empty cells are stored
# (analytics/segment_explorer.py::attribute_rows says why one attribute at a time).
segment_cube_filters = Table(
    "segment_cube_filters",
    metadata,
    Column("run_id", Integer, ForeignKey("refresh_runs.run_id"), primary_key=True),
    Column("filter_key", String(20), primary_key=True),
    Column("filter_value", String(50), primary_key=True),
    Column("dimension", String(30), primary_key=True),
    Column("value", String(100), primary_key=True),
    Column("branch_id", String(16), primary_key=True),
    Column("age_band", String(10), primary_key=True),
    Column("value_tier", String(10), primary_key=True),
    Column("customers", BigInteger, nullable=False),
    Column("aum_total", Float, nullable=False),
    Column("annual_margin_total", Float, nullable=False),
    Column("clv_margin_1y_total", Float, nullable=False),
    Column("clv_margin_3y_total", Float, nullable=False),
    Column("clv_margin_5y_total", Float, nullable=False),
)
