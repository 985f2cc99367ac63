"""The whole pipeline on real components: API → database → RQ on Redis → a real worker process →
git shadow workspace → bwrap sandbox → events → diff → review → merge in the store → upstream."""

from __future__ import annotations

import json
import signal
import stat
from pathlib import Path
from typing import Any

import pytest

from jobs import remotes, workspace
from jobs.models import Attempt, AuditEntry, Job
from tests.conftest import commit_files, job_status, processes_of, shell_agent, wait_for

pytestmark = pytest.mark.slow


def submit(client: Any, prompt: str, agent: str = "shell", **body: Any) -> str:
    response = client.post(
        "/api/v1/jobs", {"repo": "demo", "agent": agent, "prompt": prompt, **body}
    )
    assert response.status_code == 202, response.content
    return response.json()["id"]


def run_job(client: Any, workers: Any, prompt: str, **body: Any) -> str:
    public_id = submit(client, prompt, **body)
    workers.burst()
    return public_id


def events_of(client: Any, public_id: str, **params: Any) -> list[dict[str, Any]]:
    return client.get(f"/api/v1/jobs/{public_id}/events", **params).json()["events"]


def store_branch(repo: Any, branch: str = "main") -> str:
    return workspace.resolve_commit(Path(repo.store_path), branch)


# A worker and the API write one attempt's rows at once; its events stay gap-free.
@pytest.mark.database
def test_job_waits_queued_without_a_worker_then_runs_to_needs_review(api, alice, repo, workers):
    client = api(alice)
    public_id = submit(client, "echo hello > hello.txt\necho done")
    assert client.get(f"/api/v1/jobs/{public_id}").json()["status"] == "queued"

    workers.burst()

    job = client.get(f"/api/v1/jobs/{public_id}").json()
    assert job["status"] == "needs_review"
    attempt = job["attempts"][0]
    assert attempt["status"] == "succeeded"
    assert attempt["diff_stats"] == {"files": 1, "added": 1, "deleted": 0}
    assert attempt["files"][0]["path"] == "hello.txt"
    seqs = [e["seq"] for e in events_of(client, public_id)]
    assert seqs == list(range(1, len(seqs) + 1))
    texts = [e["text"] for e in events_of(client, public_id)]
    assert texts[:2] == ["queued", "preparing"]
    assert texts[2].startswith("base: main at ")  # upstream's head as fetched (test_upstream)
    assert texts[3] == "running"
    assert "done" in texts
    assert texts[-1] == "succeeded"
    patch = client.get(f"/api/v1/jobs/{public_id}/diff")
    assert patch["Content-Type"].startswith("text/x-diff")
    assert b"+++ b/hello.txt" in patch.content and b"+hello" in patch.content


def test_a_private_data_directory_in_a_private_home_runs_jobs_on_bwrap(
    api, alice, repo, workers, tmp_path
):
    """`mktemp -d` under /root: no sandbox uid can search either directory."""
    home = tmp_path / "home"
    data = home / "agenthub-data"
    data.mkdir(parents=True, mode=0o700)
    home.chmod(0o700)
    client = api(alice)
    public_id = submit(client, "echo hello > hello.txt\ncat hello.txt")

    workers.burst(AGENTHUB_DATA_DIR=str(data))

    job = client.get(f"/api/v1/jobs/{public_id}").json()
    assert (job["status"], job["attempts"][0]["status"]) == ("needs_review", "succeeded"), job
    assert [f["path"] for f in job["attempts"][0]["files"]] == ["hello.txt"]
    assert "hello" in [e["text"] for e in events_of(client, public_id)]
    commit = Attempt.objects.get(job__public_id=public_id).result_commit
    shown = workspace.run_git(["show", f"{commit}:hello.txt"], git_dir=Path(repo.store_path))
    assert shown.stdout == b"hello\n"
    assert [stat.S_IMODE(d.stat().st_mode) for d in (home, data)] == [0o700, 0o700]


def test_events_after_n_return_only_the_rest_in_order(api, alice, repo, workers):
    client = api(alice)
    public_id = run_job(client, workers, "for i in 1 2 3 4 5; do echo line $i; done")
    everything = events_of(client, public_id)
    rest = events_of(client, public_id, after=3)
    assert rest == everything[3:]


# Review, merge and the audit trail's head while a worker writes too.
@pytest.mark.database
def test_review_gate_merge_and_audit_trail(api, alice, bob, carol, repo, workers):
    public_id = run_job(api(alice), workers, "echo hello > hello.txt")

    own = api(alice).post(f"/api/v1/jobs/{public_id}/reviews", {"decision": "approve"})
    assert own.status_code == 403
    assert "submitted" in own.json()["detail"]
    assert (
        AuditEntry.objects.filter(
            action="review.refused", actor=alice, job__public_id=public_id
        ).count()
        == 1
    )
    assert (
        api(carol).post(f"/api/v1/jobs/{public_id}/reviews", {"decision": "approve"}).status_code
        == 404
    )
    assert api(bob).post(f"/api/v1/jobs/{public_id}/merge").status_code == 409  # not approved yet

    approved = api(bob).post(f"/api/v1/jobs/{public_id}/reviews", {"decision": "approve"})
    assert approved.status_code == 201
    assert approved.json()["status"] == "approved"
    merged = api(bob).post(f"/api/v1/jobs/{public_id}/merge")
    assert merged.status_code == 200, merged.content
    commit = merged.json()["commit"]

    assert store_branch(repo) == commit
    upstream = Path(repo.push_url)
    assert (
        workspace.run_git(["rev-parse", "main"], git_dir=upstream).stdout.decode().strip() == commit
    )
    assert job_status(public_id) == "merged"
    trail = [(e.action, e.actor_name) for e in AuditEntry.objects.filter(job__public_id=public_id)]
    wanted = [
        ("job.submit", "alice"),
        ("attempt.preparing", "system"),
        ("attempt.running", "system"),
        ("attempt.succeeded", "system"),
        ("review.refused", "alice"),
        ("review.approve", "bob"),
        ("job.merge", "bob"),
        ("job.push", "bob"),
    ]
    assert [t for t in trail if t in wanted] == wanted


def test_second_job_on_the_same_line_conflicts_and_moves_nothing(api, alice, bob, repo, workers):
    first = submit(api(alice), "echo \"def greet(): return 'hi'\" > app.py")
    second = submit(api(alice), "echo \"def greet(): return 'hey'\" > app.py")
    workers.burst()
    for public_id in (first, second):
        assert (
            api(bob).post(f"/api/v1/jobs/{public_id}/reviews", {"decision": "approve"}).status_code
            == 201
        )
    assert api(bob).post(f"/api/v1/jobs/{first}/merge").status_code == 200
    before = store_branch(repo)

    refused = api(bob).post(f"/api/v1/jobs/{second}/merge")

    assert refused.status_code == 409
    assert refused.json()["conflicts"] == ["app.py"]
    assert store_branch(repo) == before
    assert job_status(second) == "conflict"


def test_progress_is_recorded_and_masked_secrets_never_stored(api, alice, repo, workers):
    client = api(alice)
    public_id = run_job(
        client,
        workers,
        "echo '::add-mask::s3cret'\necho 'the s3cret is out'\n"
        "echo '::progress::40 Running'\necho '::warning::careful s3cret'",
    )
    attempt = Job.objects.get(public_id=public_id).attempts.get()
    assert (attempt.progress, attempt.progress_message) == (40, "Running")
    stored = list(attempt.events.values_list("text", "kind"))
    assert ("the *** is out", "log") in stored
    assert ("careful ***", "warning") in stored
    assert not [t for t, _ in stored if "s3cret" in t]


def test_timeout_kills_everything_and_keeps_partial_work(api, alice, team, repo, workers):
    shell_agent(team, name="quick", timeout_seconds=2)
    client = api(alice)
    public_id = run_job(
        client, workers, "echo partial > partial.txt\nsleep 600 &\nsleep 600", agent="quick"
    )

    attempt = Job.objects.get(public_id=public_id).attempts.get()
    assert attempt.status == "timed_out"
    assert (attempt.finished_at - attempt.started_at).total_seconds() < 15
    assert attempt.partial
    assert [f["path"] for f in attempt.files] == ["partial.txt"]
    assert processes_of(attempt.card["uid"], public_id) == []
    assert job_status(public_id) == "failed"


# The API cancels while the worker writes the attempt's events.
@pytest.mark.database
def test_cancel_stops_a_running_job_and_keeps_partial_work(api, alice, repo, workers):
    client = api(alice)
    public_id = submit(client, "echo partial > partial.txt\necho started\nsleep 600")
    workers.start()
    wait_for(
        lambda: any(e["text"] == "started" for e in events_of(client, public_id)),
        what="the job to start",
    )
    running = Attempt.objects.get(job__public_id=public_id)
    # Positive control: the job's sleep is seen, by its uid and its job.
    wait_for(lambda: processes_of(running.card["uid"], public_id) != [], what="its sandbox")

    assert client.post(f"/api/v1/jobs/{public_id}/cancel").status_code == 202

    wait_for(lambda: job_status(public_id) == "cancelled", timeout=15, what="cancelled")
    attempt = Attempt.objects.get(job__public_id=public_id)
    assert attempt.status == "cancelled"
    assert attempt.partial and [f["path"] for f in attempt.files] == ["partial.txt"]
    assert processes_of(attempt.card["uid"], public_id) == []
    assert AuditEntry.objects.filter(action="job.cancel", actor=alice).count() == 1


# Another worker's reconciler takes over what the dead one held.
@pytest.mark.database
def test_a_killed_worker_loses_its_attempt_which_is_retried(api, alice, repo, workers):
    client = api(alice)
    script = (
        'if [ "$AGENTHUB_ATTEMPT" = 1 ]; then echo started; sleep 600; fi\n'
        "echo retried > retried.txt"
    )
    public_id = submit(client, script)
    doomed = workers.start()
    wait_for(
        lambda: any(e["text"] == "started" for e in events_of(client, public_id)),
        what="the job to start",
    )
    first = Attempt.objects.get(job__public_id=public_id, number=1)

    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    wait_for(
        lambda: processes_of(first.card["uid"], public_id) == [],
        timeout=10,
        what="the sandbox to die",
    )
    workers.start()

    wait_for(lambda: Attempt.objects.get(pk=first.pk).status == "lost", timeout=120, what="lost")
    wait_for(
        lambda: job_status(public_id) == "needs_review", timeout=60, what="the retry to finish"
    )
    retry = Attempt.objects.get(job__public_id=public_id, number=2)
    assert retry.retry_of_id == first.pk
    assert [f["path"] for f in retry.files] == ["retried.txt"]


def test_agent_without_retry_is_not_retried_after_a_lost_worker(api, alice, team, repo, workers):
    shell_agent(team, name="once", retry_allowed=False)
    client = api(alice)
    public_id = submit(client, "echo started\nsleep 600", agent="once")
    doomed = workers.start()
    wait_for(
        lambda: any(e["text"] == "started" for e in events_of(client, public_id)),
        what="the job to start",
    )
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    workers.start()
    wait_for(lambda: job_status(public_id) == "failed", timeout=120, what="failed")
    assert list(
        Attempt.objects.filter(job__public_id=public_id).values_list("status", flat=True)
    ) == ["lost"]


def test_report_only_agent_ends_no_changes_with_its_report(api, alice, repo, workers):
    commit_files(
        Path(repo.source),
        {
            "test_app.py": "from app import greet\n\n\n"
            "def test_greet():\n    assert greet() == 'hello'\n"
        },
    )
    remotes.sync_store(Path(repo.store_path), repo.source, timeout=60)
    client = api(alice)
    public_id = run_job(client, workers, "run the tests", agent="pytest")
    texts = "\n".join(e["text"] for e in events_of(client, public_id))
    assert job_status(public_id) == "no_changes", texts
    assert "1 passed" in texts
    assert not Attempt.objects.get(job__public_id=public_id).patch


def test_wait_returns_once_the_job_settles(api, alice, repo, workers):
    client = api(alice)
    public_id = submit(client, "true")
    assert client.get(f"/api/v1/jobs/{public_id}/wait", timeout=0).json()["timed_out"] is True
    workers.burst()
    body = client.get(f"/api/v1/jobs/{public_id}/wait", timeout=5).json()
    assert (body["timed_out"], body["status"]) == (False, "no_changes")


def test_local_backend_is_refused_unless_enabled(api, alice, team, repo, workers):
    shell_agent(team, name="unsafe", backend="local")
    public_id = run_job(api(alice), workers, "touch x", agent="unsafe")
    attempt = Attempt.objects.get(job__public_id=public_id)
    assert attempt.status == "failed"
    assert "AGENTHUB_ALLOW_LOCAL_SANDBOX" in attempt.reason


def test_local_backend_runs_when_enabled(api, alice, team, repo, workers):
    shell_agent(team, name="unsafe", backend="local")
    public_id = submit(api(alice), "touch x\necho $AGENTHUB_ATTEMPT", agent="unsafe")
    workers.burst(AGENTHUB_ALLOW_LOCAL_SANDBOX="1")
    attempt = Attempt.objects.get(job__public_id=public_id)
    assert (attempt.status, attempt.card["backend"]) == ("succeeded", "local")
    assert [f["path"] for f in attempt.files] == ["x"]


def read_sse(body: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, event, data) of each server-sent event."""
    found = []
    for block in body.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
        )
        found.append((fields.get("id", ""), fields["event"], json.loads(fields["data"])))
    return found


async def sse(client: Any, path: str, **headers: str) -> str:
    response = await client.get(path, headers={"Accept": "text/event-stream", **headers})
    assert response["Content-Type"] == "text/event-stream"
    return "".join([chunk.decode() async for chunk in response.streaming_content])


def test_events_stream_as_sse_resuming_after_last_event_id(api, alice, repo, workers):
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    client = api(alice)
    public_id = run_job(client, workers, "echo one\necho two\necho three")
    stored = events_of(client, public_id)
    path = f"/api/v1/jobs/{public_id}/events"
    auth = client.headers["HTTP_AUTHORIZATION"]

    body = async_to_sync(sse)(AsyncClient(), path, **{"Last-Event-ID": "2", "Authorization": auth})
    streamed = read_sse(body)

    assert [int(i) for i, _, _ in streamed[:-1]] == [e["seq"] for e in stored[2:]]
    assert [d for _, _, d in streamed[:-1]] == stored[2:]
    assert streamed[-1][1:] == ("end", {"status": "succeeded"})
    everything = read_sse(async_to_sync(sse)(AsyncClient(), path, Authorization=auth))
    assert [int(i) for i, _, _ in everything[:-1]] == [e["seq"] for e in stored]


def test_bad_paging_is_400_naming_the_field(api, alice, repo):
    client = api(alice)
    assert client.get("/api/v1/jobs", per_page=0).json()["field"] == "per_page"
    public_id = submit(client, "true")
    response = client.get(f"/api/v1/jobs/{public_id}/events", limit=-1)
    assert (response.status_code, response.json()["field"]) == (400, "limit")
