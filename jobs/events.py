"""The one owner of the event format: parsing agent output, masking secrets, writing events with
a gap-free per-attempt sequence, and publishing them to the Channels groups."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from jobs import checks
from jobs.models import Attempt, Event, Job

log = logging.getLogger(__name__)

MASK = "***"
# `::name key=value,key=value::message`, the GitHub Actions workflow-command syntax.
_COMMAND = re.compile(r"^::(?P<name>[a-z-]+)(?: (?P<props>[^:]*))?::(?P<message>.*)$")
_PROGRESS = re.compile(r"^\s*(?P<percent>\d{1,3})(?:%)?(?:\s+(?P<message>.*))?$")
_KINDS = {"notice": "notice", "warning": "warning", "error": "error"}


@dataclass
class Draft:
    """An event before it has a sequence number."""

    kind: str
    text: str = ""
    stream: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    ts: datetime = field(default_factory=timezone.now)


def job_group(public_id: str) -> str:
    return f"job-{public_id}"


def team_group(team_id: int) -> str:
    return f"team-{team_id}"


def user_group(user_id: int) -> str:
    """Every socket of a user; used to close them all when the user signs out."""
    return f"user-{user_id}"


class Masker:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        secret = secret.strip()
        if secret and secret not in self._secrets:
            self._secrets.append(secret)
            # Longest first, so a secret containing another is hidden whole.
            self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


class OutputParser:
    """Turns raw output lines into event drafts, understanding workflow commands.

    Masking happens here, before anything is stored or sent: an `::add-mask::` line registers
    the value and produces no event at all.
    """

    def __init__(self, masker: Masker) -> None:
        self.mask = masker
        self.group_depth = 0

    def feed(self, stream: str, text: str, ts: datetime) -> Draft | None:
        match = _COMMAND.match(text)
        if match is None:
            return Draft("log", self.mask(text), stream, ts=ts)
        name, message = match["name"], match["message"]
        if name == "add-mask":
            self.mask.add(message)
            return None
        draft = self._command(name, self.mask(match["props"] or ""), self.mask(message))
        if draft is None:
            return Draft("log", self.mask(text), stream, ts=ts)
        draft.stream, draft.ts = stream, ts
        return draft

    def _command(self, name: str, props: str, message: str) -> Draft | None:
        if name in _KINDS:
            return Draft(_KINDS[name], message, data=_properties(props))
        if name == "progress":
            found = _PROGRESS.match(message)
            if found is None or int(found["percent"]) > 100:
                return None
            percent = int(found["percent"])
            return Draft("progress", found["message"] or "", data={"percent": percent})
        if name == "summary":
            try:
                result = checks.parse(message)
            except checks.Invalid as exc:
                return Draft("warning", f"a ::summary:: line was left out: {exc}")
            return Draft("summary", checks.describe(result), data=result)
        if name == "group":
            self.group_depth += 1
            return Draft("group", message)
        if name == "endgroup" and self.group_depth:
            self.group_depth -= 1
            return Draft("endgroup")
        return None


def _properties(props: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for part in props.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip() in ("file", "line", "col", "endLine", "endColumn", "title"):
            value = value.strip()
            result[key.strip()] = int(value) if value.isdigit() else value
    return result


def append_events(attempt_id: int, drafts: list[Draft]) -> list[Event]:
    """Store drafts as the attempt's next events and publish them once committed.

    The attempt row is locked while the numbers are handed out, so writers in different processes
    (the worker, the reconciler, a cancel from the API) can never leave a gap or a duplicate.
    """
    if not drafts:
        return []
    with transaction.atomic():
        attempt = Attempt.objects.select_for_update().select_related("job").get(pk=attempt_id)
        events = [
            Event(
                attempt=attempt,
                seq=attempt.last_seq + i,
                ts=d.ts,
                kind=d.kind,
                stream=d.stream,
                text=d.text,
                data=d.data,
            )
            for i, d in enumerate(drafts, start=1)
        ]
        Event.objects.bulk_create(events)
        Attempt.objects.filter(pk=attempt_id).update(last_seq=attempt.last_seq + len(events))
        job, number = attempt.job, attempt.number
        transaction.on_commit(lambda: publish_events(job, number, events))
    return events


def store_first_events(attempts: list[Attempt], draft: Draft) -> None:
    """Give new attempts (created with last_seq=1) their first event, unpublished: nobody can
    follow an attempt before its transaction commits. The submit path's one insert."""
    Event.objects.bulk_create(
        Event(
            attempt=a,
            seq=1,
            ts=draft.ts,
            kind=draft.kind,
            stream=draft.stream,
            text=draft.text,
            data=draft.data,
        )
        for a in attempts
    )


def publish_events(job: Job, attempt_number: int, events: list[Event]) -> None:
    send(
        job_group(job.public_id),
        {
            "type": "job.events",
            "job": job.public_id,
            "attempt": attempt_number,
            "events": [e.as_dict() for e in events],
        },
    )


def publish_job(job: Job, summary: dict[str, Any], counter: dict[str, int]) -> None:
    """The job's new state to its team's dashboards, with the team's header counter, and to its
    own page."""
    message = {"type": "job.update", "job": summary, "counter": counter}
    send([team_group(job.team_id), job_group(job.public_id)], message)


def publish_new_jobs(jobs: list[tuple[Job, dict[str, Any], dict[str, int]]]) -> None:
    """New jobs (each with its summary and its team's header counter) to their teams' dashboards
    in one trip; a new job has no page open yet, so it costs one message. The caller does not
    wait for the trip: nothing it does next depends on it, and it stays in order with what this
    process publishes after."""
    _send_all(
        [
            (team_group(job.team_id), {"type": "job.update", "job": summary, "counter": counter})
            for job, summary, counter in jobs
        ],
        wait=False,
    )


def send(groups: str | list[str], message: dict[str, Any]) -> None:
    """Publish to one or more groups in one trip to the publishing loop."""
    names = [groups] if isinstance(groups, str) else groups
    _send_all([(name, message) for name in names])


def _send_all(messages: list[tuple[str, dict[str, Any]]], *, wait: bool = True) -> None:
    # Realtime delivery is best effort: the database already holds the events and clients catch
    # up with ?after=seq, so a Redis hiccup must not fail the attempt.
    layer = get_channel_layer()
    if layer is None:
        return
    groups = ", ".join(sorted({n for n, _ in messages}))

    async def send_all() -> None:
        try:
            for name, message in messages:
                await layer.group_send(name, message)
        except Exception:  # noqa: BLE001
            log.warning("could not publish to %s", groups, exc_info=True)

    try:
        _publisher.run(send_all(), timeout=PUBLISH_TIMEOUT if wait else None)
    except Exception:  # noqa: BLE001
        log.warning("could not publish to %s", groups, exc_info=True)


PUBLISH_TIMEOUT = 5.0


class _Publisher:
    """One event loop per process, on a daemon thread, for publishing from sync code (views,
    services, workers). async_to_sync would start a thread and a loop for every call, and the
    channel layer a new Redis connection for every loop: ~10 ms a message instead of one round
    trip. Each call waits for its message to leave, so order and delivery stay as they were."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def run(self, coro: Coroutine[Any, Any, None], timeout: float | None) -> None:
        """Hand `coro` to the loop; wait up to `timeout` seconds for it, or not at all (None)."""
        sent = asyncio.run_coroutine_threadsafe(coro, self._running_loop())
        if timeout is not None:
            sent.result(timeout)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # a forked child starts its own
                self._loop, self._pid = asyncio.new_event_loop(), os.getpid()
                thread = threading.Thread(
                    target=self._loop.run_forever, name="agenthub-publisher", daemon=True
                )
                thread.start()
            return self._loop


_publisher = _Publisher()


def events_after(attempt: Attempt, after: int, limit: int = 1000) -> Iterator[Event]:
    return iter(attempt.events.filter(seq__gt=after).order_by("seq")[:limit])
