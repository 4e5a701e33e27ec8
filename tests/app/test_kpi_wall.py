"""AppTest: the KPI wall for executive, admin and the display account; kiosk mode by URL parameter."""

import pytest

from analytics import users
from analytics.store import make_engine
from tests.app.conftest import PASSWORD, login, nav_pages, new_app


def _open(monkeypatch, url, role, kiosk=False):
    engine = make_engine(url)
    username = f"kpi_{role}"
    if users.get_user(engine, username) is None:
        users.add_user(engine, username, PASSWORD, [role])
    at = new_app(monkeypatch, url)
    if kiosk:
        at.query_params["kiosk"] = "1"
    login(at, username)
    if role != "display":
        at.switch_page("app_pages/kpi_wall.py").run()
    assert not at.exception
    return at


@pytest.mark.parametrize("role", ["executive", "admin", "display"])
def test_wall_shows_every_tile(monkeypatch, demo_store_url, role):
    at = _open(monkeypatch, demo_store_url, role)
    text = " ".join(m.value for m in at.markdown)
    for label in ("Customers with a balance", "Total AUM", "Predicted churn rate", "Data quality score",
                  "Cross-sell potential"):
        assert label in text
    from analytics import refresh

    # Every figure is present on the demo store (the churn tiles once the churn stage runs).
    blanks = text.count('kpi-value">—')
    assert blanks == (0 if "churn" in [s.name for s in refresh.STAGES] else 2)
    assert text.count("<polyline") >= 7  # a sparkline per monthly series (one run: no run-level trend yet)


def test_display_account_sees_the_wall_alone(monkeypatch, demo_store_url):
    at = _open(monkeypatch, demo_store_url, "display")
    assert nav_pages(at) == {"kpi_wall"}


def test_kiosk_mode_hides_the_chrome(monkeypatch, demo_store_url):
    at = _open(monkeypatch, demo_store_url, "executive", kiosk=True)
    css = " ".join(m.value for m in at.markdown)
    assert 'stSidebar"]' in css and "display: none" in css


@pytest.mark.parametrize("role, kiosk", [("display", True), ("executive", False)])
def test_the_display_account_gets_the_kiosk_view_without_asking(monkeypatch, demo_store_url, role, kiosk):
    at = _open(monkeypatch, demo_store_url, role)
    css = " ".join(m.value for m in at.markdown)
    assert ('stSidebar"]' in css and "display: none" in css) is kiosk


# --------------------------------------------------------------------------------------------
# Targets, labelled changes, the ranking panel and the data-quality rates (issue 14)
# --------------------------------------------------------------------------------------------

def _with_targets(demo_store_url, tmp_path) -> str:
    """A copy of the shared demo store with the demo's targets loaded (the shared one stays as is)."""
    from analytics import loader, targets
    from tests.conftest import copy_store

    url = copy_store(demo_store_url, tmp_path / "targets.db")
    report = loader.load_files(make_engine(url), [targets.DEMO_FILE], "kpi_targets")
    assert report.rows_rejected == 0
    return url


def _scalar(url, sql, **params):
    from analytics.store import read_frame

    return read_frame(make_engine(url), sql, params).iloc[0, 0]


def _panel(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith('<div class="kpi-panel'))


@pytest.mark.parametrize("role", ["executive", "display"])
def test_the_wall_shows_targets_changes_on_a_named_basis_the_dq_rates_and_a_ranking(
        monkeypatch, demo_store_url, tmp_path, role):
    from tests.app import pagekit as kit

    url = _with_targets(demo_store_url, tmp_path)
    monkeypatch.setenv("MIN_CELL_CUSTOMERS", "60")
    at = _open(monkeypatch, url, role)
    tiles = {label: (value, delta) for label, value, delta in kit.tiles(at)}
    text = " ".join(m.value for m in at.markdown)
    # Customers with a balance in October 2026 against the bank's October target (by hand, from the store).
    actual = _scalar(url, "SELECT SUM(CASE WHEN aum > 0 OR loan_balance > 0 THEN 1 ELSE 0 END) FROM customer_monthly "
                          "WHERE month = :m", m="2026-10-01")
    target = _scalar(url, "SELECT target FROM kpi_targets WHERE kpi = 'customers' AND period = '2026-10' "
                          "AND branch_id = 'ALL'")
    assert f"{round(100 * actual / target)}% of 2026-10 target" in text
    # Month-on-month and year-on-year, each named; the models' figures since the previous refresh.
    assert tiles["Total AUM"][1].endswith("MoM") and "YoY" in text
    assert tiles["Predicted churn rate"][1] == "first refresh"  # one refresh in this store
    assert "this is the first refresh" in text and 'kpi-delta kpi-flat">—' not in text
    # The three data-quality rates, the same numbers as the Data quality page's (dq_scores, overall).
    for label, dimension in (("Completeness rate", "completeness"), ("Accuracy rate", "validity"),
                             ("Freshness rate", "timeliness")):
        score = _scalar(url, "SELECT score FROM dq_scores WHERE scope = 'overall' AND dimension = :d", d=dimension)
        assert tiles[label][0] == f"{100 * score:.1f}%"
    # The ranking: the top branch on AUM by hand; no branch under MIN_CELL_CUSTOMERS (60) customers.
    panel = _panel(at)
    by_aum = make_engine(url)
    from analytics.store import read_frame

    branches = read_frame(by_aum, """
        SELECT b.name, COUNT(*) AS n, SUM(COALESCE(cm.aum, 0)) AS aum FROM customers c
        JOIN branches b ON b.branch_id = c.branch_id
        LEFT JOIN customer_monthly cm ON cm.customer_id = c.customer_id AND cm.month = '2026-10-01'
        GROUP BY b.name""")
    big = branches[branches["n"] >= 60].sort_values("aum", ascending=False)
    small = branches[branches["n"] < 60]
    assert len(small) > 0 and len(big) >= 10
    if role == "display":  # kiosk: the first KPI of the rotation, by branch
        assert "Total AUM by branch" in panel
        assert panel.index(big["name"].iloc[0]) < panel.index(big["name"].iloc[1]) < panel.index("Bottom 5")
        assert all(name not in panel for name in small["name"])
        assert f"{len(small)} branches with too few customers are not ranked" in panel
        at.run()  # the next tick: the next ranking of the rotation
        assert "Total AUM by region (province)" in _panel(at)
    else:  # a chosen KPI and level
        at.selectbox(key="kpi_rank_kpi").set_value("deposits")
        at.selectbox(key="kpi_rank_level").set_value("region").run()
        assert "Deposits by region (province)" in _panel(at) and "Top 5" in _panel(at)
        # The English wall names provinces in English (the stored names are Chinese).
        assert not any("\u4e00" <= ch <= "\u9fff" for ch in _panel(at)), _panel(at)


def test_a_branch_scoped_executive_sees_its_branch_against_its_own_target(monkeypatch, demo_store_url, tmp_path):
    from analytics import scopes
    from analytics import users as users_mod

    url = _with_targets(demo_store_url, tmp_path)
    engine = make_engine(url)
    users_mod.add_user(engine, "kpi_exec_br1", PASSWORD, ["executive"])
    scopes.set_scope(engine, "kpi_exec_br1", branches=["BR001"])
    at = new_app(monkeypatch, url)
    login(at, "kpi_exec_br1")
    at.switch_page("app_pages/kpi_wall.py").run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    actual = _scalar(url, "SELECT SUM(cm.aum) FROM customer_monthly cm JOIN customers c ON c.customer_id = "
                          "cm.customer_id WHERE cm.month = '2026-10-01' AND c.branch_id = 'BR001'")
    target = _scalar(url, "SELECT target FROM kpi_targets WHERE kpi = 'aum' AND period = '2026' AND branch_id = 'BR001'")
    assert f"{round(100 * actual / target)}% of 2026 target" in text  # BR001 has a year target only
    panel = _panel(at)
    name = _scalar(url, "SELECT name FROM branches WHERE branch_id = 'BR001'")
    other = _scalar(url, "SELECT name FROM branches WHERE branch_id = 'BR002'")
    assert name in panel and other not in panel and "Bottom" not in panel  # its own branch alone
    assert "Completeness rate" not in text  # a bank-level figure: not on a scoped wall
