"""The package's import graph: no two modules import each other, and every `accel.` import exists.

docs/architecture.md keeps each layer readable and testable on its own (nothing imports upward,
no two folders import each other); a loop between two modules is where that starts to break,
and it hides easily in an import inside a function. This reads the source, imports nothing: the
tree as setup.py packages it (each top-level folder with an `__init__.py`, tests left out, is
`accel.<folder>`), with every `import accel...`, `from accel... import` and relative import,
inside functions too. A failure names the modules of each loop, one path through them and the
lines that make it.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Import:
    source: str
    """The importing module."""
    target: str
    """The module imported (for `from M import name`: M.name when that is a module, else M)."""
    where: str
    """file:line of the import statement."""


def package_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package (a package is its __init__.py)."""
    mods = {}
    tops = sorted(p.parent for p in root.glob("*/__init__.py") if p.parent.name != "tests")
    for top in tops:
        for f in sorted(top.rglob("*.py")):
            if "__pycache__" in f.parts:
                continue
            parts = ["accel", *f.relative_to(root).with_suffix("").parts]
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    """The absolute name a `from` import starts from; None for a relative one above `accel`."""
    if not node.level:
        return node.module or ""
    parent = module.split(".") if is_package else module.split(".")[:-1]
    if node.level - 1 >= len(parent):
        return None
    parent = parent[: len(parent) - (node.level - 1)]
    return ".".join(parent + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, mods: dict[str, Path], root: Path = ROOT) -> list[Import]:
    """Every import of an `accel` module in `path`, at any depth (functions, classes, branches)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            out += [Import(module, a.name, where) for a in node.names if a.name.split(".")[0] == "accel"]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path.name == "__init__.py", node)
            if base is None:
                out.append(Import(module, "." * node.level + (node.module or ""), where))
            elif base.split(".")[0] == "accel":
                out += [Import(module, f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base, where)
                        for a in node.names]
    return out


def import_graph(root: Path = ROOT) -> tuple[dict[str, Path], list[Import]]:
    mods = package_modules(root)
    return mods, [imp for m, f in mods.items() for imp in imports_of(m, f, mods, root)]


def import_loops(mods: dict[str, Path], imports: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    edges = {m: sorted({i.target for i in imports if i.source == m and i.target in mods and i.target != m})
             for m in mods}
    index, low, stack, on_stack, loops = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on_stack.discard(comp[-1])
            if len(comp) > 1:
                loops.append(sorted(comp))

    for v in mods:
        if v not in index:
            visit(v)
    return sorted(loops)


def loop_path(loop: list[str], imports: list[Import]) -> list[Import]:
    """One shortest circle through the first module of `loop`, as the imports that make it."""
    members, start = set(loop), loop[0]
    via: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for m in frontier:
            for imp in imports:
                if imp.source != m or imp.target not in members or imp.target == m:
                    continue
                if imp.target == start:
                    path = [imp]
                    while path[0].source != start:
                        path.insert(0, via[path[0].source])
                    return path
                if imp.target not in via:
                    via[imp.target] = imp
                    nxt.append(imp.target)
        frontier = nxt
    raise AssertionError(f"{loop} is not a loop")


def describe(loop: list[str], imports: list[Import]) -> str:
    path = loop_path(loop, imports)
    steps = " -> ".join([path[0].source] + [i.target for i in path])
    return f"{' <-> '.join(loop)}\n    {steps}\n" + "".join(f"    {i.source} imports {i.target} at {i.where}\n"
                                                           for i in path)


def test_no_import_loops():
    mods, imports = import_graph()
    loops = import_loops(mods, imports)
    report = "".join(describe(loop, imports) for loop in loops)
    assert not loops, f"{len(loops)} import loop(s) between modules:\n{report}"


def test_every_accel_import_exists():
    mods, imports = import_graph()
    missing = [f"{i.where}: {i.source} imports {i.target}" for i in imports
               if i.target != "accel" and i.target not in mods]
    assert not missing, "imports of modules that are not in the tree:\n" + "\n".join(missing)


def test_the_graph_sees_imports_inside_functions_and_relative_ones(tmp_path):
    """The reader itself, on a made-up tree: a loop closed by a relative import inside a function,
    a `from package import submodule`, and an import of a module that is not there."""
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "tests").mkdir()
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from accel.pkg import b\n",
        "pkg/b.py": "def f():\n    from .sub import c\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "import os\n\ndef g():\n    from .. import a\n    import accel.pkg.gone\n",
        "tests/__init__.py": "import accel.pkg.a\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    mods, imports = import_graph(tmp_path)
    assert set(mods) == {"accel.pkg", "accel.pkg.a", "accel.pkg.b", "accel.pkg.sub", "accel.pkg.sub.c"}
    assert import_loops(mods, imports) == [["accel.pkg.a", "accel.pkg.b", "accel.pkg.sub.c"]]
    text = describe(["accel.pkg.a", "accel.pkg.b", "accel.pkg.sub.c"], imports)
    assert "accel.pkg.a -> accel.pkg.b -> accel.pkg.sub.c -> accel.pkg.a" in text
    assert "pkg/sub/c.py:4" in text
    assert [i.target for i in imports if i.target not in mods] == ["accel.pkg.gone"]
