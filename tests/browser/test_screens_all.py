"""The screenshot review (issue 14): every page of every role, in English and in Chinese, at
1920×1080, plus the KPI wall in kiosk mode at 3840×2160, saved to screenshots/review/ to be looked
at (``{lang}-{role}-{page}.png``, ``{lang}-kpi_wall-4k.png``).

Slow (seven roles, two languages, about ninety page loads): marked ``reliability_long`` and run by
`make reliability`, not `make test`. Each page must draw without an error, with its title in the
user's language, without a raw catalog key (``page.overview``-like text) and, in Chinese, with the
page's title and the wall's tile labels in Chinese.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analytics import access, i18n, scopes, users
from analytics.store import make_engine, read_frame
from tests.browser.conftest import PASSWORD, second_factor, session_cookie, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.reliability_long]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "screenshots" / "review"
LANGS = ("en", "zh")
# A catalog key shown as text: a known prefix, a dot, a snake_case name (e.g. "kpi_wall.customer_insight").
_PREFIXES = sorted({key.split(".")[0] for key in i18n.catalog()}, key=len, reverse=True)
RAW_KEY = re.compile(r"\b(?:" + "|".join(map(re.escape, _PREFIXES)) + r")\.[a-z0-9_]+\b")


@pytest.fixture(scope="module")
def with_targets(demo_store_url, tmp_path_factory):
    """The demo's KPI targets on the shared store, as `make run` loads them: the wall shows % of target."""
    from analytics import loader
    from analytics.demo.targets import demo_targets, write_targets_file
    from analytics.refresh import latest_activity_month

    engine = make_engine(demo_store_url)
    frame = demo_targets(engine, latest_activity_month(engine), seed=7)
    path = write_targets_file(frame, tmp_path_factory.mktemp("targets") / "demo-kpi-targets.csv")
    assert loader.load_files(engine, [path], "kpi_targets").rows_rejected == 0
    return demo_store_url


def _settled(page) -> None:
    """Idle, and no placeholder left: the script state can read idle for a moment before a rerun."""
    wait_idle(page, timeout_ms=180000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=180000)
    page.wait_for_timeout(500)
    wait_idle(page, timeout_ms=180000)


def _title(key: str, lang: str) -> str:
    """Text that shows once the page has drawn: its title, or a tile label on the title-less wall."""
    return i18n.tr("metric.aum_total" if key == "kpi_wall" else f"page.{key}", lang)


def _user(engine, role: str, lang: str) -> str:
    username = f"review_{role}_{lang}"
    if users.get_user(engine, username) is None:
        users.add_user(engine, username, PASSWORD, [role])
        if role == "relationship_manager":  # a manager sees their own portfolio: the busiest one
            manager = read_frame(engine, "SELECT relationship_manager AS rm, COUNT(*) AS n FROM customers "
                                         "GROUP BY relationship_manager ORDER BY n DESC, rm LIMIT 1")["rm"].iloc[0]
            scopes.set_scope(engine, username, portfolios=[manager])
    users.set_language(engine, username, lang)
    return username


def log_in(page, base: str, username: str, expect: str, path: str = "/") -> None:
    """conftest's log_in with a patient first wait: the first page load of a busy shared machine can
    take over its 30 s."""
    page.goto(base + path)
    page.get_by_label("Username", exact=True).wait_for(timeout=180000)
    wait_idle(page, timeout_ms=180000)
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    second_factor(page, base, username, expect)
    page.get_by_text(expect).first.wait_for(timeout=180000)
    wait_idle(page, timeout_ms=180000)
    session_cookie(page)


def _problems(page, where: str) -> list[str]:
    """What is wrong on the drawn page (an error, a raw catalog key); also appended to
    screenshots/review/problems.txt as found, so one bad page does not hide the others."""
    body = page.inner_text("body")
    found = []
    if "Traceback" in body or "Page not found" in body:
        found.append("a traceback or 'Page not found'")
    if page.locator('[data-testid="stException"]').count():
        found.append("an exception: " + page.locator('[data-testid="stException"]').first.inner_text()[:300])
    raw = sorted(set(RAW_KEY.findall(body)))
    if raw:
        found.append(f"raw catalog keys {raw}")
    if found:
        with (SHOTS / "problems.txt").open("a", encoding="utf-8") as fh:
            fh.write(f"{where}: {'; '.join(found)}\n")
    return [f"{where}: {p}" for p in found]


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("role", access.ROLES)
def test_every_page_of_every_role_in_both_languages(app_server, with_targets, browser, role, lang):
    engine = make_engine(with_targets)
    username = _user(engine, role, lang)
    pages = [p for p in access.pages_for([role]) if (ROOT / "app_pages" / f"{p}.py").exists()]
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = ctx.new_page()
    log_in(page, app_server, username, expect=_title(pages[0], lang))
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems = []
    for key in pages:
        page.goto(f"{app_server}/{key}")
        page.get_by_text(_title(key, lang)).first.wait_for(timeout=180000)
        _settled(page)
        page.screenshot(path=str(SHOTS / f"{lang}-{role}-{key}.png"))
        problems += _problems(page, f"{lang} {role} {key}")
    ctx.close()
    assert not problems, problems


@pytest.mark.parametrize("lang", LANGS)
def test_the_kiosk_wall_at_3840x2160(app_server, with_targets, browser, lang):
    engine = make_engine(with_targets)
    username = _user(engine, "display", lang)
    ctx = browser.new_context(viewport={"width": 3840, "height": 2160})
    page = ctx.new_page()
    log_in(page, app_server, username, expect=_title("kpi_wall", lang))
    page.goto(f"{app_server}/kpi_wall?kiosk=1")
    page.get_by_text(_title("kpi_wall", lang)).first.wait_for(timeout=180000)
    wait_idle(page, timeout_ms=180000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{lang}-kpi_wall-4k.png"))
    problems = _problems(page, f"{lang} kpi_wall 4k")
    ctx.close()
    assert not problems, problems
