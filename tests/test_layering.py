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


# --------------------------------------------------------------------------------------------
# Import cycles
# --------------------------------------------------------------------------------------------

def _module_name(path: Path) -> str:
    """``analytics/x.py`` -> ``analytics.x``; a package's ``__init__.py`` is the package itself."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _our_modules() -> dict[str, Path]:
    files = [ROOT / "app.py", *(ROOT / "analytics").rglob("*.py"), *(ROOT / "app_pages").rglob("*.py")]
    return {_module_name(f): f for f in files}


def _package_of(name: str, path: Path) -> str:
    """The package a module's relative imports start from."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _resolve(target: str, modules) -> str | None:
    """The module of ours that ``import target`` runs: the longest known prefix of ``target``."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in modules:
            return name
    return None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports: every import statement anywhere in the file
    (function-local ones too, which only defer a cycle), relative ones resolved, and
    ``from package import name`` resolved to ``package.name`` when that is a module or package."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = _package_of(name, path).split(".")
                    base = base[:len(base) - (node.level - 1)]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    targets.append(submodule if submodule in modules else source)
            for target in targets:
                resolved = _resolve(target, modules)
                if resolved and resolved != name:
                    graph[name].add(resolved)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:  # the graph has some dozens of modules: recursion is fine
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_import_cycles():
    """No import cycle among app.py and the modules of analytics/ and app_pages/ (function-local
    imports included: a cycle hidden in a function is still a cycle)."""
    modules = _our_modules()
    assert {"app", "analytics", "analytics.users", "app_pages.session", "analytics.churn.stage"} <= set(modules)
    found = cycles(import_graph(modules))
    assert found == [], f"import cycles: {found}"


def test_the_cycle_finder_finds_cycles_and_resolves_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n")        # function-local, relative
    (pkg / "c.py").write_text("import pkg.a\nfrom pkg.sub import thing\n")
    (pkg / "sub" / "__init__.py").write_text("from .d import x\n")
    (pkg / "sub" / "d.py").write_text("from .. import e\n")
    (pkg / "e.py").write_text("from pkg.sub import d\n")
    modules = {".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
               for p in pkg.rglob("*.py")}
    graph = import_graph(modules)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg.a", "pkg.sub"}  # "thing" is a name, not a module: the package
    assert graph["pkg.sub"] == {"pkg.sub.d"} and graph["pkg.sub.d"] == {"pkg.e"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.e", "pkg.sub.d"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


SHARED_PAGE_MODULES = {"__init__", "session", "widgets", "loaders"}
COMPUTING_CALLS = {"groupby", "merge", "join", "fit", "pivot", "pivot_table", "agg", "aggregate", "apply", "assign",
                   "crosstab", "execute", "read_sql", "Figure", "add_scatter", "add_trace", "update_layout"}


def test_page_scripts_compute_nothing():
    """A page script places what loaders, widgets and analytics give it: it imports no plotly,
    pandas, numpy or SQL library, and calls no groupby/merge/fit/SQL/figure building."""
    scripts = [p for p in sorted((ROOT / "app_pages").glob("*.py")) if p.stem not in SHARED_PAGE_MODULES]
    assert len(scripts) >= 11
    offenders = []
    for path in scripts:
        if {"plotly", "pandas", "numpy", "sqlalchemy"} & _imports(path):
            offenders.append(f"{path.name}: imports {sorted({'plotly', 'pandas', 'numpy', 'sqlalchemy'} & _imports(path))}")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in COMPUTING_CALLS:
                offenders.append(f"{path.name}:{node.lineno}: .{node.func.attr}()")
    assert offenders == []
