"""Imports go one way: app.py -> app_pages/ -> analytics/. analytics/ never imports streamlit."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_analytics_never_imports_streamlit():
    files = sorted((ROOT / "analytics").rglob("*.py"))
    assert files
    offenders = [str(f.relative_to(ROOT)) for f in files if {"streamlit", "streamlit_authenticator"} & _imports(f)]
    assert offenders == []


def test_analytics_never_imports_the_app():
    files = sorted((ROOT / "analytics").rglob("*.py"))
    offenders = [str(f.relative_to(ROOT)) for f in files if {"app", "app_pages"} & _imports(f)]
    assert offenders == []


def test_no_pages_folder():
    # Streamlit serves every script in a folder named pages/ by URL, past the login gate.
    assert not (ROOT / "pages").exists()
