"""The model gateway against the scripted model server over real HTTP: the attempt's token in,
the team's real key out, the answer streamed through, the usage recorded; and credentials
encrypted at rest, write-only, audited without their value."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import AsyncClient

from gateway import providers, usage, vault
from gateway.credentials import set_credential
from gateway.models import Grant, ModelCredential, ModelRequest
from jobs import runner, services
from jobs.models import Agent, Attempt, AttemptStatus, AuditEntry
from scripted_model.server import Script, ScriptedModel
from tests.conftest import shell_agent

pytestmark = pytest.mark.usefixtures("transactional_db")  # the gateway's pool threads see commits

KEY = "sk-ant-real-key-0123456789"
SCRIPT = {
    "turns": [{"tool": {"name": "Write", "input": {"file_path": "HELLO.md"}}}, {"text": "Done."}],
    "usage": {"input_tokens": 1200, "output_tokens": 345, "cache_tokens": 100},
}


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    server = ScriptedModel(Script.load(SCRIPT)).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def running(alice, repo) -> Attempt:
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    attempt = job.attempts.get()
    Attempt.objects.filter(pk=attempt.pk).update(status=AttemptStatus.RUNNING)
    attempt.refresh_from_db()
    return attempt


def call(path: str, body: dict[str, Any], **headers: str) -> tuple[int, bytes]:
    async def go() -> tuple[int, bytes]:
        response = await AsyncClient().post(
            path, body, content_type="application/json", headers=headers
        )
        if hasattr(response, "streaming_content"):
            content = b"".join([chunk async for chunk in response.streaming_content])
        else:
            content = response.content
        return response.status_code, content

    return asyncio.run(go())


def received(model: ScriptedModel) -> list[dict[str, Any]]:
    return httpx.get(f"{model.url}/_scripted/requests").json()["requests"]


@pytest.mark.parametrize("stream", [True, False])
def test_anthropic_messages_go_through_with_the_real_key_and_their_usage_is_recorded(
    model, running, team, stream
):
    set_credential("test", team, "anthropic", KEY, base_url=model.url)
    token = Grant.issue(running)
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream, "messages": []}
    status, content = call("/gateway/anthropic/v1/messages", body, **{"x-api-key": token})
    assert status == 200, content
    if stream:
        assert b"event: message_start" in content and b'"name": "Write"' in content
    else:
        assert json.loads(content)["content"][0]["name"] == "Write"
    [sent] = received(model)
    assert sent["headers"]["x-api-key"] == KEY
    assert token not in json.dumps(sent)
    [record] = ModelRequest.objects.filter(attempt=running)
    assert (record.input_tokens, record.output_tokens, record.cache_tokens) == (1200, 345, 100)
    assert record.streamed is stream and record.model == "claude-sonnet-4-5"
    assert record.cost_usd == providers.cost("claude-sonnet-4-5", 1200, 345, 100) > 0
    # The attempt's page hears of it, with the totals so far.
    [said] = running.events.filter(kind="model_call")
    assert said.text == f"claude-sonnet-4-5: 1200 tokens in, 345 out, ${record.cost_usd:.4f}"
    assert said.data["total"] == {
        "input_tokens": 1200,
        "output_tokens": 345,
        "cache_tokens": 100,
        "cost_usd": float(record.cost_usd),
        "requests": 1,
    }


def test_chat_completions_take_a_bearer_token_and_report_usage_when_streamed(model, running, team):
    set_credential("test", team, "openai-compatible", "local-key", base_url=f"{model.url}/v1")
    token = Grant.issue(running)
    body = {
        "model": "qwen",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hi"}],
    }
    status, content = call(
        "/gateway/openai-compatible/chat/completions", body, authorization=f"Bearer {token}"
    )
    assert status == 200 and b"data: [DONE]" in content
    assert received(model)[0]["headers"]["authorization"] == "Bearer local-key"
    record = ModelRequest.objects.get(attempt=running)
    assert (record.input_tokens, record.output_tokens, record.cost_usd) == (1200, 345, 0)


@pytest.mark.parametrize(
    ("provider", "path", "body", "header"),
    [
        (
            "openai",
            "v1/responses",
            {"model": "gpt-5", "stream": True, "input": [{"role": "user", "content": "hi"}]},
            "authorization",
        ),
        (
            "google",
            "v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
            "x-goog-api-key",
        ),
        (
            "google",
            "v1beta/models/gemini-2.5-pro:generateContent",
            {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
            "x-goog-api-key",
        ),
    ],
)
def test_responses_and_gemini_go_through_and_their_usage_is_recorded(
    model, running, team, provider, path, body, header
):
    set_credential("test", team, provider, KEY, base_url=model.url)
    token = Grant.issue(running)
    presented = f"Bearer {token}" if header == "authorization" else token
    status, content = call(f"/gateway/{provider}/{path}", body, **{header: presented})
    assert status == 200, content
    assert b"Write" in content
    [sent] = received(model)
    assert sent["headers"][header] == (f"Bearer {KEY}" if header == "authorization" else KEY)
    assert token not in json.dumps(sent)
    record = ModelRequest.objects.get(attempt=running)
    assert (record.input_tokens, record.output_tokens, record.cache_tokens) == (1200, 345, 100)
    assert record.model == ("gpt-5" if provider == "openai" else "gemini-2.5-pro")
    assert record.cost_usd > 0


def test_counting_tokens_is_not_usage(model, running, team):
    set_credential("test", team, "anthropic", KEY, base_url=model.url)
    token = Grant.issue(running)
    status, _ = call(
        "/gateway/anthropic/v1/messages/count_tokens", {"model": "m"}, **{"x-api-key": token}
    )
    assert status == 200
    assert not ModelRequest.objects.filter(attempt=running).exists()


def test_a_token_stops_working_when_its_attempt_ends_and_others_are_refused(model, running, team):
    set_credential("test", team, "anthropic", KEY, base_url=model.url)
    token = Grant.issue(running)
    body = {"model": "m", "messages": []}
    assert call("/gateway/anthropic/v1/messages", body, **{"x-api-key": token})[0] == 200
    Attempt.objects.filter(pk=running.pk).update(status=AttemptStatus.SUCCEEDED)
    status, content = call("/gateway/anthropic/v1/messages", body, **{"x-api-key": token})
    assert status == 401 and b"succeeded" in content
    assert call("/gateway/anthropic/v1/messages", body, **{"x-api-key": "ahg_nope"})[0] == 401
    assert call("/gateway/anthropic/v1/messages", body)[0] == 401
    assert call("/gateway/nope/v1/messages", body, **{"x-api-key": token})[0] == 404
    assert len(received(model)) == 1


def test_a_team_without_the_providers_credential_is_told_how_to_set_one(running):
    token = Grant.issue(running)
    status, content = call(
        "/gateway/google/v1beta/models/gemini-2.5-pro:generateContent",
        {},
        **{"x-goog-api-key": token},
    )
    assert status == 403
    assert b"set_model_credential --team demo --provider google" in content


def test_credentials_are_encrypted_at_rest_and_audited_without_their_value(team, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(KEY + "\n"))
    out = io.StringIO()
    call_command("set_model_credential", "--team", "demo", "--provider", "anthropic", stdout=out)
    assert "api.anthropic.com" in out.getvalue() and KEY not in out.getvalue()
    credential = ModelCredential.objects.get(team=team, provider="anthropic")
    assert KEY not in credential.sealed_key and credential.key() == KEY
    set_credential("admin", team, "anthropic", "rotated-key", base_url="http://10.0.0.5:8000")
    credential.refresh_from_db()
    assert credential.key() == "rotated-key" and credential.upstream == "http://10.0.0.5:8000"
    entries = AuditEntry.objects.filter(action__startswith="modelcredential.").order_by("seq")
    assert [e.action for e in entries] == ["modelcredential.create", "modelcredential.update"]
    assert KEY not in json.dumps([e.data for e in entries])
    assert "rotated-key" not in json.dumps([e.data for e in entries])
    with pytest.raises(CommandError, match="needs a base URL"):
        monkeypatch.setattr("sys.stdin", io.StringIO("k\n"))
        call_command("set_model_credential", "--team", "demo", "--provider", "openai-compatible")
    call_command(
        "set_model_credential", "--team", "demo", "--provider", "anthropic", "--delete", stdout=out
    )
    assert not ModelCredential.objects.filter(team=team).exists()


def test_a_secret_sealed_under_another_key_says_so(settings):
    sealed = vault.encrypt("x")
    settings.AGENTHUB_CREDENTIALS_KEY = "not a key"
    vault._keys.cache_clear()
    try:
        with pytest.raises(ValueError, match="must be Fernet keys"):
            vault.decrypt(sealed)
        settings.AGENTHUB_CREDENTIALS_KEY = "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg="
        vault._keys.cache_clear()
        with pytest.raises(vault.Undecryptable, match="AGENTHUB_CREDENTIALS_KEY"):
            vault.decrypt(sealed)
    finally:
        vault._keys.cache_clear()


OTHER_KEY = "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg="


def test_secrets_no_key_opens_load_empty_keep_their_seal_and_fail_the_attempt_and_the_gateway(
    settings, repo, alice, model, running, team, tmp_path
):
    """A changed AGENTHUB_CREDENTIALS_KEY must not break every page that loads the agent, nor
    lose the secrets when the agent is saved; whoever needs them says what is wrong."""
    agent = shell_agent(repo.team, name="sealed", secrets={"TOKEN": "s3cret"})
    set_credential("test", team, "anthropic", KEY, base_url=model.url)
    token = Grant.issue(running)
    original = settings.AGENTHUB_CREDENTIALS_KEY
    settings.AGENTHUB_CREDENTIALS_KEY = OTHER_KEY
    vault._keys.cache_clear()
    try:
        loaded = Agent.objects.get(pk=agent.pk)
        assert loaded.secrets == {} and isinstance(loaded.secrets, vault.Unopened)
        loaded.description = "edited while the key was wrong"
        loaded.save()
        status, body = call("/gateway/anthropic/v1/messages", {}, **{"x-api-key": token})
        assert status == 500 and b"credential: A stored secret cannot be decrypted" in body
        job = services.submit_job(alice, repo="demo", agent="sealed", prompt="echo hi")
        attempt = job.attempts.get()
        services.claim_attempt(attempt.pk, "test")
        runner._execute(attempt.pk, tmp_path / "work")
        attempt.refresh_from_db()
        assert attempt.status == "failed"
        assert attempt.reason.startswith("the agent's secrets: A stored secret cannot be")
    finally:
        settings.AGENTHUB_CREDENTIALS_KEY = original
        vault._keys.cache_clear()
    assert Agent.objects.get(pk=agent.pk).secrets == {"TOKEN": "s3cret"}  # nothing was lost


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        # Anthropic, streamed: input from message_start, output from the last message_delta.
        (
            [
                b'event: message_start\ndata: {"type": "message_start", "message": {"usage": '
                b'{"input_tokens": 10, "cache_read_input_tokens": 4, "output_tokens": 1}}}\n\n',
                b'data: {"type": "message_delta", "usage": {"output_tokens": 7}}\n',
                b'\ndata: {"type": "message_delta", "usage": {"output_tokens": 9}}\n\n',
            ],
            (10, 9, 4),
        ),
        # OpenAI Responses, streamed.
        (
            [
                b'data: {"type": "response.completed", "response": {"usage": {"input_tokens": 5,'
                b' "output_tokens": 6, "input_tokens_details": {"cached_tokens": 2}}}}\n\n'
            ],
            (5, 6, 2),
        ),
        # Gemini, whole.
        (
            [
                b'{"candidates": [], "usageMetadata": {"promptTokenCount": 3, ',
                b'"candidatesTokenCount": 4}}',
            ],
            (3, 4, 0),
        ),
    ],
)
def test_the_meter_reads_each_wire_formats_usage(chunks, expected):
    meter = usage.Meter()
    for chunk in chunks:
        meter.feed(chunk)
    found = meter.finish()
    assert (found.input_tokens, found.output_tokens, found.cache_tokens) == expected


@pytest.mark.parametrize(
    ("chunks", "length"),
    [
        ([b'data: {"type": "message_delta"}\n\n', b'data: {"type": "message_stop"}\n\n'], None),
        (
            [b'data: {"type": "response.created"}\n\n', b'data: {"type": "response.completed"}\n'],
            None,
        ),
        ([b'data: {"choices": []}\n\n', b"data: [DONE]\n\n"], None),
        (
            [
                b'data: {"candidates": [{}]}\n\n',
                b'data: {"candidates": [{"finishReason": "STOP"}]}\n',
            ],
            None,
        ),
        ([b'{"object": "response", ', b'"usage": {}}'], 30),
    ],
)
def test_the_meter_knows_when_a_response_is_complete(chunks, length):
    """So the gateway records the usage before the agent reads the last chunk and moves on."""
    meter = usage.Meter(length)
    meter.feed(chunks[0])
    assert not meter.complete
    meter.feed(chunks[1])
    assert meter.complete


def test_prices_come_from_one_table():
    assert providers.cost("claude-sonnet-4-5", 1_000_000, 0, 0) == Decimal("3")
    assert providers.cost("my-local-model", 10**9, 10**9, 0) == Decimal(0)


def test_an_attempts_usage_is_in_the_job_and_its_long_poll(model, running, team, api, alice):
    set_credential("test", team, "anthropic", KEY, base_url=model.url)
    token = Grant.issue(running)
    for stream in (True, False):
        body = {"model": "claude-sonnet-4-5", "stream": stream, "messages": []}
        assert call("/gateway/anthropic/v1/messages", body, **{"x-api-key": token})[0] == 200
    expected = {
        "input_tokens": 2400,
        "output_tokens": 690,
        "cache_tokens": 200,
        "cost_usd": float(2 * providers.cost("claude-sonnet-4-5", 1200, 345, 100)),
        "requests": 2,
    }
    public_id = running.job.public_id
    detail = api(alice).get(f"/api/v1/jobs/{public_id}").json()
    assert detail["attempts"][0]["usage"] == expected
    waited = api(alice).get(f"/api/v1/jobs/{public_id}/wait?timeout=0").json()
    assert waited["attempts"][0]["usage"] == expected
