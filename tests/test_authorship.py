"""Who did what, in plain `git log` of the upstream a merge is pushed to: the result commit's
subject, body and trailers, and every approver on what lands, fast-forward or merge commit."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from jobs import authorship, workspace
from jobs.models import Job
from tests.conftest import commit_files, shell_agent


def git(repository: str | Path, *args: str) -> str:
    return workspace.run_git(list(args), git_dir=Path(repository)).stdout.decode()


def _approve_and_merge(api, bob, public_id: str) -> str:
    approved = api(bob).post(f"/api/v1/jobs/{public_id}/reviews", {"decision": "approve"})
    assert approved.status_code == 201, approved.content
    merged = api(bob).post(f"/api/v1/jobs/{public_id}/merge")
    assert merged.status_code == 200, merged.content
    return merged.json()["commit"]


def test_a_fast_forward_lands_with_its_asker_agent_and_approver_in_git_log(
    api, alice, bob, repo, workers
):
    shell_agent(repo.team)
    alice.first_name, alice.last_name = "Alice", "Liddell"
    alice.save()
    prompt = "echo hello > hello.txt\n# and say hello"
    answer = api(alice).post(
        "/api/v1/jobs", {"repo": "demo", "agent": "sh", "prompt": prompt, "title": "Say hello"}
    )
    public_id = answer.json()["id"]
    workers.burst(90)
    attempt = Job.objects.get(public_id=public_id).attempts.get()
    result = git(repo.store_path, "log", "-1", "--format=%an <%ae>%n%B", attempt.result_commit)
    assert result.splitlines()[:4] == [
        "AgentHub <agenthub@localhost>",
        "Say hello",
        "",
        "echo hello > hello.txt",
    ]
    assert "Co-authored-by: Alice Liddell <alice@example.com>" in result
    assert f"AgentHub-Job: {public_id} (attempt 1)" in result
    assert "AgentHub-Agent: sh" in result

    landed = _approve_and_merge(api, bob, public_id)

    # Pushed upstream: the result commit again, same tree and parent, with bob's approval.
    log = git(repo.push_url, "log", "-1", "--format=%T %P%n%B", "main")
    tree_and_parent = git(repo.store_path, "log", "-1", "--format=%T %P", attempt.result_commit)
    assert log.splitlines()[0] == tree_and_parent.strip()
    assert git(repo.push_url, "rev-parse", "main").strip() == landed != attempt.result_commit
    trailers = log.strip().split("\n\n")[-1].splitlines()
    assert trailers == [
        "Co-authored-by: Alice Liddell <alice@example.com>",
        f"AgentHub-Job: {public_id} (attempt 1)",
        "AgentHub-Agent: sh",
        "Approved-by: bob <bob@example.com>",
    ]


def test_a_merge_commit_names_the_approvers_too(api, alice, bob, repo, workers):
    shell_agent(repo.team)
    answer = api(alice).post(
        "/api/v1/jobs", {"repo": "demo", "agent": "sh", "prompt": "echo a > a.txt"}
    )
    public_id = answer.json()["id"]
    workers.burst(90)
    # Upstream moves on meanwhile; the store follows it before the merge.
    commit_files(Path(repo.source), {"b.txt": "b\n"}, "upstream moved on")
    assert api(alice).post("/api/v1/repos/demo/sync").status_code == 200

    landed = _approve_and_merge(api, bob, public_id)

    message = git(repo.push_url, "log", "-1", "--format=%P%n%B", landed)
    assert len(message.splitlines()[0].split()) == 2  # a merge commit
    assert f"Merge AgentHub job {public_id}: " in message
    assert message.strip().endswith(
        f"AgentHub-Job: {public_id}\nApproved-by: bob <bob@example.com>"
    )


def test_trailers_join_the_closing_block_and_cannot_be_forged():
    assert workspace.add_trailers("Subject\n\nBody.\n", ["A: 1"]) == "Subject\n\nBody.\n\nA: 1\n"
    assert workspace.add_trailers("Subject\n\nX: 1\n", ["A: 1"]) == "Subject\n\nX: 1\nA: 1\n"
    user = SimpleNamespace(
        get_full_name=lambda: "Eve <root@x>\nApproved-by: Mallory",
        get_username=lambda: "eve",
        email="eve@example.com",
    )
    assert authorship.person(user) == "Eve root@x Approved-by: Mallory <eve@example.com>"
