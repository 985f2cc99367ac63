"""The AI presets end to end: the vendor's real CLI in the sandbox, reaching the scripted model
server only through AgentHub's gateway (a live server) with its attempt's token, on each
backend; the team's real key never enters the sandbox."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings

import scripted_model
from gateway import usage
from gateway.credentials import set_credential
from jobs.models import Agent, Job
from jobs.sandbox import toolchain
from scripted_model.server import Script, ScriptedModel

pytestmark = pytest.mark.slow

KEY = "sk-the-teams-real-key-4242"
CONTENT = "hello from the scripted model"
# The example script of the README: one script drives every preset, each through its own tool.
SCRIPT = json.loads((Path(scripted_model.__file__).parent / "hello.json").read_text())
USAGE = SCRIPT["usage"]


@dataclass
class Preset:
    """What the gateway must put the team's key in for one preset, how many model requests its
    run makes, and the activity its run must show."""

    provider: str
    header: tuple[str, str]
    requests: int
    activity: list[str]
    first_call: dict[str, Any]
    versions: dict[str, str]  # on the card: what its command runs
    model: str = ""  # the job's own, instead of the preset's
    copy_of: str = ""  # a team's agent made from this preset, with `provider` instead
    backends: tuple[str, ...] = ("docker", "bwrap")


TALKS = ["tool_call", "tool_result", "message", "usage"]
EDITS = ["tool_call", "tool_result"]
BEARER = ("authorization", f"Bearer {KEY}")
WROTE = {"tool": "edit", "input": "HELLO.md", "path": "HELLO.md"}
AIDER = {"aider-chat": "0.86.2"}
PRESETS = {
    "claude-code": Preset(
        "anthropic",
        ("x-api-key", KEY),
        2,
        TALKS,
        {"tool": "Write", "input": "/workspace/HELLO.md", "path": "HELLO.md"},
        {"@anthropic-ai/claude-code": "2.1.337"},
    ),
    "codex": Preset(
        "openai",
        BEARER,
        2,
        TALKS,
        {
            "tool": "shell",
            "input": f"echo '{CONTENT}' > HELLO.md",
            "command": f"echo '{CONTENT}' > HELLO.md",
        },
        {"@openai/codex": "0.171.0", "node": "22.23.3"},
    ),
    "gemini-cli": Preset(
        "google",
        ("x-goog-api-key", KEY),
        2,
        TALKS,
        {"tool": "write_file", "input": "HELLO.md", "path": "HELLO.md"},
        {"@google/gemini-cli": "0.61.0", "node": "22.23.3"},
        model="gemini-2.5-flash",
    ),
    "aider": Preset("openai", BEARER, 1, EDITS, WROTE, AIDER),
    # Its SDK needs Debian 13's Python: an image of its own, so the docker backend only.
    "openhands": Preset(
        "openai",
        BEARER,
        2,
        TALKS,
        {
            "tool": "file_editor",
            "input": "/workspace/HELLO.md",
            "path": "HELLO.md",
        },
        {"openhands-sdk": "1.58.2", "openhands-tools": "1.58.2"},
        backends=("docker",),
    ),
    # A self-hosted model (vLLM, Ollama): the team's aider, switched to its own provider.
    "aider-self-hosted": Preset(
        "openai-compatible", BEARER, 1, EDITS, WROTE, AIDER, model="llama3.1:8b", copy_of="aider"
    ),
}


@pytest.mark.parametrize(
    ("name", "backend"),
    [
        pytest.param(name, backend, marks=[pytest.mark.docker] if backend == "docker" else [])
        for name, preset in PRESETS.items()
        for backend in preset.backends
    ],
)
def test_each_ai_preset_edits_a_file_through_the_gateway(
    api, alice, bob, repo, workers, server, backend, name
):
    preset = PRESETS[name]
    if backend == "docker":
        found = subprocess.run(
            ["docker", "image", "inspect", settings.AGENTHUB_SANDBOX_IMAGE],
            capture_output=True,
            check=False,
        )
        assert found.returncode == 0, "no sandbox image: make sandbox-image"
    model = ScriptedModel(Script.load(SCRIPT)).start()
    try:
        set_credential("test", repo.team, preset.provider, KEY, base_url=model.url)
        if preset.copy_of:
            agent = Agent.objects.get(team=None, name=preset.copy_of)
            agent.pk, agent.team, agent.name, agent.provider = (
                None,
                repo.team,
                name,
                preset.provider,
            )
            agent.save()
        asked = {"repo": "demo", "agent": name, "prompt": "Write HELLO.md", "model": preset.model}
        submitted = api(alice).post("/api/v1/jobs", asked)
        assert submitted.status_code == 202, submitted.content
        public_id = submitted.json()["id"]
        workers.burst(
            180,
            AGENTHUB_SANDBOX=backend,
            AGENTHUB_GATEWAY_URL=f"http://{server.host}:{server.port}",
        )
        sent = httpx.get(f"{model.url}/_scripted/requests").json()["requests"]
    finally:
        model.shutdown()
        model.server_close()
    job = Job.objects.get(public_id=public_id)
    attempt = job.attempts.get()
    texts = "\n".join(attempt.events.order_by("seq").values_list("text", flat=True))
    assert job.status == "needs_review", (attempt.status, attempt.reason, texts[-3000:])
    assert attempt.card["backend"] == backend
    if backend == "docker":  # the CLIs are in the image; bwrap binds their directory
        expected = Agent.objects.get(team=None, name=preset.copy_of or name).image
        assert attempt.card["image"] == (expected or toolchain.image())
    assert [f["path"] for f in attempt.files] == ["HELLO.md"]
    assert f"+{CONTENT}" in attempt.patch

    # The model saw the team's key, from the gateway; the sandbox never had it.
    header, value = preset.header
    assert len(sent) == preset.requests
    assert all(r["headers"][header] == value for r in sent)
    model = preset.model or Agent.objects.get(team=None, name=name).model
    assert not [r["path"] for r in sent if "/v1/v1/" in r["path"]]  # the base URL joined once
    assert {usage.model_of(r["path"].lstrip("/"), r["body"]) for r in sent} == {model}
    assert attempt.card["model"] == model
    assert KEY not in texts and KEY not in attempt.patch
    assert KEY not in json.dumps(attempt.card)

    # Usage, as the scripted server reported it, in the API; no outside traffic was tried.
    detail = api(alice).get(f"/api/v1/jobs/{public_id}").json()
    used = detail["attempts"][0]["usage"]
    assert used["input_tokens"] == USAGE["input_tokens"] * preset.requests
    assert used["output_tokens"] == USAGE["output_tokens"] * preset.requests
    assert used["requests"] == preset.requests
    assert not attempt.events.filter(kind="egress").exists(), texts[-3000:]
    calls = attempt.events.filter(kind="model_call").order_by("seq")  # the gateway's record
    assert [c.data["input_tokens"] for c in calls] == [USAGE["input_tokens"]] * preset.requests
    assert calls.last().data["total"]["requests"] == preset.requests
    assert attempt.card["versions"] == preset.versions

    # What it said and did, as activity events beside the raw log, and its closing message.
    activity = [
        (e.kind, e.text, e.data)
        for e in attempt.events.filter(
            kind__in=("message", "tool_call", "tool_result", "usage")
        ).order_by("seq")
    ]
    assert [kind for kind, _, _ in activity] == preset.activity, activity
    assert activity[0][2] == preset.first_call
    assert activity[1][2] == {"ok": True}
    if "message" in preset.activity:
        assert detail["attempts"][0]["summary"]["message"] == "I wrote HELLO.md."

    # Reviewed and merged as any other result.
    approved = api(bob).post(f"/api/v1/jobs/{public_id}/reviews", {"decision": "approve"})
    assert approved.status_code == 201 and approved.json()["status"] == "approved"
    merged = api(bob).post(f"/api/v1/jobs/{public_id}/merge")
    assert merged.status_code == 200, merged.content
    assert Job.objects.get(public_id=public_id).status == "merged"


def test_an_ai_preset_without_its_teams_credential_is_refused_on_submit(api, alice, repo):
    answer = api(alice).post(
        "/api/v1/jobs", {"repo": "demo", "agent": "claude-code", "prompt": "Write HELLO.md"}
    )
    assert answer.status_code == 400
    assert answer.json()["field"] == "agent"
    assert "needs a model credential for anthropic" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("agent", "model", "detail"),
    [
        ("shell", "gpt-5.5", "Agent shell uses no model"),
        ("claude-code", "claude; rm -rf /", "is not a model name"),
        ("claude-code", "x" * 201, "at most 200"),
    ],
)
def test_a_jobs_model_is_checked_on_submit(api, alice, repo, agent, model, detail):
    set_credential("test", repo.team, "anthropic", KEY)
    answer = api(alice).post(
        "/api/v1/jobs", {"repo": "demo", "agent": agent, "prompt": "Go", "model": model}
    )
    assert answer.status_code in (400, 422), answer.content
    assert detail in answer.content.decode()


def test_a_job_may_ask_for_another_model(api, alice, repo):
    set_credential("test", repo.team, "openai", KEY)
    answer = api(alice).post(
        "/api/v1/jobs",
        {"repo": "demo", "agent": "codex", "prompt": "Go", "model": "llama3.1:8b-instruct"},
    )
    assert answer.status_code == 202, answer.content
    assert Job.objects.get(public_id=answer.json()["id"]).model == "llama3.1:8b-instruct"


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
    used = api(alice).get(f"/api/v1/jobs/{job.public_id}").json()["attempts"][0]["usage"]
    assert used["requests"] == 3
