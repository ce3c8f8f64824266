"""The import graph points one way (ARCHITECTURE.md, "Layers"), and has no circles.

Every module of the project is parsed (never imported) and every import it makes is
collected: at the top, inside functions, under `if TYPE_CHECKING:`. A module may import
its own layer and the layers below it, never one above; and no chain of imports may lead
from a module back to itself. A failure names the modules and the line of the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kernels", "model", "streamer", "training", "bench", "examples", "experiments")

# Lowest first. A module belongs to the first layer with a prefix it starts with, checked
# longest prefix first, so `streamer.cli` (the command line) sits above the runtime.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kernels", ("kernels",)),
    ("model", ("model",)),
    ("runtime", ("streamer",)),
    ("training", ("training",)),
    ("cli", ("streamer.cli", "bench", "examples", "experiments")),
)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(path, root): path for package in PACKAGES for path in sorted((root / package).rglob("*.py"))}


def layer_of(module: str) -> int:
    matches = [(len(prefix), rank) for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    if not matches:
        raise AssertionError(f"{module} belongs to no layer; add its package to LAYERS in {Path(__file__).name}")
    return max(matches)[1]


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported dotted name lands in (its longest known prefix)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported project module, line) for every import statement anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from a import b` imports module a.b when b is one, else a name of a
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != module:
                found.add((target, node.lineno))
    return sorted(found)


def import_graph(root: Path = ROOT) -> dict[str, list[tuple[str, int]]]:
    modules = project_modules(root)
    return {module: imports_of(module, path, modules) for module, path in modules.items()}


def upward_imports(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    problems = []
    for module, imports in sorted(graph.items()):
        for target, line in imports:
            if layer_of(target) > layer_of(module):
                problems.append(f"{module} (line {line}, layer {LAYERS[layer_of(module)][0]}) imports {target} "
                                f"(layer {LAYERS[layer_of(target)][0]})")
    return problems


def cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target, _ in graph.get(node, []):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def test_every_module_belongs_to_a_layer():
    for module in project_modules():
        layer_of(module)


def test_no_module_imports_a_layer_above_its_own():
    problems = upward_imports(import_graph())
    assert not problems, "imports that point up the layers (kernels <- model <- runtime <- training <- cli):\n" + \
        "\n".join(problems)


def test_the_import_graph_has_no_circles():
    found = cycles(import_graph())
    assert not found, "modules that import each other, directly or through others:\n" + \
        "\n".join(" <-> ".join(group) for group in found)


@pytest.mark.parametrize("statement", ["import training.world", "from training.data import collate",
                                       "def f():\n    from streamer.cli import main\n"])
def test_the_check_catches_an_upward_import(tmp_path, statement):
    """A runtime module that imports training or the command line is caught, even inside a function."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for module in ("training/data.py", "training/world/__init__.py", "streamer/cli/__init__.py"):
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_text("")
    (tmp_path / "streamer" / "chunker.py").write_text(statement + "\n")
    problems = upward_imports(import_graph(tmp_path))
    assert len(problems) == 1 and problems[0].startswith("streamer.chunker ")


def test_the_check_catches_a_circle(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "model" / "a.py").write_text("from model.b import x\n")
    (tmp_path / "model" / "b.py").write_text("def f():\n    from . import a\n")
    assert cycles(import_graph(tmp_path)) == [["model.a", "model.b"]]
