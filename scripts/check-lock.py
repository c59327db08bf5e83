#!/usr/bin/env python3
"""Offline check that the locks match the human-edited lists (`check-lock.py [DIR]`).

Every `name==version` in requirements.in must appear, with the same version, in
requirements.txt, and every pin of requirements-dev.in in requirements-dev.txt; every
locked line must carry hashes. Run `make lock` after editing a `.in` file.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            found[norm(match.group(1))] = match.group(3)
    return found


def problems(listed: Path, lock: Path) -> list[str]:
    wanted, locked = pins(listed), pins(lock)
    text = lock.read_text()
    out = []
    for name, version in sorted(wanted.items()):
        if name not in locked:
            out.append(f"{listed.name}: {name}=={version} is not in {lock.name}")
        elif locked[name] != version:
            out.append(
                f"{listed.name}: {name}=={version} but {lock.name} has {name}=={locked[name]}"
            )
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    for block in blocks:
        match = PIN.match(block.strip())
        if match and "--hash=sha256:" not in block:
            out.append(f"{lock.name}: {match.group(1)} has no hash")
    return out


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    found = problems(root / "requirements.in", root / "requirements.txt") + problems(
        root / "requirements-dev.in", root / "requirements-dev.txt"
    )
    for line in found:
        print(f"lock out of date: {line}", file=sys.stderr)
    if found:
        print("run `make lock` and commit requirements*.txt", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
