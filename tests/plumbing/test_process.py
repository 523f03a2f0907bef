"""A command's process ends without the interpreter's last collections, and loses nothing by it:
every other exit handler (MLflow ending its run, logging's flush) still runs."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import REPO

ENDING = """
import atexit, gc
atexit.register(lambda: print("frozen when it ended:", gc.get_freeze_count() > 0))
from pipeline.plumbing.process import skip_last_collection
skip_last_collection()
atexit.register(lambda: print("a later handler ran"))
"""


def test_a_process_ends_frozen_and_runs_its_other_exit_handlers():
    done = subprocess.run(
        [sys.executable, "-c", ENDING], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == ["a later handler ran", "frozen when it ended: True"]


COMMANDS = sorted(path for path in (REPO / "pipeline").glob("*.py") if path.stem != "__init__")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda path: path.stem)
def test_every_command_asks_for_it_first(command):
    tree = ast.parse(command.read_text())
    mains = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"
    ]
    assert len(mains) == 1, f"{command.name} has no `if __name__ == '__main__':` block"
    assert ast.unparse(mains[0].body[0]) == "skip_last_collection()"
