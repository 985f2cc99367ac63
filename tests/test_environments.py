"""Repository environments (jobs/environments.py) through the pipeline, on real workers and real
sandboxes: set up once with the package registries, reused while its key holds, rebuilt when a
manifest changes; secrets reach the setup and never the agent; a failed step says which."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobs import environments, workspace
from jobs.models import Attempt, Job, Repository
from tests.conftest import commit_files, shell_agent

pytestmark = pytest.mark.slow

# A small project whose tests need a real third-party package (freezegun, from PyPI, through
# the setup's registries-only egress) and the project itself installed (an editable install).
PROJECT = {
    "pyproject.toml": (
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '\n[project]\nname = "clock"\nversion = "0.1"\n'
        '\n[project.optional-dependencies]\ntest = ["freezegun>=1.2"]\n'
        '\n[tool.setuptools]\npackages = ["clock"]\n'
    ),
    "clock/__init__.py": "import datetime\n\n\ndef today():\n"
    "    return datetime.date.today().isoformat()\n",
    "tests/test_clock.py": "from freezegun import freeze_time\n\nfrom clock import today\n\n\n"
    "@freeze_time('2020-02-29')\ndef test_today():\n    assert today() == '2020-02-29'\n",
}


def submit(client: Any, workers: Any, agent: str, prompt: str = "go") -> Job:
    response = client.post("/api/v1/jobs", {"repo": "demo", "agent": agent, "prompt": prompt})
    assert response.status_code == 202, response.content
    workers.burst(300)
    return Job.objects.get(public_id=response.json()["id"])


def log_of(attempt: Attempt) -> str:
    return "\n".join(e.text for e in attempt.events.order_by("seq"))


def preparing_seconds(attempt: Attempt) -> float:
    """From preparing to running, as the status events say."""
    status = {e.data["status"]: e.ts for e in attempt.events.filter(kind="status")}
    return (status["running"] - status["preparing"]).total_seconds()


def commit(repo: Repository, files: dict[str, str]) -> None:
    commit_files(Path(repo.source), files)
    workspace.sync_store(Path(repo.store_path), repo.source, timeout=60)


def test_a_detected_environment_is_set_up_once_reused_and_rebuilt_when_a_manifest_changes(
    api, alice, repo, workers
):
    commit(repo, PROJECT)
    client = api(alice)
    first = submit(client, workers, "pytest").attempts.get()
    assert first.job.status == "no_changes", (first.reason, log_of(first))
    assert first.summary["tests"]["passed"] == 1
    built = first.card["environment"]
    assert built["reused"] is False and built["setup_seconds"] > 0
    assert built["detected"] == "pyproject.toml (extra test)"
    assert "::group::" not in log_of(first)
    assert first.events.filter(
        kind="group", text="environment setup (detected pyproject.toml (extra test))"
    ).exists()
    # The API says so on the attempt.
    shown = client.get(f"/api/v1/jobs/{first.job.public_id}").json()["attempts"][0]
    assert shown["environment"] == built

    second = submit(client, workers, "pytest").attempts.get()
    assert second.job.status == "no_changes", log_of(second)
    assert second.card["environment"] == {**built, "reused": True, "setup_seconds": None}
    assert not second.events.filter(kind="group").exists()  # no setup ran
    print(
        f"\npreparation: {preparing_seconds(first):.2f} s setting up, "
        f"{preparing_seconds(second):.2f} s reusing"
    )

    commit(repo, {"pyproject.toml": PROJECT["pyproject.toml"] + "# a changed manifest\n"})
    # Any agent runs with it; what the setup wrote (an editable install) is no change of its own.
    third = submit(
        client, workers, "shell", "python -B -c 'import clock, freezegun'"
    ).attempts.get()
    assert third.job.status == "no_changes", (third.files, log_of(third))
    assert third.card["environment"]["key"] != built["key"]
    assert third.card["environment"]["reused"] is False


def test_secrets_reach_the_setup_never_the_agent_and_the_environment_is_read_only(
    api, alice, team, repo, workers
):
    Repository.objects.filter(pk=repo.pk).update(
        setup_script='echo "token=$INDEX_TOKEN"\necho made > "$VIRTUAL_ENV/marker"\n',
        maintenance_script="echo maintained",
    )
    repo.refresh_from_db()
    repo.secrets = {"INDEX_TOKEN": "s3cr3t-value"}
    repo.save()
    shell_agent(team, name="probe")
    probe = (
        'echo "agent sees [${INDEX_TOKEN:-}]"\n'
        'cat "$VIRTUAL_ENV/marker"; command -v python3\n'
        'touch "$VIRTUAL_ENV/changed" || echo "environment is read-only"\n'
    )
    attempt = submit(api(alice), workers, "probe", probe).attempts.get()
    log = log_of(attempt)
    assert attempt.status == "succeeded", (attempt.reason, log)
    assert "token=***" in log and "s3cr3t-value" not in log
    assert "agent sees []" in log
    assert "made" in log and f"{environments.ENV_PATH}/bin/python3" in log
    assert "environment is read-only" in log
    assert "maintained" in log
    # The maintenance script runs again in the next attempt; the setup does not.
    again = submit(api(alice), workers, "probe", "true").attempts.get()
    assert "maintained" in log_of(again) and "token=" not in log_of(again)


def test_a_failed_setup_fails_the_attempt_naming_the_step(api, alice, team, repo, workers):
    Repository.objects.filter(pk=repo.pk).update(setup_script="echo one\nfalse\necho never\n")
    shell_agent(team, name="probe")
    attempt = submit(api(alice), workers, "probe", "echo agent ran").attempts.get()
    assert attempt.status == "failed"
    assert attempt.reason == "environment setup failed (exit 1) at: false"
    assert "agent ran" not in log_of(attempt) and "never" not in log_of(attempt)
    assert not list(environments.root().glob(".build-*"))  # nothing half-made is kept
