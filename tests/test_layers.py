"""The import layers of pipeline/ (pyproject.toml, [tool.importlinter]) hold: no arrow runs
against them, the core imports numpy alone, and the served model needs no config tooling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_imports_run_one_way_down_the_layers():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_module_of_the_package_sits_in_a_layer():
    import tomllib

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in contracts["contracts"] if c["type"] == "layers"]
    placed = {name.strip() for layer in layers for name in layer.split("|")}
    package = REPO / "pipeline"
    present = {f"pipeline.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    present |= {f"pipeline.{p.parent.name}" for p in package.glob("*/__init__.py")}
    assert present == placed
