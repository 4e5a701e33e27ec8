"""The README documents every setting with its real default, and keeps the two-command quick start."""

import re
from pathlib import Path

import pytest

from analytics.settings import SETTINGS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _rows() -> dict[str, str]:
    rows = {}
    for line in README.splitlines():
        m = re.match(r"\| `([A-Z_]+)` \| (.+?) \|", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_setting_is_documented_with_its_default(name):
    rows = _rows()
    assert name in rows, f"README's configuration table lacks {name}"
    default = SETTINGS[name].default
    expected = "(none)" if default in ("", None) else f"`{default}`"
    assert rows[name] == expected


def test_readme_documents_no_unknown_setting():
    documented = {k for k in _rows() if k.isupper()}
    assert documented <= set(SETTINGS)


def test_quick_start_is_two_commands():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make run" in quick and "make test" in quick


def test_readme_role_page_matrix_matches_the_policy():
    from analytics import access

    table = README.split("## Roles, pages and personal data", 1)[1]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(access.ROLES) + 1 and "·" in cells[0]:
            rows[cells[0].split(" · ")[0]] = {r for r, c in zip(access.ROLES, cells[1:], strict=True) if c == "✓"}
    expected = {english: set(access.PAGE_ACCESS[key]) for key, (english, _) in access.PAGES.items()}
    assert rows == expected
