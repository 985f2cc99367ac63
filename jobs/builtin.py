"""The built-in agents, installed as data by migration 0002 so a fresh install has them.

Each command is a bash script run inside the sandbox with the workspace as its cwd. Built-in
tools live read-only under /opt/agenthub (see jobs.sandbox.tools).
"""

from __future__ import annotations

from typing import Any

BUILTIN_AGENTS: dict[str, dict[str, Any]] = {
    "shell": {
        "description": "The instruction is a bash script, run in the workspace.",
        "command": 'bash "$AGENTHUB_PROMPT_FILE"',
        "timeout_seconds": 1800,
    },
    "ruff-fix": {
        "description": "Fixes what ruff can fix and formats the code.",
        "command": (
            'echo "::progress::10 ruff check --fix"\n'
            "ruff check --no-cache --fix --exit-zero .\n"
            'echo "::progress::60 ruff format"\n'
            "ruff format --no-cache .\n"
            'echo "::progress::100 done"\n'
        ),
        "timeout_seconds": 600,
    },
    "pytest": {
        "description": "Runs the test suite and reports; never changes code.",
        "command": (
            'echo "::progress::10 collecting tests"\n'
            "python3 -m pytest -q -p no:cacheprovider\n"
            "status=$?\n"
            # Exit 5 is pytest's "no tests collected": a finding to report, not a failed run.
            'if [ $status = 5 ]; then echo "::warning::no tests were found"; status=0; fi\n'
            'echo "::progress::100 done"\n'
            "exit $status\n"
        ),
        "report_only": True,
        "timeout_seconds": 1800,
    },
    "claude-code": {
        "description": "Anthropic's Claude Code CLI, headless, through AgentHub's model gateway.",
        "command": (
            # The gateway is the base URL and the attempt's token the key: the team's real key
            # never enters the sandbox. No telemetry, update checks or other outside traffic.
            'export ANTHROPIC_BASE_URL="$AGENTHUB_GATEWAY_URL/anthropic"\n'
            'export ANTHROPIC_API_KEY="$AGENTHUB_MODEL_TOKEN"\n'
            "export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1\n"
            'export TMPDIR="$HOME"\n'
            'claude -p "$(cat "$AGENTHUB_PROMPT_FILE")" --model "$AGENTHUB_MODEL" \\\n'
            "  --output-format stream-json --verbose --permission-mode acceptEdits \\\n"
            "  --no-session-persistence < /dev/null\n"
        ),
        "prompt_format": "text",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "output_format": "claude-stream-json",
        "memory_mb": 4096,
        "timeout_seconds": 3600,
    },
    "security-scan": {
        "description": "Scans the code with bandit; a report, never a change.",
        "command": (
            'echo "::progress::10 bandit"\n'
            "python3 -m bandit -r . -q -f txt || true\n"
            'echo "::progress::100 done"\n'
        ),
        "report_only": True,
        "timeout_seconds": 900,
    },
}


def install(agent_model: Any) -> None:
    """Create or refresh the global (team-less) presets; used by the migrations and the tests.
    A migration's historical model may not have every field yet: those are left to the later
    migration that adds them and installs again."""
    known = {f.name for f in agent_model._meta.get_fields()}
    for name, fields in BUILTIN_AGENTS.items():
        defaults = {key: value for key, value in fields.items() if key in known}
        agent_model.objects.update_or_create(team=None, name=name, defaults=defaults)
