"""`make run`'s setup-demo: demo keys, a small first store, a refresh, demo users whose logins can be
found again after the terminal has scrolled away."""

from __future__ import annotations

import stat

from analytics import cli, users
from analytics.store import make_engine


def test_setup_demo_builds_a_store_and_keeps_the_logins_where_a_newcomer_finds_them(tmp_path, monkeypatch, capsys):
    secrets = tmp_path / "secrets.toml"
    logins = tmp_path / "demo-logins.txt"
    monkeypatch.setattr(cli.settings, "SECRETS_FILE", secrets)
    monkeypatch.setattr(cli, "DEMO_LOGINS_FILE", logins)
    demo_targets = tmp_path / "demo-kpi-targets.csv"
    monkeypatch.setattr(cli, "DEMO_TARGETS_FILE", demo_targets)
    url = f"sqlite:///{tmp_path}/bank.db"
    assert cli.main(["setup-demo", "--db", url, "--customers", "300", "--quiet"]) == 0
    first = capsys.readouterr().out
    assert secrets.exists() and stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert stat.S_IMODE(logins.stat().st_mode) == 0o600
    written = logins.read_text()
    engine = make_engine(url)
    names = set(users.list_users(engine)["username"])
    assert names == set(cli.DEMO_USERS)
    for name in cli.DEMO_USERS:
        line = next(li for li in written.splitlines() if li.split()[:1] == [name])
        password = line.split()[1]
        assert password in first  # printed once, and the same in the file
        if name == "demo_marketing":  # a role without two-factor login: the password alone logs in
            assert users.authenticate(engine, name, password).ok
    assert "demo-logins.txt" in first
    # The demo's KPI targets are set from this 300-customer store's own figures (a fixed file fits one
    # size only), written to a file and loaded through the loader, every row accepted.
    from datetime import date

    from analytics import kpi, targets
    from analytics.store import read_frame

    rows = len(demo_targets.read_text().splitlines()) - 1
    assert f"KPI targets: {rows} loaded from {demo_targets}" in first
    branches = int(read_frame(engine, "SELECT COUNT(DISTINCT branch_id) AS n FROM customers")["n"].iloc[0])
    assert rows == 14 + 4 * branches
    assert int(read_frame(engine, "SELECT COUNT(*) AS n FROM kpi_targets")["n"].iloc[0]) == rows
    oct_ = date(2026, 10, 1)
    got = targets.attainment(kpi.monthly_series(engine, oct_), targets.read_targets(engine, oct_), oct_)
    for name in ("customers", "aum", "deposits", "loans"):  # the month's target: 1.02 times the month
        assert 0.97 < got[name].share < 0.99, (name, got[name])
    # A second run creates nobody and says where the logins are.
    assert cli.main(["setup-demo", "--db", url, "--quiet"]) == 0
    second = capsys.readouterr().out
    assert f"demo logins: see {logins}" in second and "store ready" in second
    assert logins.read_text() == written
