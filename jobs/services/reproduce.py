"""Reproducing an attempt: a new attempt of the same job on exactly what the first one ran on —
its start commit, command, limits, backend, image and environment — as far as each can still
be had, saying which cannot. The runner reads the recipe from the new attempt's card
(`reproduces`), not from the agent, which may have changed since."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import transaction

from jobs import environments, events, workspace
from jobs.errors import Conflict
from jobs.models import Attempt, Job
from jobs.sandbox import SandboxError, docker_available, image_id
from jobs.services.lifecycle import new_attempt, requeue, require_ended

# What of a card a reproduction takes over, as the runner reads it back.
RECIPE = ("backend", "command", "limits", "image", "image_id")


def reproduce_attempt(user: Any, job: Job, number: int) -> tuple[Attempt, list[str]]:
    """The new attempt, and what of the original can no longer be had (each said in words)."""
    original = job.attempts.filter(number=number).first()
    if original is None:
        raise Conflict(f"Job {job.public_id} has no attempt {number}.")
    card = original.card
    if not card.get("command"):
        raise Conflict(
            f"Attempt {number} of job {job.public_id} never started: there is nothing to "
            "reproduce; re-run the job instead."
        )
    if not workspace.has_commit(Path(job.repository.store_path), original.start_commit):
        raise Conflict(f"Attempt {number}'s start commit {original.start_commit} is gone.")
    missing = unavailable(card)
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        require_ended(job, "reproduced")
        attempt = new_attempt(
            job,
            original.base_commit,
            original.start_commit,
            review=original.review,
            instruction=original.instruction,
        )
        recipe = {key: card[key] for key in RECIPE if key in card}
        recipe.update(
            attempt=original.number,
            environment_key=(card.get("environment") or {}).get("key", ""),
            unavailable=missing,
        )
        Attempt.objects.filter(pk=attempt.pk).update(card={"reproduces": recipe})
        events.append_events(
            attempt.pk,
            [
                events.Draft("notice", f"reproduces attempt {original.number}"),
                *(events.Draft("warning", f"cannot be had again: {m}") for m in missing),
            ],
        )
        requeue(
            user,
            job,
            "job.reproduce",
            attempt=attempt.number,
            reproduces=original.number,
            unavailable=missing,
        )
    return attempt, missing


def unavailable(card: dict[str, Any]) -> list[str]:
    """What of an attempt's card cannot be had again here, in words."""
    missing = []
    if card.get("backend") == "docker" and card.get("image_id"):
        try:
            if not docker_available():
                raise SandboxError("no Docker Engine answers")
            image_id(card["image_id"])
        except SandboxError:
            missing.append(
                f"image {card.get('image', '')} ({card['image_id'][:19]}) is no longer on the "
                "Docker Engine: the attempt cannot run in it"
            )
    key = (card.get("environment") or {}).get("key")
    if key and not environments.Plan(key, "", "", "").ready:
        missing.append(
            f"environment {key} was removed: it is set up again from the repository's current setup"
        )
    if card.get("backend") in ("bwrap", "local"):
        ran_on = ", ".join(f"{k} {v}" for k, v in sorted((card.get("host_tools") or {}).items()))
        missing.append(
            "it runs on the worker's host tools as they are now"
            + (f" (it ran on {ran_on})" if ran_on else "")
            + "; a bwrap attempt reproduces on the server only"
        )
    if card.get("provider"):
        missing.append(f"the model ({card.get('model')}) is asked again: its answers may differ")
    return missing
