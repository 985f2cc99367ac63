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


# As Codex 0.171.0 printed them (`codex exec --json`) against the scripted model server.
CODEX = [
    {"type": "thread.started", "thread_id": "01a25263"},
    {"type": "turn.started"},
    {
        "type": "item.started",
        "item": {
            "id": "item_1",
            "type": "command_execution",
            "command": "/bin/bash -lc \"printf 'hello\\\\n' > HELLO.md\"",
            "exit_code": None,
            "status": "in_progress",
        },
    },
    {
        "type": "item.completed",
        "item": {
            "id": "item_1",
            "type": "command_execution",
            "command": "/bin/bash -lc \"printf 'hello\\\\n' > HELLO.md\"",
            "aggregated_output": "",
            "exit_code": 0,
            "status": "completed",
        },
    },
    {
        "type": "item.completed",
        "item": {
            "id": "item_2",
            "type": "file_change",
            "changes": [{"path": "/workspace/src/app.py", "kind": "update"}],
            "status": "completed",
        },
    },
    {"type": "item.completed", "item": {"type": "agent_message", "text": "I wrote HELLO.md."}},
    {
        "type": "turn.completed",
        "usage": {"input_tokens": 2400, "cached_input_tokens": 200, "output_tokens": 690},
    },
]


def test_codex_json_becomes_shell_calls_patches_messages_and_usage():
    activity = reader("codex-json", Masker())
    assert activity is not None
    drafts = [d for line in CODEX for d in activity.drafts(json.dumps(line))]
    assert [(d.kind, d.text) for d in drafts] == [
        ("tool_call", "shell printf 'hello\\n' > HELLO.md"),
        ("tool_result", ""),
        ("tool_call", "apply_patch /workspace/src/app.py"),
        ("tool_result", ""),
        ("message", "I wrote HELLO.md."),
        ("usage", "1 turn, 2400 tokens in, 690 out"),
    ]
    assert drafts[0].data["command"] == "printf 'hello\\n' > HELLO.md"
    assert drafts[1].data == {"ok": True}
    assert drafts[2].data["path"] == "src/app.py"
    assert drafts[5].data == {
        "turns": 1,
        "input_tokens": 2400,
        "output_tokens": 690,
        "cache_tokens": 200,
    }
    assert activity.final["message"] == "I wrote HELLO.md."


# As Gemini CLI 0.61.0 printed them (`--output-format stream-json`).
GEMINI = [
    {"type": "init", "session_id": "187fee93", "model": "gemini-2.5-pro"},
    {"type": "message", "role": "user", "content": "Write HELLO.md"},
    {"type": "message", "role": "assistant", "content": "Writing ", "delta": True},
    {"type": "message", "role": "assistant", "content": "it.", "delta": True},
    {
        "type": "tool_use",
        "tool_name": "write_file",
        "tool_id": "write_file_1",
        "parameters": {"file_path": "HELLO.md", "content": "hello\n"},
    },
    {"type": "tool_result", "tool_id": "write_file_1", "status": "success"},
    {
        "type": "tool_result",
        "tool_id": "run_shell_command_2",
        "status": "error",
        "error": {"type": "exit", "message": "command failed"},
    },
    {"type": "message", "role": "assistant", "content": "I wrote HELLO.md.", "delta": True},
    {
        "type": "result",
        "status": "success",
        "stats": {"input_tokens": 2400, "output_tokens": 690, "cached": 200, "tool_calls": 1},
    },
]


def test_gemini_stream_json_joins_deltas_and_reads_tools_and_stats():
    activity = reader("gemini-stream-json", Masker())
    assert activity is not None
    drafts = [d for line in GEMINI for d in activity.drafts(json.dumps(line))]
    assert [(d.kind, d.text, d.data) for d in drafts] == [
        ("message", "Writing it.", {}),
        (
            "tool_call",
            "write_file HELLO.md",
            {"tool": "write_file", "input": "HELLO.md", "path": "HELLO.md"},
        ),
        ("tool_result", "", {"ok": True}),
        ("tool_result", "command failed", {"ok": False}),
        ("message", "I wrote HELLO.md.", {}),
        (
            "usage",
            "2400 tokens in, 690 out",
            {"input_tokens": 2400, "output_tokens": 690, "cache_tokens": 200},
        ),
    ]
    assert activity.final["message"] == "I wrote HELLO.md."


def test_aider_text_reads_applied_and_failed_edits():
    activity = reader("aider-text", Masker())
    assert activity is not None
    lines = [
        "Tokens: 1.2k sent, 345 received.",
        "Applied edit to src/app.py",
        "# 1 SEARCH/REPLACE block failed to match!",
    ]
    drafts = [d for line in lines for d in activity.drafts(line)]
    assert [(d.kind, d.data) for d in drafts] == [
        ("tool_call", {"tool": "edit", "input": "src/app.py", "path": "src/app.py"}),
        ("tool_result", {"ok": True}),
        ("tool_result", {"ok": False}),
    ]


# As docker/openhands/driver.py printed them (OpenHands SDK 1.58.2).
OPENHANDS = [
    {"type": "SystemPromptEvent", "source": "agent"},
    {"type": "MessageEvent", "source": "user", "text": "Write HELLO.md"},
    {
        "type": "ActionEvent",
        "source": "agent",
        "tool_name": "file_editor",
        "text": "I will create it.",
        "action": {
            "command": "create",
            "path": "/workspace/HELLO.md",
            "file_text": "hello\n",
            "kind": "FileEditorAction",
        },
    },
    {
        "type": "ObservationEvent",
        "source": "environment",
        "tool_name": "file_editor",
        "observation": "File created successfully at: /workspace/HELLO.md",
        "is_error": False,
    },
    {
        "type": "ActionEvent",
        "source": "agent",
        "tool_name": "terminal",
        "action": {"command": "false", "kind": "TerminalAction"},
    },
    {
        "type": "ObservationEvent",
        "source": "environment",
        "tool_name": "terminal",
        "observation": "",
        "is_error": False,
        "exit_code": 1,
    },
    {
        "type": "AgentErrorEvent",
        "source": "agent",
        "tool_name": "file_editor",
        "text": "Error validating tool 'file_editor': path Field required",
        "is_error": True,
    },
    {
        "type": "ActionEvent",
        "source": "agent",
        "tool_name": "finish",
        "action": {"message": "Created HELLO.md.", "kind": "FinishAction"},
    },
    {"type": "ObservationEvent", "source": "environment", "tool_name": "finish", "observation": ""},
    {
        "type": "Result",
        "source": "driver",
        "status": "finished",
        "failed_tool_calls": 1,
        "input_tokens": 2400,
        "output_tokens": 80,
        "cache_tokens": 0,
        "cost_usd": 0.0,
    },
]


def test_openhands_events_become_calls_results_the_finish_message_and_usage():
    activity = reader("openhands-json", Masker())
    assert activity is not None
    drafts = [d for line in OPENHANDS for d in activity.drafts(json.dumps(line))]
    assert [(d.kind, d.text) for d in drafts] == [
        ("message", "I will create it."),
        ("tool_call", "file_editor /workspace/HELLO.md"),
        ("tool_result", "File created successfully at: /workspace/HELLO.md"),
        ("tool_call", "terminal false"),
        ("tool_result", ""),
        ("tool_result", "Error validating tool 'file_editor': path Field required"),
        ("message", "Created HELLO.md."),
        ("usage", "2400 tokens in, 80 out"),
    ]
    assert drafts[1].data["path"] == "HELLO.md"
    assert [d.data["ok"] for d in drafts if d.kind == "tool_result"] == [True, False, False]
    assert activity.final["message"] == "Created HELLO.md."
