"""HTTP API under /api/v1/ (django-ninja): JSON in, JSON out, errors as {error, detail}. Only
glue: every change goes through jobs.services or jobs.tokens, every lookup through jobs.access.

The OpenAPI document at /api/v1/openapi.json is generated from these operations and the shapes
in jobs/schemas.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

from asgiref.sync import AsyncToSync, sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import RequestDataTooBig
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from ninja import Header, NinjaAPI, Query, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.security import HttpBearer, SessionAuth
from ninja.utils import check_csrf

from hooks import services as hook_services
from jobs import access, ratelimit, schemas, services, tokens
from jobs.api_agents import router as agents_router
from jobs.api_repos import router as repos_router
from jobs.api_reproduce import router as reproduce_router
from jobs.errors import BadInput, Forbidden, NotFound, ServiceError, TooLarge, Unauthorized
from jobs.group_commit import GroupCommit
from jobs.models import FINISHED_ATTEMPT_STATUSES, Attempt, Job, JobStatus
from jobs.serialize import job_detail, job_summary, push_dict

WAIT_MAX_SECONDS = 60
SSE_POLL_SECONDS = 0.25
# A job in one of these states is waiting for a person or is over: /wait returns.
SETTLED = {s for s in JobStatus.values if s not in (JobStatus.QUEUED, JobStatus.RUNNING)}
T = TypeVar("T")


def error_response(exc: ServiceError) -> JsonResponse:
    """`{error, detail, field?, conflicts?}` with the error's status; also used by notify.views."""
    body: dict[str, Any] = {"error": exc.error, "detail": exc.detail}
    if exc.field:
        body["field"] = exc.field
    if conflicts := getattr(exc, "conflicts", None):
        body["conflicts"] = conflicts
    response = JsonResponse(body, status=exc.status)
    if isinstance(exc, ratelimit.RateLimited):
        response["Retry-After"] = str(exc.retry_after)
    return response


async def in_pool(work: Callable[..., T], *args: Any) -> T:
    """Run `work` (sync: ORM, Redis) for an async view, in the event loop's thread pool.

    The hot calls (submit, get, list) are async views so that a request holds no thread of its
    own: Django starts one thread per request for a sync view (its ThreadSensitiveContext),
    while this pool's threads are few (min(32, cores + 4)) and reused, so under load requests
    wait their turn on the loop rather than as threads fighting for the GIL and the SQLite lock.
    Each call is like a request of its own for the database: one call holds a transaction and
    its on-commit effects whole, and its connection is closed after (or kept for CONN_MAX_AGE).

    Where the outermost caller is sync (Django's test client, an async_to_sync) the work goes
    back to that caller's thread instead, as Django's own async ORM methods do: that is where
    a test's transaction lives."""
    if _caller_is_sync():
        return await sync_to_async(work, thread_sensitive=True)(*args)
    # Channels' wrapper closes stale connections before and after, as a request does.
    return await database_sync_to_async(work, thread_sensitive=False)(*args)


def _caller_is_sync() -> bool:
    return getattr(AsyncToSync.executors, "current", None) is not None


# Work started after an answer, kept here until done (the loop holds only weak references).
_background: set[asyncio.Task[Any]] = set()


def _in_background(work: Coroutine[Any, Any, Any]) -> None:
    task = asyncio.get_running_loop().create_task(work)
    _background.add(task)
    task.add_done_callback(_background.discard)


class InPoolForAsyncViews:
    """Auth whose sync checks run in the pool (see in_pool) when an async view is called, and
    in the view's own thread otherwise. ninja awaits what an `is_async` auth returns in an
    async operation; in a sync one it uses a result that is not a coroutine as it is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.is_async = True

    def __call__(self, request: HttpRequest) -> Any:
        check = super().__call__  # type: ignore[misc]
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return check(request)
        return in_pool(check, request)


class BearerToken(InPoolForAsyncViews, HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        found = tokens.authenticate(token)
        # Keyed by the hash rather than the id, which a test database hands out again.
        ratelimit.check(f"token:{found.key_hash[:32]}")
        return found.user


class SignedInSession(InPoolForAsyncViews, SessionAuth):
    """A browser's session. CSRF is checked here, for signed-in users only, so that a request
    without any credentials is told 401 rather than a CSRF failure."""

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        if not request.user.is_authenticated:
            return None
        if check_csrf(request) is not None:
            raise Forbidden(
                "Session requests need a CSRF token; API clients should send a Bearer token."
            )
        ratelimit.check(f"user:{request.user.pk}")
        return request.user


class JsonObjectParser(Parser):
    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        # ninja turns any error here into a 400 whose __cause__ is this (see http_error).
        try:
            data = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadInput(f"The body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadInput(f"The body must be a JSON object, not {json.dumps(data)[:40]}.")
        return data


class ApiRequest(HttpRequest):
    auth: Any  # the user the auth classes above returned


class AgentHubAPI(NinjaAPI):
    def get_root_path(self, path_params: dict[str, Any]) -> str:
        # The operations are included without a URL namespace, so that their names
        # (`api-job`, used by jobs.serialize) are the project's own.
        return reverse("api-root", kwargs=path_params)


api = AgentHubAPI(
    title="AgentHub API",
    version="1",
    description="Submit jobs to agents, follow them, review and merge their results. "
    "Send `Authorization: Bearer <token>` (tokens from /settings/tokens/) or use a signed-in "
    "session with its CSRF token. Errors are `{error, detail}` with the HTTP status.",
    auth=[BearerToken(), SignedInSession(csrf=False)],
    parser=JsonObjectParser(),
    docs_url=None,  # the interactive docs page needs inline scripts, which the CSP refuses
)


def errors(*codes: int) -> dict[frozenset[int], type[schemas.Error]]:
    """The error responses an operation documents: the ones every call can give, and `codes`."""
    return {frozenset({400, 401, 429, *codes}): schemas.Error}


@api.exception_handler(ServiceError)
def service_error(request: HttpRequest, exc: ServiceError) -> HttpResponse:
    return error_response(exc)


@api.exception_handler(ValidationError)
def invalid_input(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    first = exc.errors[0]
    # loc is (source, parameter, field…); a body's fields sit under its parameter name.
    where = [str(part) for part in first["loc"][1:]]
    if first["loc"][0] == "body":
        where = where[1:]
    if not where:
        return error_response(BadInput(f"The body must be a JSON object: {first['msg']}."))
    return error_response(BadInput(f"{'.'.join(where)}: {first['msg']}.", field=where[0]))


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc, AuthenticationError):
        return error_response(Unauthorized("Sign in or send 'Authorization: Bearer <token>'."))
    if isinstance(exc.__cause__, ServiceError):  # from JsonObjectParser
        return error_response(exc.__cause__)
    return JsonResponse({"error": "bad_request", "detail": str(exc)}, status=exc.status_code)


@api.exception_handler(RequestDataTooBig)
def too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return error_response(TooLarge("The request body is too large."))


@api.exception_handler(Http404)
def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(NotFound(str(exc) or "Not found."))


@api.post(
    "/jobs",
    response={202: schemas.Accepted, **errors(403, 413)},
    url_name="api-jobs",
    summary="Submit a job",
)
async def submit_job(request: ApiRequest, data: schemas.SubmitIn) -> Any:
    if data.callback_url:
        await in_pool(check_callback_url, data.callback_url)
    job = await submits.run(services.Submission(request.auth, **data.dict()))
    url = request.build_absolute_uri(reverse("api-job", args=[job.public_id]))
    body: dict[str, Any] = {"id": job.public_id, "status": job.status, "url": url}
    if job.callback_url:
        body["callback_secret"] = await in_pool(hook_services.callback_secret, job)
    return Status(202, body)


async def _submit_group(submissions: list[services.Submission]) -> list[Job | Exception]:
    """Write the group; its callers are answered as soon as their jobs are in the database, and
    the jobs are settled (RQ, realtime) meanwhile, off the request path."""
    written = await in_pool(services.write_jobs, submissions)
    settle = partial(transaction.on_commit, written.settle, robust=True)
    if _caller_is_sync():
        await in_pool(settle)  # a test's transaction: settled on its commit, as submit_jobs does
    else:
        _in_background(in_pool(settle))
    return written.outcomes


# The submits that arrive while one group is being written go together in the next.
submits = GroupCommit(_submit_group)


def check_callback_url(url: str) -> None:
    try:
        hook_services.check_url(url)
    except hook_services.Refused as exc:
        raise BadInput(f"callback_url refused: {exc}", field="callback_url") from None


@api.get(
    "/jobs",
    response={200: schemas.JobPage, **errors()},
    url_name="api-jobs",
    summary="Your teams' jobs, newest first",
)
async def list_jobs(
    request: ApiRequest,
    status: JobStatus | None = None,
    repo: str | None = None,
    submitter: str | None = Query(
        None, description="Only jobs this user submitted: a username, or `me` for yourself"
    ),
    page: int = Query(1, ge=1),
    per_page: int = Query(50, ge=1, le=200),
) -> Any:
    return await in_pool(job_page, request, status, repo, submitter, page, per_page)


def job_page(
    request: ApiRequest,
    status: JobStatus | None,
    repo: str | None,
    submitter: str | None,
    page: int,
    per_page: int,
) -> dict[str, Any]:
    found = access.visible_jobs(request.auth).order_by("-created_at", "-pk")
    if status:
        found = found.filter(status=status)
    if repo:
        found = found.filter(repository__name=repo)
    if submitter:
        found = found.filter(submitter=submitter_named(request.auth, submitter))
    shown = Paginator(found, per_page).get_page(page)
    return {
        "jobs": [job_summary(job) for job in shown],
        "page": shown.number,
        "pages": shown.paginator.num_pages,
        "count": shown.paginator.count,
    }


def submitter_named(user: Any, name: str) -> Any:
    """The user `name` stands for: the caller for `me`, else a member of one of the caller's
    teams or someone who submitted jobs there (a member who has left). Anyone else is unknown,
    whether or not the name exists, so other teams' usernames cannot be probed with it."""
    if name == "me":
        return user
    teams = access.teams(user)
    found = (
        get_user_model()
        ._default_manager.filter(username=name)
        .filter(Q(memberships__team__in=teams) | Q(jobs__team__in=teams))
        .first()
    )
    if found is None:
        raise BadInput(
            f"submitter: there is no user {name!r} in your teams; "
            "give a member's username, or 'me' for yourself.",
            field="submitter",
        )
    return found


@api.get(
    "/jobs/{id}",
    response={200: schemas.JobOut, **errors(404)},
    url_name="api-job",
    summary="A job with its attempts, progress, diff stats and reviews",
)
async def get_job(request: ApiRequest, id: str) -> Any:
    return await in_pool(lambda: job_detail(access.get_job(request.auth, id)))


@api.get(
    "/jobs/{id}/wait",
    response={200: schemas.WaitOut, **errors(404)},
    url_name="api-job-wait",
    summary="Long poll: the job once it needs a person or has ended, or at the timeout",
)
async def wait_for_job(
    request: ApiRequest,
    id: str,
    timeout: int = Query(30, description=f"Seconds, at most {WAIT_MAX_SECONDS}"),
) -> Any:
    # Under ASGI jobs/api_consumers.py answers this call without holding a thread while it
    # waits; this view serves WSGI and the test client, and documents the call.
    job = await sync_to_async(access.get_job)(request.auth, id)
    deadline = time.monotonic() + min(max(timeout, 0), WAIT_MAX_SECONDS)
    while True:
        status = await Job.objects.filter(pk=job.pk).values_list("status", flat=True).aget()
        if status in SETTLED or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.25)
    detail = await sync_to_async(lambda: job_detail(Job.objects.get(pk=job.pk)))()
    return {"timed_out": status not in SETTLED, **detail}


def attempt_of(job: Job, number: int | None) -> Attempt:
    found = job.attempts.order_by("-number")
    attempt = (found.filter(number=number) if number is not None else found).first()
    if attempt is None:
        raise NotFound(f"Job {job.public_id} has no attempt {number}.")
    return attempt


@api.get(
    "/jobs/{id}/events",
    response={200: schemas.EventsOut, **errors(404)},
    url_name="api-job-events",
    summary="An attempt's events after a sequence number, in order (or as Server-Sent Events)",
    description="With `Accept: text/event-stream` the events come as Server-Sent Events: the "
    "backlog, then new events as they are written, each with `id: <seq>`, and a last `end` "
    "event once the attempt has ended. Reconnect with `Last-Event-ID` to resume. Under the ASGI "
    "server a stream whose token is revoked, whose session signs out, or whose user may no "
    "longer see the job ends with an `error` event ({error, detail}).",
    exclude_unset=True,  # an event's `data` is there only when it has some
    openapi_extra={
        "responses": {
            200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        }
    },
)
def job_events(
    request: ApiRequest,
    id: str,
    attempt: int | None = Query(None, description="The attempt's number; the latest by default"),
    after: int = Query(0, ge=0, description="Only events with a greater seq"),
    limit: int = Query(1000, ge=1, le=5000),
    last_event_id: int | None = Header(None, alias="Last-Event-ID", ge=0),
) -> Any:
    found = attempt_of(access.get_job(request.auth, id), attempt)
    if "text/event-stream" in request.headers.get("Accept", ""):
        return event_stream(found, max(after, last_event_id or 0))
    return {
        "attempt": found.number,
        "status": found.status,
        "last_seq": found.last_seq,
        "events": [e.as_dict() for e in found.events.filter(seq__gt=after).order_by("seq")[:limit]],
    }


def sse(kind: str, data: dict[str, Any], seq: int | None = None) -> str:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data)}\n\n"


def event_stream(attempt: Attempt, after: int) -> StreamingHttpResponse:
    """Server-Sent Events: the backlog after `after`, then new events as they are written, until
    the attempt has ended. Each event's `id` is its seq, so a reconnecting client resumes with
    Last-Event-ID and misses nothing. Under ASGI jobs/api_consumers.py serves the stream instead
    (woken by the job's Channels group rather than polling, and holding no thread)."""

    async def stream() -> AsyncIterator[str]:
        last, idle = after, 0.0
        while True:
            batch = [e async for e in attempt.events.filter(seq__gt=last).order_by("seq")[:500]]
            for event in batch:
                last = event.seq
                yield sse(event.kind, event.as_dict(), event.seq)
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
                yield sse("end", {"status": status})
                return
            if idle >= settings.AGENTHUB_SSE_KEEPALIVE:
                idle = 0.0
                yield ": keep-alive\n\n"
            await asyncio.sleep(SSE_POLL_SECONDS)
            idle += SSE_POLL_SECONDS

    response = StreamingHttpResponse(stream(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@api.get(
    "/jobs/{id}/diff",
    response=errors(404),
    url_name="api-job-diff",
    summary="An attempt's patch, as text/x-diff (the latest attempt by default)",
    openapi_extra={
        "responses": {
            200: {
                "description": "The patch; X-Diff-Hash names the result a review approves",
                "content": {"text/x-diff": {"schema": {"type": "string"}}},
            }
        }
    },
)
def job_diff(
    request: ApiRequest,
    id: str,
    attempt: int | None = Query(None, description="The attempt's number; the latest by default"),
) -> HttpResponse:
    found = attempt_of(access.get_job(request.auth, id), attempt)
    response = HttpResponse(found.patch, content_type="text/x-diff; charset=utf-8")
    response["X-Diff-Hash"] = found.diff_hash
    return response


@api.post(
    "/jobs/{id}/reviews",
    response={201: schemas.ReviewCreated, **errors(404, 403, 409)},
    url_name="api-job-reviews",
    summary="Approve, reject or request changes to an attempt's result",
)
def review_job(request: ApiRequest, id: str, data: schemas.ReviewIn) -> Any:
    job = access.get_job(request.auth, id)
    review = services.review_job(
        request.auth,
        job,
        data.decision,
        comment=data.comment,
        attempt=data.attempt,
        line_comments=[c.model_dump() for c in data.comments],
    )
    job.refresh_from_db()
    return Status(
        201,
        {
            "job": job.public_id,
            "status": job.status,
            "decision": review.decision,
            "attempt": review.attempt.number,
            "diff_hash": review.diff_hash,
            "follow_up": review.follow_ups.values_list("number", flat=True).first(),
        },
    )


@api.post(
    "/jobs/{id}/merge",
    response={200: schemas.Merged, **errors(404, 403, 409)},
    url_name="api-job-merge",
    summary="Merge the approved result into its branch (409 with `conflicts` when it cannot)",
)
def merge_job(
    request: ApiRequest,
    id: str,
    data: schemas.MergeIn | None = None,
) -> Any:
    job = access.get_job(request.auth, id)
    commit = services.merge_job(request.auth, job, attempt=data.attempt if data else None)
    job.refresh_from_db()
    return {"commit": commit, "status": JobStatus.MERGED, "push": push_dict(job)}


@api.post(
    "/jobs/{id}/push",
    response={200: schemas.Push, **errors(404, 403, 409)},
    url_name="api-job-push",
    summary="Push a merged job's branch upstream again (after a failure)",
)
def push_job(request: ApiRequest, id: str) -> Any:
    job = services.push_job(request.auth, access.get_job(request.auth, id))
    return push_dict(job)


@api.post(
    "/repos/{name}/sync",
    response={200: schemas.Synced, **errors(400, 502)},
    url_name="api-repo-sync",
    summary="Fetch the repository's source into AgentHub's copy now (`team/name` if ambiguous)",
)
def sync_repo(request: ApiRequest, name: str) -> Any:
    repository = services.find_repository(request.auth, name)
    synced = services.sync_repository(repository)
    repository.refresh_from_db(fields=["last_synced_at"])
    return {
        "repo": repository.name,
        "synced_at": repository.last_synced_at.isoformat() if repository.last_synced_at else None,
        "moved": synced.moved,
        "kept": synced.kept,
    }


@api.post(
    "/jobs/{id}/cancel",
    response={202: schemas.Cancelled, **errors(404, 403, 409)},
    url_name="api-job-cancel",
    summary="Cancel the job's queued and running attempts",
)
def cancel_job(request: ApiRequest, id: str) -> Any:
    job = services.cancel_job(request.auth, access.get_job(request.auth, id))
    return Status(202, {"id": job.public_id, "status": job.status})


@api.post(
    "/jobs/{id}/rerun",
    response={202: schemas.Rerun, **errors(404, 403, 409)},
    url_name="api-job-rerun",
    summary="Run the job again on the latest commit of its branch",
)
def rerun_job(
    request: ApiRequest,
    id: str,
    data: schemas.RerunIn | None = None,
) -> Any:
    job = access.get_job(request.auth, id)
    attempt = services.rerun_job(
        request.auth,
        job,
        pin_image=bool(data and data.pin_image),
        instruction=data.instruction if data else "",
    )
    return Status(202, {"id": job.public_id, "status": JobStatus.QUEUED, "attempt": attempt.number})


@api.get(
    "/tokens",
    response={200: list[schemas.TokenOut], **errors()},
    url_name="api-tokens",
    summary="Your API tokens, newest first (never their keys)",
)
def list_tokens(request: ApiRequest) -> Any:
    return [tokens.as_dict(token) for token in tokens.of(request.auth)]


@api.post(
    "/tokens",
    response={201: schemas.TokenCreated, **errors(403)},
    url_name="api-tokens",
    summary="Create an API token; its key is in this response and never again",
)
def create_token(request: ApiRequest, data: schemas.TokenIn) -> Any:
    expires_at = tokens.expiry(days=data.expires_in_days, at=data.expires_at)
    token, key = tokens.create(request.auth, data.name, expires_at=expires_at)
    return Status(201, {**tokens.as_dict(token), "key": key})


@api.delete(
    "/tokens/{token_id}",
    response={200: schemas.TokenOut, **errors(403, 404)},
    url_name="api-token",
    summary="Revoke one of your API tokens; it is refused from then on",
)
def revoke_token(request: ApiRequest, token_id: int) -> Any:
    return tokens.as_dict(tokens.revoke(request.auth, token_id))


# The team's agents (jobs/api_agents.py) and repositories' settings (jobs/api_repos.py).
api.add_router("/teams", agents_router)
api.add_router("/repos", repos_router)
# Reproducing an attempt (jobs/api_reproduce.py).
api.add_router("/jobs", reproduce_router)
