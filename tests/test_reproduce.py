"""Reproducing an attempt: on the server, a new attempt on exactly what the first ran on (the
agent's command changed since, it still runs the original's) gives the same result tree; for a
docker attempt, `agenthub reproduce` loads its image, environment included, and checks its
workspace out, and the command it prints runs there."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from jobs import workspace
from jobs.models import Agent, Attempt, Job, Repository
from tests.conftest import commit_files, shell_agent
from tests.test_cli import agenthub  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

# Deterministic: the same tree every time it runs on the same start.
PROMPT = "wc -l < calc/__init__.py > lines.txt\necho reproduced >> lines.txt\n"


def tree(repo: Repository, commit: str) -> str:
    found = workspace.run_git(["rev-parse", f"{commit}^{{tree}}"], git_dir=Path(repo.store_path))
    return found.stdout.decode().strip()


def run(client, workers, agent: str) -> Job:
    response = client.post("/api/v1/jobs", {"repo": "demo", "agent": agent, "prompt": PROMPT})
    assert response.status_code == 202, response.content
    workers.burst(300)
    return Job.objects.get(public_id=response.json()["id"])


def test_reproducing_a_bwrap_attempt_runs_what_it_ran_and_gives_the_same_tree(
    api, alice, team, repo, workers
):
    agent = shell_agent(team, name="det", backend="bwrap")
    client = api(alice)
    job = run(client, workers, "det")
    first = job.attempts.get()
    assert first.status == "succeeded" and first.result_commit, first.reason
    assert first.card["host_tools"]["python3"]  # what a bwrap attempt ran on
    # The agent changes and upstream moves on; a reproduction still runs the original's
    # command and limits on its start commit.
    Agent.objects.filter(pk=agent.pk).update(command="echo changed > lines.txt", cpus=0.5)
    commit_files(Path(repo.source), {"calc/__init__.py": "# moved on upstream\n"})
    answer = client.post(f"/api/v1/jobs/{job.public_id}/attempts/1/reproduce")
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert (body["attempt"], body["reproduces"]) == (2, 1)
    assert any("host tools" in said for said in body["unavailable"]), body
    workers.burst(300)
    second = Attempt.objects.get(job=job, number=2)
    assert second.status == "succeeded", second.reason
    assert second.start_commit == first.start_commit
    assert tree(repo, second.result_commit) == tree(repo, first.result_commit)
    assert second.card["command"] == first.card["command"]
    assert second.card["limits"] == first.card["limits"]
    assert second.card["reproduces"]["attempt"] == 1
    notes = list(
        second.events.filter(kind__in=["notice", "warning"]).values_list("text", flat=True)
    )
    assert "reproduces attempt 1" in notes
    # A bwrap attempt has no image to take home, and says why.
    image = client.get(f"/api/v1/jobs/{job.public_id}/attempts/1/image")
    assert image.status_code == 409 and "reproduces on the server only" in image.json()["detail"]
    # Nothing to reproduce in an attempt that never ran is refused by name.
    assert client.post(f"/api/v1/jobs/{job.public_id}/attempts/9/reproduce").status_code == 409


@pytest.mark.docker
def test_agenthub_reproduce_loads_a_docker_attempt_with_its_environment(
    agenthub,  # noqa: F811
    api,
    alice,
    team,
    repo,
    workers,
    tmp_path,
):
    Repository.objects.filter(pk=repo.pk).update(
        setup_script='echo "environment made" > "$VIRTUAL_ENV/marker"'
    )
    shell_agent(team, name="det", backend="docker")
    job = run(api(alice), workers, "det")
    attempt = job.attempts.get()
    assert attempt.status == "succeeded", attempt.reason
    assert attempt.card["environment"]["reused"] is False
    where = tmp_path / "home"
    done = agenthub(
        alice, "reproduce", job.public_id, "--json", "--dir", str(where), "--at", "result"
    )
    assert done.code == 0, done.err
    report = json.loads(done.out)
    assert report["commit"] == attempt.result_commit
    assert (where / "lines.txt").read_text() == (
        subprocess.run(
            ["git", "-C", str(where), "show", f"{attempt.result_commit}:lines.txt"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    command = report["command"]
    assert command[-1] == "bash" and "--network" in command
    inside = subprocess.run(
        [*command[:-1], "cat", "/opt/env/marker", "lines.txt"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.startswith("environment made\n")
    assert inside.stdout.endswith("reproduced\n")
