"""Turns a check tool's own machine-readable report into AgentHub's `::summary::` line.

Runs *inside* the sandbox (bound read-only at /opt/agenthub/report.py for every backend, see
jobs.sandbox.tools), so the tools' XML and JSON, written by code from the repository under test,
are parsed where that code already runs and never on the host. The host reads only the one
bounded JSON line this prints, and validates it again (jobs/checks.py). Standard library only:
it runs on whatever python3 the sandbox has.

    python3 report.py pytest JUNIT_XML             # pytest --junitxml=… -o junit_family=xunit1
    python3 report.py bandit BANDIT_JSON [--top N]  # bandit -f json -o …
    python3 report.py ruff BEFORE_JSON AFTER_JSON   # ruff check --output-format json, twice

Besides the summary it prints annotations (`::error file=…,line=…::`) for the first failing tests
and the top findings, so they stand out in the log too.
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

MAX_LISTED = 50
SEVERITIES = ("HIGH", "MEDIUM", "LOW")


def pytest_summary(junit: Path) -> dict[str, Any]:
    """Counts from pytest's own JUnit XML, one testcase element per test."""
    counts = Counter[str]()
    failing: list[dict[str, Any]] = []
    # Untrusted XML, parsed here in the sandbox beside the code that wrote it, never on the host.
    for case in ET.parse(junit).iter("testcase"):  # noqa: S314
        outcome = _outcome(case)
        counts[outcome] += 1
        if outcome in ("failed", "errors"):
            failing.append({"id": _test_id(case), "line": case.get("line", "")})
    for test in failing[:5]:
        where = f"file={test['id'].split('::')[0]}"
        if str(test["line"]).isdigit():  # xunit1's line is 0-based
            where += f",line={int(test['line']) + 1}"
        print(f"::error {where}::{test['id']} failed")
    return {
        "tests": {
            "passed": counts["passed"],
            "failed": counts["failed"],
            "errors": counts["errors"],
            "skipped": counts["skipped"],
            "failing": [test["id"] for test in failing[:MAX_LISTED]],
        }
    }


def _outcome(case: ET.Element) -> str:
    tags = {child.tag for child in case}
    if "error" in tags:
        return "errors"
    if "failure" in tags:
        return "failed"
    if "skipped" in tags:
        return "skipped"
    return "passed"


def _test_id(case: ET.Element) -> str:
    """pytest's node id (path::Class::name) from xunit1's file, classname and name."""
    name, classname, path = case.get("name", "?"), case.get("classname", ""), case.get("file")
    if not path:
        return f"{classname}::{name}" if classname else name
    module = path.removesuffix(".py").replace("/", ".")
    cls = classname[len(module) + 1 :] if classname.startswith(module + ".") else ""
    return "::".join(part for part in (path, cls, name) if part)


def bandit_summary(report: Path, top: int) -> dict[str, Any]:
    """Findings by severity and confidence, the most severe first, from bandit's JSON."""
    results = json.loads(report.read_text())["results"]
    rank = {level: n for n, level in enumerate(SEVERITIES)}
    results.sort(
        key=lambda r: (
            rank.get(r["issue_severity"], 3),
            rank.get(r["issue_confidence"], 3),
            r["filename"],
            r["line_number"],
        )
    )
    shown = [
        {
            "file": _relative(r["filename"]),
            "line": r["line_number"],
            "severity": r["issue_severity"].lower(),
            "confidence": r["issue_confidence"].lower(),
            "test": r["test_id"],
            "text": r["issue_text"][:300],
        }
        for r in results[:top]
    ]
    for finding in shown:
        kind = "error" if finding["severity"] == "high" else "warning"
        print(
            f"::{kind} file={finding['file']},line={finding['line']}::"
            f"{finding['test']} ({finding['severity']}): {finding['text']}"
        )
    return {
        "findings": {
            "total": len(results),
            "by_severity": _levels(r["issue_severity"] for r in results),
            "by_confidence": _levels(r["issue_confidence"] for r in results),
            "top": shown,
        }
    }


def _levels(values: Any) -> dict[str, int]:
    counted = Counter(value.lower() for value in values)
    return {level.lower(): counted[level.lower()] for level in SEVERITIES}


def _relative(path: str) -> str:
    return path.removeprefix("./")


def ruff_summary(before: Path, after: Path) -> dict[str, Any]:
    """What `ruff check --fix` fixed, rule by rule: the violations before less those after."""
    found, left = _rules(before), _rules(after)
    fixed = {rule: n for rule, n in sorted((found - left).items())}
    return {"fixes": {"fixed": fixed, "remaining": sum(left.values())}}


def _rules(report: Path) -> Counter[str]:
    return Counter(str(v.get("code") or "syntax") for v in json.loads(report.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="report.py", description=__doc__.split("\n")[0])
    tools = parser.add_subparsers(dest="tool", required=True)
    tools.add_parser("pytest").add_argument("junit", type=Path)
    bandit = tools.add_parser("bandit")
    bandit.add_argument("report", type=Path)
    bandit.add_argument("--top", type=int, default=10)
    ruff = tools.add_parser("ruff")
    ruff.add_argument("before", type=Path)
    ruff.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.tool == "pytest":
            summary = pytest_summary(args.junit)
        elif args.tool == "bandit":
            summary = bandit_summary(args.report, max(0, min(args.top, MAX_LISTED)))
        else:
            summary = ruff_summary(args.before, args.after)
    except (OSError, ValueError, KeyError, TypeError, ET.ParseError) as exc:
        print(f"::warning::no {args.tool} report to summarise: {exc}")
        return 1
    print("::summary::" + json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
