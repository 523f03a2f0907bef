"""The split stage as a user runs it: a bad override on the command line is one clear line."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import REPO, run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("split.dev_size=abc", "split: error: invalid config at split.dev_size"),
        ("+split.dev_sise=5", "split: error: invalid config at split.dev_sise"),
        ("split.dev_sise=5", "Could not override 'split.dev_sise'"),  # Hydra's own message
    ],
)
def test_bad_override_on_the_command_line_is_one_clear_message(tmp_path, override, expected):
    result = run(
        [sys.executable, "-m", "pipeline.split", override, f"hydra.run.dir={tmp_path}"],
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
