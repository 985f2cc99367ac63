"""Reading Claude Code's stream-json into activity events (lines as its 2.1.337 printed them
against the scripted model server), masked like the log."""

from __future__ import annotations

import json

from jobs.activity import reader
from jobs.events import Masker

LINES = [
    {"type": "system", "subtype": "init", "cwd": "/workspace", "tools": ["Write", "Bash"]},
    {
        "type": "assistant",
        "message": {
            "content": [
                {"type": "text", "text": "Writing it now with key sk-SECRET."},
                {
                    "type": "tool_use",
                    "id": "toolu_0",
                    "name": "Write",
                    "input": {"file_path": "/workspace/docs/HELLO.md", "content": "hi"},
                },
                {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
            ]
        },
    },
    {
        "type": "user",
        "message": {
            "content": [
                {"tool_use_id": "toolu_0", "type": "tool_result", "content": "File created"},
                {
                    "tool_use_id": "toolu_1",
                    "type": "tool_result",
                    "content": [{"type": "text", "text": "x" * 2000}],
                    "is_error": True,
                },
            ]
        },
    },
    {
        "type": "result",
        "subtype": "success",
        "num_turns": 3,
        "result": "Done: wrote docs/HELLO.md.",
        "total_cost_usd": 0.0176,
        "usage": {"input_tokens": 2400, "output_tokens": 690, "cache_read_input_tokens": 200},
    },
]


def test_claude_stream_json_becomes_messages_tool_calls_results_and_usage():
    activity = reader("claude-stream-json", Masker(["sk-SECRET"]))
    assert activity is not None
    drafts = [d for line in LINES for d in activity.drafts(json.dumps(line))]
    assert [(d.kind, d.text) for d in drafts[:3]] == [
        ("message", "Writing it now with key ***."),
        ("tool_call", "Write /workspace/docs/HELLO.md"),
        ("tool_call", "Bash ls"),
    ]
    assert drafts[1].data == {
        "tool": "Write",
        "input": "/workspace/docs/HELLO.md",
        "path": "docs/HELLO.md",
    }
    assert drafts[2].data == {"tool": "Bash", "input": "ls", "command": "ls"}
    assert (drafts[3].kind, drafts[3].text, drafts[3].data) == (
        "tool_result",
        "File created",
        {"ok": True},
    )
    assert drafts[4].data == {"ok": False} and len(drafts[4].text) == 500
    assert drafts[5].kind == "usage"
    assert drafts[5].data == {
        "turns": 3,
        "input_tokens": 2400,
        "output_tokens": 690,
        "cache_tokens": 200,
        "cost_usd": 0.0176,
    }
    assert activity.final["message"] == "Done: wrote docs/HELLO.md."


def test_plain_text_and_other_formats_give_no_activity():
    assert reader("text", Masker()) is None
    activity = reader("claude-stream-json", Masker())
    assert activity is not None
    for line in ("hello", "{not json", "[1, 2]", '{"type": "system"}'):
        assert activity.drafts(line) == []
