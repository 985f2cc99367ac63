"""The AI presets end to end: the vendor's real CLI in the sandbox, reaching the scripted model
server only through AgentHub's gateway (a live server) with its attempt's token, on each
backend; the team's real key never enters the sandbox."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from django.conf import settings

from gateway.credentials import set_credential
from jobs.models import Agent, Job
from scripted_model.server import Script, ScriptedModel

pytestmark = pytest.mark.slow

KEY = "sk-ant-the-teams-real-key-4242"
CONTENT = "hello from the scripted model\n"
SCRIPT = {
    "turns": [
        {
            "tool": {
                "name": "Write",
                "input": {"file_path": "/workspace/HELLO.md", "content": CONTENT},
            }
        },
        {"text": "I wrote HELLO.md."},
    ],
    "usage": {"input_tokens": 1200, "output_tokens": 345, "cache_tokens": 100},
}


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    server = ScriptedModel(Script.load(SCRIPT)).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("backend", [pytest.param("docker", marks=pytest.mark.docker), "bwrap"])
def test_claude_code_edits_a_file_through_the_gateway(
    api, alice, repo, workers, server, model, backend
):
    if backend == "docker":
        found = subprocess.run(
            ["docker", "image", "inspect", settings.AGENTHUB_SANDBOX_IMAGE],
            capture_output=True,
            check=False,
        )
        assert found.returncode == 0, "no sandbox image: make sandbox-image"
    set_credential("test", repo.team, "anthropic", KEY, base_url=model.url)
    submitted = api(alice).post(
        "/api/v1/jobs", {"repo": "demo", "agent": "claude-code", "prompt": "Write HELLO.md"}
    )
    assert submitted.status_code == 202, submitted.content
    public_id = submitted.json()["id"]
    workers.burst(
        180,
        AGENTHUB_SANDBOX=backend,
        AGENTHUB_GATEWAY_URL=f"http://{server.host}:{server.port}",
    )
    job = Job.objects.get(public_id=public_id)
    attempt = job.attempts.get()
    texts = "\n".join(attempt.events.order_by("seq").values_list("text", flat=True))
    assert job.status == "needs_review", (attempt.status, attempt.reason, texts[-3000:])
    assert attempt.card["backend"] == backend
    assert [f["path"] for f in attempt.files] == ["HELLO.md"]
    assert f"+{CONTENT.strip()}" in attempt.patch

    # The model saw the team's key, from the gateway; the sandbox never had it.
    sent = httpx.get(f"{model.url}/_scripted/requests").json()["requests"]
    assert len(sent) == 2 and all(r["headers"]["x-api-key"] == KEY for r in sent)
    assert KEY not in texts and KEY not in attempt.patch
    assert KEY not in json.dumps(attempt.card)

    # Usage, as the scripted server reported it, in the API; no outside traffic was tried.
    detail = api(alice).get(f"/api/v1/jobs/{public_id}").json()
    assert detail["attempts"][0]["usage"]["input_tokens"] == 2400
    assert detail["attempts"][0]["usage"]["output_tokens"] == 690
    assert detail["attempts"][0]["usage"]["requests"] == 2
    assert not attempt.events.filter(kind="egress").exists()
    assert attempt.card["versions"] == {"@anthropic-ai/claude-code": "2.1.337"}

    # What it said and did, as activity events beside the raw log, and its closing message.
    activity = [
        (e.kind, e.text, e.data)
        for e in attempt.events.filter(
            kind__in=("message", "tool_call", "tool_result", "usage")
        ).order_by("seq")
    ]
    assert [kind for kind, _, _ in activity] == ["tool_call", "tool_result", "message", "usage"]
    assert activity[0][2] == {"tool": "Write", "input": "/workspace/HELLO.md", "path": "HELLO.md"}
    assert activity[1][2] == {"ok": True}
    assert activity[2][1] == "I wrote HELLO.md."
    assert activity[3][2]["turns"] == 2 and activity[3][2]["output_tokens"] == 690
    assert detail["attempts"][0]["summary"]["message"] == "I wrote HELLO.md."


def test_an_ai_preset_without_its_teams_credential_is_refused_on_submit(api, alice, repo):
    answer = api(alice).post(
        "/api/v1/jobs", {"repo": "demo", "agent": "claude-code", "prompt": "Write HELLO.md"}
    )
    assert answer.status_code == 400
    assert answer.json()["field"] == "agent"
    assert "needs a model credential for anthropic" in answer.json()["detail"]


LOOP = {
    "turns": [
        {
            "tool": {
                "name": "Write",
                "input": {"file_path": "/workspace/loop.md", "content": "again\n"},
            }
        }
    ],
    "usage": {"input_tokens": 10, "output_tokens": 5},
}


def test_a_budget_stops_a_looping_agent_and_keeps_its_partial_work(
    api, alice, repo, workers, server
):
    looping = ScriptedModel(Script.load(LOOP)).start()
    try:
        set_credential("test", repo.team, "anthropic", KEY, base_url=looping.url)
        preset = Agent.objects.get(team=None, name="claude-code")
        preset.pk, preset.team, preset.budget_requests = None, repo.team, 3
        preset.save()  # the team's own claude-code, with a budget
        submitted = api(alice).post(
            "/api/v1/jobs", {"repo": "demo", "agent": "claude-code", "prompt": "Loop"}
        )
        assert submitted.status_code == 202, submitted.content
        workers.burst(
            180,
            AGENTHUB_SANDBOX="bwrap",
            AGENTHUB_GATEWAY_URL=f"http://{server.host}:{server.port}",
        )
        sent = httpx.get(f"{looping.url}/_scripted/requests").json()["requests"]
    finally:
        looping.shutdown()
        looping.server_close()
    job = Job.objects.get(public_id=submitted.json()["id"])
    attempt = job.attempts.get()
    assert (job.status, attempt.status) == ("failed", "failed")
    assert attempt.reason == "budget exceeded: 3 of 3 model requests made"
    assert len(sent) == 3  # the fourth was refused by the gateway, never forwarded
    assert attempt.partial and [f["path"] for f in attempt.files] == ["loop.md"]
    usage = api(alice).get(f"/api/v1/jobs/{job.public_id}").json()["attempts"][0]["usage"]
    assert usage["requests"] == 3
