"""What an AI agent said and did, read from its CLI's structured output into activity events:
`message` (assistant text), `tool_call` (the tool, a short summary of its input, the file or
command), `tool_result` (ok or error, truncated) and `usage` (turns, tokens, cost as the CLI
counted them). The raw lines stay in the log beside them; text is masked like the log.

Agent.output_format names the reader; `text` agents have none. Formats so far:
`claude-stream-json` (Claude Code's `--output-format stream-json --verbose`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jobs.events import Draft

RESULT_CHARS = 500
SUMMARY_CHARS = 200
# The input fields that say best what a tool call is about, in order of preference.
SUBJECTS = ("file_path", "path", "notebook_path", "command", "cmd", "pattern", "url", "query")


@dataclass
class Activity:
    """Reads one attempt's output lines; `drafts` for each, `final` once the agent is done."""

    mask: Callable[[str], str]
    final: dict[str, Any] = field(default_factory=dict)  # the closing message, turns, cost

    def drafts(self, text: str) -> list[Draft]:
        if not text.startswith("{"):
            return []
        try:
            data = json.loads(text)
        except ValueError:
            return []
        if not isinstance(data, dict):
            return []
        return list(self._claude(data))

    def _claude(self, data: dict[str, Any]) -> Iterator[Draft]:
        kind = data.get("type")
        content = (data.get("message") or {}).get("content")
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        if kind == "assistant":
            for block in blocks:
                if block.get("type") == "text" and str(block.get("text", "")).strip():
                    yield Draft("message", self.mask(str(block["text"])))
                elif block.get("type") == "tool_use":
                    yield self._tool_call(str(block.get("name", "?")), block.get("input"))
        elif kind == "user":
            for block in blocks:
                if block.get("type") == "tool_result":
                    ok = not block.get("is_error")
                    text = self.mask(_text_of(block.get("content")))[:RESULT_CHARS]
                    yield Draft("tool_result", text, data={"ok": ok})
        elif kind == "result":
            usage = data.get("usage") or {}
            counted = {
                "turns": int(data.get("num_turns") or 0),
                "input_tokens": int(usage.get("input_tokens") or 0),
                "output_tokens": int(usage.get("output_tokens") or 0),
                "cache_tokens": int(usage.get("cache_read_input_tokens") or 0),
                "cost_usd": float(data.get("total_cost_usd") or 0),
            }
            self.final = {"message": self.mask(str(data.get("result") or "")), **counted}
            yield Draft(
                "usage",
                f"{counted['turns']} turns, {counted['input_tokens']} tokens in, "
                f"{counted['output_tokens']} out",
                data=counted,
            )

    def _tool_call(self, tool: str, given: Any) -> Draft:
        given = given if isinstance(given, dict) else {}
        subject_key = next((k for k in SUBJECTS if isinstance(given.get(k), str)), None)
        subject = self.mask(str(given[subject_key]))[:SUMMARY_CHARS] if subject_key else ""
        if not subject and given:
            subject = self.mask(json.dumps(given, ensure_ascii=False))[:SUMMARY_CHARS]
        data: dict[str, Any] = {"tool": tool, "input": subject}
        if subject_key in ("file_path", "path", "notebook_path"):
            data["path"] = _relative(subject)
        elif subject_key in ("command", "cmd"):
            data["command"] = subject
        return Draft("tool_call", f"{tool} {subject}".strip(), data=data)


def reader(output_format: str, mask: Callable[[str], str]) -> Activity | None:
    return Activity(mask) if output_format == "claude-stream-json" else None


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
