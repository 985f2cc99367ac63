"""Workspaces whose cost does not grow with the tree: each base commit is checked out once, into
a cache, and every attempt on it gets a copy-on-write layer over that checkout (jobs.overlay).

    <data dir>/checkouts/              root's, 0700: no sandbox uid can reach in
        <commit>/tree/                 the checkout (work tree and its own .git), never written
                                       after it is built; its mtime says when it was last used
        .new-*/                        a checkout being built, renamed into place when whole
        .lock                          shared while attempts are prepared, exclusive for removal
    <data dir>/attempts/<id>/layer/    root's, 0700: the attempt's upper and work directories,
                                       and `base`, naming the checkout it is layered over
    <data dir>/attempts/<id>/workspace the merged view, all the sandbox ever sees

Preparing an attempt is then a few system calls and two small files (its branch and HEAD),
whatever the size of the tree. Two workers building the same commit both build it, and the
first rename wins; the other's copy is thrown away. Where no layer can be mounted (a worker that
is not root, a kernel without idmapped layers) the attempt is cloned as before, and `prepare`
says why, for the attempt's log.

Plain paths in and out: jobs.runner prepares and discards attempts, jobs.retention removes
checkouts no attempt has used for its workspace retention days.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from jobs import overlay, workspace

log = logging.getLogger(__name__)

DIR_NAME = "checkouts"
TREE = "tree"
BUILDING = ".new-"
LOCK = ".lock"
LAYER, BASE = "layer", "base"
WORKSPACE = "workspace"
# A checkout still being built after this long was left by a killed worker.
ABANDONED_SECONDS = 3600
COMMIT_ID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
# In the cached checkout's own config, so git inside the sandbox trusts the index it was built
# with: seen through the attempt's idmapped layer every file has another owner (and inode) than
# when it was checked out, which git would otherwise take as a reason to re-read every file.
AGENT_GIT_CONFIG = {"core.checkStat": "minimal"}


@dataclass(frozen=True)
class Prepared:
    workspace: Path
    layered: bool
    note: str = ""  # why it was cloned instead of layered


def prepare(
    store: Path, commit: str, branch: str, workdir: Path, *, cache: Path, uid: int
) -> Prepared:
    """The attempt's workspace at `workdir`/workspace: `commit` checked out on a new `branch`,
    layered over the cached checkout with every file shown as `uid`'s, or cloned where no
    layer can be mounted."""
    ws = workdir / WORKSPACE
    workspace.validate_ref_name(branch)
    refused = overlay.refusal()
    if refused is None:
        layer = workdir / LAYER
        layer.mkdir(mode=0o700, parents=True)
        # Before the checkout is touched: retention keeps what an attempt names here.
        (layer / BASE).write_text(_checked_commit(commit))
        try:
            with _lock(cache, fcntl.LOCK_SH):
                tree = cached(store, commit, cache)
                overlay.mount(tree, overlay.layer_in(layer, ws), uid)
        except overlay.Unavailable as exc:
            refused = str(exc)
            overlay.unmount_under(layer)
        else:
            _put_on_branch(ws, branch, commit, uid)
            return Prepared(ws, layered=True)
    ws.mkdir(parents=True, exist_ok=True)
    workspace.prepare_workspace(store, commit, branch, ws)
    return Prepared(ws, layered=False, note=f"the workspace is a full clone: {refused}")


def cached(store: Path, commit: str, cache: Path) -> Path:
    """The checkout of `commit` in `cache`, built now if it is not there yet."""
    home = cache / _checked_commit(commit)
    try:
        os.utime(home)  # its last use, for retention
    except FileNotFoundError:
        _build(store, commit, cache, home)
    return home / TREE


def discard(workdir: Path) -> None:
    """Remove an attempt's directory, its layer unmounted first (jobs.runner, before and after
    each attempt). If something stays mounted the directory is left for retention: removing
    files through a half-made layer could reach the cached checkout itself."""
    try:
        overlay.unmount_under(workdir)
    except OSError as exc:
        log.warning("left %s in place, could not unmount it: %s", workdir, exc)
        return
    shutil.rmtree(workdir, ignore_errors=True)


def remove_unused(
    cache: Path, attempts: Path, cutoff: float, *, dry_run: bool = False
) -> list[str]:
    """Remove the checkouts last used before `cutoff` (a timestamp) that no attempt directory
    under `attempts` is layered over, and builds abandoned by killed workers; return their
    names (what would go, for a dry run). Used by jobs.retention."""
    if not cache.is_dir():
        return []
    removed = []
    with _lock(cache, fcntl.LOCK_EX):
        in_use = set(_bases(attempts))
        for entry in sorted(cache.iterdir()):
            if entry.name == LOCK or entry.name in in_use:
                continue
            building = entry.name.startswith(BUILDING)
            last = entry.stat().st_mtime
            if last < (time.time() - ABANDONED_SECONDS if building else cutoff):
                if not dry_run:
                    _remove(entry)
                removed.append(entry.name)
    return removed


def _bases(attempts: Path) -> Iterator[str]:
    if not attempts.is_dir():
        return
    for attempt in attempts.iterdir():
        with contextlib.suppress(OSError):
            yield (attempt / LAYER / BASE).read_text().strip()


def _remove(entry: Path) -> None:
    """Out of the way at once (a rename), then removed at leisure."""
    doomed = Path(tempfile.mkdtemp(prefix=BUILDING, dir=entry.parent))
    entry.rename(doomed / "old")
    shutil.rmtree(doomed)


def _build(store: Path, commit: str, cache: Path, home: Path) -> None:
    _private(cache)
    staging = Path(tempfile.mkdtemp(prefix=BUILDING, dir=cache))
    try:
        tree = staging / TREE
        workspace.prepare_workspace(store, commit, None, tree)
        for key, value in AGENT_GIT_CONFIG.items():
            workspace.run_git(["config", key, value], git_dir=tree / ".git")
        try:
            staging.rename(home)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            # Another worker built it meanwhile; theirs is as good.
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _lock(cache: Path, kind: int) -> Iterator[None]:
    _private(cache)
    fd = os.open(cache / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, kind)
        yield
    finally:
        os.close(fd)


def _private(cache: Path) -> None:
    """The cache's files are world-readable as git leaves them: only root may reach them."""
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    cache.chmod(0o700)


def _put_on_branch(ws: Path, branch: str, commit: str, uid: int) -> None:
    """Start `branch` at `commit` and check it out, as `git checkout -B` would, in the
    attempt's layer. Written as files (the layout of gitrepository-layout(5), which the cache's
    own git made) so that what is new belongs to `uid`, like everything the agent sees."""
    git = ws / ".git"
    directory = git / "refs" / "heads"
    for part in branch.split("/")[:-1]:
        directory = directory / part
        if not directory.is_dir():
            directory.mkdir()
            os.chown(directory, uid, uid)
    _write_as(directory / branch.split("/")[-1], f"{commit}\n", uid)
    _write_as(git / "HEAD", f"ref: refs/heads/{branch}\n", uid)


def _write_as(path: Path, text: str, uid: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, text.encode())
        os.fchown(fd, uid, uid)
    finally:
        os.close(fd)


def _checked_commit(commit: str) -> str:
    if not COMMIT_ID.fullmatch(commit):
        raise ValueError(
            f"{commit!r} is not a commit ID: checkouts are cached by the full ID of the commit "
            "(40 or 64 lowercase hexadecimal digits)"
        )
    return commit
