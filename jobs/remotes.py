"""Git with other repositories: the store's copy of a source (clone, then syncs that follow
upstream), and the pushes of merges (with the fetch a refused push needs). Every call goes
through workspace.run_git's hardening, with the repository's credentials (jobs/git_auth.py);
a local source or upstream, itself untrusted, gets its own overrides on its side.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from jobs import git_auth
from jobs.workspace import config_options, is_ancestor, resolve_commit, run_git, validate_ref_name

# For local (path or file://) transports git starts upload-pack/receive-pack inside the other
# repository and clears GIT_CONFIG_PARAMETERS first, so our `-c` options do not reach it. The
# other repository may be untrusted (a source, or an upstream with hooks), so the remote side
# gets its own overrides through --upload-pack/--receive-pack. `core.alternateRefsCommand=true`
# replaces a command the other repository could otherwise set for receive-pack to run.
REMOTE_SIDE = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "safe.directory=*",
    "core.alternateRefsCommand=true",
)


def create_store(source: str, store: Path, *, auth: git_auth.Auth | None = None) -> None:
    """Make a bare copy of `source` holding all its branches and tags."""
    source = _checked_source(source)
    if store.exists():
        raise FileExistsError(f"Store {store} already exists; use sync_store to update it.")
    run_git(
        [
            "clone",
            "--bare",
            # Copy through upload-pack instead of hardlinking or copying the source's object
            # directory (which may hold symlinks or alternates).
            "--no-local",
            "--template=",
            *_remote_command("--upload-pack", source),
            "--",
            source,
            str(store.absolute()),
        ],
        auth=auth,
    )
    # The store is updated with an explicit source each time; keeping the URL would only keep
    # credentials embedded in it on disk.
    run_git(["remote", "remove", "origin"], git_dir=store)


@dataclass(frozen=True)
class Synced:
    """What a sync did to the store's branches."""

    moved: dict[str, str]  # branch -> its new commit (created or fast-forwarded)
    kept: list[str]  # branches holding commits upstream lacks (merges not pushed yet): left as is


UPSTREAM = "refs/upstream/"


def sync_store(
    store: Path, source: str, *, timeout: float, auth: git_auth.Auth | None = None
) -> Synced:
    """Fetch `source`'s branches into the store's refs/upstream/* (and its tags), then move each
    store branch to its upstream head where that is a fast-forward, creating new ones. A branch
    holding commits upstream lacks, AgentHub's merges not yet pushed, is never moved or lost."""
    source = _checked_source(source)
    run_git(
        [
            "fetch",
            "--no-tags",
            *_remote_command("--upload-pack", source),
            "--",
            source,
            f"+refs/heads/*:{UPSTREAM}*",
            "+refs/tags/*:refs/tags/*",
        ],
        git_dir=store,
        timeout=timeout,
        auth=auth,
    )
    listed = run_git(
        ["for-each-ref", "--format=%(objectname) %(refname)", UPSTREAM, "refs/heads/"],
        git_dir=store,
    )
    upstream, local = {}, {}
    for line in listed.stdout.decode(errors="replace").splitlines():
        commit, _, ref = line.partition(" ")
        if ref.startswith(UPSTREAM):
            upstream[ref.removeprefix(UPSTREAM)] = commit
        else:
            local[ref.removeprefix("refs/heads/")] = commit
    moved, kept = {}, []
    for branch, head in sorted(upstream.items()):
        mine = local.get(branch)
        if mine == head:
            continue
        if mine is None or is_ancestor(store, mine, head):
            # Compare-and-swap: a merge that moved the branch meanwhile wins.
            run_git(
                ["update-ref", "-m", "agenthub sync", f"refs/heads/{branch}", head, mine or ""],
                git_dir=store,
            )
            moved[branch] = head
        else:
            kept.append(branch)
    return Synced(moved, kept)


def _checked_source(source: str) -> str:
    if not source or source.startswith("-"):
        raise ValueError(
            f"Invalid repository source {source!r}: give a path or an https://, ssh:// or "
            f"file:// URL that does not start with '-'."
        )
    if _is_local(source) and not source.startswith("file://"):
        return os.path.abspath(source)
    return source


def _is_local(url: str) -> bool:
    """Mirror git's own rule: a URL scheme, or `host:path` with no '/' before ':', is remote."""
    if url.startswith("file://"):
        return True
    if "://" in url:
        return False
    colon, slash = url.find(":"), url.find("/")
    return colon == -1 or (slash != -1 and slash < colon)


def _remote_command(option: str, url: str) -> list[str]:
    if not _is_local(url):
        return []
    program = option.removeprefix("--")
    return [f"{option}={shlex.join(['git', *config_options(REMOTE_SIDE), program])}"]


def fetch_branch(store: Path, url: str, branch: str, auth: git_auth.Auth | None = None) -> str:
    """`branch`'s head at `url`, fetched into the store (refs/agenthub/pushed/<branch>)."""
    url = _checked_source(url)
    validate_ref_name(branch)
    ref = f"refs/agenthub/pushed/{branch}"
    run_git(
        [
            "fetch",
            "--no-tags",
            *_remote_command("--upload-pack", url),
            "--",
            url,
            f"+refs/heads/{branch}:{ref}",
        ],
        git_dir=store,
        auth=auth,
    )
    return resolve_commit(store, ref)


def push(store: Path, url: str, branch: str, auth: git_auth.Auth | None = None) -> None:
    """Push the store's `branch` to the same branch at `url`; never forced."""
    url = _checked_source(url)
    validate_ref_name(branch)
    ref = f"refs/heads/{branch}"
    run_git(
        ["push", *_remote_command("--receive-pack", url), "--", url, f"{ref}:{ref}"],
        git_dir=store,
        auth=auth,
    )
