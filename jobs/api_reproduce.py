"""Reproducing an attempt over the API: `POST /api/v1/jobs/<id>/attempts/<n>/reproduce` runs it
again on the server on exactly what it ran on (jobs/services/reproduce.py); for one's own
machine, `GET …/attempts/<n>/bundle` is a git bundle of its start and result commits and
`GET …/attempts/<n>/image` its docker image with the repository's environment in it
(`docker save`), which `agenthub reproduce` loads and opens a shell in."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.http import FileResponse, StreamingHttpResponse
from ninja import Router, Status

from jobs import access, environments, schemas, services, workspace
from jobs.errors import Conflict, NotFound
from jobs.models import Attempt, Job
from jobs.sandbox import SandboxError
from jobs.sandbox.docker import image_with, save_image
from jobs.services.reproduce import unavailable

router = Router(tags=["jobs"])
ERRORS = {frozenset({401, 403, 404, 409, 429}): schemas.Error}
OCTETS = {200: {"description": "The file", "content": {"application/octet-stream": {}}}}


@router.post(
    "/{id}/attempts/{number}/reproduce",
    response={202: schemas.Reproduced, **ERRORS},
    url_name="api-attempt-reproduce",
    summary="Run an attempt again on exactly what it ran on, saying what can no longer be had",
)
def reproduce(request: Any, id: str, number: int) -> Any:
    job = access.get_job(request.auth, id)
    attempt, unavailable = services.reproduce_attempt(request.auth, job, number)
    return Status(
        202,
        {
            "id": job.public_id,
            "attempt": attempt.number,
            "reproduces": number,
            "unavailable": unavailable,
        },
    )


@router.get(
    "/{id}/attempts/{number}/bundle",
    response=ERRORS,
    url_name="api-attempt-bundle",
    summary="A git bundle of the attempt's start and result commits",
    openapi_extra={"responses": OCTETS},
)
def bundle(request: Any, id: str, number: int) -> Any:
    job = access.get_job(request.auth, id)
    attempt = attempt_of(job, number)
    commits = {"start": attempt.start_commit}
    if attempt.result_commit:
        commits["result"] = attempt.result_commit
    handle, name = tempfile.mkstemp(suffix=".bundle")
    os.close(handle)
    out = Path(name)
    workspace.bundle(Path(job.repository.store_path), commits, out)
    opened = out.open("rb")
    out.unlink()  # the open file stays readable until the response is sent
    return FileResponse(
        opened, as_attachment=True, filename=f"agenthub-{job.public_id}-{number}.bundle"
    )


@router.get(
    "/{id}/attempts/{number}/image",
    response=ERRORS,
    url_name="api-attempt-image",
    summary="The attempt's docker image with its environment (`docker save`; docker attempts)",
    openapi_extra={"responses": OCTETS},
)
def image(request: Any, id: str, number: int) -> Any:
    job = access.get_job(request.auth, id)
    attempt = attempt_of(job, number)
    card = attempt.card
    if card.get("backend") != "docker" or not card.get("image_id"):
        ran_on = ", ".join(f"{k} {v}" for k, v in sorted((card.get("host_tools") or {}).items()))
        raise Conflict(
            f"Attempt {number} ran on {card.get('backend') or 'no sandbox'}"
            + (f" ({ran_on})" if ran_on else "")
            + f", not in a docker image: it reproduces on the server only (POST "
            f"/api/v1/jobs/{job.public_id}/attempts/{number}/reproduce)."
        )
    if missing := unavailable({**card, "provider": ""}):
        raise Conflict("; ".join(missing))
    key = (card.get("environment") or {}).get("key")
    directory = environments.Plan(key, "", "", "").directory if key else None
    try:
        tag = image_with(
            card["image_id"], directory, environments.ENV_PATH, f"agenthub-reproduce:{key}"
        )
    except SandboxError as exc:
        raise Conflict(str(exc)) from exc
    response = StreamingHttpResponse(_chunks(tag), content_type="application/x-tar")
    response["Content-Disposition"] = (
        f'attachment; filename="agenthub-{job.public_id}-{number}.tar"'
    )
    response["X-Image"] = tag
    return response


def attempt_of(job: Job, number: int) -> Attempt:
    attempt = job.attempts.filter(number=number).first()
    if attempt is None:
        raise NotFound(f"Job {job.public_id} has no attempt {number}.")
    return attempt


def _chunks(tag: str) -> Iterator[bytes]:
    yield from save_image(tag)
