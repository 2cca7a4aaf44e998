"""The layers of docs/architecture.md: a module imports (at module level) only modules of
its own layer or of the layers below. Imports inside a function, made when it is first
called (the Tensor's operators calling minires.ops), are the documented way up."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "minires"

# bottom first; a name is the first part of a module path below minires/
LAYERS = [
    {"backend", "files"},
    {"autograd_safety", "precision", "cpu_threads"},
    {"tensors"},
    {"autograd"},
    {"ops", "gradient_check"},
    {"cuda_kernels"},
    {"nn"},
    {"models", "optim", "data", "distributed", "inspect", "serialization", "safetensors_io",
     "torch_io"},
    {"train"},
    {"opspec"},
    {"__init__", "__main__", "tools"},
]

# the imports that point up, each with its reason (docs/architecture.md names them)
POINTING_UP = {
    ("minires.nn", "minires.distributed.sync_batchnorm"):
        "nn re-exports SyncBatchNorm, which lives with data parallelism",
}


def layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return next(i for i, names in enumerate(LAYERS) if top in names)


def module_name(path: pathlib.Path) -> tuple:
    """-> (dotted name, the package its relative imports start from)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        name = ".".join(parts[:-1])
        return name, name
    name = ".".join(parts)
    return name, name.rpartition(".")[0]


def is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def module_level_imports(path: pathlib.Path):
    """The minires modules imported by ``path`` outside any function or class."""
    found = []

    def visit(statements):
        for node in statements:
            if isinstance(node, ast.Import):
                found.extend(a.name for a in node.names if a.name.split(".")[0] == "minires")
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    package = module_name(path)[1].split(".")
                    base = package[:len(package) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module
                if target.split(".")[0] != "minires":
                    continue
                for alias in node.names:  # `from pkg import module` imports the module
                    sub = f"{target}.{alias.name}"
                    found.append(sub if is_module(sub) else target)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                visit(getattr(node, "finalbody", []))

    visit(ast.parse(path.read_text()).body)
    return found


def test_every_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        name, _ = module_name(path)
        layer(name if name != "minires" else "minires.__init__")


def test_imports_point_down_the_layers():
    up = set()
    for path in PACKAGE.rglob("*.py"):
        name, _ = module_name(path)
        own = layer(name if name != "minires" else "minires.__init__")
        for target in module_level_imports(path):
            if layer(target if target != "minires" else "minires.__init__") > own:
                up.add((name, target))
    assert up == set(POINTING_UP), sorted(up - set(POINTING_UP))


def test_the_layer_check_sees_an_import_that_points_up(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("from minires.nn import Module\n")
    assert module_level_imports(module) == ["minires.nn"]
    assert layer("minires.nn") > layer("minires.ops")
