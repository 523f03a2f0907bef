"""What `make test-fast` (`pytest -m "not slow"`) leaves out and imports: it does not import the
modules marked slow as a whole (tests/conftest.py, pytest_ignore_collect), so it must lose no
quick test by that, and collecting it must not import MLflow, which only the quick tests in the
xdist group "mlflow" need, on one worker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, tool_env, wholly_slow


def test_only_a_top_level_slow_mark_leaves_a_module_out(tmp_path):
    sources = {
        "marked.py": "import pytest\n\npytestmark = pytest.mark.slow  # dvc in git repos\n",
        "quoted.py": '"""An example:\npytestmark = pytest.mark.slow\n"""\n',
        "listed.py": "import pytest\n\npytestmark = [pytest.mark.slow, pytest.mark.xfail]\n",
        "in_a_function.py": "import pytest\n\ndef f():\n    pytestmark = pytest.mark.slow\n",
        "another_mark.py": "import pytest\n\npytestmark = pytest.mark.slowish\n",
    }
    verdicts = {}
    for name, source in sources.items():
        (tmp_path / name).write_text(source)
        verdicts[name] = wholly_slow(tmp_path / name)
    assert verdicts == {name: name == "marked.py" for name in sources}


def test_the_modules_left_out_hold_only_slow_tests(request):
    """Read from this session's own collection: under `make test`, every test is in it."""
    left_out = {path for path in (REPO / "tests").rglob("test_*.py") if wholly_slow(path)}
    assert len(left_out) > 10  # the integration modules: dvc, stages, sweeps, servers
    quick = [
        item.nodeid
        for item in request.session.items
        if Path(str(item.path)) in left_out and item.get_closest_marker("slow") is None
    ]
    assert quick == []


@pytest.mark.slow
def test_collecting_the_quick_tests_imports_no_mlflow():
    code = (
        "import sys, pytest\n"
        "pytest.main(['--collect-only', '-q', '-m', 'not slow', '-p', 'no:cacheprovider'])\n"
        "print(sorted({'mlflow', 'pandas', 'sqlalchemy'} & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=tool_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    imported = done.stdout.strip().splitlines()[-1]
    assert imported == "[]", (
        f"collecting `make test-fast` imported {imported}: a quick test module imports it at "
        "its top; import it in its tests and put the module in the xdist group 'mlflow' "
        "(XDIST_GROUPS in tests/conftest.py)"
    )
