"""The package's import graph: no two modules import each other, every `accel.` import exists, and
imports sit at module top except in the start-up set.

docs/architecture.md keeps each layer readable and testable on its own (nothing imports upward,
no two folders import each other); a loop between two modules is where that starts to break,
and it hides easily in an import inside a function. This reads the source, imports nothing: the
tree as setup.py packages it (each top-level folder with an `__init__.py`, tests left out, is
`accel.<folder>`), with every `import accel...`, `from accel... import` and relative import,
inside functions too. A failure names the modules of each loop, one path through them and the
lines that make it.

Imports and start-up time (docs/architecture.md): the start-up set is what importing
`STARTUP_ROOTS` loads (measured in a subprocess, not guessed); it must load no torch, and only its
modules may import inside functions (that is how they reach torch & co. late). Everywhere else an
import inside a function is an optional dependency (`OPTIONAL`) or one of `ALLOWED_INSIDE`.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

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


STARTUP_ROOTS = (
    "accel.cli.main",  # `accel --help`, every command's parser, the recipe registry and configs
    # what `accel bench` / `accel decode` check before a model loads (tests/test_cli.py: cheap errors, no torch)
    "accel.recipes.targets", "accel.decoding.plan", "accel.decoding.report", "accel.decoding.target",
    "accel.decoding.checkpoint", "accel.decoding.methods", "accel.decoding.prompt_sets", "accel.data.sources",
    "accel.data.tasks", "accel.core.model_dir", "accel.models.backbone",
    # what `accel train` / `export` / `slurm` check before torch (tests/test_config.py: a typo fails fast)
    "accel.trainers.loading", "accel.trainers.runguard", "accel.trainers.rundir", "accel.trainers.launch",
    "accel.trainers.slurm", "accel.cli.backbone_check", "accel.cli.interrupts", "accel.cli.quiet",
)
HEAVY = ("torch", "transformers", "peft", "safetensors", "datasets", "accelerate", "tokenizers")
"""What the start-up set must not load: its modules import these inside the functions that need them."""
OPTIONAL = {"matplotlib", "wandb", "deepspeed", "triton", "gguf", "speculators", "vllm", "lm_eval", "sharegpt"}
"""Optional dependencies (pyproject.toml extras, the real-model packages): imported where used, may be absent."""
ALLOWED_INSIDE = {
    # being reworked concurrently (LoRA family names): to be moved to the top in its own change
    "trainers/lora.py",
}
"""Files outside the start-up set that still import inside functions, each with its reason."""


@pytest.fixture(scope="module")
def startup_modules() -> set[str]:
    code = ("import importlib, json, sys\n"
            f"for m in {STARTUP_ROOTS!r}:\n    importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout))


def function_level_imports(path: Path) -> list[ast.stmt]:
    """Import statements inside a function body (at any depth) of the file."""
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if in_function:
                    out.append(child)
            else:
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(), str(path)), False)
    return out


def test_startup_set_loads_no_torch(startup_modules):
    loaded = sorted(m for m in startup_modules if m.split(".")[0] in HEAVY)
    assert not loaded, f"importing the start-up set loads {loaded[:10]}: keep them inside its functions"


def test_imports_at_module_top_outside_the_startup_set(startup_modules):
    mods = package_modules()
    bad = []
    for module, path in mods.items():
        rel = str(path.relative_to(ROOT))
        if module in startup_modules or rel in ALLOWED_INSIDE:
            continue
        for node in function_level_imports(path):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if not getattr(node, "level", 0) and all(n.split(".")[0] in OPTIONAL for n in names):
                continue
            bad.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, ("imports inside functions of modules outside the start-up set (move them to the module top; "
                     "an optional dependency goes in OPTIONAL):\n" + "\n".join(bad))


def test_allowlist_is_current():
    files = {str(p.relative_to(ROOT)) for p in package_modules().values()}
    assert ALLOWED_INSIDE <= files, sorted(ALLOWED_INSIDE - files)
