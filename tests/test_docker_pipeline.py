"""The docker backend through the whole pipeline: containers run attempts, the card records the
image, re-runs can pin it, timeouts remove the container, and the reconciler reaps orphans."""

from __future__ import annotations

from typing import Any

import docker as docker_sdk
import pytest
from django.conf import settings

from jobs import runner, services
from jobs.models import Attempt, Job
from tests.conftest import shell_agent

pytestmark = [pytest.mark.slow, pytest.mark.docker]


@pytest.fixture(scope="module")
def engine() -> Any:
    client = docker_sdk.from_env()
    assert client.ping(), "the Docker Engine does not answer; .ci/run starts dockerd"
    client.images.get(settings.AGENTHUB_SANDBOX_IMAGE)  # make sandbox-image builds it
    return client


def containers_of(engine: Any, attempt: Attempt) -> list[Any]:
    return engine.containers.list(all=True, filters={"label": f"agenthub.attempt={attempt.pk}"})


def run(client: Any, workers: Any, prompt: str, agent: str = "boxed") -> Job:
    response = client.post("/api/v1/jobs", {"repo": "demo", "agent": agent, "prompt": prompt})
    assert response.status_code == 202, response.content
    workers.burst()
    return Job.objects.get(public_id=response.json()["id"])


def test_a_docker_job_runs_in_a_container_and_records_the_image(
    api, alice, team, repo, workers, engine
):
    shell_agent(team, name="boxed", backend="docker")
    job = run(api(alice), workers, "id -u > uid.txt\nruff --version")
    attempt = job.attempts.get()
    assert job.status == "needs_review", attempt.reason
    assert attempt.card["backend"] == "docker"
    assert attempt.card["image"] == settings.AGENTHUB_SANDBOX_IMAGE
    assert attempt.card["image_id"] == engine.images.get(settings.AGENTHUB_SANDBOX_IMAGE).id
    assert "+" + str(attempt.card["uid"]) in attempt.patch
    assert any("ruff" in e for e in attempt.events.values_list("text", flat=True))
    assert containers_of(engine, attempt) == []


def test_a_rerun_can_pin_the_image_of_the_last_attempt(api, alice, team, repo, workers, engine):
    shell_agent(team, name="boxed", backend="docker")
    job = run(api(alice), workers, "true")
    response = api(alice).post(f"/api/v1/jobs/{job.public_id}/rerun", {"pin_image": True})
    assert response.status_code == 202
    workers.burst()
    first, second = job.attempts.order_by("number")
    assert second.status == "succeeded", second.reason
    assert second.card["image"] == first.card["image_id"]


def test_a_timed_out_container_is_removed_and_the_partial_work_kept(
    api, alice, team, repo, workers, engine
):
    shell_agent(team, name="boxed", backend="docker", timeout_seconds=2)
    job = run(api(alice), workers, "echo partial > partial.txt\nsleep 600")
    attempt = job.attempts.get()
    assert attempt.status == "timed_out"
    assert [f["path"] for f in attempt.files] == ["partial.txt"]
    assert containers_of(engine, attempt) == []


def test_the_reconciler_reaps_containers_whose_attempt_is_over(
    alice, repo, engine, transactional_db
):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    attempt = job.attempts.get()
    services.cancel_job(alice, job)  # the attempt is over; a container of it is an orphan
    labels = {"agenthub.sandbox": "1", "agenthub.attempt": str(attempt.pk)}
    ours = engine.containers.run(
        settings.AGENTHUB_SANDBOX_IMAGE,
        "sleep 600",
        detach=True,
        labels={**labels, "agenthub.instance": settings.AGENTHUB_INSTANCE},
    )
    theirs = engine.containers.run(
        settings.AGENTHUB_SANDBOX_IMAGE,
        "sleep 600",
        detach=True,
        labels={**labels, "agenthub.instance": "another-install"},
    )
    try:
        reaped = services.reconcile()["reaped"]
        assert ours.name in reaped and theirs.name not in reaped
        assert [c.name for c in containers_of(engine, attempt)] == [theirs.name]
    finally:
        theirs.remove(force=True)


def test_auto_picks_docker_when_the_engine_has_the_image_else_bwrap(engine):
    assert runner._backend_name("auto", settings.AGENTHUB_SANDBOX_IMAGE) == "docker"
    assert runner._backend_name("auto", "agenthub-no-such-image:0") == "bwrap"
    assert runner._backend_name("bwrap", settings.AGENTHUB_SANDBOX_IMAGE) == "bwrap"
