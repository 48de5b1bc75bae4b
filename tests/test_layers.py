"""The package's layers import only downwards: every ``fgssl_lib`` import (module level or inside a function) is read
from the source with ``ast`` and checked against :data:`LAYERS`; no module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fgssl_lib"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "config", "precision", "nvml", "caches", "paper_numbers", "results", "scheduler"),  # version, settings,
    # precision, GPU memory, derived caches' markers, the numbers quoted, the process scheduler
    ("data",),  # datasets and the sample contract
    ("saliency",),  # where the object is: saliency maps, the map interface, best boxes
    ("views",),  # two-view generators and the evaluation view
    ("models",),  # backbones
    ("methods",),  # losses of the SSL methods and their registry
    ("train",),  # fit, checkpoints, snapshots
    ("eval",),  # protocols over features and maps
    ("viz",),  # figures
    ("runs",),  # run storage: train or load
    ("reports",),  # splits, evaluation, tables
    ("study",),  # the CPU study
    ("verdicts",),  # its claims, table and reading
    ("plan",),  # the book's run plan
    ("notebook", "bench", "reproduce", "cost", "release"),  # entry points
)
"""Lowest first: a module may import its own layer and any layer below it, nothing above (cycles inside a layer are
caught by the cycle test)."""

RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(source: str, modules: dict[str, Path]) -> set[str]:
    """The ``fgssl_lib`` modules ``source`` imports (``from a import b`` names module ``a.b`` where that is one)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "fgssl_lib"}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import of {node.module!r}: fgssl_lib imports absolutely"
            if (node.module or "").split(".")[0] == "fgssl_lib":
                found.add(node.module)
                found |= {f"{node.module}.{alias.name}" for alias in node.names
                          if f"{node.module}.{alias.name}" in modules}
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_subpackage_and_top_level_module_has_a_layer() -> None:
    layers = {_layer(module) for module in _modules()}
    assert layers <= set(RANK), f"put {sorted(layers - set(RANK))} into LAYERS"


def test_imports_go_only_downwards() -> None:
    modules = _modules()
    upward = []
    for module, path in modules.items():
        own = _layer(module)
        for target in _imports(path.read_text(), modules):
            if RANK[_layer(target)] > RANK[own]:
                upward.append(f"{module} imports {target}")
    assert not upward, "imports against the layer order:\n" + "\n".join(sorted(upward))


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """Every back edge of a depth-first walk of ``graph``, as the cycle it closes."""
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*trail[trail.index(target):], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {module: {t for t in _imports(path.read_text(), modules) if t in modules and t != module}
             for module, path in modules.items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a -> b -> c -> a"]
    assert _cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_checker_sees_imports_inside_functions() -> None:
    source = "import torch\n\ndef f():\n    from fgssl_lib.viz import images\n    import fgssl_lib.notebook\n"
    assert _imports(source, _modules()) == {"fgssl_lib.viz", "fgssl_lib.viz.images", "fgssl_lib.notebook"}
