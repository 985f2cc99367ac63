"""Following upstream: the store fetches its repository's source before an attempt is prepared
(unless it did within AGENTHUB_SYNC_FRESH_SECONDS), every `sync_interval` seconds from the
workers' reconciler, and when asked (`POST /api/v1/repos/<name>/sync`). An attempt that starts
from a branch then starts from that branch's head as fetched; if the fetch failed it runs on the
last synced base and says so. A sync never moves a store branch that holds merges not yet
upstream (remotes.sync_store)."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from jobs import events, remotes, workspace
from jobs.errors import ServiceError
from jobs.models import Attempt, AttemptStatus, Job, Repository
from jobs.services.audit import audit
from jobs.services.repositories import auth_of


class SyncFailed(ServiceError):
    status, error = 502, "sync_failed"


def sync_repository(repository: Repository) -> remotes.Synced:
    """Fetch the source into the store now; SyncFailed says why it could not (and the
    repository keeps the reason until a sync works)."""
    store = Path(repository.store_path)
    with _locked(store):
        try:
            synced = remotes.sync_store(
                store,
                repository.source,
                timeout=settings.AGENTHUB_SYNC_TIMEOUT,
                auth=auth_of(repository.credentials),
            )
        except (workspace.GitError, ValueError) as exc:
            reason = workspace.reason(exc)
            Repository.objects.filter(pk=repository.pk).update(sync_error=reason)
            raise SyncFailed(f"Could not fetch {repository.name}'s source: {reason}") from exc
        with transaction.atomic():
            Repository.objects.filter(pk=repository.pk).update(
                last_synced_at=timezone.now(), sync_error=""
            )
            if synced.moved or synced.kept:
                audit(
                    "system",
                    "repository.sync",
                    team=repository.team,
                    target=repository.name,
                    moved=synced.moved,
                    kept=synced.kept,
                )
    return synced


def sync_due() -> list[str]:
    """Sync every repository whose interval has passed; the names of those that failed."""
    now = timezone.now()
    failed = []
    for repository in Repository.objects.select_related("team").filter(sync_interval__gt=0):
        last = repository.last_synced_at
        if last is not None and now - last < timedelta(seconds=repository.sync_interval):
            continue
        try:
            sync_repository(repository)
        except SyncFailed:
            failed.append(str(repository))
    return failed


def follow_upstream(attempt_id: int) -> None:
    """Before an attempt is prepared: if it starts from a branch, fetch upstream (unless the
    store did so moments ago) and start it, and the attempts of its round not yet started, from
    that branch's head. A reproduction keeps its original's start."""
    attempt = Attempt.objects.select_related("job__repository__team").get(pk=attempt_id)
    job = attempt.job
    from_branch = attempt.round > 1 or job.base_ref == job.target_branch
    if attempt.base_synced_at or attempt.start_commit != attempt.base_commit or not from_branch:
        return
    if attempt.card.get("reproduces"):
        return  # it runs on its original's start, whatever upstream did since
    repository = job.repository
    note = ""
    fresh = timedelta(seconds=settings.AGENTHUB_SYNC_FRESH_SECONDS)
    last = repository.last_synced_at
    if last is None or timezone.now() - last >= fresh:
        try:
            sync_repository(repository)
        except SyncFailed as exc:
            when = f"last synced {last:%Y-%m-%d %H:%M:%S}" if last else "as registered"
            note = f"{exc.detail} It runs on the base {when}."[:500]
        repository.refresh_from_db(fields=["last_synced_at"])
    try:
        head = workspace.read_ref(Path(repository.store_path), job.target_branch).commit
    except (workspace.RefNotFound, workspace.InvalidRef):
        return  # the branch is gone upstream and in the store: keep the base it had
    synced_at = repository.last_synced_at or repository.created_at
    with transaction.atomic():
        Attempt.objects.filter(
            Q(pk=attempt_id) | Q(status=AttemptStatus.QUEUED),
            job=job,
            round=attempt.round,
            base_synced_at=None,
            start_commit=F("base_commit"),
        ).update(base_commit=head, start_commit=head, base_synced_at=synced_at, sync_note=note)
        if attempt.round == 1:
            Job.objects.filter(pk=job.pk).update(base_commit=head)
        said = f"base: {job.target_branch} at {head[:12]} (upstream synced {synced_at:%H:%M:%S})"
        events.append_events(
            attempt_id,
            [events.Draft("warning", note) if note else events.Draft("notice", said)],
        )


@contextlib.contextmanager
def _locked(store: Path) -> Iterator[None]:
    """One sync of a store at a time, across the workers and the web server of a host."""
    with open(f"{store}.sync-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
