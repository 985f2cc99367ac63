"""Untrusted agents and untrusted repositories, through the real pipeline: the host stays
untouched, and the attempt says what failed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from jobs import remotes, services, workspace
from jobs.models import Job
from tests.conftest import Workers, commit_files

pytestmark = pytest.mark.slow


def run(client: Any, workers: Any, prompt: str, repo: str = "demo") -> Job:
    response = client.post("/api/v1/jobs", {"repo": repo, "agent": "shell", "prompt": prompt})
    assert response.status_code == 202, response.content
    workers.burst()
    return Job.objects.get(public_id=response.json()["id"])


def log_of(job: Job) -> str:
    return "\n".join(job.attempts.get().events.values_list("text", flat=True))


def test_agent_cannot_reach_host_files_secrets_or_redis(api, alice, repo, workers, tmp_path):
    marker = Path("/etc/agenthub-escape-marker")
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host-only-secret-4242")
    source = Path(repo.source)
    os.symlink(secret, source / "leak")
    commit_files(source, {}, "add a symlink to a host file")
    remotes.sync_store(Path(repo.store_path), repo.source, timeout=60)
    store = Path(repo.store_path)

    job = run(
        api(alice),
        workers,
        f"""
echo pwned > {marker} || echo "write to /etc refused"
echo pwned > {store}/HEAD || echo "write to the store refused"
cat /etc/shadow || echo "shadow refused"
echo "canary=[$AGENTHUB_CANARY_SECRET]"
cat leak || echo "symlink refused"
(exec 3<>/dev/tcp/127.0.0.1/6379) && echo "redis reached" || echo "redis refused"
echo finished
""",
    )

    log = log_of(job)
    assert not marker.exists()
    assert (store / "HEAD").read_text().startswith("ref: ")  # the store is intact
    assert Workers.CANARY not in log and "canary=[]" in log
    assert "host-only-secret-4242" not in log
    assert "root:" not in log
    for refusal in (
        "write to /etc refused",
        "write to the store refused",
        "shadow refused",
        "symlink refused",
        "redis refused",
        "finished",
    ):
        assert refusal in log


def _poisoned_source(make_source: Any, tmp_path: Path, key: str) -> tuple[Path, Path]:
    marker = tmp_path / f"marker-{key.replace('.', '-')}"
    script = tmp_path / f"payload-{key}.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    source = make_source(f"poisoned-{key}")
    if key == "core.hooksPath":
        hooks = tmp_path / f"hooks-{key}"
        hooks.mkdir()
        for hook in (
            "pre-commit",
            "post-commit",
            "post-checkout",
            "reference-transaction",
            "pre-push",
        ):
            (hooks / hook).symlink_to(script)
        value = str(hooks)
    else:
        value = str(script)
    workspace.run_git(["config", key, value], git_dir=source / ".git")
    return source, marker


@pytest.mark.parametrize("key", ["core.fsmonitor", "core.hooksPath"])
def test_repository_config_never_runs_on_the_host(
    api, alice, bob, team, make_source, tmp_path, key, workers
):
    source, marker = _poisoned_source(make_source, tmp_path, key)
    # Positive control: plain git in that repository does run the payload.
    os.system(f"cd {source} && git status >/dev/null && git commit -q --allow-empty -m x")  # noqa: S605
    assert marker.exists()
    marker.unlink()

    services.register_repository(alice, team, "poisoned", str(source))
    job = run(api(alice), workers, "echo change >> app.py", repo="poisoned")
    assert job.status == "needs_review"
    assert (
        api(bob).post(f"/api/v1/jobs/{job.public_id}/reviews", {"decision": "approve"}).status_code
        == 201
    )
    assert api(bob).post(f"/api/v1/jobs/{job.public_id}/merge").status_code == 200

    assert not marker.exists()
