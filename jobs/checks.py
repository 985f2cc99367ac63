"""Check results: the `::summary::{json}` line a check agent prints, validated, told in one line,
and the verdict it implies.

The built-in checks print it through jobs/sandbox/report.py, which reads the tools' own reports
inside the sandbox (pytest's JUnit XML, bandit's JSON, ruff's JSON); any agent may print one.
What arrives is the agent's output, so it is validated here, bounded, before it is stored:

- `tests`: {passed, failed, errors, skipped, failing: [test ids]} (pytest)
- `findings`: {total, by_severity, by_confidence, top: [{file, line, severity, confidence, test,
  text}]} (security-scan). A result with findings ends its job `findings`, never a green
  "no changes" (jobs/services/lifecycle.py).
- `fixes`: {fixed: {rule: count}, remaining} (ruff-fix)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_SUMMARY_BYTES = 64 * 1024
Count = Annotated[int, Field(ge=0, le=10**9)]
Text = Annotated[str, Field(max_length=500)]
Level = Literal["high", "medium", "low"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Tests(_Strict):
    passed: Count
    failed: Count
    errors: Count
    skipped: Count
    failing: list[Text] = Field(default_factory=list, max_length=50)


class Finding(_Strict):
    file: Text
    line: Count
    severity: Level
    confidence: Level
    test: Annotated[str, Field(max_length=64)]
    text: Text


class Findings(_Strict):
    total: Count
    by_severity: dict[Level, Count] = Field(default_factory=dict)
    by_confidence: dict[Level, Count] = Field(default_factory=dict)
    top: list[Finding] = Field(default_factory=list, max_length=50)


class Fixes(_Strict):
    fixed: dict[Annotated[str, Field(max_length=32)], Count] = Field(max_length=500)
    remaining: Count


class Summary(_Strict):
    tests: Tests | None = None
    findings: Findings | None = None
    fixes: Fixes | None = None


class Invalid(ValueError):
    """A `::summary::` line that is not a check result; the message says why."""


def parse(message: str) -> dict[str, Any]:
    """The validated summary of a `::summary::` line's message, without the parts it left out."""
    if len(message.encode()) > MAX_SUMMARY_BYTES:
        raise Invalid(f"longer than {MAX_SUMMARY_BYTES} bytes")
    try:
        summary = Summary.model_validate_json(message)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the summary"
        raise Invalid(f"{where}: {first['msg']}") from None
    found = summary.model_dump(exclude_none=True)
    if not found:
        raise Invalid("it names none of tests, findings, fixes")
    return found


def describe(summary: dict[str, Any]) -> str:
    """The summary in one line, for the log, the dashboard card and `agenthub status`."""
    parts = []
    if tests := summary.get("tests"):
        counted = [f"{tests[k]} {k}" for k in ("passed", "failed", "errors", "skipped") if tests[k]]
        parts.append(", ".join(counted) or "no tests ran")
    if findings := summary.get("findings"):
        total = findings["total"]
        levels = findings.get("by_severity", {})
        by_level = ", ".join(f"{levels[k]} {k}" for k in ("high", "medium", "low") if levels.get(k))
        noun = "finding" if total == 1 else "findings"
        told = f"{total} {noun}" + (f" ({by_level})" if by_level else "")
        parts.append(told if total else "no findings")
    if fixes := summary.get("fixes"):
        fixed = sum(fixes["fixed"].values())
        rules = ", ".join(f"{rule} ×{n}" for rule, n in list(fixes["fixed"].items())[:5])
        parts.append(
            f"fixed {fixed}" + (f" ({rules})" if rules else "") + f", {fixes['remaining']} left"
        )
    return "; ".join(parts)


def has_findings(summary: dict[str, Any]) -> bool:
    """Whether a result reported problems that are not test failures (those fail the attempt)."""
    return bool(summary.get("findings", {}).get("total"))
