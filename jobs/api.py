"""HTTP API under /api/v1/: JSON in, JSON out, errors as {error, detail}. Only glue: every
change goes through jobs.services, every lookup through jobs.access."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from functools import wraps
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from jobs import access, services
from jobs.errors import (
    BadInput,
    Conflict,
    Forbidden,
    NotFound,
    ServiceError,
    TooLarge,
    Unauthorized,
)
from jobs.models import FINISHED_ATTEMPT_STATUSES, ApiToken, Attempt, Job, JobStatus, hash_token
from jobs.serialize import job_detail, job_summary

View = Callable[..., HttpResponseBase]
WAIT_MAX_SECONDS = 60
SSE_POLL_SECONDS = 0.25
SSE_KEEPALIVE_SECONDS = 15.0
# A job in one of these states is waiting for a person or is over: /wait returns.
SETTLED = {s for s in JobStatus.values if s not in (JobStatus.QUEUED, JobStatus.RUNNING)}


def error_response(exc: ServiceError) -> JsonResponse:
    body: dict[str, Any] = {"error": exc.error, "detail": exc.detail}
    if exc.field:
        body["field"] = exc.field
    if isinstance(exc, Conflict) and exc.conflicts:
        body["conflicts"] = exc.conflicts
    return JsonResponse(body, status=exc.status)


def _no_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse()


# Session-authenticated API calls get Django's CSRF check; token calls are exempt.
_csrf = CsrfViewMiddleware(_no_view)


def authenticate(request: HttpRequest) -> Any:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        token = (
            ApiToken.objects.select_related("user")
            .filter(key_hash=hash_token(header[7:].strip()))
            .first()
        )
        if token is None or not token.user.is_active:
            raise Unauthorized("The API token is not valid.")
        if not token.is_usable:
            raise Unauthorized(
                f"The API token {token.name!r} was revoked."
                if token.revoked_at
                else f"The API token {token.name!r} expired on {token.expires_at:%Y-%m-%d %H:%M}."
            )
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
        return token.user
    if request.user.is_authenticated:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            if _csrf.process_view(request, _no_view, (), {}) is not None:
                raise Forbidden(
                    "Session requests need a CSRF token; API clients should send a Bearer token."
                )
        return request.user
    raise Unauthorized("Sign in or send 'Authorization: Bearer <token>'.")


def api_view(*methods: str) -> Callable[[View], View]:
    def decorate(view: View) -> View:
        @csrf_exempt  # checked in authenticate() for session users; tokens need none
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                return JsonResponse(
                    {"error": "method_not_allowed", "detail": f"Use {' or '.join(methods)}."},
                    status=405,
                )
            try:
                return view(request, authenticate(request), *args, **kwargs)
            except ServiceError as exc:
                return error_response(exc)
            except RequestDataTooBig:
                return error_response(TooLarge("The request body is too large."))

        return wrapper

    return decorate


def _body(request: HttpRequest) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"The body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadInput("The body must be a JSON object.")
    return data


def _str(data: dict[str, Any], name: str, default: str | None = None) -> Any:
    value = data.get(name, default)
    if value is not None and not isinstance(value, str):
        raise BadInput(f"{name} must be a string.", field=name)
    return value


def _int(
    data: Any, name: str, default: int | None, low: int | None = None, high: int | None = None
) -> Any:
    value = data.get(name, default)
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if value is None:
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadInput(f"{name} must be a whole number, not {value!r}.", field=name)
    if (low is not None and value < low) or (high is not None and value > high):
        raise BadInput(f"{name} must be from {low} to {high}, not {value}.", field=name)
    return value


@api_view("GET", "POST")
def jobs(request: HttpRequest, user: Any) -> HttpResponseBase:
    if request.method == "POST":
        return _submit(request, user)
    found = access.visible_jobs(user).order_by("-created_at", "-pk")
    if status := request.GET.get("status"):
        found = found.filter(status=status)
    if repo := request.GET.get("repo"):
        found = found.filter(repository__name=repo)
    page = Paginator(found, _int(request.GET, "per_page", 50, 1, 200)).get_page(
        _int(request.GET, "page", 1, 1)
    )
    return JsonResponse(
        {
            "jobs": [job_summary(job) for job in page],
            "page": page.number,
            "pages": page.paginator.num_pages,
            "count": page.paginator.count,
        }
    )


def _submit(request: HttpRequest, user: Any) -> HttpResponseBase:
    data = _body(request)
    job = services.submit_job(
        user,
        repo=_str(data, "repo", ""),
        agent=_str(data, "agent", ""),
        prompt=_str(data, "prompt", ""),
        base_ref=_str(data, "base_ref"),
        title=_str(data, "title"),
        attempts=_int(data, "attempts", 1),
        priority=_int(data, "priority", 0),
        callback_url=_str(data, "callback_url", ""),
    )
    url = request.build_absolute_uri(f"/api/v1/jobs/{job.public_id}")
    return JsonResponse({"id": job.public_id, "status": job.status, "url": url}, status=202)


@api_view("GET")
def job(request: HttpRequest, user: Any, public_id: str) -> HttpResponseBase:
    return JsonResponse(job_detail(access.get_job(user, public_id)))


def _attempt(job: Job, request: HttpRequest) -> Attempt:
    number = _int(request.GET, "attempt", None)
    found = job.attempts.order_by("-number")
    attempt = (found.filter(number=number) if number is not None else found).first()
    if attempt is None:
        raise NotFound(f"Job {job.public_id} has no attempt {number}.")
    return attempt


@api_view("GET")
def job_events(request: HttpRequest, user: Any, public_id: str) -> HttpResponseBase:
    attempt = _attempt(access.get_job(user, public_id), request)
    after = _int(request.GET, "after", 0, 0)
    if "text/event-stream" in request.headers.get("Accept", ""):
        resume = _int(request.headers, "Last-Event-ID", 0, 0)
        return event_stream(attempt, max(after, resume))
    limit = _int(request.GET, "limit", 1000, 1, 5000)
    found = list(attempt.events.filter(seq__gt=after).order_by("seq")[:limit])
    return JsonResponse(
        {
            "attempt": attempt.number,
            "status": attempt.status,
            "last_seq": attempt.last_seq,
            "events": [e.as_dict() for e in found],
        }
    )


def _sse(kind: str, data: dict[str, Any], seq: int | None = None) -> str:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data)}\n\n"


def event_stream(attempt: Attempt, after: int) -> StreamingHttpResponse:
    """Server-Sent Events: the backlog after `after`, then new events as they are written, until
    the attempt has ended. Each event's `id` is its seq, so a reconnecting client resumes with
    Last-Event-ID and misses nothing."""

    async def stream() -> AsyncIterator[str]:
        last, idle = after, 0.0
        while True:
            batch = [e async for e in attempt.events.filter(seq__gt=last).order_by("seq")[:500]]
            for event in batch:
                last = event.seq
                yield _sse(event.kind, event.as_dict(), event.seq)
            if batch:
                idle = 0.0
                continue
            status = (
                await Attempt.objects.filter(pk=attempt.pk).values_list("status", flat=True).aget()
            )
            if (
                status in FINISHED_ATTEMPT_STATUSES
                and not await attempt.events.filter(seq__gt=last).aexists()
            ):
                yield _sse("end", {"status": status})
                return
            if idle >= SSE_KEEPALIVE_SECONDS:
                idle = 0.0
                yield ": keep-alive\n\n"
            await asyncio.sleep(SSE_POLL_SECONDS)
            idle += SSE_POLL_SECONDS

    response = StreamingHttpResponse(stream(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@api_view("GET")
def job_diff(request: HttpRequest, user: Any, public_id: str) -> HttpResponseBase:
    attempt = _attempt(access.get_job(user, public_id), request)
    response = HttpResponse(attempt.patch, content_type="text/x-diff; charset=utf-8")
    response["X-Diff-Hash"] = attempt.diff_hash
    return response


@api_view("POST")
def job_reviews(request: HttpRequest, user: Any, public_id: str) -> HttpResponseBase:
    job = access.get_job(user, public_id)
    data = _body(request)
    review = services.review_job(
        user,
        job,
        _str(data, "decision", ""),
        comment=_str(data, "comment", ""),
        attempt=_int(data, "attempt", None),
    )
    job.refresh_from_db()
    return JsonResponse(
        {
            "job": job.public_id,
            "status": job.status,
            "decision": review.decision,
            "attempt": review.attempt.number,
            "diff_hash": review.diff_hash,
        },
        status=201,
    )


@api_view("POST")
def job_merge(request: HttpRequest, user: Any, public_id: str) -> HttpResponseBase:
    job = access.get_job(user, public_id)
    commit = services.merge_job(user, job, attempt=_int(_body(request), "attempt", None))
    return JsonResponse({"commit": commit, "status": JobStatus.MERGED})


@api_view("POST")
def job_cancel(request: HttpRequest, user: Any, public_id: str) -> HttpResponseBase:
    job = services.cancel_job(user, access.get_job(user, public_id))
    return JsonResponse({"id": job.public_id, "status": job.status}, status=202)


@api_view("POST")
def job_rerun(request: HttpRequest, user: Any, public_id: str) -> HttpResponseBase:
    pin = _body(request).get("pin_image", False)
    if not isinstance(pin, bool):
        raise BadInput("pin_image must be true or false.", field="pin_image")
    attempt = services.rerun_job(user, access.get_job(user, public_id), pin_image=pin)
    return JsonResponse(
        {"id": public_id, "status": JobStatus.QUEUED, "attempt": attempt.number}, status=202
    )


@csrf_exempt
async def job_wait(request: HttpRequest, public_id: str) -> HttpResponseBase:
    """Long poll. Async so that a waiting client holds no thread of the server."""
    if request.method != "GET":
        return JsonResponse({"error": "method_not_allowed", "detail": "Use GET."}, status=405)
    try:
        user = await sync_to_async(authenticate)(request)
        job = await sync_to_async(access.get_job)(user, public_id)
        timeout = min(max(_int(request.GET, "timeout", 30), 0), WAIT_MAX_SECONDS)
    except ServiceError as exc:
        return error_response(exc)
    deadline = time.monotonic() + timeout
    while True:
        status = await Job.objects.filter(pk=job.pk).values_list("status", flat=True).aget()
        if status in SETTLED or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.25)
    detail = await sync_to_async(lambda: job_detail(Job.objects.get(pk=job.pk)))()
    return JsonResponse({"timed_out": status not in SETTLED, **detail})
