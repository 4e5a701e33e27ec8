"""The campaign planner on a hand-made store: exclusions by reason, expected outcome, the seeded
control group, refused definitions, conversions measured by the refresh, imported responses."""

import json
from datetime import date

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from analytics import access, campaigns, loader
from analytics import segment_explorer as sx
from analytics.campaigns import CampaignError, Definition
from analytics.refresh import run_refresh
from analytics.runs import current_run_id
from analytics.schema import campaign_members, campaign_outcomes, campaign_responses, holdings, load_rejects
from analytics.schema import campaigns as campaigns_table
from analytics.tags import TagRuleError
from tests.analytics import campaign_rows

MARKETING = access.Viewer("m", ("marketing",), purpose="marketing")
EXECUTIVE = access.Viewer("e", ("executive",))


@pytest.fixture
def store(engine):
    campaign_rows.fill(engine)
    run_refresh(engine)
    return engine


def test_exclusions_are_counted_by_their_first_reason(store):
    planned = campaigns.plan(store, Definition("Funds", product="fund"), viewer=MARKETING)
    expected = dict.fromkeys(campaigns.EXCLUSION_REASONS, 0)
    for reason in campaign_rows.REASONS.values():
        if reason:
            expected[reason] += 1
    assert planned.as_of == campaign_rows.AS_OF
    assert planned.audience == 11
    assert planned.excluded == expected
    assert sorted(planned.eligible["customer_id"]) == campaign_rows.ELIGIBLE


def test_without_a_product_only_the_contact_reasons_apply(store):
    planned = campaigns.plan(store, Definition("Care"), viewer=MARKETING)
    # C07 (holds the fund), C08 (expired) and C09 (unsuitable) are eligible for a message without a product
    assert sorted(planned.eligible["customer_id"]) == sorted(campaign_rows.ELIGIBLE + ["C07", "C08", "C09"])
    assert planned.excluded["suitability"] == planned.excluded["holds_category"] == 0
    assert planned.expected_conversions is None


def test_filters_and_scope_narrow_the_audience(store):
    by_branch = campaigns.plan(store, Definition("B2", sx.Filters(branches=("BR002",)), product="fund"),
                               viewer=MARKETING)
    assert by_branch.audience == 1 and list(by_branch.eligible["customer_id"]) == ["C10"]
    rm = access.Viewer("rm", ("relationship_manager",), scope=access.Scope(portfolios={"RM02"}))
    scoped = campaigns.plan(store, Definition("RM", product="fund"), viewer=rm)
    assert scoped.audience == 2 and sorted(scoped.eligible["customer_id"]) == ["C06", "C10"]


def test_expected_value_of_a_conversion_is_the_expected_balance_times_the_margin_over_the_horizon(store):
    planned = campaigns.plan(store, Definition("Funds", product="fund", control_share=0.0), viewer=MARKETING)
    # the fund's only holder holds 20,000; margin 1 %: 200 CNY a year per conversion
    assert planned.eligible["value_if_converted"].tolist() == pytest.approx([200.0] * 3)
    p = planned.eligible["propensity"]
    assert ((p >= 0) & (p <= 1)).all()
    assert planned.expected_conversions == pytest.approx(p.sum())
    # a member's expected value is on the recommendations' basis: the margin over the 3-month horizon
    assert planned.eligible["expected_value"].tolist() == pytest.approx((p * 200.0 * 3 / 12).tolist())
    assert planned.expected_margin == pytest.approx(200.0 * p.sum() * 3 / 12)


def test_create_stores_definition_members_and_a_rederivable_assignment(store):
    made = campaigns.create_campaign(store, Definition("Funds Q4", product="fund", control_share=0.34),
                                     viewer=MARKETING, owner="m", seed=12345)
    assert (made["eligible"], made["treatment"], made["control"]) == (3, 2, 1)  # round(0.34 * 3) = 1
    with store.connect() as conn:
        row = conn.execute(select(campaigns_table)).mappings().one()
        members = pd.read_sql(select(campaign_members), conn)
    assert row["seed"] == 12345 and row["owner"] == "m" and row["product_category"] == "fund"
    assert row["source_run_id"] == current_run_id(store)
    assert json.loads(row["definition"])["control_share"] == 0.34
    assert json.loads(row["excluded"])["consent"] == 1
    arms = campaigns.assign_arms(campaign_rows.ELIGIBLE, 0.34, 12345)
    assert dict(zip(members["customer_id"], members["arm"], strict=True)) == arms.to_dict()
    treated = members["arm"] == "treatment"
    assert row["expected_conversions"] == pytest.approx(members.loc[treated, "propensity"].sum())
    assert row["message"]  # the playbook's treatment


@pytest.mark.parametrize(("definition", "message"), [
    (Definition("X", product="nothing"), "unknown product category 'nothing'"),
    (Definition("X", control_share=0.7), "control share must be from 0 to 0.5"),
    (Definition("X", control_share=-0.1), "control share must be from 0 to 0.5"),
    (Definition("   "), "a campaign needs a name"),
    (Definition("X", sx.Filters(branches=("NOPE",))), "empty audience"),
])
def test_bad_definitions_are_refused_in_one_line_and_store_nothing(store, definition, message):
    with pytest.raises(CampaignError, match=message) as caught:
        campaigns.create_campaign(store, definition, viewer=MARKETING, owner="m")
    assert "\n" not in str(caught.value)
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(campaigns_table)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(campaign_members)).scalar() == 0


def test_duplicate_names_and_bad_tags_are_refused(store):
    campaigns.create_campaign(store, Definition("Funds", product="fund"), viewer=MARKETING, owner="m")
    with pytest.raises(CampaignError, match="already exists"):
        campaigns.create_campaign(store, Definition("  FUNDS ", product="fund"), viewer=MARKETING, owner="m")
    with pytest.raises(TagRuleError):
        campaigns.create_campaign(store, Definition("Other", tags="no_such_tag"), viewer=MARKETING, owner="m")


def test_an_aggregate_only_role_cannot_plan(store):
    with pytest.raises(access.AccessDenied):
        campaigns.plan(store, Definition("X"), viewer=EXECUTIVE)
    with pytest.raises(access.AccessDenied):
        campaigns.plan_summary(store, Definition("X"), viewer=EXECUTIVE)


def assert_same_summary(engine, definition, viewer, run_id=None):
    """:func:`campaigns.plan_summary` (counted in the database) says what :func:`campaigns.plan` says."""
    rows = campaigns.plan(engine, definition, viewer=viewer, run_id=run_id).summary()
    counted = campaigns.plan_summary(engine, definition, viewer=viewer, run_id=run_id)
    for key in ("expected_conversions", "expected_margin"):
        if rows[key] is None:
            assert counted[key] is None, key
        else:
            assert counted[key] == pytest.approx(rows[key], rel=1e-9, abs=1e-9), key
    assert {k: v for k, v in counted.items() if not k.startswith("expected")} == \
        {k: v for k, v in rows.items() if not k.startswith("expected")}
    return counted


RM02 = access.Viewer("rm", ("relationship_manager",), scope=access.Scope(portfolios={"RM02"}))


@pytest.mark.parametrize(("definition", "viewer"), [
    (Definition("Funds", product="fund"), MARKETING),
    (Definition("Care"), MARKETING),
    (Definition("Deposits", product="demand_deposit", control_share=0.0), MARKETING),
    (Definition("B2", sx.Filters(branches=("BR002",)), product="fund"), MARKETING),
    (Definition("RM", product="fund", control_share=0.5), RM02),
])
def test_the_counted_summary_is_the_plans(store, definition, viewer):
    counted = assert_same_summary(store, definition, viewer)
    if definition.name == "Funds":  # the hand-counted case
        assert counted["audience"] == 11 and counted["eligible"] == len(campaign_rows.ELIGIBLE)


@pytest.mark.parametrize(("days_before", "recent"), [(365, True), (366, False), (-3, True)])
def test_the_counted_summary_dates_an_assessment_as_the_plan_does(store, days_before, recent):
    """An assessment exactly RISK_ASSESSMENT_VALID_DAYS (365) before the as-of day is still valid; a day
    earlier it has expired; a later one is valid: in the database as in Python."""
    from datetime import timedelta

    from analytics.schema import customers

    with store.begin() as conn:
        conn.execute(update(customers).where(customers.c.customer_id == "C08")
                     .values(risk_assessed_at=campaign_rows.AS_OF - timedelta(days=days_before)))
    counted = assert_same_summary(store, Definition("Funds", product="fund"), MARKETING)
    assert counted["excluded"]["expired_assessment"] == (0 if recent else 1)


def test_the_treatment_arm_of_a_recent_campaign_is_in_cooldown(store):
    campaigns.create_campaign(store, Definition("First", product="fund", control_share=0.0), viewer=MARKETING,
                              owner="m")
    second = campaigns.plan(store, Definition("Second", product="fund"), viewer=MARKETING)
    assert second.excluded["cooldown"] == 1 + 3 and second.eligible.empty


def test_refresh_measures_conversions_within_the_horizon_in_both_arms(store):
    made = campaigns.create_campaign(store, Definition("Funds", product="fund", control_share=0.34),
                                     viewer=MARKETING, owner="m", seed=7)
    with store.begin() as conn:
        conn.execute(update(campaigns_table).values(starts_on=date(2026, 7, 1)))
        # C01 opens the fund within 3 months of the start; C06 on the window's end day (too late)
        conn.execute(holdings.insert(), [
            {"holding_id": 200, "customer_id": "C01", "product_id": "P02", "opened_on": date(2026, 8, 15),
             "balance": 0.0},
            {"holding_id": 201, "customer_id": "C06", "product_id": "P02", "opened_on": date(2026, 10, 1),
             "balance": 0.0}])
    run_id = run_refresh(store)
    with store.connect() as conn:
        rows = conn.execute(select(campaign_outcomes.c.customer_id, campaign_outcomes.c.converted_on)
                            .where(campaign_outcomes.c.run_id == run_id)).all()
    assert [(c, str(d)[:10]) for c, d in rows] == [("C01", "2026-08-15")]
    result = campaigns.campaign_results(store, made["campaign_id"], viewer=MARKETING)
    arms = campaigns.assign_arms(campaign_rows.ELIGIBLE, 0.34, 7)
    c01 = arms["C01"]
    assert result["treatment"] == 2 and result["control"] == 1
    # MIN_CELL_CUSTOMERS (5) > the arms here: the rates are withheld
    assert result["small_arms_suppressed"] and result["uplift_pp"] is None
    big = campaigns.campaign_results(store, made["campaign_id"], viewer=MARKETING, run_id=run_id)
    assert big["treatment"] == 2
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIN_CELL_CUSTOMERS", "1")
        shown = campaigns.campaign_results(store, made["campaign_id"], viewer=MARKETING)
    t_conv, c_conv = (1, 0) if c01 == "treatment" else (0, 1)
    assert (shown["treatment_converted"], shown["control_converted"]) == (t_conv, c_conv)
    assert shown["uplift_pp"] == pytest.approx(100 * (t_conv / 2 - c_conv / 1))
    assert shown["incremental_margin"] == pytest.approx(shown["uplift_pp"] / 100 * 2 * 200.0)


def test_responses_load_and_unknown_campaigns_or_customers_go_to_rejects(store, tmp_path):
    made = campaigns.create_campaign(store, Definition("Funds", product="fund", control_share=0.0),
                                     viewer=MARKETING, owner="m")
    cid = made["campaign_id"]
    path = tmp_path / "responses.csv"
    path.write_text("campaign_id,customer_id,responded_at,outcome\n"
                    f"{cid},C10,2026-11-02 10:00,converted\n"
                    f"{cid + 99},C01,2026-11-02 10:00,converted\n"
                    f"{cid},C999,2026-11-02 10:00,declined\n"
                    f"{cid},C01,2026-11-02 10:00,maybe\n", encoding="utf-8")
    report = loader.load_files(store, [path], "campaign_responses")
    with store.connect() as conn:
        loaded = conn.execute(select(campaign_responses.c.customer_id, campaign_responses.c.outcome)).all()
        reasons = conn.execute(select(load_rejects.c.line_number, load_rejects.c.reason)
                               .order_by(load_rejects.c.line_number)).all()
    assert loaded == [("C10", "converted")]
    assert [line for line, _ in reasons] == [3, 4, 5]
    assert "campaign_id not in campaigns" in reasons[0][1] and "customer_id not in customers" in reasons[1][1]
    assert "outcome" in reasons[2][1]
    assert report is not None
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIN_CELL_CUSTOMERS", "1")
        result = campaigns.campaign_results(store, cid, viewer=MARKETING)
    assert result["treatment_converted"] == 1 and result["treatment"] == 3


def test_treatment_export_is_keyed_by_customer_masked_and_consent_checked_now(store):
    made = campaigns.create_campaign(store, Definition("Funds", product="fund", control_share=0.0),
                                     viewer=MARKETING, owner="m")
    from analytics.consent import withdraw

    withdraw(store, "C06", "marketing")
    frame, left_out = campaigns.treatment_export(store, made["campaign_id"], viewer=MARKETING)
    assert list(frame["customer_id"]) == ["C01", "C10"] and left_out == {"consent": 1}
    assert not set(frame.columns) & set(access.PERSONAL_FIELDS)
    with pytest.raises(access.AccessDenied):
        campaigns.treatment_export(store, made["campaign_id"], viewer=EXECUTIVE)


def test_list_hides_small_counts_from_aggregate_only_roles(store):
    campaigns.create_campaign(store, Definition("Funds", product="fund"), viewer=MARKETING, owner="m")
    shown = campaigns.list_campaigns(store, viewer=MARKETING)
    assert shown.loc[0, "members"] == 3
    hidden = campaigns.list_campaigns(store, viewer=EXECUTIVE)
    assert pd.isna(hidden.loc[0, "members"]) and pd.isna(hidden.loc[0, "treatment"])


@given(st.lists(st.text("ABC0123456789", min_size=1, max_size=6), unique=True, max_size=60),
       st.floats(0, 0.5), st.integers(0, 2**32 - 1))
def test_assignment_is_exact_deterministic_and_order_free(ids, share, seed):
    arms = campaigns.assign_arms(ids, share, seed)
    assert int((arms == "control").sum()) == campaigns.control_size(len(ids), share)
    assert arms.equals(campaigns.assign_arms(list(reversed(ids)), share, seed))


def test_segment_uplift_suppresses_small_cells():
    members = pd.DataFrame({"arm": ["treatment"] * 6 + ["control"] * 6 + ["treatment"] * 2,
                            "converted": [1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1],
                            "value_tier": ["mass"] * 12 + ["wealth"] * 2})
    out = campaigns.segment_uplift(members, "value_tier", 5).set_index("value")
    assert out.loc["mass", "uplift_pp"] == pytest.approx(100 * (2 / 6 - 1 / 6))
    assert out.loc["wealth", "suppressed"] and pd.isna(out.loc["wealth", "treatment"])


def test_playbook_message_follows_the_most_common_segment():
    message = campaigns.default_message(pd.Series(["At risk", "At risk", "Loyal"]), pd.Series(["mass"] * 3))
    assert message == campaigns.playbooks()["rfm_segment"]["At risk"]["en"]
    assert campaigns.default_message(pd.Series([None]), pd.Series(["wealth"]), "zh") == \
        campaigns.playbooks()["value_tier"]["wealth"]["zh"]


def test_cli_creates_lists_and_refuses_bad_input_in_one_line(store, capsys):
    from analytics import audit, cli

    url = store.url.render_as_string(hide_password=False)
    assert cli.main(["campaign", "create", "--db", url, "--name", "CLI funds", "--product", "fund",
                     "--control-share", "0.34", "--seed", "12345"]) == 0
    out = capsys.readouterr().out
    assert "3 eligible of 11 selected (2 treatment, 1 control, seed 12345)" in out
    assert "consent 1" in out and "suitability 1" in out
    for bad, message in [(["--name", "CLI funds"], "already exists"),
                         (["--name", "Other", "--control-share", "0.7"], "control share must be from 0 to 0.5"),
                         (["--name", "Other", "--product", "gold_bars"], "unknown product category"),
                         (["--name", "Other", "--branch", "NOPE"], "empty audience"),
                         ([], "needs --name")]:
        assert cli.main(["campaign", "create", "--db", url, *bad]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert cli.main(["campaign", "list", "--db", url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["campaign_name"], c["treatment"], c["control"]) for c in listed] == [("CLI funds", 2, 1)]
    entries = audit.query(store, event=["cli_command"])
    assert any('"campaign"' in str(t) for t in entries["target"])
