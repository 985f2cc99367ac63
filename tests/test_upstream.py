"""Following upstream, against real git: the repository's source is a real repository that
commits after registration; real workers prepare the attempts."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

from django.utils import timezone

from jobs import services, workspace
from jobs.models import Job, Repository
from tests.conftest import commit_files, shell_agent

FRESH_NOW = {"AGENTHUB_SYNC_FRESH_SECONDS": "0"}  # fetch before every attempt


def _submit(api, user, prompt, **extra):
    answer = api(user).post(
        "/api/v1/jobs", {"repo": "demo", "agent": "sh", "prompt": prompt, **extra}
    )
    assert answer.status_code == 202, answer.content
    return answer.json()["id"]


def _log(job):
    return "\n".join(
        e.text for a in job.attempts.all() for e in a.events.order_by("seq") if e.kind == "log"
    )


def test_a_commit_pushed_upstream_after_registration_is_the_next_jobs_base(
    api, alice, repo, workers
):
    shell_agent(repo.team)
    registered = workspace.resolve_commit(Path(repo.store_path), "main")
    newer = commit_files(Path(repo.source), {"NEWS.md": "fresh from upstream\n"}, "news")
    public_id = _submit(api, alice, "cat NEWS.md", attempts=2)
    assert Job.objects.get(public_id=public_id).base_commit == registered  # as submitted

    workers.burst(90, **FRESH_NOW)

    job = Job.objects.get(public_id=public_id)
    attempts = list(job.attempts.order_by("number"))
    assert job.base_commit == newer
    assert [a.base_commit for a in attempts] == [newer, newer]  # one base for the round
    assert "fresh from upstream" in _log(job)
    detail = api(alice).get(f"/api/v1/jobs/{public_id}").json()
    assert all(a["base_synced_at"] and a["sync_note"] == "" for a in detail["attempts"])
    said = attempts[0].events.filter(kind="notice").values_list("text", flat=True)
    assert any(t.startswith(f"base: main at {newer[:12]}") for t in said)
    repo.refresh_from_db()
    assert repo.sync_error == "" and repo.last_synced_at is not None


def test_a_failed_fetch_runs_on_the_last_synced_base_and_says_so(api, alice, repo, workers):
    shell_agent(repo.team)
    registered = workspace.resolve_commit(Path(repo.store_path), "main")
    shutil.move(repo.source, f"{repo.source}-gone")
    public_id = _submit(api, alice, "git log -1 --format=%H")

    workers.burst(90, **FRESH_NOW)

    job = Job.objects.get(public_id=public_id)
    attempt = job.attempts.get()
    assert job.status == "no_changes", attempt.reason
    assert attempt.base_commit == registered and registered in _log(job)
    assert attempt.sync_note.startswith("Could not fetch demo's source")
    assert "It runs on the base last synced" in attempt.sync_note
    assert attempt.events.filter(kind="warning", text=attempt.sync_note).exists()
    repo.refresh_from_db()
    assert repo.sync_error

    # Asked for, the sync says why it failed.
    answer = api(alice).post("/api/v1/repos/demo/sync")
    assert answer.status_code == 502 and answer.json()["error"] == "sync_failed"


def test_a_sync_can_be_asked_for_and_runs_on_schedule(api, alice, repo):
    newer = commit_files(Path(repo.source), {"NEWS.md": "one\n"}, "one")
    answer = api(alice).post("/api/v1/repos/demo/sync")
    assert answer.status_code == 200, answer.content
    assert answer.json()["moved"] == {"main": newer} and answer.json()["kept"] == []
    assert workspace.resolve_commit(Path(repo.store_path), "main") == newer
    assert api(alice).post("/api/v1/repos/nosuch/sync").status_code == 400

    # The workers' reconciler syncs a repository whose interval has passed, and only that one.
    later = commit_files(Path(repo.source), {"NEWS.md": "two\n"}, "two")
    Repository.objects.filter(pk=repo.pk).update(sync_interval=0)
    assert services.sync_due() == []
    assert workspace.resolve_commit(Path(repo.store_path), "main") == newer
    long_ago = timezone.now() - timedelta(hours=1)
    Repository.objects.filter(pk=repo.pk).update(sync_interval=600, last_synced_at=long_ago)
    assert services.sync_due() == []
    assert workspace.resolve_commit(Path(repo.store_path), "main") == later
