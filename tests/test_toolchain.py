"""The AI presets' toolchain: what the card records of it, and the error when it is missing.
(Building it is `make agent-images`, run by .ci/run; test_ai_presets runs every CLI from it.)"""

from __future__ import annotations

import pytest

from jobs.builtin import BUILTIN_AGENTS
from jobs.sandbox import toolchain


def test_the_card_records_the_versions_of_what_the_command_runs():
    assert toolchain.versions_for(BUILTIN_AGENTS["codex"]["command"]) == {
        "@openai/codex": toolchain.NPM["@openai/codex"],
        "node": toolchain.NPM["node"],
    }
    assert toolchain.versions_for(BUILTIN_AGENTS["aider"]["command"]) == {
        "aider-chat": toolchain.PYPI["aider-chat"]
    }
    # A custom script may run anything in it.
    assert toolchain.versions_for('bash "$AGENTHUB_PROMPT_FILE"') == toolchain.VERSIONS


def test_a_missing_toolchain_says_how_to_build_it(settings, tmp_path):
    settings.AGENTHUB_TOOLCHAIN_DIR = tmp_path
    with pytest.raises(toolchain.Missing, match="run `make agent-images` once"):
        toolchain.mounts()


def test_new_pins_build_anew_beside_the_old(monkeypatch):
    before = toolchain.key()
    monkeypatch.setitem(toolchain.PYPI, "aider-chat", "0.0.1")
    assert toolchain.key() != before


def test_openhands_runs_from_its_own_image_whose_pins_the_card_records():
    assert toolchain.versions_for(BUILTIN_AGENTS["openhands"]["command"]) == {
        "openhands-sdk": "1.58.2",
        "openhands-tools": "1.58.2",
    }
