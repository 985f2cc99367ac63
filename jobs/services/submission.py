"""Submitting jobs: validate, then one transaction (the jobs, their attempts with their first
event, their dispatch, the audit entries), RQ enqueue and one realtime trip once committed.
Nothing else runs on the request path: no subprocess, no recomputation for other readers.

Several submits can share that transaction (`write_jobs`, a group commit): the API hands it
the submits that arrived in one server process while the previous transaction was running, so
the database's one writer, its locks and the publishing are paid once per group, not per job.
The API answers once the jobs are written and settles them (RQ, realtime) after: the database
says what has to run, so an attempt whose enqueue is lost is handed to RQ again by the
reconciler."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import Q

from gateway.models import ModelCredential
from jobs import workspace
from jobs.errors import BadInput, ServiceError
from jobs.models import Agent, Attempt, AuditEntry, Job, JobStatus, Repository, Team
from jobs.services.announce import publish_submitted
from jobs.services.audit import append, audit_entry
from jobs.services.dispatch import dispatch, enqueue
from jobs.services.lifecycle import queued_attempts
from jobs.services.repositories import find_repository, resolve_ref
from jobs.validation import check_http_url, check_instruction_size

MAX_ATTEMPTS = 5
# Provider model ids, Ollama tags and Hugging Face names: "gpt-5.5", "llama3.1:8b", "org/Model".
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}")


@dataclass(frozen=True)
class Submission:
    """One person's submit, as the API, the web form and `submit_job` take it."""

    user: Any
    repo: str
    agent: str
    prompt: str
    base_ref: str | None = None
    title: str | None = None
    attempts: int = 1
    priority: int = 0
    callback_url: str = ""
    model: str = ""


def submit_job(user: Any, **fields: Any) -> Job:
    """A new job of `attempts` parallel attempts (fields as in Submission), or the ServiceError
    that says what was wrong. The callback URL's form is checked here; the API also checks where
    it leads (hooks' SSRF guard) before calling this."""
    [outcome] = submit_jobs([Submission(user, **fields)])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def submit_jobs(submissions: Sequence[Submission]) -> list[Job | Exception]:
    """Each submission's new job, or the error that refused it, in order (see write_jobs); the
    new jobs are settled once the caller's transaction, if any, commits."""
    written = write_jobs(submissions)
    transaction.on_commit(written.settle, robust=True)
    return written.outcomes


@dataclass
class Written:
    """Submits written to the database: each one's job or the error that refused it (a
    ServiceError, or the database's error), and what `settle` does once they are committed:
    hand the dispatched attempts to RQ and publish the new jobs to their teams' dashboards."""

    outcomes: list[Job | Exception] = field(default_factory=list)
    handoff: list[Attempt] = field(default_factory=list)
    created: list[tuple[Job, Attempt]] = field(default_factory=list)

    def settle(self) -> None:
        for attempt in self.handoff:
            enqueue(attempt)
        if self.created:
            publish_submitted(self.created)


def write_jobs(submissions: Sequence[Submission]) -> Written:
    """The valid submissions are written in one transaction; if that fails, each is tried
    alone, so one submit's database error costs no other submit its job. Settling is the
    caller's (submit_jobs, or the API once it has answered)."""
    lookups = _Lookups()
    written = Written()
    for submission in submissions:
        try:
            written.outcomes.append(_prepare(submission, lookups))
        except ServiceError as exc:
            written.outcomes.append(exc)
    ready = {n: job for n, job in enumerate(written.outcomes) if isinstance(job, Job)}
    if len(ready) == 1:
        _commit(list(ready.values()), written)
    elif ready:
        try:
            _commit(list(ready.values()), written)
        except DatabaseError:
            for n, job in ready.items():
                job.pk, job._state.adding = None, True
                try:
                    _commit([job], written)
                except DatabaseError as exc:
                    written.outcomes[n] = exc
    return written


class _Lookups:
    """The repository, agent and ref lookups of one group, each made once per distinct key."""

    def __init__(self) -> None:
        self._repositories: dict[tuple[int, str], Repository] = {}
        self._agents: dict[tuple[int, str], Agent] = {}
        self._refs: dict[tuple[int, str], workspace.Ref] = {}
        self._credentials: set[tuple[int, str]] = set()

    def repository(self, user: Any, name: str) -> Repository:
        key = (user.pk, name)
        if key not in self._repositories:
            self._repositories[key] = find_repository(user, name)
        return self._repositories[key]

    def agent(self, team: Team, name: str) -> Agent:
        key = (team.pk, name)
        if key not in self._agents:
            self._agents[key] = _find_agent(team, name)
        return self._agents[key]

    def check_credential(self, team: Team, agent: Agent) -> None:
        """An AI agent needs its team's credential for its provider: said now, not after a
        failed run."""
        key = (team.pk, agent.provider)
        if key in self._credentials:
            return
        if not ModelCredential.objects.filter(team=team, provider=agent.provider).exists():
            raise BadInput(
                f"Agent {agent.name} needs a model credential for {agent.provider}, and team "
                f"{team.name} has none: a team admin sets one with "
                f"`manage.py set_model_credential --team {team.name} --provider "
                f"{agent.provider}`.",
                field="agent",
            )
        self._credentials.add(key)

    def ref(self, repository: Repository, ref: str) -> workspace.Ref:
        key = (repository.pk, ref)
        if key not in self._refs:
            self._refs[key] = resolve_ref(repository, ref)
        return self._refs[key]


def _prepare(submission: Submission, lookups: _Lookups) -> Job:
    """The unsaved job, once everything about it has been checked."""
    repository = lookups.repository(submission.user, submission.repo)
    chosen = lookups.agent(repository.team, submission.agent)
    if chosen.provider:
        lookups.check_credential(repository.team, chosen)
    _check_numbers(submission.prompt, submission.attempts, submission.priority)
    _check_callback(submission.callback_url)
    _check_model(submission.model, chosen)
    ref = submission.base_ref or repository.default_branch
    found = lookups.ref(repository, ref)
    return Job(
        team=repository.team,
        repository=repository,
        agent=chosen,
        submitter=submission.user,
        title=(submission.title or _title_from(submission.prompt))[:200],
        prompt=submission.prompt,
        base_ref=ref,
        base_commit=found.commit,
        target_branch=ref if found.is_branch else repository.default_branch,
        priority=submission.priority,
        attempts_requested=submission.attempts,
        callback_url=submission.callback_url,
        model=submission.model,
    )


def _commit(jobs: list[Job], written: Written) -> None:
    handoff: list[Attempt] = []
    with transaction.atomic():
        Job.objects.bulk_create(jobs)
        created = queued_attempts(jobs)
        # Team rows, then the audit chain's head: the lock order every writer keeps.
        for team_id in sorted({job.team_id for job in jobs}):
            dispatch(team_id, handoff=handoff)
        append([_submitted(job) for job in jobs])
    written.handoff += handoff
    written.created += [(job, _latest(created, job)) for job in jobs]


def _submitted(job: Job) -> AuditEntry:
    return audit_entry(
        job.submitter,
        "job.submit",
        job=job,
        after=JobStatus.QUEUED,
        agent=job.agent.name,
        repo=job.repository.name,
        base_commit=job.base_commit,
        attempts=job.attempts_requested,
    )


def _latest(attempts: list[Attempt], job: Job) -> Attempt:
    return max((a for a in attempts if a.job_id == job.pk), key=lambda a: a.number)


def _find_agent(team: Team, name: str) -> Agent:
    # The team's own agent of that name wins over a built-in preset.
    found = (
        Agent.objects.filter(Q(team=team) | Q(team=None), name=name)
        .order_by("team_id")
        .defer("secrets")  # unread by a submit, so never unsealed for one
    )
    agent = next((a for a in found if a.team_id is not None), None) or next(iter(found), None)
    if agent is None:
        names = sorted(
            set(Agent.objects.filter(Q(team=team) | Q(team=None)).values_list("name", flat=True))
        )
        raise BadInput(f"Unknown agent {name!r}; choose one of: {', '.join(names)}.", field="agent")
    return agent


def _check_numbers(prompt: str, attempts: int, priority: int) -> None:
    if not prompt or not prompt.strip():
        raise BadInput("Write the instruction for the agent.", field="prompt")
    check_instruction_size(prompt, "prompt")
    if not 1 <= attempts <= MAX_ATTEMPTS:
        raise BadInput(
            f"attempts must be from 1 to {MAX_ATTEMPTS}, not {attempts}.", field="attempts"
        )
    if not -10 <= priority <= 10:
        raise BadInput(f"priority must be from -10 to 10, not {priority}.", field="priority")


def _check_model(model: str, agent: Agent) -> None:
    if not model:
        return
    if not agent.provider:
        raise BadInput(
            f"Agent {agent.name} uses no model, so a job of it cannot choose one.", field="model"
        )
    if not MODEL_NAME.fullmatch(model):
        raise BadInput(
            f"{model[:80]!r} is not a model name: letters, digits and . _ : / @ + -, at most 200.",
            field="model",
        )


def _check_callback(url: str) -> None:
    if url:
        check_http_url(url, "callback_url")


def _title_from(prompt: str) -> str:
    first = prompt.strip().splitlines()[0] if prompt.strip() else "Untitled"
    return first[:80]
