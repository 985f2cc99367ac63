"""The gateway: `/gateway/<provider>/<the provider's own path>`, which a sandbox uses as its
model provider's base URL. It takes the attempt's token where the CLI puts its key
(`x-api-key`, `Authorization: Bearer`, `x-goog-api-key` or Gemini's `?key=`), checks that the
attempt is still preparing or running, puts the team's real key in the provider's header
instead, forwards the request to the credential's base URL, passes the answer through as it
arrives (streams untouched) and records the usage the provider reported on the attempt."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from channels.db import database_sync_to_async
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from gateway import ledger, providers, usage, vault
from gateway.models import Grant, ModelCredential, ModelRequest, hash_token
from jobs.models import ACTIVE_ATTEMPT_STATUSES, Attempt

# Request headers never forwarded: the sandbox's credentials, and hop-by-hop ones.
DROPPED = frozenset(
    {
        "host",
        "authorization",
        "x-api-key",
        "x-goog-api-key",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "proxy-authorization",
        "accept-encoding",
        "cookie",
    }
)
PASSED_BACK = ("content-type", "retry-after", "request-id", "x-request-id")
TIMEOUT = httpx.Timeout(connect=10, read=600, write=60, pool=10)


class Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@csrf_exempt
async def forward(request: HttpRequest, provider: str, path: str) -> HttpResponseBase:
    try:
        chosen = providers.Provider(provider)
    except ValueError:
        return _error(404, f"Unknown provider {provider!r}.")
    try:
        attempt, credential = await database_sync_to_async(_authorize)(request, chosen)
    except Refused as exc:
        return _error(exc.status, exc.detail)
    body = request.body
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED}
    wire = providers.WIRES[chosen]
    try:
        key = await database_sync_to_async(credential.key)()
    except vault.Undecryptable as exc:
        return _error(500, f"The team's {chosen.label} credential: {exc}")
    headers[wire.key_header] = f"Bearer {key}" if wire.bearer else key
    headers["accept-encoding"] = "identity"  # the meter reads the body as it passes
    query = httpx.QueryParams([(k, str(v)) for k, v in request.GET.items() if k != "key"])
    client = httpx.AsyncClient(timeout=TIMEOUT)
    started = time.monotonic()
    try:
        upstream = await client.send(
            client.build_request(
                request.method or "POST",
                f"{credential.upstream}/{path}",
                params=query,
                headers=headers,
                content=body,
            ),
            stream=True,
        )
    except httpx.HTTPError as exc:
        await client.aclose()
        return _error(502, f"The {chosen.label} endpoint could not be reached: {exc}")
    record = ModelRequest(
        attempt=attempt,
        provider=chosen,
        path=f"/{path}"[:300],
        model=usage.model_of(path, parsed)[:200],
        streamed=bool(parsed.get("stream")) or "stream" in path.lower(),
        status_code=upstream.status_code,
        started_at=timezone.now(),
    )
    counting = usage.is_counting(path)

    async def relay() -> AsyncIterator[bytes]:
        length = upstream.headers.get("content-length")
        meter = usage.Meter(int(length) if length and length.isdigit() else None)
        recorded = counting
        try:
            async for chunk in upstream.aiter_raw():
                meter.feed(chunk)
                if meter.complete and not recorded:
                    recorded = True
                    await _record(record, meter, started)
                yield chunk
        finally:
            await upstream.aclose()
            await client.aclose()
            if not recorded:
                await _record(record, meter, started)

    response = StreamingHttpResponse(relay(), status=upstream.status_code)
    for name in PASSED_BACK:
        if name in upstream.headers:
            response[name] = upstream.headers[name]
    response["Cache-Control"] = "no-cache"
    return response


async def _record(record: ModelRequest, meter: usage.Meter, started: float) -> None:
    found = meter.finish()
    record.input_tokens = found.input_tokens
    record.output_tokens = found.output_tokens
    record.cache_tokens = found.cache_tokens
    record.cost_usd = providers.cost(
        record.model, found.input_tokens, found.output_tokens, found.cache_tokens
    )
    record.seconds = time.monotonic() - started
    await database_sync_to_async(ledger.record)(record)


def _authorize(request: HttpRequest, provider: providers.Provider) -> tuple[Attempt, Any]:
    token = _presented_token(request)
    if not token:
        raise Refused(401, "No gateway token: give the attempt's token as the API key.")
    grant = (
        Grant.objects.select_related("attempt__job__team", "attempt__job__agent")
        .filter(token_hash=hash_token(token))
        .first()
    )
    if grant is None:
        raise Refused(401, "Unknown gateway token.")
    attempt = grant.attempt
    if attempt.status not in ACTIVE_ATTEMPT_STATUSES:
        raise Refused(401, f"The token's attempt is {attempt.status}; it works only while running.")
    agent = attempt.job.agent
    spent = ledger.over_budget(attempt.pk, agent.budget_usd, agent.budget_requests)
    if spent:
        # The worker polls this and ends the attempt `failed`, its partial work kept.
        Attempt.objects.filter(pk=attempt.pk).update(budget_exceeded=spent)
        raise Refused(403, f"budget exceeded: {spent}")
    credential = ModelCredential.objects.filter(team=attempt.job.team, provider=provider).first()
    if credential is None:
        raise Refused(
            403,
            f"Team {attempt.job.team.name} has no {provider.value} credential; a team admin "
            f"sets one with `manage.py set_model_credential --team {attempt.job.team.name} "
            f"--provider {provider.value}` or on the team page.",
        )
    return attempt, credential


def _presented_token(request: HttpRequest) -> str:
    bearer = request.headers.get("Authorization", "")
    if bearer.lower().startswith("bearer "):
        return bearer[7:].strip()
    return (
        request.headers.get("x-api-key")
        or request.headers.get("x-goog-api-key")
        or request.GET.get("key")
        or ""
    ).strip()


def _error(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"error": {"type": "agenthub_gateway", "message": detail}}, status=status)
