"""The tree reads as the architecture: no module of the project grows past 700 lines (past that
it always holds two ideas; see ../shared/STYLE.md). Tests and migrations are left out."""

from __future__ import annotations

import subprocess

from tests.conftest import ROOT

MAX_LINES = 700


def test_no_module_outside_tests_and_migrations_is_over_700_lines():
    tracked = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    sizes = {
        path: len((ROOT / path).read_text().splitlines())
        for path in tracked
        if not path.startswith("tests/") and "/migrations/" not in path
    }
    assert len(sizes) > 50  # the project's modules were found
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}
