"""A repository's fetch and push credentials, against a real git server over HTTPS that wants a
token (tests/git_https.py): registered with one, the store clones, syncs and pushes; without,
it is refused by name; the token is never in the database in the clear, the API, the audit trail
or an error, and never on git's command line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connection

from jobs import remotes, services, workspace
from jobs.errors import BadInput
from jobs.models import AuditEntry, Membership, Repository, Role
from jobs.services.repositories import auth_of
from tests.conftest import commit_files
from tests.git_https import TOKEN, USER, serve


@pytest.fixture
def forge(tmp_path, make_source, settings):
    source = make_source("upstream")
    bare = tmp_path / "forge" / "project.git"
    bare.parent.mkdir()
    workspace.run_git(["clone", "-q", "--bare", str(source), str(bare)])
    found, server = serve(tmp_path, bare)
    settings.AGENTHUB_CA_BUNDLE = str(found.ca_file)  # the certificates AgentHub trusts
    yield found
    server.shutdown()


def everything_about(repo: Repository) -> str:
    """What the database holds for the repository and the audit trail, as stored."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM jobs_repository WHERE id = %s", [repo.pk])
        stored = cursor.fetchone()[0]
    return stored + str(list(AuditEntry.objects.values_list("data", flat=True)))


def test_a_token_fetches_and_pushes_and_is_never_shown(api, alice, team, forge, tmp_path):
    credentials = {"token": TOKEN, "username": USER}
    with pytest.raises(BadInput, match="Authentication failed|401|could not read Username"):
        services.register_repository("t", team, "forge", forge.url)
    repo = services.register_repository("t", team, "forge", forge.url, credentials=credentials)
    assert forge.seen[-1].startswith("Basic ")  # sent at once, not after a 401
    store = Path(repo.store_path)
    assert workspace.resolve_commit(store, "main")

    # Upstream moves on; the sync fetches it with the token.
    clone = tmp_path / "clone"
    workspace.run_git(["clone", "-q", str(forge.bare), str(clone)])
    head = commit_files(clone, {"NEWS": "news\n"})
    workspace.run_git(["push", "-q", "origin", "HEAD:main"], git_dir=clone / ".git")
    assert services.sync_repository(repo).moved == {"main": head}

    # A merge's push goes out with it too (the function merges push through).
    made = commit_files_in_store(store, head)
    remotes.push(store, forge.url, "main", auth_of(repo.credentials))
    assert workspace.resolve_commit(forge.bare, "main") == made

    assert TOKEN not in everything_about(repo)
    Membership.objects.filter(user=alice).update(role=Role.ADMIN)
    shown = api(alice).get("/api/v1/repos/forge").json()
    assert shown["credentials"] == "token" and TOKEN not in str(shown)
    refused = api(alice).patch_json("/api/v1/repos/forge", {"credentials": {"password": "x"}})
    assert (
        refused.status_code == 400
        and "credentials: Unknown field(s) password" in (refused.json()["detail"])
    )
    removed = api(alice).patch_json("/api/v1/repos/forge", {"credentials": {}})
    assert removed.json()["credentials"] is None
    with pytest.raises(services.SyncFailed) as failed:
        services.sync_repository(Repository.objects.get(pk=repo.pk))
    assert TOKEN not in str(failed.value)


def commit_files_in_store(store: Path, parent: str) -> str:
    """A commit on the store's main, as a merge would make, to push."""
    tree = workspace.run_git(["rev-parse", f"{parent}^{{tree}}"], git_dir=store).stdout
    made = (
        workspace.run_git(
            ["commit-tree", tree.decode().strip(), "-p", parent, "-m", "merged in AgentHub"],
            git_dir=store,
        )
        .stdout.decode()
        .strip()
    )
    workspace.run_git(["update-ref", "refs/heads/main", made], git_dir=store)
    return made


def test_the_token_is_never_on_gits_command_line(tmp_path, monkeypatch):
    auth = auth_of({"token": TOKEN})
    seen = tmp_path / "argv"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text(f'#!/bin/sh\necho "$@" > {seen}\nenv > {seen}.env\n')
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    workspace.run_git(["ls-remote", "https://example.invalid/x.git"], auth=auth)
    assert TOKEN not in seen.read_text()
    # In its environment instead, which only its own user can read.
    assert "=http.extraHeader\n" in Path(f"{seen}.env").read_text()


def test_an_ssh_key_reaches_ssh_as_a_private_file_only_while_git_runs(tmp_path, monkeypatch):
    key = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
        "-----END OPENSSH PRIVATE KEY-----"
    )
    seen = tmp_path / "ssh-saw"
    fake = tmp_path / "bin"
    fake.mkdir()
    # A stand-in ssh: records how it was called and the key file it was given, then refuses.
    (fake / "ssh").write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {seen}\n'
        'while [ $# -gt 0 ]; do [ "$1" = -i ] && { stat -c %a "$2"; cat "$2"; echo "$2"; }; '
        f"shift; done >> {seen}\n"
        "exit 255\n"
    )
    (fake / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    auth = auth_of({"ssh_key": key})
    with pytest.raises(workspace.GitError):
        workspace.run_git(["ls-remote", "ssh://git@forge.invalid/x.git"], auth=auth)
    said = seen.read_text().splitlines()
    assert "BatchMode=yes" in said[0] and "IdentitiesOnly=yes" in said[0]
    assert "UserKnownHostsFile=" in said[0]
    assert said[1] == "600" and "\n".join(said[2:5]) == key
    assert not Path(said[5]).exists()  # gone once git is done
