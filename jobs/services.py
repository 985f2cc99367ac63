"""Every change of state goes through here: one transaction, one audit entry, and publishing or
enqueueing scheduled on commit. Views, the API, the CLI and the RQ tasks only call these."""

from __future__ import annotations

import json
import logging
import secrets
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from jobs import events, workspace
from jobs.errors import BadInput, Conflict, Forbidden, NotFound, TooLarge
from jobs.models import (
    ACTIVE_ATTEMPT_STATUSES,
    Agent,
    Attempt,
    AttemptStatus,
    AuditEntry,
    AuditHead,
    Decision,
    Job,
    JobStatus,
    LineComment,
    Repository,
    Review,
    Side,
    Team,
)
from jobs.serialize import job_summary
from notify.services import job_settled

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
# A dispatched attempt still queued after this long is checked against RQ by the reconciler.
REDELIVER_AFTER = timedelta(minutes=2)
# Job states a person decided; a finishing attempt does not overwrite them unless it is newer.
TERMINAL_JOB_STATUSES = (JobStatus.MERGED,)


# --- audit -------------------------------------------------------------------------------------


def audit(
    actor: Any,
    action: str,
    *,
    team: Team | None = None,
    job: Job | None = None,
    target: str = "",
    before: str = "",
    after: str = "",
    **data: Any,
) -> AuditEntry:
    """Append one entry to the audit chain, in the caller's transaction.

    The chain head is row-locked until that transaction ends, so entries are chained in commit
    order. To keep lock order the same everywhere (rows of jobs and attempts first, the head
    last), call this after the transaction has locked whatever else it needs."""
    is_user = actor is not None and getattr(actor, "pk", None) is not None
    entry = AuditEntry(
        actor=actor if is_user else None,
        actor_name=actor.get_username() if is_user else str(actor or "system"),
        action=action,
        team=team if team is not None else (job.team if job else None),
        job=job,
        target=target or (job.public_id if job else ""),
        before=before,
        after=after,
        data=json.loads(json.dumps(data, default=str)),
    )
    with transaction.atomic():
        head = _audit_head()
        entry.seq, entry.prev_hash = head.seq + 1, head.hash
        entry.hash = entry.compute_hash()
        entry.save()
        AuditHead.objects.filter(pk=head.pk).update(seq=entry.seq, hash=entry.hash)
    return entry


def _audit_head() -> AuditHead:
    try:
        return AuditHead.objects.select_for_update().get(pk=1)
    except AuditHead.DoesNotExist:
        pass
    # An empty database (or one a test flushed): start the chain; a concurrent starter wins.
    try:
        with transaction.atomic():
            AuditHead.objects.create(pk=1)
    except IntegrityError:
        pass
    return AuditHead.objects.select_for_update().get(pk=1)


REDACTED_FIELDS = frozenset({"secrets", "key_hash", "password"})


def audit_change(
    actor: Any,
    verb: str,
    obj: Any,
    *,
    changes: dict[str, tuple[Any, Any]] | None = None,
    **data: Any,
) -> AuditEntry:
    """One entry for a person's change to a team, membership, repository, agent or token.

    The action is `<model>.<verb>` (e.g. `agent.update`, `membership.delete`); `changes` maps a
    field to its (old, new) values. Secret values are never written: only that they changed and,
    for the agent's secrets, which names it has."""
    if changes:
        data["changes"] = {
            name: _redacted(name, old, new) for name, (old, new) in sorted(changes.items())
        }
    team = obj if isinstance(obj, Team) else getattr(obj, "team", None)
    return audit(
        actor,
        f"{obj._meta.model_name}.{verb}",
        team=team,
        target=str(obj)[:200],
        **data,
    )


def _redacted(name: str, old: Any, new: Any) -> list[Any]:
    if name not in REDACTED_FIELDS:
        return [_plain(old), _plain(new)]
    if isinstance(old, dict) and isinstance(new, dict):
        return [sorted(old), sorted(new)]  # the names only
    return ["(hidden)", "(hidden)"]


def _plain(value: Any) -> Any:
    """A JSON-safe form of a field value (model instances by name, others as text)."""
    if value is None or isinstance(value, (bool, int, float, str, list, dict)):
        return value
    return str(value)


# --- repositories ------------------------------------------------------------------------------


def register_repository(
    actor: Any, team: Team, name: str, source: str, *, push_url: str = ""
) -> Repository:
    if Repository.objects.filter(team=team, name=name).exists():
        raise BadInput(f"Team {team.name} already has a repository named {name!r}.", field="name")
    source = _normalise_source(source)
    store = settings.AGENTHUB_DATA_DIR / "stores" / team.name / f"{name}-{secrets.token_hex(4)}.git"
    store.parent.mkdir(parents=True, exist_ok=True)
    try:
        workspace.create_store(source, store)
    except workspace.GitError as exc:
        raise BadInput(f"Could not copy {source!r}: {exc}", field="source") from exc
    with transaction.atomic():
        repo = Repository.objects.create(
            team=team,
            name=name,
            source=source,
            push_url=push_url,
            store_path=str(store),
            default_branch=workspace.default_branch(store),
        )
        audit(actor, "repository.register", team=team, target=name, source=source)
    return repo


def _normalise_source(source: str) -> str:
    source = source.strip()
    if not source or source.startswith("-"):
        raise BadInput("Give a local path or a clone URL.", field="source")
    if "://" in source or ":" in source.split("/")[0]:
        return source
    path = Path(source).expanduser().resolve()
    if not path.exists():
        raise BadInput(f"No such path: {path}", field="source")
    return str(path)


# --- submit ------------------------------------------------------------------------------------


def submit_job(
    user: Any,
    *,
    repo: str,
    agent: str,
    prompt: str,
    base_ref: str | None = None,
    title: str | None = None,
    attempts: int = 1,
    priority: int = 0,
    callback_url: str = "",
) -> Job:
    repository = _find_repository(user, repo)
    chosen = _find_agent(repository.team, agent)
    _check_prompt(prompt)
    if not 1 <= attempts <= MAX_ATTEMPTS:
        raise BadInput(
            f"attempts must be from 1 to {MAX_ATTEMPTS}, not {attempts}.", field="attempts"
        )
    if not -10 <= priority <= 10:
        raise BadInput(f"priority must be from -10 to 10, not {priority}.", field="priority")
    _check_callback(callback_url)
    ref = base_ref or repository.default_branch
    base_commit = _resolve(repository, ref)
    store = Path(repository.store_path)
    is_branch = _is_branch(store, ref)
    with transaction.atomic():
        job = Job.objects.create(
            team=repository.team,
            repository=repository,
            agent=chosen,
            submitter=user,
            title=(title or _title_from(prompt))[:200],
            prompt=prompt,
            base_ref=ref,
            base_commit=base_commit,
            target_branch=ref if is_branch else repository.default_branch,
            priority=priority,
            attempts_requested=attempts,
            callback_url=callback_url,
        )
        for number in range(1, attempts + 1):
            _new_attempt(job, number, base_commit, base_commit)
        audit(
            user,
            "job.submit",
            job=job,
            after=JobStatus.QUEUED,
            agent=chosen.name,
            repo=repository.name,
            base_commit=base_commit,
            attempts=attempts,
        )
        _announce(job)
        _dispatch_on_commit(job.team_id)
    return job


def _find_repository(user: Any, name: str) -> Repository:
    from jobs.access import teams

    if not name:
        raise BadInput("Name the repository to work on.", field="repo")
    team_name, _, repo_name = name.rpartition("/")
    found = Repository.objects.filter(team__in=teams(user), name=repo_name).select_related("team")
    if team_name:
        found = found.filter(team__name=team_name)
    matches = list(found[:2])
    if not matches:
        raise BadInput(f"Unknown repository {name!r} in your teams.", field="repo")
    if len(matches) > 1:
        raise BadInput(
            f"Several of your teams have {name!r}; write it as team/{repo_name}.", field="repo"
        )
    return matches[0]


def _find_agent(team: Team, name: str) -> Agent:
    # The team's own agent of that name wins over a built-in preset.
    found = Agent.objects.filter(Q(team=team) | Q(team=None), name=name).order_by("team_id")
    agent = found.exclude(team=None).first() or found.first()
    if agent is None:
        names = sorted(
            set(Agent.objects.filter(Q(team=team) | Q(team=None)).values_list("name", flat=True))
        )
        raise BadInput(f"Unknown agent {name!r}; choose one of: {', '.join(names)}.", field="agent")
    return agent


def _check_prompt(prompt: str) -> None:
    if not prompt or not prompt.strip():
        raise BadInput("Write the instruction for the agent.", field="prompt")
    size = len(prompt.encode())
    limit = settings.AGENTHUB_MAX_PROMPT_BYTES
    if size > limit:
        raise TooLarge(f"The prompt is {size} bytes; the limit is {limit} bytes.", field="prompt")


def _check_callback(url: str) -> None:
    if not url:
        return
    from hooks.services import Refused, check_url

    try:
        URLValidator(schemes=["http", "https"])(url)
        check_url(url)
    except ValidationError:
        raise BadInput(
            f"callback_url must be an http(s) URL, not {url!r}.", field="callback_url"
        ) from None
    except Refused as exc:
        raise BadInput(f"callback_url refused: {exc}", field="callback_url") from None


def _resolve(repository: Repository, ref: str) -> str:
    try:
        return workspace.resolve_commit(Path(repository.store_path), ref)
    except workspace.InvalidRef as exc:
        raise BadInput(str(exc), field="base_ref") from exc
    except workspace.RefNotFound:
        raise BadInput(
            f"No branch, tag or commit {ref!r} in {repository.name}.", field="base_ref"
        ) from None


def _is_branch(store: Path, ref: str) -> bool:
    found = workspace.run_git(
        ["show-ref", "--verify", "--quiet", f"refs/heads/{ref}"], git_dir=store, check=False
    )
    return found.returncode == 0


def _title_from(prompt: str) -> str:
    first = prompt.strip().splitlines()[0] if prompt.strip() else "Untitled"
    return first[:80]


def _next_number(job: Job) -> int:
    return (job.attempts.order_by("-number").values_list("number", flat=True).first() or 0) + 1


def _dispatch_on_commit(team_id: int) -> None:
    transaction.on_commit(partial(dispatch, team_id))


def _new_attempt(
    job: Job, number: int, base: str, start: str, retry_of: Attempt | None = None
) -> Attempt:
    attempt = Attempt.objects.create(
        job=job,
        number=number,
        branch=f"agenthub/{job.public_id}/{number}",
        base_commit=base,
        start_commit=start,
        retry_of=retry_of,
    )
    events.append_events(attempt.pk, [events.Draft("status", "queued", data={"status": "queued"})])
    return attempt


# --- dispatch and claim ------------------------------------------------------------------------


def queue_for(priority: int) -> str:
    return "high" if priority > 0 else "low" if priority < 0 else "default"


def dispatch(team_id: int) -> list[int]:
    """Hand the team's waiting attempts to RQ, highest priority first, up to the team's limit.

    Called after a submit, whenever an attempt ends, and by the reconciler. Jobs over the limit
    simply stay queued in the database until a slot frees up; nothing is refused.
    """
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team_id)
        busy = Attempt.objects.filter(
            job__team=team,
            dispatched_at__isnull=False,
            status__in=(AttemptStatus.QUEUED, *ACTIVE_ATTEMPT_STATUSES),
        ).count()
        free = max(team.concurrency_limit - busy, 0)
        waiting = list(
            Attempt.objects.filter(
                job__team=team, status=AttemptStatus.QUEUED, dispatched_at__isnull=True
            )
            .select_related("job__agent")
            .order_by("-job__priority", "created_at", "number")[:free]
        )
        now = timezone.now()
        Attempt.objects.filter(pk__in=[a.pk for a in waiting]).update(dispatched_at=now)
        for attempt in waiting:
            transaction.on_commit(partial(enqueue, attempt))
    return [a.pk for a in waiting]


def rq_job_id(attempt: Attempt) -> str:
    return f"agenthub-{attempt.job.public_id}-{attempt.number}"


def enqueue(attempt: Attempt) -> None:
    import django_rq

    job = attempt.job
    django_rq.get_queue(queue_for(job.priority)).enqueue(
        "jobs.tasks.run_attempt",
        attempt.pk,
        job_id=rq_job_id(attempt),
        job_timeout=job.agent.timeout_seconds + 600,
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
    )


def claim_attempt(attempt_id: int, worker: str) -> bool:
    """Take the attempt for this worker. A duplicate delivery finds it taken and does nothing."""
    now = timezone.now()
    with transaction.atomic():
        claimed = Attempt.objects.filter(pk=attempt_id, status=AttemptStatus.QUEUED).update(
            status=AttemptStatus.PREPARING,
            worker=worker,
            started_at=now,
            heartbeat_at=now,
            dispatched_at=now,
        )
        if claimed != 1:
            return False
        _transition(attempt_id, AttemptStatus.QUEUED, AttemptStatus.PREPARING, worker=worker)
    return True


def mark_running(attempt_id: int, card: dict[str, Any]) -> None:
    with transaction.atomic():
        Attempt.objects.filter(pk=attempt_id, status=AttemptStatus.PREPARING).update(
            status=AttemptStatus.RUNNING, card=card, heartbeat_at=timezone.now()
        )
        _transition(attempt_id, AttemptStatus.PREPARING, AttemptStatus.RUNNING)


def heartbeat(attempt_id: int) -> None:
    Attempt.objects.filter(pk=attempt_id, status__in=ACTIVE_ATTEMPT_STATUSES).update(
        heartbeat_at=timezone.now()
    )


def record_progress(attempt_id: int, percent: int, message: str) -> None:
    updated = Attempt.objects.filter(pk=attempt_id).update(
        progress=percent, progress_message=message[:500]
    )
    if updated:
        attempt = Attempt.objects.select_related(
            "job__team", "job__repository", "job__agent", "job__submitter"
        ).get(pk=attempt_id)
        events.publish_job(attempt.job, job_summary(attempt.job, attempt))


def finish_attempt(
    attempt_id: int,
    status: str,
    *,
    exit_code: int | None = None,
    reason: str = "",
    result: workspace.Diff | None = None,
    result_commit: str = "",
) -> Attempt | None:
    """End a running attempt; returns None when it had already ended (e.g. marked lost)."""
    now = timezone.now()
    with transaction.atomic():
        attempt = (
            Attempt.objects.select_for_update().select_related("job__agent").get(pk=attempt_id)
        )
        if attempt.is_finished:
            return None
        before = attempt.status
        attempt.status = status
        attempt.exit_code = exit_code
        attempt.reason = reason[:500]
        attempt.finished_at = now
        if result is not None and not attempt.job.agent.report_only:
            attempt.result_commit = result_commit
            attempt.patch = result.patch
            attempt.diff_hash = result.hash
            attempt.files = [_file_dict(f) for f in result.files]
            attempt.partial = status != AttemptStatus.SUCCEEDED
        attempt.save()
        _transition(
            attempt_id, before, status, reason=reason, exit_code=exit_code, partial=attempt.partial
        )
        _dispatch_on_commit(attempt.job.team_id)
    return attempt


def _file_dict(stat: workspace.FileStat) -> dict[str, Any]:
    return {
        "path": stat.path,
        "old_path": stat.old_path,
        "status": stat.status,
        "added": stat.added,
        "deleted": stat.deleted,
        "binary": stat.binary,
    }


def _transition(attempt_id: int, before: str, after: str, **data: Any) -> None:
    attempt = Attempt.objects.get(pk=attempt_id)
    text = after if not data.get("reason") else f"{after}: {data['reason']}"
    events.append_events(attempt_id, [events.Draft("status", text, data={"status": after, **data})])
    job = Job.objects.select_for_update().select_related("team").get(pk=attempt.job_id)
    audit(
        "system",
        f"attempt.{after}",
        job=job,
        target=str(attempt),
        before=before,
        after=after,
        **{k: v for k, v in data.items() if v not in (None, "", False)},
    )
    _refresh_job(job)


def _refresh_job(job: Job) -> None:
    """Derive the job's status from its attempts after an attempt changed."""
    job = Job.objects.select_for_update().get(pk=job.pk)
    if job.status in TERMINAL_JOB_STATUSES:
        return
    attempts = list(job.attempts.select_related("job__agent"))
    status = derive_status(job, attempts)
    if status == job.status:
        return
    if status == JobStatus.NEEDS_REVIEW and _merge_silently(job):
        return
    before, job.status, job.updated_at = job.status, status, timezone.now()
    if status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        job.finished_at = job.finished_at or job.updated_at
    job.save(update_fields=["status", "updated_at", "finished_at"])
    audit("system", "job.status", job=job, before=before, after=status)
    _announce(job, before)


def derive_status(job: Job, attempts: list[Attempt]) -> str:
    states = {a.status for a in attempts}
    if states & set(ACTIVE_ATTEMPT_STATUSES):
        return JobStatus.RUNNING
    if AttemptStatus.QUEUED in states:
        return JobStatus.QUEUED
    if job.status in (JobStatus.APPROVED, JobStatus.REJECTED, JobStatus.CONFLICT):
        return job.status
    if any(a.status == AttemptStatus.SUCCEEDED and a.has_changes for a in attempts):
        return JobStatus.NEEDS_REVIEW
    if AttemptStatus.SUCCEEDED in states:
        return JobStatus.NO_CHANGES
    if states == {AttemptStatus.CANCELLED}:
        return JobStatus.CANCELLED
    return JobStatus.FAILED


def _announce(job: Job, before: str | None = None) -> None:
    """Once committed, push the job's new state to the dashboard groups; when it settled into a
    new status, to its callback URL and, as browser notifications, to the people concerned."""

    def announce() -> None:
        fresh = Job.objects.select_related("team", "repository", "agent", "submitter").get(
            pk=job.pk
        )
        events.publish_job(fresh, job_summary(fresh))
        if before == fresh.status or fresh.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            return
        _enqueue_webhook(fresh)
        job_settled(fresh)

    transaction.on_commit(announce)


def _enqueue_webhook(job: Job) -> None:
    from hooks.services import job_settled as deliver_to_hooks

    deliver_to_hooks(job)


# --- cancel, re-run, reconcile -----------------------------------------------------------------


def cancel_job(user: Any, job: Job) -> Job:
    from jobs.access import can_cancel

    if not can_cancel(user, job):
        raise Forbidden("Only the submitter or a reviewer of the team may cancel this job.")
    with transaction.atomic():
        open_attempts = Attempt.objects.select_for_update().filter(
            job=job, status__in=(AttemptStatus.QUEUED, *ACTIVE_ATTEMPT_STATUSES)
        )
        ids = list(open_attempts.values_list("pk", flat=True))
        if not ids:
            raise Conflict(f"Job {job.public_id} is {job.status}; there is nothing to cancel.")
        job = Job.objects.select_for_update().get(pk=job.pk)
        audit(user, "job.cancel", job=job, before=job.status)
        # Running attempts are stopped by their worker, which polls this flag and keeps the
        # partial work; queued ones end here and now.
        Attempt.objects.filter(pk__in=ids).update(cancel_requested=True)
        for attempt_id in Attempt.objects.filter(
            pk__in=ids, status=AttemptStatus.QUEUED
        ).values_list("pk", flat=True):
            finish_attempt(
                attempt_id, AttemptStatus.CANCELLED, reason=f"cancelled by {user.get_username()}"
            )
    job.refresh_from_db()
    return job


def rerun_job(user: Any, job: Job, *, pin_image: bool = False) -> Attempt:
    """A new attempt of the same job on the latest commit of its target branch; `pin_image`
    runs it in the very image the latest attempt used (docker backend)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.MERGED):
            raise Conflict(
                f"Job {job.public_id} is {job.status}; it can be re-run once it has ended."
            )
        base = _resolve(job.repository, job.target_branch)
        number = _next_number(job)
        pinned = _image_of_latest(job) if pin_image else ""
        attempt = _new_attempt(job, number, base, base)
        if pinned:
            Attempt.objects.filter(pk=attempt.pk).update(card={"pinned_image": pinned})
        before, job.status, job.conflicts = job.status, JobStatus.QUEUED, []
        job.finished_at = None
        job.save(update_fields=["status", "conflicts", "finished_at"])
        audit(
            user,
            "job.rerun",
            job=job,
            before=before,
            after=job.status,
            attempt=number,
            base_commit=base,
        )
        _announce(job, before)
        _dispatch_on_commit(job.team_id)
    return attempt


def _image_of_latest(job: Job) -> str:
    for card in job.attempts.order_by("-number").values_list("card", flat=True):
        if card.get("image_id"):
            return str(card["image_id"])
    raise BadInput(
        "No earlier attempt of this job ran in a docker image to pin.", field="pin_image"
    )


def reconcile() -> dict[str, list[str]]:
    """Mark attempts whose worker stopped beating as lost, retry them once if allowed, and hand
    waiting attempts to RQ. Run by every worker every few seconds (see agenthub_worker)."""
    cutoff = timezone.now() - timedelta(seconds=settings.AGENTHUB_HEARTBEAT_TIMEOUT)
    stale = Attempt.objects.filter(status__in=ACTIVE_ATTEMPT_STATUSES, heartbeat_at__lt=cutoff)
    lost, retried = [], []
    for attempt_id in list(stale.values_list("pk", flat=True)):
        attempt = finish_attempt(
            attempt_id, AttemptStatus.LOST, reason="the worker stopped responding"
        )
        if attempt is None:
            continue
        lost.append(str(attempt))
        if attempt.job.agent.retry_allowed and attempt.retry_of_id is None:
            retried.append(str(_retry(attempt)))
    redelivered = _redeliver()
    for team_id in Team.objects.values_list("pk", flat=True):
        dispatch(team_id)
    return {"lost": lost, "retried": retried, "redelivered": redelivered, "reaped": _reap()}


def _reap() -> list[str]:
    """Remove sandbox containers whose attempt is no longer running (its worker died, the host
    restarted): a container does not die with its worker the way a bwrap sandbox does."""
    from jobs import sandbox

    if not sandbox.docker_available():
        return []

    def keep(labels: dict[str, str]) -> bool:
        if labels.get("agenthub.instance") != settings.AGENTHUB_INSTANCE:
            return True  # another installation's, or another test run's
        attempt_id = labels.get("agenthub.attempt", "")
        return (
            attempt_id.isdigit()
            and Attempt.objects.filter(
                pk=int(attempt_id), status__in=ACTIVE_ATTEMPT_STATUSES
            ).exists()
        )

    return sandbox.reap(keep)


def _redeliver() -> list[str]:
    """Hand RQ again the attempts it no longer holds (Redis was flushed or lost the message, or
    the job failed before its claim): the database, not Redis, says what still has to run."""
    import django_rq
    from rq.exceptions import NoSuchJobError
    from rq.job import Job as RQJob
    from rq.job import JobStatus as RQStatus

    connection = django_rq.get_connection()
    waiting = Attempt.objects.filter(
        status=AttemptStatus.QUEUED, dispatched_at__lt=timezone.now() - REDELIVER_AFTER
    ).select_related("job__agent")
    redelivered = []
    for attempt in waiting:
        try:
            status = RQJob.fetch(rq_job_id(attempt), connection=connection).get_status()
        except NoSuchJobError:
            status = None
        if status in (None, RQStatus.FAILED, RQStatus.STOPPED, RQStatus.CANCELED):
            enqueue(attempt)
            redelivered.append(str(attempt))
    return redelivered


def _retry(attempt: Attempt) -> Attempt:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=attempt.job_id)
        number = _next_number(job)
        retry = _new_attempt(
            job, number, attempt.base_commit, attempt.start_commit, retry_of=attempt
        )
        audit("system", "attempt.retry", job=job, target=str(retry), retry_of=str(attempt))
        _refresh_job(job)
    return retry


# --- review and merge --------------------------------------------------------------------------


def result_attempt(job: Job, number: int | None = None) -> Attempt:
    """The attempt a review or merge is about: the one named, else the latest with changes."""
    found = job.attempts.filter(status=AttemptStatus.SUCCEEDED).exclude(result_commit="")
    if number is not None:
        found = found.filter(number=number)
    attempt = found.order_by("-number").first()
    if attempt is None:
        which = f"attempt {number}" if number is not None else "any attempt"
        raise Conflict(f"Job {job.public_id} has no finished result to review for {which}.")
    return attempt


def review_job(
    user: Any,
    job: Job,
    decision: str,
    *,
    comment: str = "",
    attempt: int | None = None,
    line_comments: list[dict[str, Any]] | None = None,
) -> Review:
    """A reviewer's decision on an attempt's result, with an overall comment and comments on
    lines of its diff ({path, line, side: new|old, body}); with request_changes both go into the
    follow-up attempt's instruction."""
    from jobs.access import require_reviewer

    if decision not in Decision.values:
        raise BadInput(f"decision must be one of {', '.join(Decision.values)}.", field="decision")
    try:
        if job.submitter_id == user.pk:
            raise Forbidden("You submitted this job; someone else has to review it.")
        require_reviewer(user, job)
    except (Forbidden, NotFound) as exc:
        audit(user, "review.refused", job=job, decision=decision, reason=exc.detail)
        raise
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status not in (JobStatus.NEEDS_REVIEW, JobStatus.APPROVED, JobStatus.CONFLICT):
            raise Conflict(f"Job {job.public_id} is {job.status}, not waiting for review.")
        target = result_attempt(job, attempt)
        remarks = _line_comments(target, line_comments or [])
        review = Review.objects.create(
            attempt=target,
            reviewer=user,
            decision=decision,
            comment=comment,
            diff_hash=target.diff_hash,
        )
        for remark in remarks:
            remark.review = review
        LineComment.objects.bulk_create(remarks)
        before = job.status
        job.status = _status_after_review(job, target, decision)
        job.updated_at = timezone.now()
        job.save(update_fields=["status", "updated_at"])
        audit(
            user,
            f"review.{decision}",
            job=job,
            target=str(target),
            before=before,
            after=job.status,
            diff_hash=target.diff_hash,
            comment=comment,
            line_comments=[r.as_dict() for r in remarks],
        )
        if decision == Decision.REQUEST_CHANGES:
            _follow_up(job, target, review)
            _refresh_job(job)  # back to queued: the follow-up attempt waits for a worker
        _announce(job, before)
    return review


def approvals(attempt: Attempt) -> int:
    """Approvals that still hold: those given to the attempt's current diff."""
    return attempt.reviews.filter(decision=Decision.APPROVE, diff_hash=attempt.diff_hash).aggregate(
        n=Count("reviewer", distinct=True)
    )["n"]


def _status_after_review(job: Job, attempt: Attempt, decision: str) -> str:
    if decision == Decision.REJECT:
        return JobStatus.REJECTED
    if decision == Decision.REQUEST_CHANGES:
        return JobStatus.CHANGES_REQUESTED
    if approvals(attempt) >= job.agent.required_approvals:
        return JobStatus.APPROVED
    return JobStatus.NEEDS_REVIEW


MAX_LINE_COMMENTS = 200
MAX_COMMENT_CHARS = 10_000


def _line_comments(target: Attempt, raw: list[dict[str, Any]]) -> list[LineComment]:
    """The review's line comments, checked against the result they are about (unsaved)."""
    if len(raw) > MAX_LINE_COMMENTS:
        raise BadInput(f"At most {MAX_LINE_COMMENTS} line comments per review.", field="comments")
    paths = {p for f in target.files for p in (f["path"], f.get("old_path")) if p}
    found = []
    for number, item in enumerate(raw):
        where = f"comments[{number}]"
        path, line, side = item.get("path"), item.get("line"), item.get("side") or Side.NEW
        body = str(item.get("body") or "").strip()
        if path not in paths:
            raise BadInput(
                f"{where}.path: {path!r} is not a file attempt {target.number} changes.",
                field="comments",
            )
        if isinstance(line, bool) or not isinstance(line, int) or not 1 <= line <= 10_000_000:
            raise BadInput(f"{where}.line: expected a line number, not {line!r}.", field="comments")
        if side not in Side.values:
            raise BadInput(f"{where}.side: expected new or old, not {side!r}.", field="comments")
        if not body or len(body) > MAX_COMMENT_CHARS:
            raise BadInput(
                f"{where}.body: write 1-{MAX_COMMENT_CHARS} characters.", field="comments"
            )
        found.append(LineComment(path=str(path), line=line, side=side, body=body))
    return found


def _follow_up(job: Job, attempt: Attempt, review: Review) -> None:
    """Continue the reviewed result on a new attempt, with the comments added to the instruction.

    The overall comment goes after a '#' line: readable to an AI agent, and a no-op header for
    the shell agent, whose instruction is a script. Line comments follow as '#' lines of their
    own (`# path:line: text`), so they never run as part of a script.
    """
    number = _next_number(job)
    comment = review.comment.strip()
    remarks = list(review.line_comments.all())
    if comment or remarks:
        who = review.reviewer.get_username()
        lines = [f"# Changes requested by {who} on attempt {attempt.number}:"]
        if comment:
            lines.append(comment)
        for remark in remarks:
            text = remark.body.splitlines() or [""]
            lines.append(f"# {remark.where}: {text[0]}")
            lines.extend(f"#   {more}" for more in text[1:])
        job.prompt = f"{job.prompt.rstrip()}\n\n" + "\n".join(lines) + "\n"
        job.save(update_fields=["prompt"])
    _new_attempt(job, number, attempt.base_commit, attempt.result_commit)
    _dispatch_on_commit(job.team_id)


def merge_job(user: Any, job: Job, *, attempt: int | None = None) -> str:
    from jobs.access import require_reviewer

    require_reviewer(user, job)
    _refuse_escaping_paths(user, job, attempt)
    with transaction.atomic():
        job = Job.objects.select_for_update().select_related("repository", "agent").get(pk=job.pk)
        if job.status not in (JobStatus.APPROVED, JobStatus.CONFLICT):
            raise Conflict(
                f"Job {job.public_id} is {job.status}; only an approved job can be merged."
            )
        target = result_attempt(job, attempt)
        have, need = approvals(target), job.agent.required_approvals
        if have < need:
            raise Conflict(
                f"Attempt {target.number} has {have} of {need} approvals for its current diff."
            )
        approvers = sorted(
            {r.reviewer.get_username() for r in target.reviews.filter(decision=Decision.APPROVE)}
        )
        result = _merge_result(
            user, job, target, "Approved-by: " + ", ".join(approvers), attempt=target.number
        )
    if result.conflicts:
        raise Conflict(
            f"Merging into {job.target_branch} conflicts in {len(result.conflicts)} file(s).",
            conflicts=result.conflicts,
        )
    _push(user, job)
    return job.merge_commit


def _merge_result(
    actor: Any, job: Job, target: Attempt, trailer: str, **data: Any
) -> workspace.MergeResult:
    """Merge the attempt's result into the job's branch in the store, inside the caller's
    transaction holding the job's row: MERGED with the commit, or CONFLICT with the files."""
    message = f"Merge AgentHub job {job.public_id}: {job.title}\n\n{trailer}"
    result = workspace.merge(
        Path(job.repository.store_path), job.target_branch, target.result_commit, message
    )
    before = job.status
    if result.conflicts:
        job.status, job.conflicts = JobStatus.CONFLICT, result.conflicts
        job.save(update_fields=["status", "conflicts"])
        audit(
            actor,
            "job.merge_conflict",
            job=job,
            before=before,
            after=job.status,
            conflicts=result.conflicts,
            **data,
        )
    else:
        job.status, job.merge_commit, job.conflicts = JobStatus.MERGED, result.commit or "", []
        job.updated_at = timezone.now()
        job.save(update_fields=["status", "merge_commit", "conflicts", "updated_at"])
        audit(
            actor,
            "job.merge",
            job=job,
            before=before,
            after=job.status,
            commit=result.commit,
            branch=job.target_branch,
            fast_forward=result.fast_forward,
            **data,
        )
    _announce(job, before)
    return result


def _merge_silently(job: Job) -> bool:
    """Merge a job's fresh result without review when its agent's policy covers every path it
    touched; the audit trail says so and names the patterns. Called under the job's row lock as
    it settles; False leaves it to the reviewers.

    Only a job with one requested attempt: choosing between several results is a reviewer's call.
    """
    agent = job.agent
    if not agent.silent_merge_patterns or job.attempts_requested != 1:
        return False
    target = result_attempt(job)
    paths = [p for f in target.files for p in (f["path"], f.get("old_path")) if p]
    if target.partial or not agent.merges_silently(paths):
        return False
    store = Path(job.repository.store_path)
    if workspace.escaping_paths(store, target.result_commit):
        return False  # merge_job refuses these; a reviewer sees why
    job.finished_at = job.finished_at or timezone.now()
    job.save(update_fields=["finished_at"])
    result = _merge_result(
        "system",
        job,
        target,
        f"Merged without review: every changed path matches agent {agent.name}'s silent-merge "
        "policy.",
        attempt=target.number,
        silent=True,
        policy=agent.silent_merge_patterns,
        paths=paths,
    )
    if not result.conflicts:
        transaction.on_commit(lambda: _push("system", job))
    return True


def _refuse_escaping_paths(user: Any, job: Job, number: int | None) -> None:
    try:
        target = result_attempt(job, number)
    except Conflict:
        return  # merge_job says what is missing
    escaping = workspace.escaping_paths(Path(job.repository.store_path), target.result_commit)
    if escaping:
        audit(user, "job.merge_refused", job=job, paths=escaping)
        raise Conflict(
            f"Refusing to merge paths that would escape the repository: {', '.join(escaping)}",
            conflicts=escaping,
        )


def _push(user: Any, job: Job) -> None:
    push_url = job.repository.push_url
    if not push_url:
        return
    try:
        workspace.push(Path(job.repository.store_path), push_url, job.target_branch)
    except workspace.GitError as exc:
        audit(user, "job.push_failed", job=job, url=push_url, error=str(exc)[:500])
        log.warning("push of %s to %s failed: %s", job.public_id, push_url, exc)
    else:
        audit(
            user,
            "job.push",
            job=job,
            url=push_url,
            branch=job.target_branch,
            commit=job.merge_commit,
        )
