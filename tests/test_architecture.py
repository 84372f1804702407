"""The package's structure: no import cycle (imports inside functions and under TYPE_CHECKING count), argparse only
in the command layer, and every module importing only from its own layer or the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "calip3d"

# Bottom to top, as in the README's layout section. A module may import from its own layer and the ones below.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "atomic", "metrics", "sampling", "point_preprocessing", "records", "published"),
    ("attention", "search", "aggregation"),
    ("projection", "pointnn", "backbone", "cache", "distributed", "encoding"),
    ("datasets", "cloud_files", "prompts", "results", "fetch", "reference", "run_context"),
    ("zeroshot", "fewshot", "explain", "figures", "tables"),
    ("cli",),
]
# `python -m calip3d.eval` etc.: thin shims over the command layer, on top of everything.
SHIMS = {"calip3d.eval", "calip3d.classify", "calip3d.__main__", "calip3d.fewshot.__main__"}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Every calip3d module `name` imports, anywhere in the file (functions, TYPE_CHECKING blocks included)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                target = next((c for c in (f"{base}.{alias.name}", base) if c in mods), None)
                if target and target != name:
                    found.add(target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in mods and a.name != name)
    return found


def _layer(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else ""
    return next((i for i, layer in enumerate(LAYERS) if top in layer), None)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def test_every_module_has_a_layer(graph):
    unplaced = [m for m in graph if m != "calip3d" and m not in SHIMS and _layer(m) is None]
    assert not unplaced, f"modules outside the layer table: {unplaced}"


def test_no_import_cycles(graph):
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_imports_only_go_down_the_layers(graph):
    upward = [f"{m} -> {t}" for m, targets in graph.items() if m not in SHIMS and m != "calip3d"
              for t in targets if _layer(t) is not None and _layer(m) is not None and _layer(t) > _layer(m)]
    assert not upward, "imports from a higher layer:\n" + "\n".join(sorted(upward))


def test_argparse_only_in_the_command_layer():
    users = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        if "argparse" in names and not name.startswith("calip3d.cli"):
            users.append(name)
    assert not users, f"argparse imported outside calip3d/cli: {users}"


def test_the_cycle_check_can_fail(tmp_path):
    """The checker itself finds a cycle hidden in a function-level import."""
    (tmp_path / "a.py").write_text("def f():\n    from .b import g\n")
    (tmp_path / "b.py").write_text("from .a import f\n")
    mods = {"calip3d.a": tmp_path / "a.py", "calip3d.b": tmp_path / "b.py"}
    assert _imports("calip3d.a", mods["calip3d.a"], mods) == {"calip3d.b"}
    assert _imports("calip3d.b", mods["calip3d.b"], mods) == {"calip3d.a"}
