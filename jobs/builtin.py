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
            # What it fixed is the violations before less those after, rule by rule.
            'echo "::progress::10 ruff check --fix"\n'
            'ruff check --no-cache --exit-zero --output-format json . > "$HOME/ruff-before.json"\n'
            "ruff check --no-cache --fix --exit-zero .\n"
            'ruff check --no-cache --exit-zero --output-format json . > "$HOME/ruff-after.json"\n'
            'echo "::progress::60 ruff format"\n'
            "ruff format --no-cache .\n"
            'python3 "$AGENTHUB_REPORT" ruff "$HOME/ruff-before.json" "$HOME/ruff-after.json"\n'
            'echo "::progress::100 done"\n'
        ),
        "timeout_seconds": 600,
    },
    "pytest": {
        "description": "Runs the test suite and reports; never changes code.",
        "command": (
            'echo "::progress::10 collecting tests"\n'
            # Its counts come from pytest's own JUnit XML (xunit1 names each test's file).
            'python3 -m pytest -q -p no:cacheprovider --junitxml="$HOME/junit.xml" \\\n'
            "  -o junit_family=xunit1\n"
            "status=$?\n"
            # Exit 5 is pytest's "no tests collected": a finding to report, not a failed run.
            'if [ $status = 5 ]; then echo "::warning::no tests were found"; status=0; fi\n'
            '[ ! -f "$HOME/junit.xml" ] || python3 "$AGENTHUB_REPORT" pytest "$HOME/junit.xml"\n'
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
            'export ANTHROPIC_BASE_URL="$AGENTHUB_MODEL_URL"\n'
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
    "codex": {
        "description": "OpenAI's Codex CLI, headless, through AgentHub's model gateway.",
        "command": (
            # The gateway as a custom model provider (Codex ignores OPENAI_BASE_URL and speaks
            # only the Responses API); no plugin sync or analytics. Its stdin must be closed.
            'export CODEX_HOME="$HOME/.codex" TMPDIR="$HOME"\n'
            'mkdir -p "$CODEX_HOME"\n'
            'codex exec --json --ephemeral --skip-git-repo-check -m "$AGENTHUB_MODEL" \\\n'
            "  --disable plugins -c analytics.enabled=false \\\n"
            "  --dangerously-bypass-approvals-and-sandbox \\\n"
            "  -c model_provider=agenthub -c model_providers.agenthub.name=AgentHub \\\n"
            '  -c "model_providers.agenthub.base_url=\\"$AGENTHUB_MODEL_URL/v1\\"" \\\n'
            "  -c model_providers.agenthub.env_key=AGENTHUB_MODEL_TOKEN \\\n"
            "  -c model_providers.agenthub.wire_api=responses \\\n"
            '  "$(cat "$AGENTHUB_PROMPT_FILE")" < /dev/null\n'
        ),
        "prompt_format": "text",
        "provider": "openai",
        "model": "gpt-5.5",
        "output_format": "codex-json",
        "memory_mb": 4096,
        "timeout_seconds": 3600,
    },
    "gemini-cli": {
        "description": "Google's Gemini CLI, headless, through AgentHub's model gateway.",
        "command": (
            # API-key auth (with a base URL set, headless refuses any other) and no usage
            # statistics; the workspace trusted so yolo is not downgraded.
            'export GOOGLE_GEMINI_BASE_URL="$AGENTHUB_MODEL_URL"\n'
            'export GEMINI_API_KEY="$AGENTHUB_MODEL_TOKEN"\n'
            "export GEMINI_CLI_TRUST_WORKSPACE=true GEMINI_CLI_NO_RELAUNCH=true\n"
            # WebAssembly's guard regions reserve more address space than a sandbox's limit.
            'export NODE_OPTIONS="--disable-wasm-trap-handler"\n'
            'export TMPDIR="$HOME"\n'
            'mkdir -p "$HOME/.gemini"\n'
            'printf \'%s\' \'{"security": {"auth": {"selectedType": "gemini-api-key"}}, '
            '"privacy": {"usageStatisticsEnabled": false}}\' > "$HOME/.gemini/settings.json"\n'
            'gemini -m "$AGENTHUB_MODEL" -p "$(cat "$AGENTHUB_PROMPT_FILE")" \\\n'
            "  --output-format stream-json --approval-mode yolo < /dev/null\n"
        ),
        "prompt_format": "text",
        "provider": "google",
        "model": "gemini-2.5-pro",
        "output_format": "gemini-stream-json",
        "memory_mb": 4096,
        "timeout_seconds": 3600,
    },
    "aider": {
        "description": "aider, headless, through AgentHub's model gateway (Chat Completions).",
        "command": (
            # Its model metadata (also where it would cache the price list it otherwise
            # downloads) and LiteLLM's bundled price list, so nothing is fetched; its history
            # and tag cache kept out of the result.
            'export OPENAI_API_KEY="$AGENTHUB_MODEL_TOKEN" LITELLM_LOCAL_MODEL_COST_MAP=True\n'
            'meta="$HOME/.aider/caches/model_prices_and_context_window.json"\n'
            'mkdir -p "$(dirname "$meta")"\n'
            'printf \'{"openai/%s": {"max_input_tokens": 128000, "max_output_tokens": 16384, '
            '"input_cost_per_token": 0, "output_cost_per_token": 0, '
            '"litellm_provider": "openai", "mode": "chat"}}\' "$AGENTHUB_MODEL" > "$meta"\n'
            'aider --model "openai/$AGENTHUB_MODEL" --weak-model "openai/$AGENTHUB_MODEL" \\\n'
            '  --openai-api-base "$AGENTHUB_MODEL_URL/v1" \\\n'
            '  --message-file "$AGENTHUB_PROMPT_FILE" --yes-always --no-auto-commits \\\n'
            "  --no-check-update --analytics-disable --no-show-release-notes \\\n"
            "  --no-show-model-warnings --no-gitignore --no-pretty --no-fancy-input \\\n"
            "  --no-stream \\\n"
            '  --model-metadata-file "$meta" --edit-format diff \\\n'
            '  --chat-history-file "$HOME/aider.chat.md" \\\n'
            '  --input-history-file "$HOME/aider.input" \\\n'
            "  < /dev/null\n"
            "status=$?\n"
            "rm -rf .aider.tags.cache.v*\n"
            "exit $status\n"
        ),
        "prompt_format": "text",
        "provider": "openai",
        "model": "gpt-4.1",
        "output_format": "aider-text",
        "memory_mb": 4096,
        "timeout_seconds": 3600,
    },
    "openhands": {
        "description": "The OpenHands agent (its SDK), headless, through AgentHub's model gateway.",
        "command": (
            # Its own image (Debian 13's Python 3.13; docker/openhands): LiteLLM's bundled price
            # list, no banner. Few retries: a dead model ends the run in seconds, not minutes.
            'export LLM_BASE_URL="$AGENTHUB_MODEL_URL/v1" LLM_API_KEY="$AGENTHUB_MODEL_TOKEN"\n'
            'export LLM_MODEL="openai/$AGENTHUB_MODEL" LLM_NUM_RETRIES=2 LOG_LEVEL=WARNING\n'
            'python3 /opt/agenthub/openhands/driver.py "$AGENTHUB_PROMPT_FILE" < /dev/null\n'
        ),
        "prompt_format": "text",
        "provider": "openai",
        "model": "gpt-4.1",
        "output_format": "openhands-json",
        "backend": "docker",
        "image": "agenthub-sandbox-openhands:latest",
        "memory_mb": 4096,
        "timeout_seconds": 3600,
    },
    "security-scan": {
        "description": "Scans the code with bandit; a report, never a change.",
        "command": (
            'echo "::progress::10 bandit"\n'
            # Test directories are left out: assert is how tests check. Edit -x (bandit's
            # exclude globs) to scan them too, or add --severity-level medium to count fewer.
            'python3 -m bandit -r . -q -f json -o "$HOME/bandit.json" \\\n'
            "  -x './tests,./test,*/tests/*,*/test/*' || true\n"
            'python3 "$AGENTHUB_REPORT" bandit "$HOME/bandit.json" --top 10\n'
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


def install_presets(apps: Any, schema_editor: Any) -> None:
    """The migrations' step that installs the presets as they are now (RunPython)."""
    install(apps.get_model("jobs", "Agent"))
