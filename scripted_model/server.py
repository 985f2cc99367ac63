"""The scripted model server: speaks the providers' wire formats on 127.0.0.1 and plays a
script instead of thinking, so the real agent CLIs can be run with no provider reachable.

A script is JSON: `{"turns": [turn, ...], "usage": {"input_tokens": n, "output_tokens": n,
"cache_tokens": n}}`, where a turn is `{"tool": {"name": ..., "input": {...}}}` (ask the agent
to call one of its tools) or `{"text": "..."}` (answer and end). Each CLI has its own tools, so
`tool` may also be a list of calls: the first one the request offers is made; a turn with both
`tool` and `text` answers with the text when the request offers none of them (aider offers no
tools; it edits through the text). So one script can drive every preset. Which turn a request
gets is the number of tool results its conversation already holds, so each run of the agent
walks the script from the start. Every response reports the script's usage.

Wire formats: Anthropic Messages (`POST /v1/messages`), OpenAI Responses (`POST /v1/responses`)
and Chat Completions (`POST /v1/chat/completions`), Gemini (`POST /v1beta/models/<m>:
generateContent` and `:streamGenerateContent`), each streamed as SSE or whole. `GET /_scripted/
requests` lists what it was sent (path, headers, body), for tests to check what reached it.

    python -m scripted_model.server SCRIPT.json [--port N]
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Script:
    turns: list[dict[str, Any]]
    usage: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, data: dict[str, Any]) -> Script:
        turns = data.get("turns")
        if not isinstance(turns, list) or not turns:
            raise ValueError("a script needs a non-empty list of turns")
        for n, turn in enumerate(turns, 1):
            if not (isinstance(turn, dict) and ("tool" in turn or "text" in turn)):
                raise ValueError(f"turn {n} must have `tool`, `text` or both")
            calls = _calls(turn)
            if "tool" in turn and not (
                calls and all(isinstance(c.get("name"), str) for c in calls)
            ):
                raise ValueError(f"turn {n}: `tool` must be a call or a list of calls, each named")
        return cls(turns, {k: int(v) for k, v in (data.get("usage") or {}).items()})

    def turn(self, done: int, offered: set[str]) -> dict[str, Any]:
        """`{"tool": call}` or `{"text": ...}`: what to answer a request that offers these
        tools, with `done` tool results in its conversation."""
        turn = self.turns[min(done, len(self.turns) - 1)]
        calls = _calls(turn)
        for call in calls:
            if call["name"] in offered:
                return {"tool": call}
        if "text" in turn:
            return {"text": turn["text"]}
        return {"tool": calls[0]}

    def count(self, name: str) -> int:
        return self.usage.get(name, 0)


def _calls(turn: dict[str, Any]) -> list[dict[str, Any]]:
    calls = turn.get("tool")
    if isinstance(calls, dict):
        return [calls]
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def _offered(body: dict[str, Any]) -> set[str]:
    """The tool names a request offers, in any of the wire formats."""
    names = set()
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        names.add(tool.get("name"))  # Anthropic, Responses
        names.add((tool.get("function") or {}).get("name"))  # Chat Completions
        for declared in tool.get("functionDeclarations") or []:  # Gemini
            names.add(declared.get("name") if isinstance(declared, dict) else None)
    return {name for name in names if isinstance(name, str)}


class ScriptedModel(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script: Script, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.script = script
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> ScriptedModel:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedModel
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/_scripted/requests":
            with self.server.lock:
                self._json(200, {"requests": self.server.received})
        else:
            self._json(404, {"error": f"no GET {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.server.lock:
            self.server.received.append(
                {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
            )
        path = self.path.split("?", 1)[0]
        if path.endswith("/messages/count_tokens"):
            self._json(200, {"input_tokens": self.server.script.count("input_tokens")})
        elif path.endswith("/messages"):
            self._anthropic(body)
        elif path.endswith("/chat/completions"):
            self._chat(body)
        elif path.endswith("/responses"):
            self._responses(body)
        elif path.endswith((":generateContent", ":streamGenerateContent")):
            self._gemini(body, streamed=path.endswith(":streamGenerateContent"))
        else:
            self._json(404, {"error": f"no POST {path} in the scripted model server"})

    # --- Anthropic Messages ---------------------------------------------------------------

    def _anthropic(self, body: dict[str, Any]) -> None:
        done = sum(
            1
            for message in body.get("messages", [])
            if isinstance(message.get("content"), list)
            for block in message["content"]
            if isinstance(block, dict) and block.get("type") == "tool_result"
        )
        turn, script = self.server.script.turn(done, _offered(body)), self.server.script
        if "tool" in turn:
            block = {
                "type": "tool_use",
                "id": f"toolu_{done:04d}",
                "name": turn["tool"]["name"],
                "input": turn["tool"].get("input", {}),
            }
            stop = "tool_use"
        else:
            block, stop = {"type": "text", "text": turn["text"]}, "end_turn"
        usage = {
            "input_tokens": script.count("input_tokens"),
            "cache_read_input_tokens": script.count("cache_tokens"),
            "output_tokens": script.count("output_tokens"),
        }
        message = {
            "id": f"msg_{done:04d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "scripted"),
            "content": [block],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            self._json(200, message)
            return
        start = {**message, "content": [], "stop_reason": None, "usage": {**usage}}
        start["usage"]["output_tokens"] = 1
        if block["type"] == "tool_use":
            opening = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        else:
            opening = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        self._sse(
            [
                ("message_start", {"type": "message_start", "message": start}),
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": opening},
                ),
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                ),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                (
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": stop, "stop_sequence": None},
                        "usage": {"output_tokens": usage["output_tokens"]},
                    },
                ),
                ("message_stop", {"type": "message_stop"}),
            ]
        )

    # --- OpenAI Chat Completions ----------------------------------------------------------

    def _chat(self, body: dict[str, Any]) -> None:
        done = sum(1 for m in body.get("messages", []) if m.get("role") == "tool")
        turn, script = self.server.script.turn(done, _offered(body)), self.server.script
        if "tool" in turn:
            call = {
                "id": f"call_{done:04d}",
                "type": "function",
                "function": {
                    "name": turn["tool"]["name"],
                    "arguments": json.dumps(turn["tool"].get("input", {})),
                },
            }
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": turn["text"]}, "stop"
        usage = {
            "prompt_tokens": script.count("input_tokens"),
            "completion_tokens": script.count("output_tokens"),
            "total_tokens": script.count("input_tokens") + script.count("output_tokens"),
            "prompt_tokens_details": {"cached_tokens": script.count("cache_tokens")},
        }
        base = {"id": f"chatcmpl-{done:04d}", "created": 0, "model": body.get("model", "scripted")}
        if not body.get("stream"):
            self._json(
                200,
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                },
            )
            return
        if "tool_calls" in message:
            message["tool_calls"][0]["index"] = 0
        chunk = {**base, "object": "chat.completion.chunk"}
        events = [
            {**chunk, "choices": [{"index": 0, "delta": message, "finish_reason": None}]},
            {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
        ]
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**chunk, "choices": [], "usage": usage})
        self._sse([(None, event) for event in events], done_marker=True)

    # --- OpenAI Responses -----------------------------------------------------------------

    def _responses(self, body: dict[str, Any]) -> None:
        given = body.get("input")
        done = sum(
            1
            for item in (given if isinstance(given, list) else [])
            if isinstance(item, dict) and item.get("type") == "function_call_output"
        )
        turn, script = self.server.script.turn(done, _offered(body)), self.server.script
        if "tool" in turn:
            item: dict[str, Any] = {
                "type": "function_call",
                "id": f"fc_{done:04d}",
                "call_id": f"call_{done:04d}",
                "name": turn["tool"]["name"],
                "arguments": json.dumps(turn["tool"].get("input", {})),
                "status": "completed",
            }
        else:
            item = {
                "type": "message",
                "id": f"msg_{done:04d}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": turn["text"], "annotations": []}],
            }
        response: dict[str, Any] = {
            "id": f"resp_{done:04d}",
            "object": "response",
            "created_at": 0,
            "status": "completed",
            "model": body.get("model", "scripted"),
            "output": [item],
            "usage": {
                "input_tokens": script.count("input_tokens"),
                "input_tokens_details": {"cached_tokens": script.count("cache_tokens")},
                "output_tokens": script.count("output_tokens"),
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": script.count("input_tokens") + script.count("output_tokens"),
            },
        }
        if not body.get("stream"):
            self._json(200, response)
            return
        pending = {**response, "status": "in_progress", "output": [], "usage": None}
        stages: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": pending}),
            ("response.output_item.added", {"output_index": 0, "item": item}),
            ("response.output_item.done", {"output_index": 0, "item": item}),
            ("response.completed", {"response": response}),
        ]
        self._sse(
            [
                (name, {"type": name, "sequence_number": n, **data})
                for n, (name, data) in enumerate(stages)
            ]
        )

    # --- Gemini -------------------------------------------------------------------------------

    def _gemini(self, body: dict[str, Any], *, streamed: bool) -> None:
        done = sum(
            1
            for content in body.get("contents", [])
            for part in content.get("parts", [])
            if isinstance(part, dict) and "functionResponse" in part
        )
        turn, script = self.server.script.turn(done, _offered(body)), self.server.script
        if "tool" in turn:
            part = {
                "functionCall": {
                    "name": turn["tool"]["name"],
                    "args": turn["tool"].get("input", {}),
                }
            }
        else:
            part = {"text": turn["text"]}
        answer = {
            "candidates": [
                {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": script.count("input_tokens"),
                "candidatesTokenCount": script.count("output_tokens"),
                "cachedContentTokenCount": script.count("cache_tokens"),
                "totalTokenCount": script.count("input_tokens") + script.count("output_tokens"),
            },
            "modelVersion": "scripted",
        }
        if streamed:
            self._sse([(None, answer)])
        else:
            self._json(200, answer)

    # --- writing ---------------------------------------------------------------------------

    def _json(self, status: int, data: Any) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _sse(self, events: list[tuple[str | None, Any]], *, done_marker: bool = False) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for name, data in events:
            self.wfile.write(b"".join(_sse_lines(name, data)))
            self.wfile.flush()
        if done_marker:
            self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


def _sse_lines(name: str | None, data: Any) -> Iterator[bytes]:
    if name:
        yield f"event: {name}\n".encode()
    yield f"data: {json.dumps(data)}\n\n".encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("script", type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ScriptedModel(Script.load(json.loads(args.script.read_text())), args.port)
    print(f"scripted model server at {server.url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
