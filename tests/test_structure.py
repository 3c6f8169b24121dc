"""The shape of the code, as docs/design.md draws it: layers that import only downwards (so no import circle),
entry points that nothing imports, and functions short enough to read in one sitting."""

from __future__ import annotations

import ast

import pytest
from conftest import REPO

PACKAGE = REPO / "sentlab"

# Bottom to top; a module imports modules of its own layer or below (docs/design.md, "Layers").
LAYERS = [
    {"errors", "tags"},  # names everything else shares
    {"config", "conf"},  # the configs (sentlab/conf/), composing one, every check that needs nothing loaded
    {  # the parts of a run, each on its own
        *("console", "data", "backbones", "quant", "adapters", "metrics", "stats", "checkpoints"),
        *("distributed", "tracking", "study", "heads", "heads.base", "heads.seq_cls", "heads.generative"),
        *("demo_data", "demo_data.generate", "methods", "losses", "lexicon", "calibration"),
    },
    {"models", "training", "reports", "multi_lora", "fused", "fused_training"},  # builder; loop; fused group
    {"classifier", "runs", "ranks"},  # a trained run as a classifier; a run's MLflow life; the DDP ranks
    # a run's MLflow model; a sweep's runs compared, example by example; what mattered in it; @champion on
    # evidence; an exported run's model card; a merged model as ONNX
    {"mlflow_model", "comparison", "error_analysis", "effects", "promotion", "modelcard", "onnx_model"},
    {"pipeline", "fused_pipeline", "sweep"},  # one job; a fused group of jobs; a sweep's parent run and summary
    {"cli"},  # what the entry points outside Hydra share
    {"train", "predict", "evaluate", "export", "compare", "demo", "init"},  # entry points: python -m sentlab.X
]
LAYER = {module: i for i, layer in enumerate(LAYERS) for module in layer}
ENTRY_POINTS = LAYERS[-1]
LONGEST_FUNCTION = 60  # lines


def modules() -> dict[str, ast.Module]:
    """sentlab's modules by dotted name below the package ("" for sentlab/__init__.py)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix("__init__").rstrip(".")
        tree = ast.parse(path.read_text())
        tree.is_package = path.name == "__init__.py"
        found[name] = tree
    return found


def imports(name: str, tree: ast.Module) -> set[str]:
    """The sentlab modules `name` imports, at its top or inside its functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .generative import ...
                parts = name.split(".") if tree.is_package else name.split(".")[:-1]
                base = ".".join(["sentlab", *parts[: len(parts) - node.level + 1]])
                targets = [f"{base}.{node.module}" if node.module else base]
            else:
                module = node.module or ""
                targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            if target.startswith("sentlab."):
                found.add(target.removeprefix("sentlab."))
    return found & set(modules_cache) - {name}


modules_cache = modules()


def test_every_module_has_a_layer():
    assert set(modules_cache) - {""} <= set(LAYER), f"add to LAYERS: {set(modules_cache) - {''} - set(LAYER)}"


@pytest.mark.parametrize("name", sorted(set(modules_cache) - {""}))
def test_imports_go_down_only(name):
    upward = {m for m in imports(name, modules_cache[name]) if LAYER.get(m, -1) > LAYER[name]}
    assert not upward, f"sentlab.{name} (layer {LAYER[name]}) imports higher layers: {sorted(upward)}"


def test_no_import_circle():
    graph = {name: imports(name, tree) for name, tree in modules_cache.items() if name}
    done, path = set(), []

    def visit(name):
        if name in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(name) :] + [name]))
        if name in done:
            return
        path.append(name)
        for other in sorted(graph[name]):
            visit(other)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_nothing_imports_an_entry_point():
    for name, tree in modules_cache.items():
        if name not in ENTRY_POINTS:
            assert not imports(name, tree) & ENTRY_POINTS, f"sentlab.{name} imports an entry point"


def test_functions_are_short():
    long = [
        f"sentlab/{name.replace('.', '/') or '__init__'}.py: {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name, tree in modules_cache.items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > LONGEST_FUNCTION
    ]
    assert not long, f"functions over {LONGEST_FUNCTION} lines: {long}"
