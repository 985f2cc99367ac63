"""Submitting a job: validate, then one transaction (the job, its attempts with their first
event, their dispatch, the audit entry), RQ enqueue and one realtime message once committed.
Nothing else runs on the request path: no subprocess, no recomputation for other readers."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import Q

from jobs import access
from jobs.errors import BadInput, TooLarge
from jobs.models import Agent, Job, JobStatus, Repository, Team
from jobs.services.announce import announce_submitted
from jobs.services.audit import audit
from jobs.services.dispatch import dispatch
from jobs.services.lifecycle import queued_attempts
from jobs.services.repositories import resolve_ref

MAX_ATTEMPTS = 5


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
    """A new job of `attempts` parallel attempts. The callback URL's form is checked here; the
    API also checks where it leads (hooks' SSRF guard) before calling this."""
    repository = _find_repository(user, repo)
    chosen = _find_agent(repository.team, agent)
    _check_numbers(prompt, attempts, priority)
    _check_callback(callback_url)
    ref = base_ref or repository.default_branch
    found = resolve_ref(repository, ref)
    with transaction.atomic():
        job = Job.objects.create(
            team=repository.team,
            repository=repository,
            agent=chosen,
            submitter=user,
            title=(title or _title_from(prompt))[:200],
            prompt=prompt,
            base_ref=ref,
            base_commit=found.commit,
            target_branch=ref if found.is_branch else repository.default_branch,
            priority=priority,
            attempts_requested=attempts,
            callback_url=callback_url,
        )
        created = queued_attempts(job, attempts)
        # Team row, then the audit chain's head: the lock order every writer keeps.
        dispatch(job.team_id)
        audit(
            user,
            "job.submit",
            job=job,
            after=JobStatus.QUEUED,
            agent=chosen.name,
            repo=repository.name,
            base_commit=found.commit,
            attempts=attempts,
        )
        announce_submitted(job, created[-1])
    return job


def _find_repository(user: Any, name: str) -> Repository:
    if not name:
        raise BadInput("Name the repository to work on.", field="repo")
    team_name, _, repo_name = name.rpartition("/")
    found = Repository.objects.filter(team__in=access.teams(user), name=repo_name).select_related(
        "team"
    )
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
    size = len(prompt.encode())
    limit = settings.AGENTHUB_MAX_PROMPT_BYTES
    if size > limit:
        raise TooLarge(f"The prompt is {size} bytes; the limit is {limit} bytes.", field="prompt")
    if not 1 <= attempts <= MAX_ATTEMPTS:
        raise BadInput(
            f"attempts must be from 1 to {MAX_ATTEMPTS}, not {attempts}.", field="attempts"
        )
    if not -10 <= priority <= 10:
        raise BadInput(f"priority must be from -10 to 10, not {priority}.", field="priority")


def _check_callback(url: str) -> None:
    if not url:
        return
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise BadInput(
            f"callback_url must be an http(s) URL, not {url!r}.", field="callback_url"
        ) from None


def _title_from(prompt: str) -> str:
    first = prompt.strip().splitlines()[0] if prompt.strip() else "Untitled"
    return first[:80]
