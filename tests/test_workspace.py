"""The git core against real git.

Security tests plant a payload that leaves a marker file when run, prove with plain git (the
repository's own config, as a person would run it) that the payload fires, then prove the core
never fires it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from jobs import remotes, workspace
from jobs.remotes import create_store, push, sync_store
from jobs.workspace import (
    AGENT_IDENTITY,
    GitError,
    InvalidRef,
    RefNotFound,
    default_branch,
    diff,
    is_ancestor,
    merge,
    prepare_workspace,
    resolve_commit,
    run_git,
    snapshot,
    validate_ref_name,
)

BRANCH = "agenthub/ab12cd/1"
HOOKS = (
    "pre-commit",
    "post-commit",
    "reference-transaction",
    "post-checkout",
    "post-merge",
    "pre-push",
    "pre-receive",
    "update",
    "post-receive",
    "post-update",
    "pre-auto-gc",
)
PLAIN_GIT_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Tester",
    "GIT_AUTHOR_EMAIL": "tester@example.com",
    "GIT_COMMITTER_NAME": "Tester",
    "GIT_COMMITTER_EMAIL": "tester@example.com",
}


def plain_git(cwd: Path, *args: str, check: bool = True) -> str:
    """Git as a person runs it inside a repository: its own config and hooks apply."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=PLAIN_GIT_ENV,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {args} failed: {result.stderr.decode()}")
    return result.stdout.decode().strip()


def commit_all(repo: Path, message: str) -> str:
    plain_git(repo, "add", "-A")
    plain_git(repo, "commit", "-q", "-m", message)
    return plain_git(repo, "rev-parse", "HEAD")


def payload(directory: Path, name: str, body: str = "cat >/dev/null") -> tuple[Path, Path]:
    """An executable that leaves `<name>.fired` in `directory` whenever anything runs it."""
    directory.mkdir(exist_ok=True)
    marker = directory / f"{name}.fired"
    script = directory / f"{name}.sh"
    script.write_text(f'#!/bin/sh\ntouch "{marker}"\n{body}\nexit 0\n')
    script.chmod(0o755)
    return script, marker


def plant_hooks(hooks: Path, marker: Path) -> None:
    hooks.mkdir(parents=True, exist_ok=True)
    for name in HOOKS:
        hook = hooks / name
        hook.write_text(f'#!/bin/sh\ntouch "{marker}"\ncat >/dev/null\nexit 0\n')
        hook.chmod(0o755)


def store_git(store: Path, *args: str) -> str:
    return run_git(list(args), git_dir=store).stdout.decode().strip()


def tree_entries(store: Path, commit: str) -> dict[str, str]:
    """Path -> mode of every entry in `commit`."""
    listing = run_git(["ls-tree", "-r", "-z", commit], git_dir=store).stdout.decode()
    entries = {}
    for line in filter(None, listing.split("\0")):
        info, path = line.split("\t", 1)
        entries[path] = info.split()[0]
    return entries


@pytest.fixture
def source(tmp_path: Path) -> Path:
    repo = tmp_path / "source"
    plain_git(tmp_path, "init", "-q", "-b", "main", str(repo))
    (repo / "README.md").write_text("hello\n")
    (repo / "app.py").write_text("print('one')\nprint('two')\n")
    commit_all(repo, "initial")
    plain_git(repo, "tag", "-a", "v1.0", "-m", "release 1.0")
    plain_git(repo, "switch", "-q", "-c", "feature")
    (repo / "feature.txt").write_text("feature\n")
    commit_all(repo, "feature work")
    plain_git(repo, "switch", "-q", "main")
    return repo


@pytest.fixture
def store(tmp_path: Path, source: Path) -> Path:
    path = tmp_path / "store.git"
    create_store(str(source), path)
    return path


@pytest.fixture
def base(store: Path) -> str:
    return resolve_commit(store, "main")


@pytest.fixture
def agent_workspace(tmp_path: Path, store: Path, base: str) -> Path:
    path = tmp_path / "workspace"
    prepare_workspace(store, base, BRANCH, path)
    return path


def take_snapshot(store: Path, agent_workspace: Path, base: str) -> str | None:
    index = agent_workspace.parent / "snapshot.index"
    return snapshot(store, agent_workspace, base, BRANCH, "agent run", index_file=index)


def files_by_path(store: Path, base: str, commit: str) -> dict[str, workspace.FileStat]:
    return {stat.path: stat for stat in diff(store, base, commit).files}


# validate_ref_name


@pytest.mark.parametrize("ref", ["main", "feature/x-1", "v1.2", BRANCH, "a" * 40, "ünïcode"])
def test_validate_ref_name_accepts_branch_tag_and_sha_names(ref: str) -> None:
    validate_ref_name(ref)


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "--upload-pack=x",
        "-x",
        "../../etc",
        "a..b",
        "x y",
        "ref^",
        "ref~1",
        "a:b",
        "a?",
        "a*",
        "a[",
        "a\\b",
        "tab\tname",
        "new\nline",
        "@{u}",
        "main@{1}",
        "@",
        "HEAD",
        "trailing/",
        "/leading",
        "double//slash",
        "dot.",
        "branch.lock",
        "a/.hidden",
        "a" * 201,
    ],
)
def test_validate_ref_name_rejects_dangerous_or_malformed_names(ref: str) -> None:
    with pytest.raises(InvalidRef, match="Use a branch or tag name"):
        validate_ref_name(ref)


@pytest.mark.parametrize(
    "ref",
    ["main", "feature/x-1", "v1.2", "a..b", "x y", "ref^", "-x", "a/.b", "a.lock", "a//b", "a/"],
)
def test_validate_ref_name_agrees_with_git_check_ref_format(ref: str) -> None:
    git_accepts = run_git(["check-ref-format", "--branch", ref], check=False).returncode == 0
    try:
        validate_ref_name(ref)
    except InvalidRef:
        we_accept = False
    else:
        we_accept = True
    assert we_accept == git_accepts


# run_git


def test_run_git_ignores_inherited_git_variables_and_global_config(
    tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[core]\n\tpager = from-global-config\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'core.editor'='from-environment'")

    config = store_git(store, "config", "--list")

    assert "core.hookspath=/dev/null" in config
    assert "from-global-config" not in config
    assert "from-environment" not in config
    assert "AgentHub <agenthub@localhost>" in store_git(store, "var", "GIT_COMMITTER_IDENT")


def test_git_error_names_the_command_and_stderr(store: Path) -> None:
    with pytest.raises(GitError, match=r"git rev-parse --verify no-such-ref.*exit code 128.*fatal"):
        store_git(store, "rev-parse", "--verify", "no-such-ref")


def test_git_error_hides_credentials_in_urls() -> None:
    error = GitError(["clone", "https://user:s3cret@example.com/repo.git"], 128, "fatal: no")

    assert "s3cret" not in str(error)
    assert "https://***@example.com/repo.git" in str(error)


# create_store, sync_store


def refs_of(store: Path) -> set[str]:
    return set(store_git(store, "for-each-ref", "--format=%(refname)").splitlines())


def test_create_store_from_a_local_path_copies_branches_and_tags(store: Path) -> None:
    assert {"refs/heads/main", "refs/heads/feature", "refs/tags/v1.0"} <= refs_of(store)
    assert store_git(store, "rev-parse", "--is-bare-repository") == "true"


def test_create_store_from_a_file_url_copies_branches_and_tags(
    tmp_path: Path, source: Path
) -> None:
    store = tmp_path / "from-url.git"

    create_store(f"file://{source}", store)

    assert {"refs/heads/main", "refs/heads/feature", "refs/tags/v1.0"} <= refs_of(store)


def test_create_store_does_not_keep_the_source_url(store: Path) -> None:
    assert (
        run_git(["config", "--get-regexp", "^remote\\."], git_dir=store, check=False).stdout == b""
    )


def test_create_store_refuses_a_source_that_looks_like_an_option(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not start with '-'"):
        create_store("-x", tmp_path / "store.git")
    with pytest.raises(ValueError):
        create_store("--upload-pack=touch /tmp/x", tmp_path / "store.git")
    assert not (tmp_path / "store.git").exists()


def test_create_store_refuses_an_existing_store(store: Path, source: Path) -> None:
    with pytest.raises(FileExistsError, match="sync_store"):
        create_store(str(source), store)


def test_create_store_refuses_command_running_transports(tmp_path: Path) -> None:
    script, marker = payload(tmp_path / "payloads", "ext")

    with pytest.raises(GitError, match="not allowed"):
        create_store(f"ext::{script}", tmp_path / "store.git")

    assert not marker.exists()


def test_sync_store_brings_new_branches_commits_and_tags(store: Path, source: Path) -> None:
    (source / "README.md").write_text("newer\n")
    newer = commit_all(source, "newer")
    plain_git(source, "branch", "hotfix")
    plain_git(source, "tag", "v2.0")

    sync_store(store, str(source), timeout=60)

    assert resolve_commit(store, "main") == newer
    assert resolve_commit(store, "hotfix") == newer
    assert resolve_commit(store, "v2.0") == newer


def test_sync_store_keeps_agenthub_branches(
    store: Path, source: Path, agent_workspace: Path, base: str
) -> None:
    (agent_workspace / "README.md").write_text("agent\n")
    commit = take_snapshot(store, agent_workspace, base)

    synced = sync_store(store, str(source), timeout=60)

    assert resolve_commit(store, BRANCH) == commit
    assert synced.moved == {} and synced.kept == []


def test_sync_store_never_moves_a_branch_holding_merges_not_yet_upstream(
    store: Path, source: Path
) -> None:
    """Upstream moves on while the store's main holds a merge nobody pushed: the merge stays,
    upstream's head is kept apart under refs/upstream/, and other branches still follow."""
    plain_git(source, "branch", "dev")
    sync_store(store, str(source), timeout=60)
    merged = plain_git(store, "commit-tree", "-p", "main", "-m", "merge", "main^{tree}")
    plain_git(store, "update-ref", "refs/heads/main", merged)
    (source / "README.md").write_text("upstream moved\n")
    upstream = commit_all(source, "upstream moved")
    plain_git(source, "branch", "-f", "dev", upstream)

    synced = sync_store(store, str(source), timeout=60)

    assert synced.moved == {"dev": upstream} and synced.kept == ["main"]
    assert resolve_commit(store, "main") == merged
    assert resolve_commit(store, "refs/upstream/main") == upstream
    assert resolve_commit(store, "dev") == upstream


# resolve_commit, default_branch, is_ancestor


def test_resolve_commit_resolves_branches_tags_and_shas(store: Path, source: Path) -> None:
    main = plain_git(source, "rev-parse", "main")
    feature = plain_git(source, "rev-parse", "feature")

    assert resolve_commit(store, "main") == main
    assert resolve_commit(store, "feature") == feature
    assert resolve_commit(store, "v1.0") == main  # annotated tag, peeled to its commit
    assert resolve_commit(store, main) == main
    assert resolve_commit(store, main[:10]) == main


def test_resolve_commit_raises_ref_not_found_naming_the_ref(store: Path) -> None:
    with pytest.raises(RefNotFound, match="'no-such-branch'"):
        resolve_commit(store, "no-such-branch")


def test_resolve_commit_rejects_option_like_refs(store: Path) -> None:
    with pytest.raises(InvalidRef):
        resolve_commit(store, "--upload-pack=x")


def test_default_branch_is_the_sources_head_branch(store: Path) -> None:
    assert default_branch(store) == "main"


def test_is_ancestor_follows_history(store: Path) -> None:
    assert is_ancestor(store, "main", "feature")
    assert not is_ancestor(store, "feature", "main")


# prepare_workspace


def test_prepare_workspace_checks_out_the_base_on_a_new_branch(
    agent_workspace: Path, base: str
) -> None:
    assert plain_git(agent_workspace, "symbolic-ref", "HEAD") == f"refs/heads/{BRANCH}"
    assert plain_git(agent_workspace, "rev-parse", "HEAD") == base
    assert plain_git(agent_workspace, "status", "--porcelain") == ""
    assert (agent_workspace / "README.md").read_text() == "hello\n"


def test_prepare_workspace_can_start_from_any_commit(tmp_path: Path, store: Path) -> None:
    feature = resolve_commit(store, "feature")

    prepare_workspace(store, feature, BRANCH, tmp_path / "ws")

    assert (tmp_path / "ws" / "feature.txt").read_text() == "feature\n"


def test_prepare_workspace_removes_the_origin_remote(agent_workspace: Path) -> None:
    assert plain_git(agent_workspace, "remote") == ""


def test_prepare_workspace_sets_the_agent_identity(agent_workspace: Path) -> None:
    assert plain_git(agent_workspace, "config", "user.name") == AGENT_IDENTITY[0]
    assert plain_git(agent_workspace, "config", "user.email") == AGENT_IDENTITY[1]


def test_prepare_workspace_copies_objects_without_hardlinks_or_alternates(
    agent_workspace: Path, store: Path
) -> None:
    store_inodes = {(p.stat().st_dev, p.stat().st_ino) for p in store.rglob("*") if p.is_file()}
    objects = [p for p in (agent_workspace / ".git" / "objects").rglob("*") if p.is_file()]

    assert objects
    for path in objects:
        assert path.stat().st_nlink == 1, path
        assert (path.stat().st_dev, path.stat().st_ino) not in store_inodes, path
    assert not (agent_workspace / ".git" / "objects" / "info" / "alternates").exists()


# snapshot


def test_snapshot_returns_none_without_changes(
    store: Path, agent_workspace: Path, base: str
) -> None:
    assert take_snapshot(store, agent_workspace, base) is None
    assert run_git(["rev-parse", "--verify", BRANCH], git_dir=store, check=False).returncode != 0


def test_snapshot_commits_modified_staged_deleted_and_untracked_files(
    store: Path, agent_workspace: Path, base: str
) -> None:
    (agent_workspace / "app.py").write_text("print('changed')\n")
    (agent_workspace / "README.md").unlink()
    (agent_workspace / "staged.txt").write_text("staged\n")
    plain_git(agent_workspace, "add", "staged.txt")
    (agent_workspace / "untracked.txt").write_text("untracked\n")

    commit = take_snapshot(store, agent_workspace, base)

    assert commit is not None
    assert resolve_commit(store, BRANCH) == commit
    assert store_git(store, "rev-parse", f"{commit}^") == base
    statuses = {path: stat.status for path, stat in files_by_path(store, base, commit).items()}
    assert statuses == {
        "app.py": "modified",
        "README.md": "deleted",
        "staged.txt": "added",
        "untracked.txt": "added",
    }


def test_snapshot_captures_commits_the_agent_made(
    store: Path, agent_workspace: Path, base: str
) -> None:
    (agent_workspace / "committed.txt").write_text("by the agent\n")
    commit_all(agent_workspace, "agent commit")

    commit = take_snapshot(store, agent_workspace, base)

    assert commit is not None
    assert store_git(store, "show", f"{commit}:committed.txt") == "by the agent"
    assert store_git(store, "rev-parse", f"{commit}^") == base


def test_snapshot_never_stores_the_workspace_git_directory(
    store: Path, agent_workspace: Path, base: str
) -> None:
    (agent_workspace / "new.txt").write_text("new\n")

    commit = take_snapshot(store, agent_workspace, base)

    assert commit is not None
    assert not [path for path in tree_entries(store, commit) if ".git/" in f"/{path}"]


def test_snapshot_stores_symlinks_as_symlinks(
    store: Path, agent_workspace: Path, base: str
) -> None:
    (agent_workspace / "passwd").symlink_to("/etc/passwd")

    commit = take_snapshot(store, agent_workspace, base)

    assert commit is not None
    assert tree_entries(store, commit)["passwd"] == "120000"
    assert store_git(store, "cat-file", "blob", f"{commit}:passwd") == "/etc/passwd"
    result = diff(store, base, commit)
    assert "new file mode 120000" in result.patch
    assert "+/etc/passwd" in result.patch
    assert "root:" not in result.patch


def test_snapshot_keeps_odd_file_names_faithful(
    store: Path, agent_workspace: Path, base: str
) -> None:
    name = 'odd\nname\twith "quotes" and ünïcode.txt'
    (agent_workspace / name).write_text("odd\n")

    commit = take_snapshot(store, agent_workspace, base)

    assert commit is not None
    assert files_by_path(store, base, commit)[name].status == "added"


def test_snapshot_leaves_out_repositories_nested_in_the_workspace(
    tmp_path: Path, store: Path, agent_workspace: Path, base: str
) -> None:
    script, marker = payload(tmp_path / "payloads", "nested-fsmonitor")
    nested = agent_workspace / "vendor" / "lib"
    plain_git(tmp_path, "init", "-q", str(nested))
    (nested / "lib.py").write_text("lib\n")
    commit_all(nested, "nested")
    plain_git(nested, "config", "core.fsmonitor", str(script))
    pointer = agent_workspace / "pointer"
    pointer.mkdir()
    (pointer / ".git").write_text(f"gitdir: {store}\n")
    (pointer / "file.txt").write_text("x\n")
    (agent_workspace / "kept.txt").write_text("kept\n")

    commit = take_snapshot(store, agent_workspace, base)

    assert commit is not None
    entries = tree_entries(store, commit)
    assert "kept.txt" in entries
    assert not [path for path in entries if path.startswith(("vendor", "pointer"))]
    assert "160000" not in entries.values()
    assert not marker.exists()


# diff


def test_diff_counts_added_and_deleted_lines(store: Path, agent_workspace: Path, base: str) -> None:
    (agent_workspace / "app.py").write_text("print('one')\nprint('2')\nprint('3')\n")

    commit = take_snapshot(store, agent_workspace, base)

    assert commit is not None
    stat = files_by_path(store, base, commit)["app.py"]
    assert (stat.added, stat.deleted, stat.binary, stat.old_path) == (2, 1, False, None)


def test_diff_flags_binary_files(store: Path, agent_workspace: Path, base: str) -> None:
    (agent_workspace / "image.bin").write_bytes(b"\x00\x01\x02\xff" * 10)

    commit = take_snapshot(store, agent_workspace, base)

    assert commit is not None
    result = diff(store, base, commit)
    assert result.files[0].binary
    assert "Binary files /dev/null and b/image.bin differ" in result.patch


def test_diff_detects_renames(store: Path, agent_workspace: Path, base: str) -> None:
    (agent_workspace / "app.py").rename(agent_workspace / "main.py")

    commit = take_snapshot(store, agent_workspace, base)

    assert commit is not None
    stat = files_by_path(store, base, commit)["main.py"]
    assert (stat.status, stat.old_path) == ("renamed", "app.py")


def test_diff_reports_type_changes(store: Path, agent_workspace: Path, base: str) -> None:
    (agent_workspace / "README.md").unlink()
    (agent_workspace / "README.md").symlink_to("app.py")

    commit = take_snapshot(store, agent_workspace, base)

    assert commit is not None
    assert files_by_path(store, base, commit)["README.md"].status == "type-changed"


def test_diff_hash_is_stable_and_follows_the_patch(
    store: Path, agent_workspace: Path, base: str
) -> None:
    (agent_workspace / "README.md").write_text("first\n")
    first = take_snapshot(store, agent_workspace, base)
    (agent_workspace / "README.md").write_text("second\n")
    second = take_snapshot(store, agent_workspace, base)
    assert first is not None and second is not None

    result = diff(store, base, first)

    assert result.hash == diff(store, base, first).hash
    assert result.hash == hashlib.sha256(result.patch.encode()).hexdigest()
    assert result.hash != diff(store, base, second).hash


# merge, push


def advance_upstream(store: Path, source: Path, name: str, text: str) -> str:
    (source / name).write_text(text)
    commit = commit_all(source, f"upstream changes {name}")
    sync_store(store, str(source), timeout=60)
    return commit


def parents_of(store: Path, commit: str) -> list[str]:
    return store_git(store, "rev-list", "--parents", "-n", "1", commit).split()[1:]


def test_merge_fast_forwards_when_the_target_has_not_moved(
    store: Path, agent_workspace: Path, base: str
) -> None:
    (agent_workspace / "README.md").write_text("agent\n")
    commit = take_snapshot(store, agent_workspace, base)
    assert commit is not None

    result = merge(store, "main", commit, "Merge attempt 1")

    assert result == workspace.MergeResult(commit=commit, conflicts=[], fast_forward=True)
    assert resolve_commit(store, "main") == commit


def test_merge_of_an_already_merged_commit_returns_the_tip(store: Path, base: str) -> None:
    feature = resolve_commit(store, "feature")

    result = merge(store, "feature", base, "Merge")

    assert result == workspace.MergeResult(commit=feature, conflicts=[], fast_forward=True)
    assert resolve_commit(store, "feature") == feature


def test_merge_joins_diverged_histories_with_a_two_parent_commit(
    store: Path, source: Path, agent_workspace: Path, base: str
) -> None:
    (agent_workspace / "app.py").write_text("print('agent')\n")
    commit = take_snapshot(store, agent_workspace, base)
    upstream = advance_upstream(store, source, "README.md", "upstream\n")
    assert commit is not None

    result = merge(store, "main", commit, "Merge attempt 1")

    assert result.commit is not None and not result.fast_forward and result.conflicts == []
    assert parents_of(store, result.commit) == [upstream, commit]
    assert resolve_commit(store, "main") == result.commit
    assert store_git(store, "show", f"{result.commit}:README.md") == "upstream"
    assert store_git(store, "show", f"{result.commit}:app.py") == "print('agent')"
    assert store_git(store, "log", "-1", "--format=%s", result.commit) == "Merge attempt 1"


def test_merge_conflict_reports_the_file_and_moves_nothing(
    store: Path, source: Path, agent_workspace: Path, base: str
) -> None:
    (agent_workspace / "README.md").write_text("agent\n")
    commit = take_snapshot(store, agent_workspace, base)
    upstream = advance_upstream(store, source, "README.md", "upstream\n")
    assert commit is not None

    result = merge(store, "main", commit, "Merge attempt 1")

    assert result == workspace.MergeResult(commit=None, conflicts=["README.md"], fast_forward=False)
    assert resolve_commit(store, "main") == upstream


def test_merge_refuses_to_overwrite_a_target_that_moved_meanwhile(
    store: Path,
    source: Path,
    agent_workspace: Path,
    base: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (agent_workspace / "app.py").write_text("print('agent')\n")
    commit = take_snapshot(store, agent_workspace, base)
    advance_upstream(store, source, "README.md", "upstream\n")
    concurrent = resolve_commit(store, "feature")

    def racing_run_git(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        if args[0] == "commit-tree":  # another merge lands while this one is writing
            run_git(["update-ref", "refs/heads/main", concurrent], git_dir=store)
        return run_git(args, **kwargs)

    monkeypatch.setattr(workspace, "run_git", racing_run_git)
    assert commit is not None

    with pytest.raises(GitError, match="update-ref"):
        merge(store, "main", commit, "Merge attempt 1")
    assert resolve_commit(store, "main") == concurrent


def test_merge_rejects_a_missing_target_branch(store: Path, base: str) -> None:
    with pytest.raises(RefNotFound, match="no-such-branch"):
        merge(store, "no-such-branch", base, "Merge")


@pytest.fixture
def upstream(tmp_path: Path, source: Path) -> Path:
    path = tmp_path / "upstream.git"
    plain_git(tmp_path, "clone", "-q", "--bare", str(source), str(path))
    return path


def test_push_to_a_local_bare_upstream_lands_the_commit(
    store: Path, upstream: Path, agent_workspace: Path, base: str
) -> None:
    (agent_workspace / "README.md").write_text("agent\n")
    commit = take_snapshot(store, agent_workspace, base)
    assert commit is not None
    merge(store, "main", commit, "Merge attempt 1")

    push(store, str(upstream), "main")

    assert plain_git(upstream, "rev-parse", "main") == commit


def test_push_to_a_file_url_lands_a_new_branch(
    store: Path, upstream: Path, agent_workspace: Path, base: str
) -> None:
    (agent_workspace / "README.md").write_text("agent\n")
    commit = take_snapshot(store, agent_workspace, base)

    push(store, f"file://{upstream}", BRANCH)

    assert plain_git(upstream, "rev-parse", BRANCH) == commit


def test_push_refuses_to_rewrite_upstream_history(
    store: Path, source: Path, upstream: Path
) -> None:
    (source / "README.md").write_text("upstream only\n")
    commit_all(source, "upstream only")
    plain_git(source, "push", "-q", str(upstream), "main")

    with pytest.raises(GitError, match="rejected"):
        push(store, str(upstream), "main")


# Security: repository-controlled config never runs on the host.


def poison_fsmonitor(repo: Path, payloads: Path) -> Path:
    script, marker = payload(payloads, "fsmonitor")
    plain_git(repo, "config", "core.fsmonitor", str(script))
    return marker


def poison_hooks_path(repo: Path, payloads: Path) -> Path:
    marker = payloads / "hooks-path.fired"
    plant_hooks(payloads / "hooks", marker)
    plain_git(repo, "config", "core.hooksPath", str(payloads / "hooks"))
    return marker


def poison_hooks_dir(repo: Path, payloads: Path) -> Path:
    marker = payloads / "hooks-dir.fired"
    plant_hooks(repo / ".git" / "hooks", marker)
    return marker


SOURCE_POISONS = {
    "fsmonitor": poison_fsmonitor,
    "hooks_path": poison_hooks_path,
    "hooks_dir": poison_hooks_dir,
}


@pytest.mark.parametrize("poison", SOURCE_POISONS)
def test_a_poisoned_source_never_runs_anything_in_the_core(
    tmp_path: Path, source: Path, poison: str
) -> None:
    payloads = tmp_path / "payloads"
    payloads.mkdir()
    marker = SOURCE_POISONS[poison](source, payloads)
    plain_git(source, "status")
    plain_git(source, "commit", "-q", "--allow-empty", "-m", "positive control")
    assert marker.exists(), "positive control: plain git runs the payload"
    marker.unlink()

    store = tmp_path / "store.git"
    create_store(str(source), store)
    sync_store(store, f"file://{source}", timeout=60)
    base = resolve_commit(store, "main")
    agent_workspace = tmp_path / "workspace"
    prepare_workspace(store, base, BRANCH, agent_workspace)
    (agent_workspace / "README.md").write_text("agent\n")
    commit = take_snapshot(store, agent_workspace, base)
    assert commit is not None
    diff(store, base, commit)
    merge(store, "main", commit, "Merge attempt 1")

    assert not marker.exists()


def poison_filter(repo: Path, payloads: Path) -> Path:
    script, marker = payload(payloads, "filter", body="cat")
    plain_git(repo, "config", "filter.evil.clean", str(script))
    plain_git(repo, "config", "filter.evil.smudge", str(script))
    (repo / ".gitattributes").write_text("* filter=evil\n")
    return marker


def poison_diff_external(repo: Path, payloads: Path) -> Path:
    script, marker = payload(payloads, "diff-external")
    plain_git(repo, "config", "diff.external", str(script))
    return marker


def poison_textconv(repo: Path, payloads: Path) -> Path:
    script, marker = payload(payloads, "textconv", body='cat "$1"')
    plain_git(repo, "config", "diff.x.textconv", str(script))
    (repo / ".gitattributes").write_text("* diff=x\n")
    return marker


# Each poison with the plain git command that proves it fires.
WORKSPACE_POISONS = {
    "fsmonitor": (poison_fsmonitor, ["status"]),
    "hooks_path": (poison_hooks_path, ["commit", "-q", "--allow-empty", "-m", "control"]),
    "hooks_dir": (poison_hooks_dir, ["commit", "-q", "--allow-empty", "-m", "control"]),
    "filter": (poison_filter, ["add", "-A"]),
    "diff_external": (poison_diff_external, ["diff", "HEAD"]),
    "textconv": (poison_textconv, ["diff", "HEAD"]),
}


@pytest.mark.parametrize("poison", WORKSPACE_POISONS)
def test_config_the_agent_planted_in_its_workspace_never_runs_on_the_host(
    tmp_path: Path, store: Path, agent_workspace: Path, base: str, poison: str
) -> None:
    payloads = tmp_path / "payloads"
    payloads.mkdir()
    plant, control = WORKSPACE_POISONS[poison]
    (agent_workspace / "README.md").write_text("agent\n")
    marker = plant(agent_workspace, payloads)
    plain_git(agent_workspace, *control)
    assert marker.exists(), "positive control: plain git in the workspace runs the payload"
    marker.unlink()

    commit = take_snapshot(store, agent_workspace, base)
    assert commit is not None
    result = diff(store, base, commit)
    merge(store, "main", commit, "Merge attempt 1")

    assert not marker.exists()
    assert "+agent" in result.patch  # stored as written, no filter or textconv applied


def test_push_never_runs_hooks_of_a_local_upstream(
    tmp_path: Path, store: Path, source: Path, upstream: Path, agent_workspace: Path, base: str
) -> None:
    marker = tmp_path / "upstream-hooks.fired"
    plant_hooks(upstream / "hooks", marker)
    plain_git(source, "push", "-q", str(upstream), "main:control")
    assert marker.exists(), "positive control: a plain push runs the upstream's hooks"
    marker.unlink()
    (agent_workspace / "README.md").write_text("agent\n")
    commit = take_snapshot(store, agent_workspace, base)
    assert commit is not None
    merge(store, "main", commit, "Merge attempt 1")

    push(store, str(upstream), BRANCH)
    push(store, f"file://{upstream}", "main")

    assert not marker.exists()
    assert plain_git(upstream, "rev-parse", BRANCH) == commit
    assert plain_git(upstream, "rev-parse", "main") == commit


def test_push_never_runs_the_alternate_refs_command_of_a_local_upstream(
    tmp_path: Path, store: Path, source: Path, upstream: Path
) -> None:
    # No `cat`: this command's stdin is the transport pipe.
    script, marker = payload(tmp_path / "payloads", "alternate-refs", body="")
    neighbour = tmp_path / "neighbour.git"
    plain_git(tmp_path, "init", "-q", "--bare", str(neighbour))
    (upstream / "objects" / "info" / "alternates").write_text(f"{neighbour / 'objects'}\n")
    plain_git(upstream, "config", "core.alternateRefsCommand", str(script))
    plain_git(source, "push", "-q", str(upstream), "main:control")
    assert marker.exists(), "positive control: a plain push runs the upstream's command"
    marker.unlink()

    push(store, str(upstream), "feature")
    push(store, f"file://{upstream}", "main")

    assert not marker.exists()


@pytest.mark.parametrize("name", ["..", ".git", ".GIT", ".git.", "."])
def test_escaping_paths_names_hand_made_tree_entries_that_would_leave_a_checkout(tmp_path, name):
    store = tmp_path / "store.git"
    workspace.run_git(["init", "-q", "--bare", str(store)])
    blob = workspace.run_git(["hash-object", "-w", "--stdin"], git_dir=store, input=b"x\n")
    inner = workspace.run_git(
        ["mktree"], git_dir=store, input=b"100644 blob " + blob.stdout.strip() + b"\tconfig\n"
    )
    # git mktree accepts what git add never would: the product must check for itself.
    outer = workspace.run_git(
        ["mktree"],
        git_dir=store,
        input=b"040000 tree " + inner.stdout.strip() + b"\t" + name.encode() + b"\n",
    )
    commit = workspace.run_git(
        ["commit-tree", "-m", "evil", outer.stdout.decode().strip()], git_dir=store
    )
    assert workspace.escaping_paths(store, commit.stdout.decode().strip()) == [f"{name}/config"]


def test_escaping_paths_is_empty_for_an_ordinary_tree(tmp_path):
    store = tmp_path / "store.git"
    workspace.run_git(["init", "-q", "--bare", str(store)])
    blob = workspace.run_git(["hash-object", "-w", "--stdin"], git_dir=store, input=b"x\n")
    tree = workspace.run_git(
        ["mktree"], git_dir=store, input=b"100644 blob " + blob.stdout.strip() + b"\t.gitignore\n"
    )
    commit = workspace.run_git(
        ["commit-tree", "-m", "ok", tree.stdout.decode().strip()], git_dir=store
    )
    assert workspace.escaping_paths(store, commit.stdout.decode().strip()) == []


def test_snapshot_leaves_out_paths_git_refuses_and_says_which(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    workspace.run_git(["init", "-q", "-b", "main", str(source)])
    (source / "a.txt").write_text("a\n")
    workspace.run_git(["add", "-A"], git_dir=source / ".git", work_tree=source)
    workspace.run_git(["commit", "-qm", "a"], git_dir=source / ".git", work_tree=source)
    store = tmp_path / "store.git"
    remotes.create_store(str(source), store)
    base = workspace.resolve_commit(store, "main")
    ws = tmp_path / "ws"
    workspace.prepare_workspace(store, base, "agenthub/x/1", ws)
    (ws / ".GIT").mkdir()
    (ws / ".GIT" / "config").write_text("[core]\n")
    (ws / "kept.txt").write_text("kept\n")
    skipped: list[str] = []

    commit = workspace.snapshot(
        store,
        ws,
        base,
        "agenthub/x/1",
        "m",
        index_file=tmp_path / "index",
        on_skipped=skipped.extend,
    )

    assert skipped == [".GIT/config"]
    assert commit is not None
    assert [f.path for f in workspace.diff(store, base, commit).files] == ["kept.txt"]
