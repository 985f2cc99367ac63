"""What an attempt's model requests added up to: its `usage` in every job representation, and
a `model_call` event on the attempt for each request as it is recorded (the gateway's record
is the activity of a CLI that prints no structure of its own, aider's)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db.models import Count, Sum

from gateway.models import ModelRequest
from jobs.events import Draft, append_events

EMPTY = {"input_tokens": 0, "output_tokens": 0, "cache_tokens": 0, "cost_usd": 0.0, "requests": 0}


def usage_of(attempt_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Each attempt's usage, summed over every request the gateway forwarded with its token (in
    one query; an attempt that made none has zeros)."""
    ids = list(attempt_ids)
    found = {attempt_id: dict(EMPTY) for attempt_id in ids}
    rows = (
        ModelRequest.objects.filter(attempt_id__in=ids)
        .values("attempt_id")
        .annotate(
            input=Sum("input_tokens"),
            output=Sum("output_tokens"),
            cache=Sum("cache_tokens"),
            cost=Sum("cost_usd"),
            requests=Count("id"),
        )
    )
    for row in rows:
        found[row["attempt_id"]] = {
            "input_tokens": row["input"],
            "output_tokens": row["output"],
            "cache_tokens": row["cache"],
            "cost_usd": float(row["cost"] or Decimal(0)),
            "requests": row["requests"],
        }
    return found


def record(request: ModelRequest) -> None:
    """Keep one forwarded request's usage, and say so on its attempt with the totals so far
    (the job page's usage line follows them)."""
    request.save()
    total = usage_of([request.attempt_id])[request.attempt_id]
    said = (
        f"{request.model or request.provider}: {request.input_tokens} tokens in, "
        f"{request.output_tokens} out, ${request.cost_usd:.4f}"
    )
    data = {
        "model": request.model,
        "status": request.status_code,
        "input_tokens": request.input_tokens,
        "output_tokens": request.output_tokens,
        "cache_tokens": request.cache_tokens,
        "cost_usd": float(request.cost_usd),
        "seconds": round(request.seconds, 3),
        "total": total,
    }
    append_events(request.attempt_id, [Draft("model_call", said, data=data)])


def over_budget(attempt_id: int, budget_usd: Decimal | None, budget_requests: int | None) -> str:
    """Why the attempt may make no more model requests ("" while it may)."""
    if budget_usd is None and budget_requests is None:
        return ""
    spent = ModelRequest.objects.filter(attempt_id=attempt_id).aggregate(
        cost=Sum("cost_usd"), requests=Count("id")
    )
    cost, requests = spent["cost"] or Decimal(0), spent["requests"]
    if budget_requests is not None and requests >= budget_requests:
        return f"{requests} of {budget_requests} model requests made"
    if budget_usd is not None and cost >= budget_usd:
        return f"${cost:.4f} of ${budget_usd:.4f} spent"
    return ""
