"""The review gate: nobody approves their own job, approvals bind to the diff they saw, the
agent's policy sets how many are needed, and "request changes" continues on a new attempt."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jobs import services, workspace
from jobs.errors import BadInput, Conflict, Forbidden, NotFound
from jobs.models import Attempt, AttemptStatus, AuditEntry, Job, JobStatus, LineComment, Review
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

    def test_the_same_reviewer_cannot_approve_twice(self, alice, bob, team, repo):
        shell_agent(team, name="careful", required_approvals=2)
        job = finished_job(alice, agent="careful")
        services.review_job(bob, job, "approve")
        with pytest.raises(Conflict, match="approved attempt 1 of job .* already"):
            services.review_job(bob, job, "approve")
        assert Job.objects.get(pk=job.pk).status == JobStatus.NEEDS_REVIEW
        assert job.audit.filter(action="review.approve").count() == 1

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
        "/api/v1/jobs", {"repo": "demo", "agent": "shell", "prompt": "echo hello >> hello.txt"}
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
    assert (second.status, second.reason) == (AttemptStatus.SUCCEEDED, "")
    # It ran the instruction again on the first result; the comment was a '#' line to it.
    assert [f["path"] for f in second.files] == ["hello.txt"]
    assert second.diff_hash != first.diff_hash
    job = Job.objects.get(public_id=public_id)
    assert job.status == JobStatus.NEEDS_REVIEW
    assert "# Changes requested by bob on attempt 1:\n# echo world" in second.instruction
    approved = api(bob).post(f"/api/v1/jobs/{public_id}/reviews", {"decision": "approve"})
    assert (approved.status_code, approved.json()["attempt"]) == (201, 2)
    assert approved.json()["follow_up"] is None


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


# --- comments on lines of the diff --------------------------------------------------------------


def result_touching(user, *files: dict) -> Job:
    """finished_job, whose result changes `files` (as jobs.services stores them)."""
    job = finished_job(user)
    Attempt.objects.filter(job=job).update(files=list(files))
    return job


def changed(path: str, old_path: str | None = None) -> dict:
    return {"path": path, "old_path": old_path, "status": "modified", "added": 1, "deleted": 1}


@pytest.mark.django_db
class TestLineComments:
    def test_they_are_kept_with_the_review_and_in_its_audit_entry(self, alice, bob, repo):
        job = result_touching(alice, changed("calc/ops.py"), changed("b.py", old_path="a.py"))
        comments = [
            {"path": "calc/ops.py", "line": 3, "body": "  use // here  "},
            {"path": "a.py", "line": 7, "side": "old", "body": "why remove this?"},
        ]
        review = services.review_job(bob, job, "approve", comment="fine", line_comments=comments)
        stored = [c.as_dict() for c in review.line_comments.all()]
        assert stored == [
            {"path": "a.py", "line": 7, "side": "old", "body": "why remove this?"},
            {"path": "calc/ops.py", "line": 3, "side": "new", "body": "use // here"},
        ]
        entry = AuditEntry.objects.get(action="review.approve", job=job)
        assert (entry.actor, entry.data["comment"]) == (bob, "fine")
        assert sorted(c["path"] for c in entry.data["line_comments"]) == ["a.py", "calc/ops.py"]

    @pytest.mark.parametrize(
        ("comment", "message"),
        [
            ({"path": "other.py", "line": 1, "body": "x"}, "comments[0].path: 'other.py' is not"),
            ({"path": "app.py", "line": 0, "body": "x"}, "comments[0].line: expected a line"),
            ({"path": "app.py", "line": True, "body": "x"}, "comments[0].line: expected a line"),
            ({"path": "app.py", "line": "2", "body": "x"}, "comments[0].line: expected a line"),
            ({"path": "app.py", "line": 2, "side": "left", "body": "x"}, "comments[0].side"),
            ({"path": "app.py", "line": 2, "body": "   "}, "comments[0].body: write 1-10000"),
            ({"path": "app.py", "line": 2, "body": "x" * 10_001}, "comments[0].body"),
        ],
    )
    def test_a_bad_one_is_refused_by_name_and_nothing_is_kept(
        self, alice, bob, repo, comment, message
    ):
        job = result_touching(alice, changed("app.py"))
        with pytest.raises(BadInput, match=re.escape(message)) as refused:
            services.review_job(bob, job, "request_changes", line_comments=[comment])
        assert refused.value.field == "comments"
        assert not Review.objects.exists() and not LineComment.objects.exists()
        assert Job.objects.get(pk=job.pk).status == JobStatus.NEEDS_REVIEW
        assert job.attempts.count() == 1

    def test_at_most_two_hundred(self, alice, bob, repo):
        job = result_touching(alice, changed("app.py"))
        many = [{"path": "app.py", "line": n, "body": "x"} for n in range(1, 202)]
        with pytest.raises(BadInput, match="At most 200 line comments"):
            services.review_job(bob, job, "approve", line_comments=many)

    def test_request_changes_puts_them_into_the_follow_up_as_comment_lines(self, alice, bob, repo):
        job = result_touching(alice, changed("app.py"))
        comments = [
            {"path": "app.py", "line": 2, "body": "return a greeting\nwith a name"},
            {"path": "app.py", "line": 1, "side": "old", "body": "keep the docstring"},
        ]
        review = services.review_job(
            bob, job, "request_changes", comment="Please write\nfewer lines", line_comments=comments
        )
        follow_up = job.attempts.get(number=2)
        assert follow_up.instruction == (
            "true\n\n"
            "# Changes requested by bob on attempt 1:\n"
            "# Please write\n"
            "# fewer lines\n"
            "# app.py:1 (removed): keep the docstring\n"
            "# app.py:2: return a greeting\n"
            "#   with a name\n"
        )
        assert follow_up.review == review
        job.refresh_from_db()
        assert job.prompt == "true"  # the instruction as submitted is kept

    def test_line_comments_alone_are_enough_for_a_follow_up(self, alice, bob, repo):
        job = result_touching(alice, changed("app.py"))
        services.review_job(
            bob, job, "request_changes", line_comments=[{"path": "app.py", "line": 1, "body": "x"}]
        )
        assert job.attempts.get(number=2).instruction.endswith(
            "# Changes requested by bob on attempt 1:\n# app.py:1: x\n"
        )

    def test_an_ai_agent_reads_the_review_as_text(self, alice, bob, team, repo):
        shell_agent(team, name="writer", prompt_format="text")
        job = services.submit_job(alice, repo="demo", agent="writer", prompt="Add a greeting.")
        attempt = job.attempts.get()
        services.claim_attempt(attempt.pk, "test")
        Attempt.objects.filter(pk=attempt.pk).update(
            result_commit=job.base_commit, diff_hash="a" * 64, files=[changed("app.py")]
        )
        services.finish_attempt(attempt.pk, AttemptStatus.SUCCEEDED, exit_code=0)
        remark = {"path": "app.py", "line": 2, "body": "say hello"}
        services.review_job(
            bob, job, "request_changes", comment="Shorter, please.", line_comments=[remark]
        )
        assert job.attempts.get(number=2).instruction == (
            "Add a greeting.\n\n"
            "Changes requested by bob on attempt 1:\n"
            "Shorter, please.\n"
            "app.py:2: say hello\n"
        )


@pytest.mark.django_db
class TestStatusFollowsTheLatestRound:
    def test_a_failed_follow_up_shows_as_failed(self, api, alice, bob, repo):
        job = result_touching(alice, changed("app.py"))
        services.review_job(bob, job, "request_changes", comment="more")
        follow_up = job.attempts.get(number=2)
        assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
        services.claim_attempt(follow_up.pk, "test")
        services.finish_attempt(follow_up.pk, AttemptStatus.FAILED, exit_code=127)
        job.refresh_from_db()
        assert job.status == JobStatus.FAILED
        # The earlier result stays reachable.
        diff = api(alice).get(f"/api/v1/jobs/{job.public_id}/diff", attempt=1)
        assert diff.status_code == 200
        shown = api(alice).get(f"/api/v1/jobs/{job.public_id}").json()
        assert [a["status"] for a in shown["attempts"]] == ["succeeded", "failed"]
        assert shown["attempts"][1]["instruction"].startswith("true\n\n# Changes requested")

    def test_a_rerun_that_changes_nothing_is_no_changes(self, alice, bob, repo):
        job = result_touching(alice, changed("app.py"))
        services.review_job(bob, job, "reject")
        rerun = services.rerun_job(alice, Job.objects.get(pk=job.pk))
        services.claim_attempt(rerun.pk, "test")
        services.finish_attempt(rerun.pk, AttemptStatus.SUCCEEDED, exit_code=0)
        assert Job.objects.get(pk=job.pk).status == JobStatus.NO_CHANGES

    def test_parallel_attempts_need_review_when_one_has_a_result(self, alice, repo):
        job = services.submit_job(alice, repo="demo", agent="shell", prompt="true", attempts=2)
        first, second = job.attempts.order_by("number")
        for attempt, commit in ((first, job.base_commit), (second, "")):
            services.claim_attempt(attempt.pk, "test")
            Attempt.objects.filter(pk=attempt.pk).update(result_commit=commit, diff_hash="a" * 64)
        services.finish_attempt(first.pk, AttemptStatus.SUCCEEDED, exit_code=0)
        services.finish_attempt(second.pk, AttemptStatus.FAILED, exit_code=1)
        assert Job.objects.get(pk=job.pk).status == JobStatus.NEEDS_REVIEW


@pytest.mark.django_db
def test_the_api_takes_line_comments_and_shows_them_with_the_review(api, alice, bob, repo):
    job = result_touching(alice, changed("app.py"))
    path = f"/api/v1/jobs/{job.public_id}/reviews"
    bad = api(bob).post(
        path, {"decision": "approve", "comments": [{"path": "app.py", "line": "3", "body": "x"}]}
    )
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid" and "line" in bad.json()["detail"]
    outside = api(bob).post(
        path, {"decision": "approve", "comments": [{"path": "etc/passwd", "line": 3, "body": "x"}]}
    )
    assert outside.status_code == 400
    assert outside.json()["field"] == "comments"
    assert "'etc/passwd' is not a file attempt 1 changes" in outside.json()["detail"]

    body = {
        "decision": "approve",
        "comments": [{"path": "app.py", "line": 3, "body": "<b>nice</b>"}],
    }
    assert api(bob).post(path, body).status_code == 201
    reviews = api(alice).get(f"/api/v1/jobs/{job.public_id}").json()["reviews"]
    assert reviews[0]["comments"] == [
        {"path": "app.py", "line": 3, "side": "new", "body": "<b>nice</b>"}
    ]


@pytest.mark.slow
def test_a_follow_up_never_runs_the_reviewers_words(api, alice, bob, repo, workers):
    # The script keeps what it was asked and the review file, so the test can read them.
    script = (
        'echo hello > hello.txt; cp "$AGENTHUB_PROMPT_FILE" asked.txt\n'
        '[ -z "${AGENTHUB_REVIEW_FILE:-}" ] || cp "$AGENTHUB_REVIEW_FILE" review.json\n'
    )
    public_id = (
        api(alice).post("/api/v1/jobs", {"repo": "demo", "agent": "shell", "prompt": script})
    ).json()["id"]
    workers.burst()
    remark = {"path": "hello.txt", "line": 1, "body": "$(touch pwned) `touch pwned2`\ntouch pwned3"}
    response = api(bob).post(
        f"/api/v1/jobs/{public_id}/reviews",
        {
            "decision": "request_changes",
            "comment": "Please write fewer lines\necho world > world.txt",
            "comments": [remark],
        },
    )
    assert (response.status_code, response.json()["follow_up"]) == (201, 2)
    workers.burst()

    second = Attempt.objects.get(job__public_id=public_id, number=2)
    assert (second.status, second.exit_code) == (AttemptStatus.SUCCEEDED, 0)
    assert Job.objects.get(public_id=public_id).status == JobStatus.NEEDS_REVIEW
    # Neither the overall comment nor the line comment ran: they were '#' lines to bash.
    assert sorted(f["path"] for f in second.files) == ["asked.txt", "hello.txt", "review.json"]
    store = Path(repo.store_path)
    asked = workspace.run_git(["show", f"{second.result_commit}:asked.txt"], git_dir=store)
    assert asked.stdout.decode() == second.instruction
    assert "# Please write fewer lines\n# echo world > world.txt\n" in second.instruction
    assert "# hello.txt:1: $(touch pwned) `touch pwned2`\n#   touch pwned3\n" in second.instruction
    review = workspace.run_git(["show", f"{second.result_commit}:review.json"], git_dir=store)
    assert json.loads(review.stdout) == {
        "attempt": 1,
        "reviewer": "bob",
        "decision": "request_changes",
        "comment": "Please write fewer lines\necho world > world.txt",
        "comments": [{"path": "hello.txt", "line": 1, "side": "new", "body": remark["body"]}],
    }
    assert Job.objects.get(public_id=public_id).prompt == script
