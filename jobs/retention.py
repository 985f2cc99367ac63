"""Retention: the logs (events) of attempts that finished long ago, attempt workspaces left
on disk, and repository environments no attempt uses any more are removed. Jobs, attempts
(result, patch, files, card), reviews and the audit trail are always kept.

Used by `manage.py apply_retention` and by every worker (agenthub_worker's retention thread calls
apply_if_due).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import stat
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from redis import Redis

from jobs import checkouts, environments, overlay, services
from jobs.models import FINISHED_ATTEMPT_STATUSES, Attempt, Event

# Events are deleted this many at a time, each batch its own short transaction.
EVENT_BATCH = 5000
ATTEMPT_BATCH = 200
# Set on Attempt.card when its events are deleted; the job page says so in place of the log.
LOG_REMOVED_AT = "log_removed_at"
EVENTS_DUE_KEY = "agenthub:retention:events"
WORKSPACES_DUE_KEY = "agenthub:retention:workspaces"
ATTEMPT_DIR_NAME = re.compile(r"[0-9]+")


@dataclass
class RemovedLog:
    job: str
    attempt: int
    events: int


@dataclass
class RemovedWorkspace:
    name: str
    reason: str
    bytes: int


@dataclass
class Report:
    dry_run: bool
    event_days: int
    workspace_days: int
    events: int = 0
    logs: list[RemovedLog] = field(default_factory=list)
    workspaces: list[RemovedWorkspace] = field(default_factory=list)
    checkouts: list[str] = field(default_factory=list)  # cached base commits (jobs.checkouts)
    failures: list[str] = field(default_factory=list)

    @property
    def jobs(self) -> list[str]:
        return sorted({log.job for log in self.logs})

    @property
    def bytes_freed(self) -> int:
        return sum(w.bytes for w in self.workspaces)

    @property
    def removed_anything(self) -> bool:
        return bool(self.logs or self.workspaces or self.checkouts)

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"{verb} {self.events} events of {len(self.logs)} attempts"
            f" and {len(self.workspaces)} workspaces ({self.bytes_freed} bytes)"
            + (f", {len(self.checkouts)} cached checkouts" if self.checkouts else "")
            + (f"; {len(self.failures)} failures" if self.failures else "")
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "jobs": self.jobs, "bytes_freed": self.bytes_freed}


def apply(
    now: datetime | None = None,
    dry_run: bool = False,
    *,
    event_days: int | None = None,
    workspace_days: int | None = None,
    events: bool = True,
    workspaces: bool = True,
) -> Report:
    """Remove what is past retention (or only say what would go, for a dry run).

    Writes one audit entry for a run that removed something."""
    now = now or timezone.now()
    report = Report(
        dry_run=dry_run,
        event_days=settings.AGENTHUB_EVENT_RETENTION_DAYS if event_days is None else event_days,
        workspace_days=(
            settings.AGENTHUB_WORKSPACE_RETENTION_DAYS if workspace_days is None else workspace_days
        ),
    )
    if events:
        _remove_logs(report, now)
    if workspaces:
        _remove_workspaces(report, now)
        _remove_environments(report, now)
    if report.removed_anything and not dry_run:
        services.audit(
            "system",
            "retention.apply",
            events=report.events,
            attempts=[f"{log.job}/{log.attempt}" for log in report.logs],
            jobs=report.jobs,
            workspaces=[w.name for w in report.workspaces],
            checkouts=report.checkouts,
            bytes_freed=report.bytes_freed,
            failures=report.failures,
            event_days=report.event_days,
            workspace_days=report.workspace_days,
        )
    return report


def apply_if_due(connection: Redis) -> Report | None:
    """Apply retention unless it was applied less than AGENTHUB_RETENTION_INTERVAL ago.

    Called by every worker every few seconds. Events are removed once for all workers (they share
    the database); workspaces once per host and data directory (each worker host has its own)."""
    interval = settings.AGENTHUB_RETENTION_INTERVAL
    host = socket.gethostname()
    local_key = f"{WORKSPACES_DUE_KEY}:{host}:{settings.AGENTHUB_DATA_DIR}"
    events = bool(connection.set(EVENTS_DUE_KEY, host, nx=True, ex=interval))
    workspaces = bool(connection.set(local_key, host, nx=True, ex=interval))
    if not (events or workspaces):
        return None
    return apply(events=events, workspaces=workspaces)


# --- events ------------------------------------------------------------------------------------


def _remove_logs(report: Report, now: datetime) -> None:
    finished = Attempt.objects.filter(
        status__in=FINISHED_ATTEMPT_STATUSES,
        finished_at__lt=now - timedelta(days=report.event_days),
    ).filter(Exists(Event.objects.filter(attempt=OuterRef("pk"))))
    last = 0
    while batch := list(
        finished.filter(pk__gt=last)
        .order_by("pk")
        .values_list("pk", "job__public_id", "number")[:ATTEMPT_BATCH]
    ):
        for pk, job, number in batch:
            if report.dry_run:
                count = Event.objects.filter(attempt_id=pk).count()
            else:
                count = _delete_events(pk, now)
            report.events += count
            report.logs.append(RemovedLog(job, number, count))
        last = batch[-1][0]


def _delete_events(attempt_id: int, now: datetime) -> int:
    # Marked first: a run stopped half-way leaves a marked attempt with events, which the next
    # run finds again, never an unmarked attempt without its log.
    with transaction.atomic():
        card = Attempt.objects.select_for_update().values_list("card", flat=True).get(pk=attempt_id)
        if LOG_REMOVED_AT not in card:
            Attempt.objects.filter(pk=attempt_id).update(
                card={**card, LOG_REMOVED_AT: now.isoformat()}
            )
    events = Event.objects.filter(attempt_id=attempt_id)
    removed = 0
    while True:
        # Up to the EVENT_BATCH-th event by pk, as a range: no long list of ids in the query.
        edge = list(events.order_by("pk").values_list("pk", flat=True)[EVENT_BATCH - 1 :][:1])
        removed += (events.filter(pk__lte=edge[0]) if edge else events).delete()[0]
        if not edge:
            return removed


# --- workspaces --------------------------------------------------------------------------------


def _remove_workspaces(report: Report, now: datetime) -> None:
    root = settings.AGENTHUB_DATA_DIR / "attempts"
    try:
        entries = sorted(root.iterdir())
    except FileNotFoundError:
        return
    cutoff = now - timedelta(days=report.workspace_days)
    for path, reason in _stale(entries, cutoff):
        try:
            size = _size(path)
            if not report.dry_run:
                # A killed worker's layer is still mounted: removing through it could reach the
                # cached checkout underneath.
                overlay.unmount_under(path)
                remove_tree(path)
        except FileNotFoundError:
            continue  # another worker sharing this directory got there first
        except OSError as exc:
            report.failures.append(f"workspace {path.name}: {exc}")
            continue
        report.workspaces.append(RemovedWorkspace(path.name, reason, size))
    cache = settings.AGENTHUB_DATA_DIR / checkouts.DIR_NAME
    try:
        report.checkouts = checkouts.remove_unused(
            cache, root, cutoff.timestamp(), dry_run=report.dry_run
        )
    except OSError as exc:
        report.failures.append(f"cached checkouts: {exc}")


def _remove_environments(report: Report, now: datetime) -> None:
    """Repository environments no attempt used for AGENTHUB_ENVIRONMENT_RETENTION_DAYS (each use
    touches one), and half-built ones a killed worker left a day ago, as `environments/<key>`."""
    days = settings.AGENTHUB_ENVIRONMENT_RETENTION_DAYS
    try:
        entries = sorted(environments.root().iterdir())
    except FileNotFoundError:
        return
    for path in entries:
        building = path.name.startswith(".build-")
        cutoff = now - timedelta(days=1 if building else days)
        try:
            if datetime.fromtimestamp(path.lstat().st_mtime, tz=UTC) >= cutoff:
                continue
            size = _size(path)
            if not report.dry_run:
                remove_tree(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            report.failures.append(f"environment {path.name}: {exc}")
            continue
        reason = "left half-built" if building else f"unused for {days} days"
        report.workspaces.append(RemovedWorkspace(f"environments/{path.name}", reason, size))


def _stale(entries: list[Path], cutoff: datetime) -> list[tuple[Path, str]]:
    """The entries of the attempts directory to remove, and why. Never the directory of an
    attempt that is queued, preparing or running: only finished attempts' directories go."""
    ids = [int(p.name) for p in entries if ATTEMPT_DIR_NAME.fullmatch(p.name)]
    attempts = {
        pk: (status, finished_at or created_at)
        for pk, status, finished_at, created_at in Attempt.objects.filter(pk__in=ids).values_list(
            "pk", "status", "finished_at", "created_at"
        )
    }
    stale = []
    for path in entries:
        if not ATTEMPT_DIR_NAME.fullmatch(path.name):
            stale.append((path, "not an attempt"))
        elif int(path.name) not in attempts:
            stale.append((path, "its attempt no longer exists"))
        else:
            status, ended = attempts[int(path.name)]
            if status in FINISHED_ATTEMPT_STATUSES and ended < cutoff:
                stale.append((path, f"attempt {status} at {ended:%Y-%m-%d %H:%M} UTC"))
    return stale


def remove_tree(path: Path) -> None:
    """Remove a workspace whatever its agent did to the permissions.

    Agents can leave directories read-only or unreadable, which stops a worker that is not root
    from removing what is in them: directories are made the owner's first (never following a
    symlink), then removed. Raises OSError for what still cannot be removed, e.g. files of
    another uid when the worker is not root."""
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    # Failures here are left for rmtree to report; with follow_symlinks=False, chmod of a
    # symlink raises instead of changing its target.
    with contextlib.suppress(OSError, ValueError, NotImplementedError):
        os.chmod(path, stat.S_IRWXU, follow_symlinks=False)
    for _, dirnames, _, dirfd in os.fwalk(path):
        for name in dirnames:
            with contextlib.suppress(OSError, ValueError, NotImplementedError):
                os.chmod(name, stat.S_IRWXU, dir_fd=dirfd, follow_symlinks=False)
    shutil.rmtree(path)


def _size(path: Path) -> int:
    """Bytes in the files under `path` that this process can see (symlinks not followed)."""
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    total = 0
    for _, _, filenames, dirfd in os.fwalk(path):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_size
    return total
