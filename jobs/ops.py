"""Staff pages: operations (is the queue healthy right now?) and insights (how has it gone?).

Operations reads RQ's own records in Redis (workers, queue depths, failed jobs) beside the
database, which is the source of truth for attempts; it still renders when Redis is down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import wraps
from typing import Any

import django_rq
from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.utils import timezone
from redis.exceptions import RedisError
from rq.worker import Worker

from jobs import insights
from jobs.insights import human_duration
from jobs.models import ACTIVE_ATTEMPT_STATUSES, Attempt, AttemptStatus, Team
from jobs.views import HtmxHttpRequest

# Past this, the oldest queued attempt turns the summary amber: work waits longer than a person
# would expect, so workers are missing or the concurrency limits are too tight.
LONG_WAIT = timedelta(minutes=15)
# The longest period the insights page computes at once (its queries scan the whole range).
MAX_INSIGHT_DAYS = 366


@dataclass
class WorkerRow:
    name: str
    state: str
    current_job: str | None
    heartbeat_age: str
    queues: list[str]
    # Our attempts this worker has claimed (Attempt.worker is "host:pid", see runner.worker_name).
    attempts: list[Attempt] = field(default_factory=list)


@dataclass
class QueueRow:
    name: str
    waiting: int
    started: int
    failed: int


@dataclass
class RedisState:
    workers: list[WorkerRow]
    queues: list[QueueRow]

    @property
    def failed(self) -> int:
        return sum(queue.failed for queue in self.queues)


def redis_state(now: datetime) -> RedisState:
    """RQ's view: raises RedisError when Redis cannot be reached."""
    connection = django_rq.get_connection("default")
    active: dict[str, list[Attempt]] = {}
    for attempt in Attempt.objects.filter(status__in=ACTIVE_ATTEMPT_STATUSES).select_related("job"):
        active.setdefault(attempt.worker, []).append(attempt)
    workers = [
        WorkerRow(
            name=worker.name,
            state=worker.get_state(),
            current_job=worker.get_current_job_id(),
            heartbeat_age=_age(now, worker.last_heartbeat),
            queues=worker.queue_names(),
            attempts=active.get(f"{worker.hostname}:{worker.pid}", []),
        )
        for worker in sorted(Worker.all(connection=connection), key=lambda w: w.name)
    ]
    queues = []
    for name in settings.RQ_QUEUES:
        queue = django_rq.get_queue(name)
        queues.append(
            QueueRow(
                name,
                queue.count,
                queue.started_job_registry.count,
                queue.failed_job_registry.count,
            )
        )
    return RedisState(workers, queues)


def _age(now: datetime, then: datetime | None) -> str:
    return f"{human_duration((now - then).total_seconds())} ago" if then else "never"


@dataclass
class Summary:
    workers: int | None
    queued: int
    oldest_wait: timedelta | None
    stuck: int

    @property
    def warn(self) -> bool:
        return bool(
            self.workers is None
            or self.stuck
            or (self.queued and not self.workers)
            or (self.oldest_wait and self.oldest_wait > LONG_WAIT)
        )

    @property
    def text(self) -> str:
        if self.workers is None:
            alive = "Redis unreachable"
        else:
            alive = f"{self.workers} worker{'' if self.workers == 1 else 's'} alive"
        wait = human_duration(self.oldest_wait.total_seconds()) if self.oldest_wait else "–"
        return f"{alive} · {self.queued} queued · oldest waiting {wait} · {self.stuck} stuck"


def health(now: datetime) -> dict[str, Any]:
    queued = Attempt.objects.filter(status=AttemptStatus.QUEUED)
    oldest = queued.select_related("job__team").order_by("created_at", "pk").first()
    cutoff = now - timedelta(seconds=settings.AGENTHUB_HEARTBEAT_TIMEOUT)
    stuck = list(
        Attempt.objects.filter(status__in=ACTIVE_ATTEMPT_STATUSES)
        .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True))
        .select_related("job__team", "job__agent")
        .order_by("heartbeat_at", "pk")
    )
    try:
        rq: RedisState | None = redis_state(now)
        redis_error = ""
    except RedisError as exc:
        rq, redis_error = None, str(exc)
    oldest_wait = now - oldest.created_at if oldest else None
    summary = Summary(
        workers=len(rq.workers) if rq else None,
        queued=queued.count(),
        oldest_wait=oldest_wait,
        stuck=len(stuck),
    )
    return {
        "summary": summary,
        "rq": rq,
        "redis_error": redis_error,
        "held_back": queued.filter(dispatched_at__isnull=True).count(),
        "teams": _team_load(),
        "oldest": oldest,
        "oldest_wait": human_duration(oldest_wait.total_seconds()) if oldest_wait else "",
        "stuck": [(attempt, _age(now, attempt.heartbeat_at)) for attempt in stuck],
        "heartbeat_timeout": settings.AGENTHUB_HEARTBEAT_TIMEOUT,
    }


def _team_load() -> list[Team]:
    """Teams with attempts in flight: handed to RQ (counted against the limit) or held back."""
    in_flight = (AttemptStatus.QUEUED, *ACTIVE_ATTEMPT_STATUSES)
    return list(
        Team.objects.annotate(
            dispatched=Count(
                "jobs__attempts",
                filter=Q(
                    jobs__attempts__dispatched_at__isnull=False,
                    jobs__attempts__status__in=in_flight,
                ),
            ),
            held_back=Count(
                "jobs__attempts",
                filter=Q(
                    jobs__attempts__dispatched_at__isnull=True,
                    jobs__attempts__status=AttemptStatus.QUEUED,
                ),
            ),
        )
        .filter(Q(dispatched__gt=0) | Q(held_back__gt=0))
        .order_by("name")
    )


def staff_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A page for staff: anyone else signed in is told so (403) rather than sent to the admin's
    sign-in, and a visitor who is not signed in goes to the sign-in page."""

    @login_required
    @wraps(view)
    def check(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied(
                "This page is for AgentHub's staff: ask an administrator for what it shows."
            )
        return view(request, *args, **kwargs)

    return check


@staff_only
def operations(request: HtmxHttpRequest) -> HttpResponse:
    context = health(timezone.now())
    # The page polls itself (htmx) and swaps in just the health region.
    template = "ops/_health.html" if request.htmx else "ops/ops.html"
    return render(request, template, context)


class InsightsForm(forms.Form):
    """?from=YYYY-MM-DD&to=YYYY-MM-DD&team=name; see for_query for the defaults."""

    team = forms.ModelChoiceField(
        Team.objects.order_by("name"),
        to_field_name="name",
        required=False,
        empty_label="all teams",
        error_messages={"invalid_choice": "No team of that name."},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # "from" is a Python keyword, so these are added here rather than declared.
        dates = {
            name: forms.DateField(
                label=name.capitalize(),
                widget=forms.DateInput(attrs={"type": "date"}),
                error_messages={"invalid": f"'{name}' must be a date written YYYY-MM-DD."},
            )
            for name in ("from", "to")
        }
        self.fields = {**dates, "team": self.fields["team"]}

    @classmethod
    def for_query(cls, query: QueryDict) -> InsightsForm:
        """Bound to the query with the defaults filled in, so the inputs show the period used:
        the 30 days up to `to`, which is today unless given."""
        data = query.copy()
        today = timezone.localdate()
        to = query.get("to") or today.isoformat()
        data["to"] = to
        if not query.get("from"):
            try:
                end = date.fromisoformat(to)
            except ValueError:
                end = today  # the form reports the bad 'to'
            data["from"] = (end - timedelta(days=29)).isoformat()
        return cls(data)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "from" not in data or "to" not in data:
            return data  # a date was invalid; its field says why
        start, end = data["from"], data["to"]
        if start > end:
            raise forms.ValidationError(
                f"'from' ({start}) is after 'to' ({end}): the start must not be after the end."
            )
        if (end - start).days >= MAX_INSIGHT_DAYS:
            raise forms.ValidationError(
                f"{start} to {end} is {(end - start).days + 1} days;"
                f" pick at most {MAX_INSIGHT_DAYS} days."
            )
        data["period"] = insights.Period(start, end)
        return data


@staff_only
def insights_page(request: HttpRequest) -> HttpResponse:
    form = InsightsForm.for_query(request.GET)
    if not form.is_valid():
        return render(request, "ops/insights.html", {"form": form}, status=400)
    period, team = form.cleaned_data["period"], form.cleaned_data["team"]
    tz = timezone.get_default_timezone()
    report = insights.build(period, tz, team)
    context = {"form": form, "report": report, "tz_name": timezone.get_default_timezone_name()}
    return render(request, "ops/insights.html", context)
