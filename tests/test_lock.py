"""The dependency locks: every pin of the human-edited lists is locked, with hashes."""

import shutil
import subprocess
import sys

import pytest

from tests.services import ROOT

FILES = ("requirements.in", "requirements.txt", "requirements-dev.in", "requirements-dev.txt")


def check(folder) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check-lock.py"), str(folder)],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def copy(tmp_path):
    for name in FILES:
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_the_committed_locks_match(copy):
    assert check(copy).returncode == 0


def test_a_version_the_lock_does_not_have_fails(copy):
    listed = copy / "requirements.in"
    listed.write_text(listed.read_text().replace("Flask==3.1.3", "Flask==3.0.0"))
    result = check(copy)
    assert result.returncode == 1
    assert "flask==3.0.0 but requirements.txt has flask==3.1.3" in result.stderr


def test_a_package_the_lock_does_not_have_fails(copy):
    listed = copy / "requirements-dev.in"
    listed.write_text(listed.read_text() + "leftpad==1.0.0\n")
    result = check(copy)
    assert (
        result.returncode == 1 and "leftpad==1.0.0 is not in requirements-dev.txt" in result.stderr
    )


def test_every_locked_package_carries_hashes():
    for name in ("requirements.txt", "requirements-dev.txt"):
        text = (ROOT / name).read_text()
        pins = [line for line in text.splitlines() if "==" in line and not line.startswith("#")]
        assert pins and all(line.rstrip().endswith("\\") for line in pins), name
        options = [line for line in text.splitlines() if line.startswith(("-i", "--"))]
        assert options == [] and "://" not in text  # no index or host named in the lock
