"""What `make` and the suite tell a new user: a missing prerequisite stops `make install`
and `make build` first, with one line; a run that skipped tests says, in one block, which
and why, and ends with the command that would run them (tests/conftest.py)."""

import os
import subprocess
import sys

import pytest

from tests import services

# Tests that skip as the suite's own do when a service is missing.
SKIPPING = """
from tests import services

POSTGRES = "PostgreSQL not reachable at postgresql://db.invalid/test"


def test_postgres_a():
    services.unavailable(POSTGRES, "make services")


def test_postgres_b():
    services.unavailable(POSTGRES, "make services")


def test_chromium():
    services.unavailable("Chromium not found at /nowhere/chromium", "make browsers")


def test_without_a_fix():
    services.unavailable("an odd reason")


def test_runs():
    pass
"""


def run_pytest(tmp_path, *args: str, require: bool = False) -> subprocess.CompletedProcess:
    """pytest on SKIPPING in its own process, with this suite's conftest and settings."""
    path = tmp_path / "test_skipping.py"
    path.write_text(SKIPPING)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(services.ROOT / "pyproject.toml")]
        + ["--rootdir", str(services.ROOT), "-p", "tests.conftest", "-p", "no:cacheprovider"]
        + ["--color=no", *args, str(path)],
        cwd=services.ROOT,
        env=services.process_env({"PAYMENTAPP_REQUIRE_SERVICES": "1" if require else None}),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["one process", "xdist"])
def test_the_summary_groups_the_skips_and_ends_with_the_command(tmp_path, args):
    result = run_pytest(tmp_path, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if " skipped, and why " in line)
    assert lines[start + 1 : start + 4] == [
        "2 tests skipped: PostgreSQL not reachable at postgresql://db.invalid/test; "
        "run `make services`",
        "1 test skipped: Chromium not found at /nowhere/chromium; run `make browsers`",
        "1 test skipped: an odd reason",
    ]
    # pytest's counts, then the command: the last thing a `make test` prints
    assert "1 passed, 4 skipped" in lines[-2]
    assert (
        lines[-1]
        == "To run the 3 skipped tests: `make services && make browsers`, then `make test`"
    )
    # the block is the one place skips are listed
    assert not any(line.startswith("SKIPPED") for line in lines)


def test_with_every_service_required_nothing_skips(tmp_path):
    result = run_pytest(tmp_path, require=True)
    assert result.returncode == 1
    assert "4 failed, 1 passed" in result.stdout
    assert " skipped, and why " not in result.stdout
    assert "To run the" not in result.stdout


def test_a_run_without_skips_says_nothing_more(tmp_path):
    result = run_pytest(tmp_path, "-k", "runs")
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("=")  # pytest's counts
    assert "skipped" not in result.stdout


@pytest.fixture
def old_node(tmp_path):
    """A `node` that says it is 20.11, first on PATH (an older Node is not at hand here)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    node = folder / "node"
    node.write_text("#!/bin/sh\necho 20.11.1\n")
    node.chmod(0o755)
    return services.process_env({"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"})


def test_make_names_a_node_too_old_for_the_lockfile(old_node):
    result = subprocess.run(
        ["make", "--no-print-directory", "check-tools"],
        cwd=services.ROOT,
        env=old_node,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "paymentapp: needs Node 20.19+ or 22.12+" in result.stderr
    assert "node is v20.11.1" in result.stderr


@pytest.mark.parametrize("target", ["install", "build"])
def test_install_and_build_check_the_tools_before_anything_else(target):
    planned = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", target],
        cwd=services.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert planned.returncode == 0, planned.stderr
    assert "scripts/check-tools.sh python node" in planned.stdout.splitlines()[0]
