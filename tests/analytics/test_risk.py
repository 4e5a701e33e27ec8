"""Risk tiers: suitability and assessment rules as tables, the robust drop threshold by hand, the
refresh stage on a hand-built store (both dialects) and on the demo store against its documented rates."""

from datetime import date

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from analytics import demo
from analytics.access import AccessDenied, Scope, Viewer
from analytics.refresh import run_refresh
from analytics.risk import (
    MISSING,
    RiskError,
    assessment_status,
    balance_drops,
    is_mismatch,
    read_balance_drops,
    read_branch_summary,
    read_mismatches,
    risk_crosstab,
    risk_value_matrix,
)
from analytics.runs import current_run_id, get_run_metrics
from analytics.schema import CREDIT_GRADES, RISK_TOLERANCES, holdings, products
from analytics.segmentation import RFM_SEGMENTS
from analytics.store import bulk_insert, read_frame
from analytics.table_formats import stored_text
from tests.analytics import store_rows

RISK = Viewer("tester", ("risk",))  # bank-wide, exact balances


@pytest.mark.parametrize("level, tolerance, expected", [
    ("R1", "C1", False),
    ("R2", "C1", True),
    ("R3", "C3", False),
    ("R4", "C3", True),
    ("R5", "C4", True),
    ("R5", "C5", False),
    ("R4", None, False),  # no tolerance: an assessment missing, not a mismatch
    ("R4", "c2", True),  # case and spaces are forgiven
    ("R4", " C2 ", True),
    ("R9", "C1", False),  # malformed codes never count
])
def test_mismatch_rule(level, tolerance, expected):
    assert is_mismatch([level], [tolerance]).tolist() == [expected]


@pytest.mark.parametrize("tolerance, assessed, expired, missing", [
    ("C3", "2025-10-31", False, False),  # exactly 365 days before 2026-10-31: still valid
    ("C3", "2025-10-30", True, False),  # 366 days
    ("C3", None, True, True),
    (None, "2026-06-01", True, True),
    ("C2", "2026-11-15", False, False),  # after the reference day: not this rule's business
])
def test_assessment_rule(tolerance, assessed, expired, missing):
    got_expired, got_missing = assessment_status(pd.Series([tolerance], dtype=object), pd.Series([assessed], dtype=object),
                                                 date(2026, 10, 31), 365)
    assert (got_expired.tolist(), got_missing.tolist()) == ([expired], [missing])


def _drop_case():
    # 40 mass customers at 20,000 CNY. Changes: one -50 %, nine -2 %, twenty 0 %, ten +2 %.
    # Median 0; absolute deviations 0.5, 0.02 x 19, 0 x 20: MAD = (0 + 0.02) / 2 = 0.01.
    # Threshold = 0 - 3.5 * 1.4826 * 0.01 = -0.0518910.
    changes = [-0.5] + [-0.02] * 9 + [0.0] * 20 + [0.02] * 10
    index = [f"m{i:02d}" for i in range(40)]
    before = pd.Series(20_000.0, index=index)
    now = before * (1 + np.array(changes))
    return before, now


def test_drop_threshold_worked_out_by_hand():
    before, now = _drop_case()
    out, tiers = balance_drops(before, now, z=3.5, min_pct=0.3, min_aum=10_000)
    assert tiers.loc["mass", "median"] == pytest.approx(0.0)
    assert tiers.loc["mass", "mad"] == pytest.approx(0.01)
    assert tiers.loc["mass", "threshold"] == pytest.approx(-3.5 * 1.4826 * 0.01)
    assert not tiers.loc["mass", "pooled"] and tiers.loc["affluent", "pooled"]
    assert out["balance_drop"].sum() == 1 and out.loc["m00", "balance_drop"]
    # stored as a code and parameters, said in the reader's language
    assert out.loc["m00", "reason"] == ('balance_drop {"before": 20000, "drop": "50%", "mad": "1.0%", '
                                        '"median": "+0.0%", "now": 10000, "threshold": "-5.2%", "tier": "mass"}')
    assert stored_text("balance_drop_reason", out.loc["m00", "reason"], "en") == (
        "AUM fell 50% month on month, from CNY 20,000 to CNY 10,000; Mass tier threshold -5.2% "
        "(median +0.0%, MAD 1.0%)")
    assert stored_text("balance_drop_reason", out.loc["m00", "reason"], "zh") == (
        "资产规模环比下降 50%，从 ¥2.00万 降至 ¥1.00万；大众客户阈值 -5.2%（中位数 +0.0%，中位绝对偏差 1.0%）")
    assert pd.isna(out.loc["m01", "reason"]) and out.loc["m01", "change"] == pytest.approx(-0.02)
    # The same drop short of the minimum fall is not flagged; a lower z flags the -2 % too (min 0).
    assert not balance_drops(before, now, z=3.5, min_pct=0.6)[0]["balance_drop"].any()
    assert balance_drops(before, now, z=1.0, min_pct=0.0)[0]["balance_drop"].sum() == 10


def test_drop_rules_small_balances_pooled_tiers_and_missing_months():
    before, now = _drop_case()
    extra_before = pd.Series({"small": 5_000.0, "gone": 30_000.0, "rich": 100_000.0})
    extra_now = pd.Series({"small": 100.0, "rich": 40_000.0})  # "gone" has no row this month
    out, tiers = balance_drops(pd.concat([before, extra_before]), pd.concat([now, extra_now]).reindex(
        list(before.index) + ["small", "gone", "rich"]), z=3.5, min_pct=0.3, min_aum=10_000)
    assert not out.loc["small", "checked"] and np.isnan(out.loc["small", "change"])
    assert out.loc["gone", "change"] == -1.0 and out.loc["gone", "balance_drop"]
    # "rich" is the only affluent customer: too few for its own threshold, it takes the pooled one.
    assert out.loc["rich", "value_tier"] == "affluent" and tiers.loc["affluent", "pooled"]
    assert out.loc["rich", "threshold"] == pytest.approx(tiers.loc["affluent", "threshold"])
    assert out.loc["rich", "balance_drop"] and out.loc["rich", "reason"].startswith("balance_drop_pooled ")
    assert "all tiers pooled" in stored_text("balance_drop_reason", out.loc["rich", "reason"], "en")
    assert "各层级合并计算" in stored_text("balance_drop_reason", out.loc["rich", "reason"], "zh")


# ---------------------------------------------------------------------------------------------
# The stage on a hand-built store (SQLite and PostgreSQL)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def risk_store(engine):
    store_rows.fill(engine)
    bulk_insert(engine, products, pd.DataFrame([{"product_id": "P03", "name": "偏股混合基金", "category": "fund",
                                                 "risk_level": "R4", "annual_margin": 0.014,
                                                 "balance_side": "asset"}]))
    # C1 (tolerance C3) holds an R4 fund: a mismatch of 5,000 CNY.
    bulk_insert(engine, holdings, pd.DataFrame([{"holding_id": 10, "customer_id": "C000000001", "product_id": "P03",
                                                 "account_number": "0099", "opened_on": date(2026, 2, 1),
                                                 "closed_on": None, "balance": 5000.0}]))
    with engine.begin() as conn:
        conn.execute(text("UPDATE customers SET risk_assessed_at = :d WHERE customer_id = 'C000000001'"),
                     {"d": date(2026, 1, 1)})
        conn.execute(text("UPDATE customers SET risk_assessed_at = :d WHERE customer_id = 'C000000002'"),
                     {"d": date(2025, 10, 30)})  # 366 days before 2026-10-31: expired
    run_refresh(engine)
    return engine


def test_stage_on_a_hand_built_store(risk_store):
    engine = risk_store
    run = current_run_id(engine)
    flags = read_frame(engine, "SELECT * FROM risk_flags WHERE run_id = :r ORDER BY customer_id",
                       {"r": run}).set_index("customer_id")
    assert flags.index.tolist() == ["C000000001", "C000000002", "C000000003"]
    assert flags["suitability_mismatch"].astype(bool).tolist() == [True, False, False]
    assert flags.loc["C000000001", "mismatch_balance"] == 5000.0
    assert flags["assessment_expired"].astype(bool).tolist() == [False, True, True]
    assert flags["assessment_missing"].astype(bool).tolist() == [False, False, True]
    assert not flags["balance_drop"].astype(bool).any()  # balances under BALANCE_DROP_MIN_AUM
    mismatches = read_mismatches(engine, viewer=RISK)
    assert mismatches[["holding_id", "customer_id", "branch_id", "product_id", "risk_level", "risk_tolerance",
                       "balance"]].values.tolist() == [[10, "C000000001", "BR001", "P03", "R4", "C3", 5000.0]]
    summary = read_branch_summary(engine, viewer=RISK).set_index("branch_id")
    assert summary.loc["BR001", "customers"] == 2 and summary.loc["BR002", "customers"] == 1
    assert summary.loc["BR001", "asset_balance_r4_r5"] == 5000.0
    assert summary.loc["BR001", "r4_r5_share"] == pytest.approx(5000.0 / 6000.5)
    assert np.isnan(summary.loc["BR002", "r4_r5_share"])  # no open asset balance
    metrics = get_run_metrics(engine, run)
    assert metrics["risk.r4_r5_holders"] == 1 and metrics["risk.r4_r5_mismatch_rate"] == 1.0
    assert metrics["risk.assessments_expired"] == 2 and metrics["risk.assessments_missing"] == 1
    table = risk_crosstab(engine, None, "branch_id", viewer=RISK)
    assert table.loc["BR001"].to_dict() == {"C1": 0, "C3": 1, MISSING: 1}
    assert list(table.columns) == ["C1", "C3", MISSING]
    assert table.to_numpy().tolist() == [[0, 1, 1], [1, 0, 0]]
    aum = risk_crosstab(engine, run, "branch_id", "value_tier", value="aum", viewer=RISK)
    assert aum.loc["BR001", "mass"] == pytest.approx(6000.5)


# ---------------------------------------------------------------------------------------------
# The demo store
# ---------------------------------------------------------------------------------------------


def test_demo_suitability_mismatch_rate_is_the_documented_two_percent(demo_engine):
    metrics = get_run_metrics(demo_engine, current_run_id(demo_engine))
    holders = int(metrics["risk.r4_r5_holders"])
    mismatched = int(metrics["risk.r4_r5_mismatch_customers"])
    assert holders > 30
    # The demo lowers the tolerance of round(2 % x R4/R5 holders) customers (one chunk at 3,000).
    assert mismatched == round(demo.BEHAVIOUR_RATES["suitability_mismatch"] * holders)
    assert abs(metrics["risk.r4_r5_mismatch_rate"] - 0.02) <= 0.5 / holders + 1e-12
    rows = read_mismatches(demo_engine, viewer=RISK)
    assert len(rows) == metrics["risk.mismatch_holdings"] > 0
    assert (rows["risk_level"].str[1].astype(int) > rows["risk_tolerance"].str[1].astype(int)).all()
    assert rows["branch_id"].notna().all() and (rows["balance"] >= 0).all()


def test_demo_expired_assessments_match_the_injected_rate(demo_engine):
    people = read_frame(demo_engine, "SELECT customer_id, risk_tolerance, risk_assessed_at, status FROM customers")
    as_of = date.fromisoformat(get_run_metrics(demo_engine, current_run_id(demo_engine))["risk.as_of"])
    expired, _ = assessment_status(people["risk_tolerance"], people["risk_assessed_at"], as_of, 365)
    assert expired.sum() == demo.expected_defect_counts(3000)["risk_assessment_over_a_year_old"] == 300
    flags = read_frame(demo_engine, "SELECT customer_id, assessment_expired FROM risk_flags "
                                    "WHERE run_id = (SELECT run_id FROM current_run)")
    open_people = people["status"] != "closed"
    assert len(flags) == open_people.sum()
    assert flags["assessment_expired"].astype(bool).sum() == expired[open_people.to_numpy()].sum()


def test_demo_balance_drops_find_declining_customers(demo_engine):
    drops = read_balance_drops(demo_engine, viewer=RISK)
    assert len(drops) > 0
    assert (drops["aum_change_pct"] <= -0.3).all() and drops["balance_drop_reason"].str.startswith("balance_drop").all()
    stages = read_frame(demo_engine, """
        SELECT f.balance_drop, s.lifecycle_stage FROM risk_flags f
        JOIN customer_segments s ON s.run_id = f.run_id AND s.customer_id = f.customer_id
        WHERE f.run_id = (SELECT run_id FROM current_run)""")
    declining = stages["lifecycle_stage"] == "declining"
    flagged = stages["balance_drop"].astype(bool)
    # Churners' balances fall for months before they leave: drops concentrate among them.
    assert declining[flagged].mean() > 5 * declining.mean()


@pytest.mark.parametrize("by", ["branch_id", "value_tier", "rfm_segment", "credit_grade"])
@pytest.mark.parametrize("of", ["risk_tolerance", "credit_grade"])
def test_demo_crosstabs_cover_every_customer(demo_engine, by, of):
    table = risk_crosstab(demo_engine, None, by, of, viewer=RISK)
    n = get_run_metrics(demo_engine, current_run_id(demo_engine))["risk.customers"]
    assert table.to_numpy().sum() == n
    order = RISK_TOLERANCES if of == "risk_tolerance" else CREDIT_GRADES
    assert list(table.columns) == [v for v in order if v in table.columns]
    if by == "rfm_segment":
        assert set(table.index) <= set(RFM_SEGMENTS)
    shares = risk_crosstab(demo_engine, None, by, of, normalize=True, viewer=RISK)
    assert np.allclose(shares.sum(axis=1), 1.0)


def test_demo_risk_value_matrix_and_branch_summary(demo_engine):
    matrix = risk_value_matrix(demo_engine, viewer=RISK)
    assert list(matrix.index) == list(RISK_TOLERANCES)
    assert list(matrix.columns)[0] == "mass"
    summary = read_branch_summary(demo_engine, viewer=RISK)
    flags = read_frame(demo_engine, "SELECT COUNT(*) AS n, SUM(CASE WHEN suitability_mismatch THEN 1 ELSE 0 END) AS m "
                                    "FROM risk_flags WHERE run_id = (SELECT run_id FROM current_run)")
    assert summary["customers"].sum() == flags["n"].iloc[0]
    assert summary["suitability_mismatch_customers"].sum() == flags["m"].iloc[0]
    assert summary["r4_r5_share"].dropna().between(0, 1).all()


@pytest.mark.parametrize("by, of, value", [("name", "risk_tolerance", "customers"),
                                           ("branch_id", "phone", "customers"),
                                           ("branch_id", "risk_tolerance", "balance; DROP TABLE risk_flags")])
def test_crosstab_dimensions_are_an_allow_list(demo_engine, by, of, value):
    with pytest.raises(RiskError):
        risk_crosstab(demo_engine, None, by, of, value=value, viewer=RISK)


# ---------------------------------------------------------------------------------------------
# Through the door: scope, masking, small cells
# ---------------------------------------------------------------------------------------------


def test_scoped_readers_see_only_their_customers(risk_store):
    engine = risk_store
    br2 = Viewer("r2", ("risk",), Scope(branches={"BR002"}))
    assert read_mismatches(engine, viewer=br2).empty  # the only mismatch is BR001's
    assert read_mismatches(engine, viewer=Viewer("r1", ("risk",), Scope(branches={"BR001"}))).shape[0] == 1
    summary = read_branch_summary(engine, viewer=br2)
    assert summary["branch_id"].tolist() == ["BR002"] and summary["customers"].tolist() == [1]
    assert risk_crosstab(engine, None, "branch_id", viewer=br2).to_numpy().sum() == 1
    nobody = Viewer("r0", ("risk",), Scope())
    assert read_mismatches(engine, viewer=nobody).empty
    assert risk_crosstab(engine, None, "branch_id", viewer=nobody).empty
    assert read_branch_summary(engine, viewer=nobody).empty


def test_an_aggregate_only_viewer_gets_no_rows_and_no_small_cells(risk_store):
    engine = risk_store
    executive = Viewer("e", ("executive",))
    with pytest.raises(AccessDenied):
        read_mismatches(engine, viewer=executive)
    with pytest.raises(AccessDenied):
        read_balance_drops(engine, viewer=executive)
    # Three customers in all: every cell is below MIN_CELL_CUSTOMERS (5), so nothing is shown.
    table = risk_crosstab(engine, None, "branch_id", viewer=executive)
    assert table.isna().to_numpy()[table.to_numpy() != 0].all() or table.isna().all().all()
    summary = read_branch_summary(engine, viewer=executive)
    assert summary["customers_suppressed"].all() and summary["customers"].isna().all()
    assert summary["suitability_mismatch_customers"].isna().all()


def test_a_marketing_viewer_would_see_bands_not_balances(risk_store):
    rows = read_mismatches(risk_store, viewer=Viewer("m", ("marketing",)))
    assert "balance" not in rows.columns and rows["balance_band"].tolist() == ["<10000"]
