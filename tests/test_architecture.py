"""The layout holds: imports run one way, functions stay short, public signatures stay small.

Layers, lowest first: ``permgraph`` (symmetries; knows nothing of training) → ``transfer`` (the
engine; takes objects) → ``zoo`` (model ids, dataset names, the training loop, experiments) → the
command lines (``zoo.cli``, ``zoo.demo`` and zoo's ``__main__`` modules). A module may import its own
layer or a lower one, never a higher one; ``importlib.import_module("...")`` strings count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("permgraph", "transfer", "zoo")
CLI_MODULES = ("zoo.cli", "zoo.demo")
MAX_FUNCTION_LINES = 80
MAX_PUBLIC_PARAMETERS = 8


def layer(module: str) -> int | None:
    """0 permgraph, 1 transfer, 2 zoo, 3 command lines; None outside the project."""
    top = module.split(".")[0]
    is_main = module.split(".")[-1] == "__main__" and top == "zoo"  # permgraph / transfer have no command line
    if is_main or any(module == m or module.startswith(m + ".") for m in CLI_MODULES):
        return 3
    return PACKAGES.index(top) if top in PACKAGES else None


def modules() -> list[tuple[str, Path]]:
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out.append((".".join(parts), path))
    return out


def imported_names(module: str, tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) for every import statement and every literal importlib / __import__ call."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = module.split(".")[: -node.level] if not module.endswith("__init__") else module.split(".")
                base = ".".join([*parent, base] if base else parent)
            found.append((node.lineno, base))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def test_the_layers_are_recognised():
    assert [layer(m) for m in ("permgraph.rules", "transfer.engine", "zoo.train", "zoo.cli.transfer",
                               "zoo.__main__", "transfer.__main__", "numpy")] == [0, 1, 2, 3, 3, 1, None]  # fmt: skip


def test_imports_never_reach_a_higher_layer():
    upward = []
    for module, path in modules():
        own = layer(module)
        for line, name in imported_names(module, ast.parse(path.read_text())):
            other = layer(name)
            if other is not None and other > own:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def functions(package: str):
    """(where, function node) for every function and method defined in ``package``."""
    for module, path in modules():
        if module.split(".")[0] != package:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path.relative_to(ROOT)}:{node.lineno}", node


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_is_longer_than_80_lines(package):
    long = []
    for where, fn in functions(package):
        lines = fn.end_lineno - fn.lineno + 1
        if lines > MAX_FUNCTION_LINES:
            long.append(f"{where} {fn.name} ({lines} lines)")
    assert not long, "functions over 80 lines:\n" + "\n".join(long)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_public_function_takes_more_than_8_parameters(package):
    wide = []
    for where, fn in functions(package):
        if fn.name.startswith("_") and fn.name != "__init__":
            continue
        a = fn.args
        params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
        if len(params) > MAX_PUBLIC_PARAMETERS:
            wide.append(f"{where} {fn.name} ({len(params)} parameters)")
    assert not wide, "public functions over 8 parameters:\n" + "\n".join(wide)


MAX_MODULE_LINES = 400


def private_imports(module: str, tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for every ``from x import _name`` of another module and every ``x._name`` read
    through an imported project module: a module's ``_names`` are its own."""
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] in PACKAGES:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__") and node.module != module:
                    found.append((node.lineno, f"{node.module}.{alias.name}"))
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    aliases[alias.asname] = alias.name if alias.asname else None
                    aliases.setdefault(alias.name.split(".")[0], alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            if isinstance(base, ast.Name) and aliases.get(base.id):
                found.append((node.lineno, f"{aliases[base.id]}.{node.attr}"))
    return found


def test_private_imports_are_recognised():
    tree = ast.parse("from transfer.engine import _check, run\nimport permgraph\npermgraph._x\nfrom os import _exit\n")
    assert private_imports("zoo.train", tree) == [(1, "transfer.engine._check"), (3, "permgraph._x")]


def test_no_private_name_is_imported_across_modules():
    found = []
    for module, path in modules():
        for line, name in private_imports(module, ast.parse(path.read_text())):
            found.append(f"{path.relative_to(ROOT)}:{line} uses {name}")
    assert not found, "private names used outside their module (make them public or move them):\n" + "\n".join(found)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_longer_than_400_lines(package):
    long = []
    for module, path in modules():
        lines = len(path.read_text().splitlines())
        if module.split(".")[0] == package and lines > MAX_MODULE_LINES:
            long.append(f"{path.relative_to(ROOT)} ({lines} lines)")
    assert not long, "modules over 400 lines (split them by job):\n" + "\n".join(long)


EXPERIMENTS, KIT = "zoo.experiments", "zoo.experiments.kit"


def experiment_imports(module: str, tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) for every import of an experiment module (``zoo.experiments.X``, X not the kit)."""
    found = []
    for line, name in imported_names(module, tree):
        parts = name.split(".")
        if parts[:2] == EXPERIMENTS.split(".") and len(parts) > 2 and parts[2] not in ("kit", "__main__"):
            found.append((line, name))
    return found


def test_experiment_imports_are_recognised():
    tree = ast.parse("from zoo.experiments.kit.pool import ensure_run\nfrom zoo.experiments.gap import variant_model\n")
    assert experiment_imports(f"{KIT}.setting", tree) == [(2, "zoo.experiments.gap")]


def test_the_experiments_kit_never_imports_an_experiment():
    """Experiments build on ``zoo.experiments.kit``; the kit never reaches back into an experiment
    (it would make the shared machinery depend on one page's code and import order)."""
    found = []
    for module, path in modules():
        if module == KIT or module.startswith(KIT + "."):
            found += [f"{path.relative_to(ROOT)}:{line} imports {name}"
                      for line, name in experiment_imports(module, ast.parse(path.read_text()))]  # fmt: skip
    assert not found, "the experiments' kit imports an experiment:\n" + "\n".join(found)
