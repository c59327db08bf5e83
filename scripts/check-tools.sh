#!/usr/bin/env bash
# The prerequisites the README states, checked before anything is installed, each with one
# line that says what is missing: `check-tools.sh python` (Python 3.11+ with venv: $PYTHON,
# default python3), `check-tools.sh node` (Node with npm, in the versions the lockfile's
# vite accepts: ^20.19 or 22.12 and later). `make install` and `make build` run both first.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

fail() {
  echo "paymentapp: $*" >&2
  exit 1
}

python_ok() {
  local version
  version=$("$PYTHON" -c 'import platform; print(platform.python_version())' 2>/dev/null) ||
    fail "needs Python 3.11+, and $PYTHON does not run (PYTHON=… names another)"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    fail "needs Python 3.11+; $PYTHON is $version (PYTHON=… names another)"
  # Debian leaves ensurepip out of python3 (python3-venv has it): `python3 -m venv` fails
  if [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    fail "needs Python's venv module to make $VENV (Debian: sudo apt-get install python3-venv)"
  fi
}

node_ok() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    fail "needs Node 20.19+ (or 22.12+) with npm, to build the JS client; none found"
  fi
  local version major minor
  version=$(node -p process.versions.node)
  IFS=. read -r major minor _ <<<"$version"
  if ! { ((major == 20 && minor >= 19)) || ((major == 22 && minor >= 12)) || ((major > 22)); }; then
    fail "needs Node 20.19+ or 22.12+ (the lockfile's vite does); node is v$version"
  fi
}

for tool in "$@"; do
  case "$tool" in
    python) python_ok ;;
    node) node_ok ;;
    *) fail "check-tools.sh: unknown tool $tool (python or node)" ;;
  esac
done
