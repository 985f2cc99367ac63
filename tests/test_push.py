"""Push what merges, and show it, against real git: a bare upstream the repository pushes to,
one that cannot be reached, and one that moved on meanwhile."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from jobs import workspace
from jobs.models import Job, Repository
from tests.conftest import shell_agent


def _merged(api, alice, bob, workers, prompt="echo hello > hello.txt"):
    answer = api(alice).post("/api/v1/jobs", {"repo": "demo", "agent": "sh", "prompt": prompt})
    public_id = answer.json()["id"]
    workers.burst(90)
    approved = api(bob).post(f"/api/v1/jobs/{public_id}/reviews", {"decision": "approve"})
    assert approved.status_code == 201, approved.content
    merged = api(bob).post(f"/api/v1/jobs/{public_id}/merge")
    assert merged.status_code == 200, merged.content
    return public_id, merged.json()


def _head(bare: str) -> str:
    return workspace.run_git(["rev-parse", "main"], git_dir=Path(bare)).stdout.decode().strip()


def test_a_merge_is_pushed_and_says_so_everywhere(api, alice, bob, repo, workers, client):
    shell_agent(repo.team)
    public_id, merged = _merged(api, alice, bob, workers)
    assert merged["push"]["status"] == "pushed" and merged["push"]["at"]
    assert merged["push"]["detail"] == f"pushed to main at {repo.push_url}"
    assert _head(repo.push_url) == merged["commit"]
    assert api(alice).get(f"/api/v1/jobs/{public_id}").json()["push"] == merged["push"]
    waited = api(alice).get(f"/api/v1/jobs/{public_id}/wait?timeout=0").json()
    assert waited["push"]["status"] == "pushed"
    client.force_login(alice)
    page = client.get(f"/jobs/{public_id}/").content.decode()
    assert "Pushed: pushed to main at" in page


def test_without_a_push_url_it_is_kept_in_agenthub_and_says_so(api, alice, bob, repo, workers):
    shell_agent(repo.team)
    Repository.objects.filter(pk=repo.pk).update(push_url="")
    public_id, merged = _merged(api, alice, bob, workers)
    assert merged["push"]["status"] == "not_configured"
    assert "kept in AgentHub, not pushed" in merged["push"]["detail"]
    assert api(alice).get(f"/api/v1/jobs/{public_id}").json()["push"]["status"] == (
        "not_configured"
    )


def test_a_failed_push_shows_failed_and_can_be_retried(api, alice, bob, repo, workers, client):
    """AgentHub runs no hooks of a local upstream (its git is hardened), so the upstream is
    made unreachable instead: moved away, then back."""
    shell_agent(repo.team)
    before = _head(repo.push_url)
    away = f"{repo.push_url}-away"
    shutil.move(repo.push_url, away)
    public_id, merged = _merged(api, alice, bob, workers)
    assert merged["push"]["status"] == "failed"
    assert "does not appear to be a git repository" in merged["push"]["detail"]
    client.force_login(alice)
    assert 'data-role="retry-push"' in client.get(f"/jobs/{public_id}/").content.decode()

    shutil.move(away, repo.push_url)
    assert _head(repo.push_url) == before
    assert api(alice).post(f"/api/v1/jobs/{public_id}/push").status_code == 403  # a member
    retried = api(bob).post(f"/api/v1/jobs/{public_id}/push")
    assert retried.status_code == 200 and retried.json()["status"] == "pushed"
    assert _head(repo.push_url) == Job.objects.get(public_id=public_id).merge_commit


def test_upstream_moving_on_meanwhile_is_merged_in_never_forced(
    api, alice, bob, repo, workers, tmp_path
):
    shell_agent(repo.team)
    elsewhere = tmp_path / "someone-else"
    subprocess.run(["git", "clone", "-q", repo.push_url, str(elsewhere)], check=True)
    (elsewhere / "theirs.txt").write_text("theirs\n")
    subprocess.run(["git", "-C", str(elsewhere), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(elsewhere), "-c", "user.name=E", "-c", "user.email=e@x", "commit"]
        + ["-q", "-m", "theirs"],
        check=True,
    )
    subprocess.run(["git", "-C", str(elsewhere), "push", "-q", "origin", "main"], check=True)
    theirs = _head(repo.push_url)

    public_id, merged = _merged(api, alice, bob, workers)

    assert merged["push"]["status"] == "pushed", merged["push"]
    head = _head(repo.push_url)
    ancestors = workspace.run_git(["rev-list", head], git_dir=Path(repo.push_url)).stdout.decode()
    assert theirs in ancestors and merged["commit"] in ancestors  # both kept, nothing forced
