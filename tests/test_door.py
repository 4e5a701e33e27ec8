"""One door to customer data: every reader of customer rows takes the viewer; pages never mask.

Read statically with ``ast`` (nothing is run), like tests/test_layering.py:

* no ``app_pages/`` file (nor app.py) calls ``mask_frame``, ``mask_series``, ``mask_value``,
  ``band_amounts`` or ``release``: masking is the data layer's job, done before a frame leaves it;
* every analytics function that releases customer rows (calls ``release``) takes ``viewer`` as a
  required keyword-only argument, so a caller cannot forget who is reading;
* every reader named in :data:`CUSTOMER_ROW_READERS` exists and takes a required ``viewer``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MASKING_NAMES = {"mask_frame", "mask_series", "mask_value", "band_amounts", "release"}

# The public readers that return customer-level rows (module path, function name).
CUSTOMER_ROW_READERS = [
    ("analytics/risk.py", "read_mismatches"),
    ("analytics/risk.py", "read_balance_drops"),
    ("analytics/cross_sell/read.py", "campaign_list"),
    ("analytics/churn/read.py", "early_warning"),
    ("analytics/quality/drilldown.py", "failing_records"),
    ("analytics/quality/drilldown.py", "fix_list"),
    ("analytics/segment_explorer.py", "campaign_page"),
    ("analytics/segment_explorer.py", "top_customers"),
    ("analytics/customer360.py", "profile"),
    ("analytics/customer360.py", "holdings_of"),
    ("analytics/customer360.py", "monthly"),
    ("analytics/customer360.py", "contacts_of"),
    ("analytics/alerts/read.py", "worklist"),
    ("analytics/campaigns/results.py", "treatment_export"),
]


def _calls(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            names.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return names


def _functions(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _requires_viewer(fn: ast.FunctionDef) -> bool:
    args = fn.args
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        if arg.arg == "viewer":
            return default is None
    return False


def test_pages_never_mask():
    files = sorted((ROOT / "app_pages").rglob("*.py")) + [ROOT / "app.py"]
    offenders = {str(f.relative_to(ROOT)): sorted(MASKING_NAMES & _calls(ast.parse(f.read_text(encoding="utf-8"))))
                 for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_function_that_releases_rows_requires_the_viewer():
    missing = []
    for path in sorted((ROOT / "analytics").rglob("*.py")):
        if path.name == "access.py":
            continue  # the door itself
        for name, fn in _functions(path).items():
            if "release" in _calls(fn) and not _requires_viewer(fn):
                missing.append(f"{path.relative_to(ROOT)}::{name}")
    assert missing == []


@pytest.mark.parametrize("module, name", CUSTOMER_ROW_READERS)
def test_named_customer_row_readers_require_the_viewer(module, name):
    fn = _functions(ROOT / module).get(name)
    assert fn is not None, f"{module} has no {name}"
    assert _requires_viewer(fn), f"{module}::{name} must take viewer as a required keyword argument"
    assert "release" in _calls(fn), f"{module}::{name} must return rows through access.release"
