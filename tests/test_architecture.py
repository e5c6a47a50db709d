"""The import direction of the package, enforced (docs/design.md): model <- cost <- training <- run <- CLI.

Data goes one way; nothing downstream reaches back up. The rules are checked
on the source (``ast``), so a violating import fails here even if no test
happens to execute it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "empirical_seaice"
MODULES = {
    ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__") or "__init__": p
    for p in SRC.rglob("*.py")
}

MODEL = {m for m in MODULES if m.split(".")[0] in ("model", "cost")}
DOWNSTREAM = {"training", "run", "cli", "products"}


def top(module: str) -> str:
    return module.split(".")[0]


def imports(module: str) -> set[str]:
    """Project modules (dotted, without the package prefix) and top-level third-party names imported."""
    path = MODULES[module]
    package = ["empirical_seaice", *module.split(".")]
    if path.name != "__init__.py" or module == "__init__":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names = [".".join(base + ([node.module] if node.module else []))]
                if not node.module:  # from . import x
                    names = [".".join(base + [a.name]) for a in node.names]
            else:
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            name = name.strip(".")
            found.add(
                name.removeprefix("empirical_seaice.") if name.startswith("empirical_seaice.") else name.split(".")[0]
            )
    return found


def project_imports(module: str) -> set[str]:
    return {m for m in imports(module) if m in MODULES}


def test_the_parser_sees_known_imports():
    assert "torch" in imports("model.physics")
    assert {"config", "errors"} <= project_imports("training.trainer")
    assert "io.reader" in project_imports("io")
    assert "twin.ocean" in project_imports("twin.truth")


@pytest.mark.parametrize("module", sorted(MODEL))
def test_model_never_imports_io_training_or_products(module):
    bad = {m for m in project_imports(module) if top(m) in DOWNSTREAM | {"io", "twin"}}
    assert not bad, f"{module} imports {bad}"


def test_physics_and_costs_are_pure():
    assert project_imports("model.physics") == set()
    assert project_imports("cost.terms") == set()


def test_trainer_knows_nothing_about_sea_ice():
    """The trainer minimises a cost over parameters it is given."""
    for module in (m for m in MODULES if top(m) == "training"):
        outside = {m for m in project_imports(module) if top(m) != "training"}
        # io.transaction: the one atomic-write helper; compiled: LLVM operations for numba kernels;
        # threads: the thread counts set for a block; memory: free heap pages given back (no sea ice in any)
        allowed = {"config", "errors", "io.transaction", "compiled", "threads", "memory"}
        assert outside <= allowed, f"{module} imports {outside}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if top(m) == "products"))
def test_products_never_import_runs_or_the_cli(module):
    bad = {m for m in project_imports(module) if top(m) in ("run", "cli")}
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.split(".")[0] in ("io", "twin")))
def test_io_and_twin_never_import_the_model_or_training(module):
    allowed_model = {"model.physics"} if module.startswith("twin") else set()  # the twin shares the equations
    bad = {m for m in project_imports(module) if top(m) in DOWNSTREAM or m in MODEL - allowed_model}
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize(
    "module",
    sorted(m for m in MODULES if top(m) in ("io", "sensors") and m != "io.outputs") + ["observations", "all_sky"],
)
def test_reading_data_needs_no_torch(module):
    assert "torch" not in imports(module)
