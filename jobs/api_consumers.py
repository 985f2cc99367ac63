"""The API's two long-lived calls under ASGI, served by Channels consumers so that a waiting or
following client holds no thread: GET /api/v1/jobs/<id>/events with `Accept: text/event-stream`
and GET /api/v1/jobs/<id>/wait.

Django's ASGI handler gives every request a thread of its own (its sync middleware and ORM calls
run there) until the response has ended, which for a stream can be hours. A consumer runs on the
event loop and wakes when the job's Channels group says something happened. `route()` wraps the
Django application in agenthub/asgi.py. Under WSGI and Django's test client jobs/api.py serves
the same calls itself, and it defines them in the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings

from jobs import access, ratelimit, tokens
from jobs.api import SETTLED, WAIT_MAX_SECONDS, attempt_of, error_response, sse
from jobs.consumers import in_pool
from jobs.errors import BadInput, ServiceError, Unauthorized
from jobs.events import job_group
from jobs.models import FINISHED_ATTEMPT_STATUSES, Attempt, Event, Job
from jobs.serialize import job_detail

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
CALL = re.compile(r"^/api/v1/jobs/(?P<public_id>[^/]+)/(?P<call>events|wait)$")
BATCH = 500


def route(django_app: ASGIApp) -> ASGIApp:
    """The HTTP application for agenthub/asgi.py: the long-lived calls here, the rest Django."""
    consumers = {
        "events": AuthMiddlewareStack(EventStreamConsumer.as_asgi()),
        "wait": AuthMiddlewareStack(WaitConsumer.as_asgi()),
    }

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await consumers.get(_call(scope), django_app)(scope, receive, send)

    return app


def _call(scope: dict[str, Any]) -> str:
    if scope["type"] != "http" or scope["method"] != "GET":
        return ""
    found = CALL.match(scope["path"])
    if found is None:
        return ""
    if found["call"] == "events":  # the JSON form is an ordinary request, left to Django
        accept = b",".join(v for k, v in scope["headers"] if k == b"accept")
        return "events" if b"text/event-stream" in accept else ""
    return "wait"


class JobCallConsumer(AsyncHttpConsumer):
    """Answers once the request is authenticated and the job found, then listens to the job's
    group until it has said everything (see the subclasses)."""

    group = ""
    timer: asyncio.Task[None] | None = None

    async def http_request(self, message: dict[str, Any]) -> None:
        # Unlike AsyncHttpConsumer's, the response stays open after handle(): it goes on in
        # the handlers of the group's messages until it is complete or the client leaves.
        if not message.get("more_body"):
            await self.handle(b"")

    async def handle(self, body: bytes) -> None:
        query = parse_qs(self.scope["query_string"].decode("latin1"))
        headers = {k.decode("latin1"): v.decode("latin1") for k, v in self.scope["headers"]}
        try:
            job = await _job(self.scope, headers)
            await self.start(job, query, headers)
        except ServiceError as exc:
            response = error_response(exc)
            fields = [(k.encode(), v.encode()) for k, v in response.items()]
            await self.send_response(response.status_code, response.content, headers=fields)
            await self.finish()

    async def start(self, job: Job, query: dict[str, Any], headers: dict[str, str]) -> None:
        raise NotImplementedError

    async def listen(self, job: Job) -> None:
        self.group = job_group(job.public_id)
        await self.channel_layer.group_add(self.group, self.channel_name)

    def remind(self, seconds: float, message: str, *, repeat: bool = False) -> None:
        """Send ourselves `message` in `seconds` (and every `seconds` after, with `repeat`);
        through the consumer's own channel, so it is handled in turn with the group's messages."""

        async def later() -> None:
            while True:
                await asyncio.sleep(seconds)
                await self.channel_layer.send(self.channel_name, {"type": message})
                if not repeat:
                    return

        self.timer = asyncio.create_task(later())

    async def finish(self) -> None:
        await self.disconnect()
        raise StopConsumer

    async def disconnect(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def job_events(self, message: dict[str, Any]) -> None:
        pass

    async def job_update(self, message: dict[str, Any]) -> None:
        pass


class EventStreamConsumer(JobCallConsumer):
    """Server-Sent Events: the backlog after `?after=` or `Last-Event-ID`, then each new event,
    each with `id: <seq>`, and `end` once the attempt has ended and all its events were sent."""

    attempt_id = 0
    number = 0
    last = 0

    async def start(self, job: Job, query: dict[str, Any], headers: dict[str, str]) -> None:
        attempt = await in_pool(attempt_of)(job, _whole(query, "attempt"))
        self.attempt_id, self.number = attempt.pk, attempt.number
        self.last = max(_whole(query, "after") or 0, _whole(headers, "last-event-id") or 0)
        # Joined before the backlog is read: what is written meanwhile also arrives as a message,
        # and is not sent twice because everything up to self.last is skipped.
        await self.listen(job)
        # A comment line this often keeps proxies from closing a quiet stream; each one also
        # checks the credentials again and re-reads the database, in case a message of the
        # channel layer (best effort) was lost.
        self.remind(settings.AGENTHUB_SSE_KEEPALIVE, "stream.tick", repeat=True)
        await self.send_headers(
            headers=[
                (b"Content-Type", b"text/event-stream"),
                (b"Cache-Control", b"no-cache"),
                (b"X-Accel-Buffering", b"no"),
            ]
        )
        await self.send_body(b"", more_body=True)
        await self.catch_up()

    async def job_events(self, message: dict[str, Any]) -> None:
        if message["attempt"] != self.number:
            return
        fresh = [e for e in message["events"] if e["seq"] > self.last]
        if fresh and fresh[0]["seq"] == self.last + 1:
            await self._send(fresh)
            if any(e["kind"] == "status" for e in fresh):
                await self.catch_up()  # the attempt may have ended
        elif fresh:
            await self.catch_up()  # a message was lost or overtaken: the database has it all

    async def stream_tick(self, message: dict[str, Any]) -> None:
        headers = {k.decode("latin1"): v.decode("latin1") for k, v in self.scope["headers"]}
        try:
            await _still_allowed(self.scope, headers)
        except ServiceError as exc:
            # The token was revoked or expired, the session signed out, or the user left the
            # team: say why and end the stream; a reconnect gets the matching 401 or 404.
            detail = json.loads(error_response(exc).content)
            await self.send_body(sse("error", detail).encode())
            await self.finish()
        await self.send_body(b": keep-alive\n\n", more_body=True)
        await self.catch_up()

    async def catch_up(self) -> None:
        """Send what the database has after self.last; end the stream if the attempt is over."""
        while True:
            events, status = await _events_after(self.attempt_id, self.last)
            await self._send(events)
            if len(events) < BATCH:
                break
        if status in FINISHED_ATTEMPT_STATUSES:
            await self.send_body(sse("end", {"status": status}).encode())
            await self.finish()

    async def _send(self, events: list[dict[str, Any]]) -> None:
        if events:
            self.last = events[-1]["seq"]
            chunk = "".join(sse(e["kind"], e, e["seq"]) for e in events)
            await self.send_body(chunk.encode(), more_body=True)


class WaitConsumer(JobCallConsumer):
    """The long poll: the job as GET /api/v1/jobs/<id> shows it, with `timed_out`, once it needs a
    person or has ended, or when `?timeout=` seconds (at most WAIT_MAX_SECONDS) have passed."""

    job_id = 0

    async def start(self, job: Job, query: dict[str, Any], headers: dict[str, str]) -> None:
        self.job_id = job.pk
        await self.listen(job)
        self.remind(min(_whole(query, "timeout", 30), WAIT_MAX_SECONDS), "wait.timeout")
        await self.answer_if_settled()  # it may have settled before we joined

    async def job_update(self, message: dict[str, Any]) -> None:
        if message["job"]["status"] in SETTLED:
            await self.answer_if_settled()

    async def answer_if_settled(self) -> None:
        detail = await _detail(self.job_id)
        if detail["status"] in SETTLED:
            await self._answer(detail, timed_out=False)

    async def wait_timeout(self, message: dict[str, Any]) -> None:
        detail = await _detail(self.job_id)
        await self._answer(detail, timed_out=detail["status"] not in SETTLED)

    async def _answer(self, detail: dict[str, Any], *, timed_out: bool) -> None:
        body = json.dumps({**detail, "timed_out": timed_out}).encode()
        await self.send_response(200, body, headers=[(b"Content-Type", b"application/json")])
        await self.finish()


@in_pool
def _job(scope: dict[str, Any], headers: dict[str, str]) -> Job:
    """The job the request is about, as its authenticated user may see it (the checks of
    jobs/api.py's BearerToken and SignedInSession; no CSRF, as both calls are GETs)."""
    user, who = _caller(scope, headers)
    ratelimit.check(who)
    return access.get_job(user, CALL.match(scope["path"])["public_id"])  # type: ignore[index]


@in_pool
def _still_allowed(scope: dict[str, Any], headers: dict[str, str]) -> None:
    """_job's checks again for an open stream, not counted by the rate limit; a session must
    still exist (signing out deletes it)."""
    user, who = _caller(scope, headers)
    session = scope.get("session")
    if who.startswith("user:") and not (
        session is not None and session.session_key and session.exists(session.session_key)
    ):
        raise Unauthorized("The session has ended: sign in again.")
    access.get_job(user, CALL.match(scope["path"])["public_id"])  # type: ignore[index]


def _caller(scope: dict[str, Any], headers: dict[str, str]) -> tuple[Any, str]:
    """The request's user, and the name the rate limit counts it under."""
    scheme, _, key = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        token = tokens.authenticate(key.strip())
        return token.user, f"token:{token.key_hash[:32]}"
    if scope["user"].is_authenticated:
        return scope["user"], f"user:{scope['user'].pk}"
    raise Unauthorized("Sign in or send 'Authorization: Bearer <token>'.")


def _whole(values: dict[str, Any], name: str, default: int | None = None) -> Any:
    value = values.get(name)
    value = value[-1] if isinstance(value, list) else value
    if value is None:
        return default
    if not value.strip().isdigit():
        raise BadInput(f"{name} must be a whole number of 0 or more, not {value!r}.", field=name)
    return int(value)


@in_pool
def _events_after(attempt_id: int, after: int) -> tuple[list[dict[str, Any]], str]:
    # The status first: if it says finished, the events read after it are all there will be.
    status = Attempt.objects.values_list("status", flat=True).get(pk=attempt_id)
    found = Event.objects.filter(attempt_id=attempt_id, seq__gt=after).order_by("seq")[:BATCH]
    return [e.as_dict() for e in found], status


@in_pool
def _detail(job_id: int) -> dict[str, Any]:
    return job_detail(Job.objects.get(pk=job_id))
