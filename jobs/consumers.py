"""Browser websockets: /ws/dashboard/ (the teams' job list and the header counter) and
/ws/jobs/<id>/?after=<seq>&attempt=<n> (an attempt's events: backlog after seq, then live).

Access is checked in connect(), before any group is joined; an outsider's socket is accepted
only to be closed with 4403, so the browser sees why.
"""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.template.loader import render_to_string

from jobs import access
from jobs.errors import NotFound
from jobs.events import job_group, team_group, user_group
from jobs.models import Attempt, Event, Job
from jobs.serialize import team_counters

# The consumers' database work runs in the event loop's thread pool. Channels gives a consumer
# no thread-sensitive context of its own (Django's HTTP handler does, per request), so with the
# default every socket of the process would queue its queries behind one shared thread.
in_pool = partial(database_sync_to_async, thread_sensitive=False)

FORBIDDEN = 4403
SIGNED_OUT = 4401
BACKLOG_CHUNK = 500
# A first connection gets at most this many of the latest lines; the page links the full log.
TAIL_LINES = 5000


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=SIGNED_OUT)
            return
        self.team_ids = await _team_ids(user)
        self.groups_joined = [team_group(t) for t in self.team_ids] + [user_group(user.pk)]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        # Counted once here; from then on each job update carries its team's fresh counter.
        self.counters = await _counters(self.team_ids)
        await self._send_counter()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def job_update(self, message: dict[str, Any]) -> None:
        summary = message["job"]
        found = await _card(self.scope["user"], summary["id"])
        if found is None:
            return
        card, concerned = found
        await self.send_json({"type": "job", "job": summary, "html": card, "notify": concerned})
        counter = message.get("counter")
        if counter and counter["team"] in self.counters:
            self.counters[counter["team"]] = counter
            await self._send_counter()

    async def _send_counter(self) -> None:
        totals = {
            name: sum(c[name] for c in self.counters.values()) for name in ("running", "queued")
        }
        await self.send_json({"type": "counter", **totals})

    async def session_closed(self, message: dict[str, Any]) -> None:
        await self.close(code=SIGNED_OUT)


class JobConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope["user"]
        public_id = self.scope["url_route"]["kwargs"]["public_id"]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        job = await _job(user, public_id) if user.is_authenticated else None
        if job is None:
            # Accept first so the close code reaches the browser; nothing is sent before it.
            await self.accept()
            await self.close(code=FORBIDDEN if user.is_authenticated else SIGNED_OUT)
            return
        self.groups_joined = [job_group(public_id), user_group(user.pk)]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        # Joined before reading the backlog: anything written meanwhile arrives live and is
        # dropped here if the backlog already had it.
        self.sent: dict[int, int] = {}
        number = _number(query, "attempt")
        await self._backlog(job, number, _number(query, "after") or 0)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _backlog(self, job: Job, number: int | None, after: int) -> None:
        attempt = await _attempt(job, number)
        if attempt is None:
            return
        self.sent[attempt.number] = after
        if after == 0 and attempt.last_seq > TAIL_LINES:
            skipped = attempt.last_seq - TAIL_LINES
            await self.send_json({"type": "skipped", "attempt": attempt.number, "count": skipped})
            self.sent[attempt.number] = skipped
        while True:
            batch = await _events(attempt.pk, self.sent[attempt.number], BACKLOG_CHUNK)
            if not batch:
                return
            await self._send_events(attempt.number, batch)

    async def _send_events(self, number: int, events: list[dict[str, Any]]) -> None:
        last = self.sent.get(number, 0)
        fresh = [e for e in events if e["seq"] > last]
        if fresh:
            self.sent[number] = fresh[-1]["seq"]
            await self.send_json({"type": "events", "attempt": number, "events": fresh})

    async def job_events(self, message: dict[str, Any]) -> None:
        await self._send_events(message["attempt"], message["events"])

    async def job_update(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": "job", "job": message["job"]})

    async def session_closed(self, message: dict[str, Any]) -> None:
        await self.close(code=SIGNED_OUT)


def _number(query: dict[str, list[str]], name: str) -> int | None:
    value = (query.get(name) or [""])[0]
    return int(value) if value.isdigit() else None


@in_pool
def _team_ids(user: Any) -> list[int]:
    return list(access.teams(user).values_list("pk", flat=True))


@in_pool
def _counters(team_ids: list[int]) -> dict[int, dict[str, int]]:
    return team_counters(team_ids)


@in_pool
def _card(user: Any, public_id: str) -> tuple[str, bool] | None:
    """The job's card as this user sees it, and whether its news is for them."""
    job = access.visible_jobs(user).filter(public_id=public_id).first()
    if job is None:
        return None
    html = render_to_string("jobs/_job_card.html", {"job": job, "user": user})
    return html, access.is_concerned(user, job)


@in_pool
def _job(user: Any, public_id: str) -> Job | None:
    try:
        return access.get_job(user, public_id)
    except NotFound:
        return None


@in_pool
def _attempt(job: Job, number: int | None) -> Attempt | None:
    found = job.attempts.order_by("-number")
    return (found.filter(number=number) if number else found).first()


@in_pool
def _events(attempt_id: int, after: int, limit: int) -> list[dict[str, Any]]:
    found = Event.objects.filter(attempt_id=attempt_id, seq__gt=after).order_by("seq")[:limit]
    return [e.as_dict() for e in found]
