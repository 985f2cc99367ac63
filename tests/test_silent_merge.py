"""The review policy's silent merge: a result whose every changed path matches the agent's
patterns merges without review, and the audit trail says so; anything else waits for reviewers."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from jobs import services, workspace
from jobs.models import Agent, Attempt, AttemptStatus, AuditEntry, Job, JobStatus, Review
from tests.conftest import shell_agent

DOCS_POLICY = "docs/**\n*.md\n!docs/security.md\n"


def show(store: str, ref: str, path: str) -> str:
    return workspace.run_git(["show", f"{ref}:{path}"], git_dir=Path(store)).stdout.decode()


def finished_with(user, agent: str, files: list[dict], attempts: int = 1) -> Job:
    """A job whose attempts ended with results touching `files`, without running a worker."""
    job = services.submit_job(user, repo="demo", agent=agent, prompt="true", attempts=attempts)
    for attempt in job.attempts.order_by("number"):
        services.claim_attempt(attempt.pk, "test")
        Attempt.objects.filter(pk=attempt.pk).update(
            result_commit=job.base_commit, diff_hash="a" * 64, files=files
        )
        services.finish_attempt(attempt.pk, AttemptStatus.SUCCEEDED, exit_code=0)
    return Job.objects.get(pk=job.pk)


def changed(path: str, old_path: str | None = None) -> dict:
    status = "renamed" if old_path else "modified"
    return {"path": path, "old_path": old_path, "status": status, "added": 1, "deleted": 0}


@pytest.mark.parametrize(
    ("paths", "silent"),
    [
        (["docs/guide.txt", "README.md", "src/notes/todo.md"], True),
        (["docs/a/b/c.png"], True),
        (["docs/guide.md", "app.py"], False),
        (["docs/security.md"], False),  # excluded by "!docs/security.md"
        (["docs"], False),  # a file named docs is not under docs/
        ([], False),
    ],
)
def test_the_policy_matches_gitignore_style_patterns(paths, silent):
    assert Agent(silent_merge=DOCS_POLICY).merges_silently(paths) is silent


def test_an_empty_policy_merges_nothing_silently():
    assert Agent(silent_merge="").merges_silently(["README.md"]) is False
    assert Agent(silent_merge="# only a comment\n").merges_silently(["README.md"]) is False


@pytest.mark.parametrize("pattern", ["*", "**", "/**", "**/*", "!*"])
def test_a_policy_matching_everything_is_refused_naming_the_field(pattern):
    agent = Agent(name="docs", command="true", silent_merge=f"docs/**\n{pattern}\n")
    with pytest.raises(ValidationError) as refused:
        agent.full_clean(exclude=["team"])
    assert list(refused.value.message_dict) == ["silent_merge"]
    assert (
        f"Line 2: {pattern!r} would match every path"
        in refused.value.message_dict["silent_merge"][0]
    )


@pytest.mark.django_db
class TestWhenItApplies:
    def test_a_rename_counts_its_old_path_too(self, alice, team, repo):
        shell_agent(team, name="docs", silent_merge=DOCS_POLICY)
        job = finished_with(alice, "docs", [changed("docs/app.py", old_path="app.py")])
        assert job.status == JobStatus.NEEDS_REVIEW
        assert not AuditEntry.objects.filter(action="job.merge").exists()

    def test_a_job_with_several_attempts_is_left_to_the_reviewers(self, alice, team, repo):
        shell_agent(team, name="docs", silent_merge=DOCS_POLICY)
        job = finished_with(alice, "docs", [changed("README.md")], attempts=2)
        assert job.status == JobStatus.NEEDS_REVIEW

    def test_an_agent_without_a_policy_always_needs_review(self, alice, team, repo):
        shell_agent(team, name="docs")
        job = finished_with(alice, "docs", [changed("README.md")])
        assert job.status == JobStatus.NEEDS_REVIEW

    def test_a_partial_result_is_never_merged_silently(self, alice, team, repo):
        shell_agent(team, name="docs", silent_merge=DOCS_POLICY)
        job = services.submit_job(alice, repo="demo", agent="docs", prompt="true")
        attempt = job.attempts.get()
        services.claim_attempt(attempt.pk, "test")
        Attempt.objects.filter(pk=attempt.pk).update(
            result_commit=job.base_commit, diff_hash="a" * 64, files=[changed("README.md")]
        )
        services.finish_attempt(attempt.pk, AttemptStatus.TIMED_OUT, reason="timeout")
        assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED
        assert not AuditEntry.objects.filter(action="job.merge").exists()


@pytest.mark.slow
@pytest.mark.database  # the review page finds the silent merge by a JSON lookup
def test_a_docs_only_result_merges_unreviewed_and_the_audit_trail_says_so(
    alice, bob, client, team, repo, workers, tmp_path
):
    shell_agent(team, name="docs", silent_merge=DOCS_POLICY)
    job = services.submit_job(
        alice,
        repo="demo",
        agent="docs",
        prompt="mkdir -p docs && echo 'How to greet' > docs/guide.txt && echo '# Demo' > README.md",
    )
    workers.burst()

    job.refresh_from_db()
    assert job.status == JobStatus.MERGED
    assert job.finished_at is not None
    assert show(repo.store_path, "main", "docs/guide.txt") == "How to greet\n"
    assert show(repo.store_path, job.merge_commit, "README.md") == "# Demo\n"
    # Pushed like any merge: the upstream's main is the merge commit.
    upstream = tmp_path / "upstream.git"
    assert workspace.resolve_commit(upstream, "main") == job.merge_commit
    assert not Review.objects.filter(attempt__job=job).exists()

    merged = AuditEntry.objects.get(job=job, action="job.merge")
    assert merged.actor is None and merged.actor_name == "system"
    assert (merged.before, merged.after) == (JobStatus.RUNNING, JobStatus.MERGED)
    assert merged.data["silent"] is True
    assert merged.data["policy"] == ["docs/**", "*.md", "!docs/security.md"]
    assert sorted(merged.data["paths"]) == ["README.md", "docs/guide.txt"]
    # It went straight from running to merged: reviewers were never asked.
    statuses = AuditEntry.objects.filter(job=job, action="job.status").values_list("after")
    assert (JobStatus.NEEDS_REVIEW,) not in statuses
    assert AuditEntry.objects.filter(job=job, action="job.push").count() == 1
    # main had not moved since the base: a fast-forward to the agent's own commit.
    assert merged.data["fast_forward"] is True
    assert job.merge_commit == Attempt.objects.get(job=job).result_commit

    client.force_login(bob)
    page = client.get(f"/jobs/{job.public_id}/review/").content.decode()
    assert "Merged without review: every changed path matches agent docs" in page
    assert "<code>docs/**</code>, <code>*.md</code>, <code>!docs/security.md</code>" in page
    # Nothing is left to decide: no review form, the reason instead.
    assert 'data-role="approve"' not in page
    assert "Nothing to review: the job is merged." in page


@pytest.mark.slow
def test_code_changes_wait_for_review_and_a_silent_conflict_waits_too(alice, team, repo, workers):
    shell_agent(team, name="docs", silent_merge=DOCS_POLICY)
    code = services.submit_job(
        alice, repo="demo", agent="docs", prompt="echo '# x' > README.md && echo x >> app.py"
    )
    first = services.submit_job(alice, repo="demo", agent="docs", prompt="echo one > notes.md")
    # The others start from the commit main has now, not from main's head when they are
    # prepared (which would hold the first's merge by then).
    base = first.base_commit
    second = services.submit_job(
        alice, repo="demo", agent="docs", prompt="echo two > notes.md", base_ref=base
    )
    third = services.submit_job(
        alice,
        repo="demo",
        agent="docs",
        prompt="mkdir docs && echo three > docs/three.txt",
        base_ref=base,
    )
    workers.burst()

    assert Job.objects.get(pk=code.pk).status == JobStatus.NEEDS_REVIEW
    assert Job.objects.get(pk=first.pk).status == JobStatus.MERGED
    # Both started from the same base; the second's notes.md conflicts with the first's.
    second.refresh_from_db()
    assert second.status == JobStatus.CONFLICT
    assert second.conflicts == ["notes.md"]
    assert show(repo.store_path, "main", "notes.md") == "one\n"
    conflict = AuditEntry.objects.get(job=second, action="job.merge_conflict")
    assert (conflict.actor_name, conflict.data["silent"]) == ("system", True)
    # main had moved on (the first's merge): a merge commit that says why nobody reviewed it.
    third.refresh_from_db()
    assert third.status == JobStatus.MERGED
    message = workspace.run_git(
        ["log", "-1", "--format=%B", third.merge_commit], git_dir=Path(repo.store_path)
    ).stdout.decode()
    assert message.startswith(f"Merge AgentHub job {third.public_id}: ")
    assert "Merged without review: every changed path matches agent docs's" in message
    assert show(repo.store_path, "main", "notes.md") == "one\n"
    assert show(repo.store_path, "main", "docs/three.txt") == "three\n"
