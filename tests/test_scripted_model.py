"""The scripted model server's scripts: a turn's tool calls are chosen by what the request
offers, so one script drives every preset; a wrong script is named when it is loaded."""

from __future__ import annotations

import pytest

from scripted_model.server import Script

TURN = {
    "tool": [{"name": "Write", "input": {"file_path": "a"}}, {"name": "write_file"}],
    "text": "an edit block",
}


def test_the_first_call_the_request_offers_is_made_else_the_text():
    script = Script.load({"turns": [TURN, {"text": "done"}]})
    assert script.turn(0, {"Bash", "write_file"}) == {"tool": {"name": "write_file"}}
    assert script.turn(0, {"Write", "write_file"})["tool"]["name"] == "Write"
    assert script.turn(0, set()) == {"text": "an edit block"}  # aider offers no tools
    assert script.turn(1, {"Write"}) == {"text": "done"}
    assert script.turn(7, {"Write"}) == {"text": "done"}  # past the end: the last turn again


def test_a_tool_only_turn_calls_its_first_tool_whatever_is_offered():
    script = Script.load({"turns": [{"tool": {"name": "Write"}}]})
    assert script.turn(0, set()) == {"tool": {"name": "Write"}}


@pytest.mark.parametrize(
    ("turns", "error"),
    [
        ([], "a non-empty list of turns"),
        ([{"say": "hi"}], "turn 1 must have `tool`, `text` or both"),
        ([{"text": "ok"}, {"tool": [{"input": {}}]}], "turn 2: `tool` must be a call"),
        ([{"tool": []}], "turn 1: `tool` must be a call"),
    ],
)
def test_a_wrong_script_is_named(turns, error):
    with pytest.raises(ValueError, match=error):
        Script.load({"turns": turns})
