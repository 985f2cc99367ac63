"""The review gate: nobody approves their own job, approvals bind to the diff they saw, the
agent's policy sets how many are needed, and "request changes" continues on a new attempt."""

from __future__ import annotations

import pytest

from jobs import services
from jobs.errors import Conflict, Forbidden, NotFound
from jobs.models import Attempt, AttemptStatus, AuditEntry, Job, JobStatus
from tests.conftest import _member, shell_agent


def finished_job(user, agent="shell", diff_hash="a" * 64) -> Job:
    """A job whose attempt ended with a result, without running a worker."""
    job = services.submit_job(user, repo="demo", agent=agent, prompt="true")
    attempt = job.attempts.get()
    services.claim_attempt(attempt.pk, "test")
    Attempt.objects.filter(pk=attempt.pk).update(result_commit=job.base_commit, diff_hash=diff_hash)
    services.finish_attempt(attempt.pk, AttemptStatus.SUCCEEDED, exit_code=0)
    job.refresh_from_db()
    return job


@pytest.mark.django_db
class TestGate:
    def test_a_finished_result_needs_review(self, alice, repo):
        assert finished_job(alice).status == JobStatus.NEEDS_REVIEW

    def test_submitter_cannot_approve_own_job_even_as_reviewer(self, bob, repo):
        job = finished_job(bob)
        with pytest.raises(Forbidden, match="You submitted this job"):
            services.review_job(bob, job, "approve")
        refused = AuditEntry.objects.get(action="review.refused")
        assert (refused.actor, refused.job) == (bob, job)

    def test_a_member_cannot_review(self, alice, team, repo):
        dave = _member("dave", team, "member")
        with pytest.raises(Forbidden, match="reviewer"):
            services.review_job(dave, finished_job(alice), "approve")

    def test_an_outsider_cannot_review(self, alice, carol, repo):
        with pytest.raises(NotFound):
            services.review_job(carol, finished_job(alice), "approve")

    def test_approval_binds_to_the_diff_hash(self, alice, bob, repo):
        job = finished_job(alice)
        review = services.review_job(bob, job, "approve")
        assert review.diff_hash == "a" * 64
        attempt = job.attempts.get()
        assert services.approvals(attempt) == 1
        Attempt.objects.filter(pk=attempt.pk).update(diff_hash="b" * 64)
        attempt.refresh_from_db()
        assert services.approvals(attempt) == 0

    def test_required_approvals_come_from_the_agents_policy(self, alice, bob, team, repo):
        shell_agent(team, name="careful", required_approvals=2)
        erin = _member("erin", team, "reviewer")
        job = finished_job(alice, agent="careful")
        services.review_job(bob, job, "approve")
        assert Job.objects.get(pk=job.pk).status == JobStatus.NEEDS_REVIEW
        with pytest.raises(Conflict, match="only an approved job"):
            services.merge_job(bob, job)
        services.review_job(erin, job, "approve")
        assert Job.objects.get(pk=job.pk).status == JobStatus.APPROVED

    def test_the_same_reviewer_approving_twice_counts_once(self, alice, bob, team, repo):
        shell_agent(team, name="careful", required_approvals=2)
        job = finished_job(alice, agent="careful")
        services.review_job(bob, job, "approve")
        services.review_job(bob, job, "approve")
        assert Job.objects.get(pk=job.pk).status == JobStatus.NEEDS_REVIEW

    def test_reject_ends_the_job(self, alice, bob, repo):
        job = finished_job(alice)
        services.review_job(bob, job, "reject", comment="not like this")
        assert Job.objects.get(pk=job.pk).status == JobStatus.REJECTED
        with pytest.raises(Conflict):
            services.review_job(bob, job, "approve")

    def test_unknown_decision_names_the_field(self, alice, bob, repo, api):
        job = finished_job(alice)
        response = api(bob).post(f"/api/v1/jobs/{job.public_id}/reviews", {"decision": "maybe"})
        assert (response.status_code, response.json()["field"]) == (400, "decision")

    def test_a_job_without_a_result_cannot_be_reviewed(self, alice, bob, repo):
        job = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
        with pytest.raises(Conflict, match="not waiting for review"):
            services.review_job(bob, job, "approve")


@pytest.mark.slow
def test_request_changes_continues_the_result_on_a_new_attempt(api, alice, bob, repo, workers):
    client = api(alice)
    public_id = client.post(
        "/api/v1/jobs", {"repo": "demo", "agent": "shell", "prompt": "echo hello > hello.txt"}
    ).json()["id"]
    workers.burst()
    first = Attempt.objects.get(job__public_id=public_id, number=1)

    response = api(bob).post(
        f"/api/v1/jobs/{public_id}/reviews",
        {"decision": "request_changes", "comment": "echo world > world.txt"},
    )
    assert response.status_code == 201
    assert Job.objects.get(public_id=public_id).status == JobStatus.QUEUED
    decided = AuditEntry.objects.get(action="review.request_changes", job__public_id=public_id)
    assert (decided.actor, decided.after) == (bob, JobStatus.CHANGES_REQUESTED)
    workers.burst()

    second = Attempt.objects.get(job__public_id=public_id, number=2)
    assert second.start_commit == first.result_commit
    assert sorted(f["path"] for f in second.files) == ["hello.txt", "world.txt"]
    assert second.diff_hash != first.diff_hash
    job = Job.objects.get(public_id=public_id)
    assert job.status == JobStatus.NEEDS_REVIEW
    assert "# Changes requested by bob on attempt 1:" in job.prompt
    approved = api(bob).post(f"/api/v1/jobs/{public_id}/reviews", {"decision": "approve"})
    assert (approved.status_code, approved.json()["attempt"]) == (201, 2)


@pytest.mark.django_db
def test_merge_refuses_a_result_with_paths_that_would_escape(alice, bob, repo):
    from pathlib import Path

    from jobs import workspace

    store = Path(repo.store_path)
    job = finished_job(alice)
    blob = workspace.run_git(["hash-object", "-w", "--stdin"], git_dir=store, input=b"x\n")
    inner = workspace.run_git(
        ["mktree"], git_dir=store, input=b"100644 blob " + blob.stdout.strip() + b"\thooks\n"
    )
    tree = workspace.run_git(
        ["mktree"], git_dir=store, input=b"040000 tree " + inner.stdout.strip() + b"\t.git\n"
    )
    evil = (
        workspace.run_git(
            ["commit-tree", "-p", job.base_commit, "-m", "evil", tree.stdout.decode().strip()],
            git_dir=store,
        )
        .stdout.decode()
        .strip()
    )
    Attempt.objects.filter(job=job).update(result_commit=evil)
    services.review_job(bob, job, "approve")
    before = workspace.resolve_commit(store, "main")

    with pytest.raises(Conflict, match="escape") as refused:
        services.merge_job(bob, job)

    assert refused.value.conflicts == [".git/hooks"]
    assert workspace.resolve_commit(store, "main") == before
    assert AuditEntry.objects.filter(action="job.merge_refused", actor=bob).count() == 1
