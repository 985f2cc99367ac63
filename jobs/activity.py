"""What an AI agent said and did, read from its CLI's output into activity events: `message`
(assistant text), `tool_call` (the tool, a short summary of its input, the file or command),
`tool_result` (ok or error, truncated) and `usage` (turns and tokens as the CLI counted them;
the gateway's own count is the attempt's `usage`). The raw lines stay in the log beside them;
text is masked like the log.

Agent.output_format names the reader (READERS); `text` agents have none. One class per CLI's
format, each turning one parsed line into drafts; `final` holds the closing message (and what
the CLI counted) once the agent is done, for the review page's summary.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterator
from typing import Any

from jobs.events import Draft
from jobs.models import OutputFormat

RESULT_CHARS = 500
SUMMARY_CHARS = 200
# The input fields that say best what a tool call is about, in order of preference.
PATH_KEYS = ("file_path", "path", "notebook_path", "absolute_path")
COMMAND_KEYS = ("command", "cmd")
SUBJECTS = (*PATH_KEYS, *COMMAND_KEYS, "pattern", "url", "query")


class Activity:
    """Reads one attempt's output lines; `drafts` for each, `final` once the agent is done."""

    def __init__(self, mask: Callable[[str], str]) -> None:
        self.mask = mask
        self.final: dict[str, Any] = {}

    def drafts(self, text: str) -> list[Draft]:
        raise NotImplementedError

    def tool_call(self, tool: str, given: Any) -> Draft:
        given = given if isinstance(given, dict) else {}
        subject_key = next((k for k in SUBJECTS if isinstance(given.get(k), str)), None)
        subject = self.mask(str(given[subject_key]))[:SUMMARY_CHARS] if subject_key else ""
        if not subject and given:
            subject = self.mask(json.dumps(given, ensure_ascii=False))[:SUMMARY_CHARS]
        data: dict[str, Any] = {"tool": tool, "input": subject}
        if subject_key in PATH_KEYS:
            data["path"] = _relative(subject)
        elif subject_key in COMMAND_KEYS:
            data["command"] = subject
        return Draft("tool_call", f"{tool} {subject}".strip(), data=data)

    def tool_result(self, ok: bool, output: Any) -> Draft:
        return Draft("tool_result", self.mask(_text_of(output))[:RESULT_CHARS], data={"ok": ok})

    def message(self, text: str) -> Draft | None:
        text = self.mask(text).strip()
        if not text:
            return None
        self.final["message"] = text
        return Draft("message", text)

    def usage(self, counted: dict[str, Any]) -> Draft:
        self.final.update(counted)
        turns = counted.get("turns") or 0
        said = f"{turns} turn{'s' if turns != 1 else ''}, " if turns else ""
        return Draft(
            "usage",
            f"{said}{counted['input_tokens']} tokens in, {counted['output_tokens']} out",
            data=counted,
        )


class JsonLines(Activity):
    """A CLI that prints one JSON object a line; anything else on stdout is left to the log."""

    def drafts(self, text: str) -> list[Draft]:
        if not text.startswith("{"):
            return []
        try:
            data = json.loads(text)
        except ValueError:
            return []
        if not isinstance(data, dict):
            return []
        return [draft for draft in self.read(data) if draft is not None]

    def read(self, data: dict[str, Any]) -> Iterator[Draft | None]:
        raise NotImplementedError


class ClaudeStream(JsonLines):
    """Claude Code's `--output-format stream-json --verbose`."""

    def read(self, data: dict[str, Any]) -> Iterator[Draft | None]:
        kind = data.get("type")
        content = (data.get("message") or {}).get("content")
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        if kind == "assistant":
            for block in blocks:
                if block.get("type") == "text":
                    yield self.message(str(block.get("text", "")))
                elif block.get("type") == "tool_use":
                    yield self.tool_call(str(block.get("name", "?")), block.get("input"))
        elif kind == "user":
            for block in blocks:
                if block.get("type") == "tool_result":
                    yield self.tool_result(not block.get("is_error"), block.get("content"))
        elif kind == "result":
            usage = data.get("usage") or {}
            self.message(str(data.get("result") or ""))
            yield self.usage(
                {
                    "turns": int(data.get("num_turns") or 0),
                    "input_tokens": int(usage.get("input_tokens") or 0),
                    "output_tokens": int(usage.get("output_tokens") or 0),
                    "cache_tokens": int(usage.get("cache_read_input_tokens") or 0),
                    "cost_usd": float(data.get("total_cost_usd") or 0),
                }
            )


class CodexJson(JsonLines):
    """Codex's `exec --json`: items started and completed, and each turn's usage."""

    turns = 0

    def read(self, data: dict[str, Any]) -> Iterator[Draft | None]:
        kind, item = data.get("type"), data.get("item") or {}
        what = item.get("type") if isinstance(item, dict) else None
        if kind == "item.started" and what == "command_execution":
            yield self.tool_call("shell", {"command": _unwrapped(str(item.get("command", "")))})
        elif kind == "item.completed" and what == "command_execution":
            yield self.tool_result(item.get("exit_code") == 0, item.get("aggregated_output"))
        elif kind == "item.completed" and what == "file_change":
            for change in item.get("changes") or []:
                if isinstance(change, dict):
                    yield self.tool_call("apply_patch", {"path": str(change.get("path", ""))})
            yield self.tool_result(item.get("status") == "completed", "")
        elif kind == "item.completed" and what == "agent_message":
            yield self.message(str(item.get("text", "")))
        elif kind == "turn.completed":
            self.turns += 1
            usage = data.get("usage") or {}
            yield self.usage(
                {
                    "turns": self.turns,
                    "input_tokens": int(usage.get("input_tokens") or 0),
                    "output_tokens": int(usage.get("output_tokens") or 0),
                    "cache_tokens": int(usage.get("cached_input_tokens") or 0),
                }
            )


class GeminiStream(JsonLines):
    """Gemini CLI's `--output-format stream-json`. The assistant's text comes in deltas: they
    are joined into one message, said when anything else happens."""

    def __init__(self, mask: Callable[[str], str]) -> None:
        super().__init__(mask)
        self.said: list[str] = []

    def read(self, data: dict[str, Any]) -> Iterator[Draft | None]:
        kind = data.get("type")
        if kind == "message" and data.get("role") == "assistant":
            self.said.append(str(data.get("content", "")))
            return
        if self.said:
            yield self.message("".join(self.said))
            self.said.clear()
        if kind == "tool_use":
            yield self.tool_call(str(data.get("tool_name", "?")), data.get("parameters"))
        elif kind == "tool_result":
            error = data.get("error")
            output = (error or {}).get("message") if isinstance(error, dict) else data.get("output")
            yield self.tool_result(data.get("status") == "success", output)
        elif kind == "result":
            stats = data.get("stats") or {}
            yield self.usage(
                {
                    "input_tokens": int(stats.get("input_tokens") or 0),
                    "output_tokens": int(stats.get("output_tokens") or 0),
                    "cache_tokens": int(stats.get("cached") or 0),
                }
            )


class AiderText(Activity):
    """aider prints text only: the edits it applied (or failed to) are its tool calls."""

    APPLIED = re.compile(r"^Applied edit to (?P<path>.+)$")
    FAILED = re.compile(r"^# \d+ SEARCH/REPLACE blocks? failed to match")

    def drafts(self, text: str) -> list[Draft]:
        if applied := self.APPLIED.match(text):
            return [
                self.tool_call("edit", {"path": applied["path"]}),
                self.tool_result(True, ""),
            ]
        if self.FAILED.match(text):
            return [self.tool_result(False, text)]
        return []


class OpenHandsJson(JsonLines):
    """docker/openhands/driver.py's events: the agent's messages, its actions (tool calls) and
    their observations, and a closing Result with the SDK's count. Its `finish` call carries the
    closing message."""

    def read(self, data: dict[str, Any]) -> Iterator[Draft | None]:
        kind, tool = data.get("type"), str(data.get("tool_name") or "?")
        if kind == "MessageEvent" and data.get("source") == "agent":
            yield self.message(str(data.get("text", "")))
        elif kind == "ActionEvent" and tool == "finish":
            yield self.message(str((data.get("action") or {}).get("message", "")))
        elif kind == "ActionEvent":
            if str(data.get("text", "")).strip():
                yield self.message(str(data["text"]))
            yield self.tool_call(tool, data.get("action"))
        elif kind == "ObservationEvent" and tool != "finish":
            ok = not data.get("is_error") and data.get("exit_code") in (None, 0)
            yield self.tool_result(ok, data.get("observation"))
        elif kind == "AgentErrorEvent":
            yield self.tool_result(False, data.get("text"))
        elif kind == "Result":
            yield self.usage(
                {
                    "input_tokens": int(data.get("input_tokens") or 0),
                    "output_tokens": int(data.get("output_tokens") or 0),
                    "cache_tokens": int(data.get("cache_tokens") or 0),
                }
            )


READERS: dict[str, type[Activity]] = {
    OutputFormat.CLAUDE_STREAM_JSON: ClaudeStream,
    OutputFormat.CODEX_JSON: CodexJson,
    OutputFormat.GEMINI_STREAM_JSON: GeminiStream,
    OutputFormat.AIDER_TEXT: AiderText,
    OutputFormat.OPENHANDS_JSON: OpenHandsJson,
}


def reader(output_format: str, mask: Callable[[str], str]) -> Activity | None:
    found = READERS.get(output_format)
    return found(mask) if found else None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict)
        ).strip()
    return ""


def _relative(path: str) -> str:
    """A workspace path as the diff names it."""
    return path.removeprefix("/workspace/")


def _unwrapped(command: str) -> str:
    """`/bin/bash -lc "ls -l"` as `ls -l`: Codex runs every command through a login shell."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    if len(words) == 3 and words[0].endswith("sh") and words[1] in ("-c", "-lc"):
        return words[2]
    return command
