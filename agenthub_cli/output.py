"""What the CLI prints: untrusted text neutralised for the terminal, jobs and events as lines."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

# C0 controls except tab, DEL and C1 controls (0x9b is a one-byte CSI on some terminals).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_CONTROL_KEEP_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# SGR colours of `logs` lines by kind; only on a terminal, and never with NO_COLOR set.
COLOURS = {"error": "31", "warning": "33", "stderr": "35", "notice": "36", "progress": "32"}


def clean(text: str, *, keep_newlines: bool = False) -> str:
    """Make untrusted text safe to print on a terminal: ESC shown as `^[`, other controls gone."""
    pattern = _CONTROL_KEEP_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub("", text.replace("\x1b", "^["))


def out(text: str) -> None:
    print(text, flush=True)


def out_json(data: Any, *, indent: int | None = 2) -> None:
    # ensure_ascii escapes every control character, so JSON output is always terminal-safe.
    out(json.dumps(data, indent=indent))


def err(text: str) -> None:
    print(f"agenthub: {clean(text)}", file=sys.stderr, flush=True)


def bell() -> None:
    sys.stderr.write("\a")
    sys.stderr.flush()


def status_line(job: dict[str, Any]) -> str:
    title = f"  {job['title']}" if job.get("title") else ""
    outcome = job.get("summary_text") or job.get("reason")
    line = f"{job.get('id')} {job.get('status')}{title}"
    return clean(f"{line} — {outcome}" if outcome else line)


def summary(job: dict[str, Any]) -> list[str]:
    base = f"{job.get('base_ref')} ({str(job.get('base_commit') or '')[:10]})"
    lines = [
        f"{job.get('id')}  {job.get('status')}",
        f"title:    {job.get('title')}",
        f"repo:     {job.get('repo')} @ {base}",
        f"agent:    {job.get('agent')}   submitted by {job.get('submitter')}",
    ]
    if job.get("progress") is not None:
        lines.append(f"progress: {job['progress']}% {job.get('progress_message') or ''}".rstrip())
    if job.get("merge_commit"):
        lines.append(f"merged:   {job['merge_commit']}")
    if job.get("conflicts"):
        lines.append(f"conflicts: {', '.join(job['conflicts'])}")
    if job.get("summary_text"):
        lines.append(f"result:   {job['summary_text']}")
    for test in (job.get("summary") or {}).get("tests", {}).get("failing", [])[:10]:
        lines.append(f"  failing {test}")
    for finding in (job.get("summary") or {}).get("findings", {}).get("top", [])[:10]:
        lines.append(
            f"  {finding['severity']:6} {finding['file']}:{finding['line']}"
            f"  {finding['test']} {finding['text']}"
        )
    if job.get("reason"):
        lines.append(f"why:      {job['reason']}")
    lines += [attempt_line(a) for a in job.get("attempts", [])]
    return lines


def attempt_line(attempt: dict[str, Any]) -> str:
    stats = attempt.get("diff_stats") or {}
    line = (
        f"  attempt {attempt.get('number')}: {attempt.get('status')}"
        f"  {stats.get('files', 0)} file(s) +{stats.get('added', 0)} -{stats.get('deleted', 0)}"
    )
    if attempt.get("partial"):
        line += " (partial)"
    if attempt.get("exit_code") is not None:
        line += f"  exit {attempt['exit_code']}"
    if attempt.get("reason"):
        line += f"  {attempt['reason']}"
    return line


LIST_COLUMNS = ("ID", "STATUS", "REPO", "AGENT", "BY", "AGE", "TITLE")
TITLE_WIDTH = 60


def job_row(job: dict[str, Any]) -> tuple[str, ...]:
    title = clean(str(job.get("title") or ""))
    if len(title) > TITLE_WIDTH:
        title = title[: TITLE_WIDTH - 1] + "…"
    cells = [job.get(k) for k in ("id", "status", "repo", "agent", "submitter")]
    return (*(clean(str(c or "")) for c in cells), age(str(job.get("created_at") or "")), title)


def age(ts: str) -> str:
    try:
        seconds = (datetime.now(UTC) - datetime.fromisoformat(ts)).total_seconds()
    except (ValueError, TypeError):
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


def event_printer(*, as_json: bool) -> Callable[[dict[str, Any]], None]:
    if as_json:
        return lambda event: out_json(event, indent=None)  # one JSON object a line
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    return lambda event: out(paint(event_line(event), event) if colour else event_line(event))


def event_line(event: dict[str, Any]) -> str:
    kind = str(event.get("kind", ""))
    if event.get("stream") == "stderr":
        kind += ":stderr"
    data = event.get("data") or {}
    text = str(event.get("text", ""))
    if kind.startswith("progress") and "percent" in data:
        text = f"{data['percent']}% {text}".rstrip()
    if data.get("file"):
        where = f"{data['file']}:{data['line']}" if data.get("line") else str(data["file"])
        text = f"{where}: {text}"
    return f"{clock(str(event.get('ts', '')))} [{clean(kind)}] {clean(text)}"


def paint(line: str, event: dict[str, Any]) -> str:
    """Colour a line already made safe by clean(): the only escapes in it are ours."""
    kind = str(event.get("kind"))
    sgr = COLOURS.get(kind) or (COLOURS["stderr"] if event.get("stream") == "stderr" else None)
    if kind == "status":
        sgr = "1"
    return f"\x1b[{sgr}m{line}\x1b[0m" if sgr else line


def clock(ts: str) -> str:
    try:
        return datetime.fromisoformat(ts).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return "--:--:--"
