"""Reading the usage a provider reports out of a response the gateway forwards, streamed (SSE)
or whole, in each wire format: Anthropic Messages, OpenAI Responses and Chat Completions, and
Gemini generateContent / streamGenerateContent.

For Anthropic's stream the input tokens come from `message_start` and the output tokens from the
last `message_delta`, whose count is cumulative; Gemini repeats cumulative `usageMetadata` in
its chunks, so the last one counts; OpenAI's streams report usage once, at the end.

The meter also says when the response is `complete` (a stream's closing event, or a whole
body's last byte), so the gateway can record the usage before the agent reads that last chunk:
an agent that moves on at once must find its request already counted."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# The closing event of an Anthropic or Responses stream; Gemini's last chunk has a finishReason.
ENDS = ("message_stop", "response.completed", "response.failed", "response.incomplete")


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_tokens: int = 0


def is_counting(path: str) -> bool:
    """Token-counting calls cost nothing and are not usage."""
    return path.rstrip("/").endswith(("/count_tokens", ":countTokens"))


def model_of(path: str, body: dict[str, Any]) -> str:
    """The model a request asks for: in the body, or (Gemini) in the path."""
    if isinstance(body.get("model"), str):
        return str(body["model"])
    _, found, rest = path.partition("models/")
    return rest.split(":", 1)[0] if found else ""


class Meter:
    """Fed the response body as it passes through; `usage` once it has all gone by."""

    def __init__(self, length: int | None = None) -> None:
        self.usage = Usage()
        self.complete = False
        self._length = length  # a whole body's Content-Length
        self._received = 0
        self._buffer = b""
        self._whole = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._whole += chunk if len(self._whole) < 16 * 2**20 else b""
        self._received += len(chunk)
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._line(line.strip())
        if self._length is not None and self._received >= self._length:
            self.complete = True

    def finish(self) -> Usage:
        if self._buffer.strip():
            self._line(self._buffer.strip())
        if not any(vars(self.usage).values()):
            # Not a stream: one JSON document.
            try:
                self._read(json.loads(bytes(self._whole)))
            except ValueError:
                pass
        return self.usage

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        payload = line[5:].strip()
        if payload == b"[DONE]":  # Chat Completions' end of stream
            self.complete = True
            return
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if isinstance(data, dict):
            self._read(data)

    def _read(self, data: dict[str, Any]) -> None:
        usage = self.usage
        kind = data.get("type")
        if kind in ENDS or any(
            isinstance(c, dict) and c.get("finishReason") for c in data.get("candidates") or []
        ):
            self.complete = True
        if kind == "message_start":  # Anthropic, streamed
            _anthropic_input(usage, data.get("message", {}).get("usage") or {})
        elif kind == "message_delta":
            usage.output_tokens = int((data.get("usage") or {}).get("output_tokens") or 0)
        elif kind == "message" and "usage" in data:  # Anthropic, whole
            _anthropic_input(usage, data["usage"])
            usage.output_tokens = int(data["usage"].get("output_tokens") or 0)
        elif kind == "response.completed":  # OpenAI Responses, streamed
            _openai(usage, (data.get("response") or {}).get("usage") or {})
        elif data.get("object") == "response":  # OpenAI Responses, whole
            _openai(usage, data.get("usage") or {})
        elif str(data.get("object", "")).startswith("chat.completion") and data.get("usage"):
            _openai(usage, data["usage"])
        elif "usageMetadata" in data:  # Gemini, whole or each chunk (cumulative)
            meta = data["usageMetadata"]
            usage.input_tokens = int(meta.get("promptTokenCount") or 0)
            usage.output_tokens = int(meta.get("candidatesTokenCount") or 0) + int(
                meta.get("thoughtsTokenCount") or 0
            )
            usage.cache_tokens = int(meta.get("cachedContentTokenCount") or 0)


def _anthropic_input(usage: Usage, reported: dict[str, Any]) -> None:
    # Writing the cache is billed as input; reading it is the cheap part.
    usage.input_tokens = int(reported.get("input_tokens") or 0) + int(
        reported.get("cache_creation_input_tokens") or 0
    )
    usage.cache_tokens = int(reported.get("cache_read_input_tokens") or 0)


def _openai(usage: Usage, reported: dict[str, Any]) -> None:
    """Responses (input/output_tokens) and Chat Completions (prompt/completion_tokens)."""
    usage.input_tokens = int(reported.get("input_tokens") or reported.get("prompt_tokens") or 0)
    usage.output_tokens = int(
        reported.get("output_tokens") or reported.get("completion_tokens") or 0
    )
    details = reported.get("input_tokens_details") or reported.get("prompt_tokens_details") or {}
    usage.cache_tokens = int(details.get("cached_tokens") or 0)
