"""`make bench`'s workspace part: what preparing an attempt's workspace costs as the tree grows.

For repositories of 1k, 10k and 100k files (AGENTHUB_BENCH_WORKSPACE_FILES), generated in a
scratch directory with real git (`git fast-import`), each figure beside a bare `cp -a` of the
same checkout measured in the same run: `git worktree add` of the same commit; the clone and
chown every attempt paid before issue 14; a layered workspace's first attempt (which builds the
cached checkout) and its next ones; removing a layered workspace; and a snapshot of a one-file
change in a clone and in a layer. Preparing means what happens between `preparing` and
`running`: the workspace made and handed to the attempt's uid. Medians of
AGENTHUB_BENCH_WORKSPACE_RUNS runs (3), the first attempt excepted (it happens once).

`AGENTHUB_BENCH_ONLY=workspace make bench` runs only this part.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jobs import checkouts, overlay, remotes, workspace
from jobs.sandbox.bwrap import _chown_tree

FILES = tuple(
    int(n) for n in os.environ.get("AGENTHUB_BENCH_WORKSPACE_FILES", "1000,10000,100000").split(",")
)
RUNS = int(os.environ.get("AGENTHUB_BENCH_WORKSPACE_RUNS", "3"))
UID = 299_998  # below the attempts' uids (jobs.runner), beside bench.py's 299_999
BRANCH = "agenthub/bench/1"


@dataclass
class Report:
    files: int
    seconds: dict[str, float] = field(default_factory=dict)
    unavailable: str = ""  # why no layer could be mounted here


def measure(files: int, scratch: Path, runs: int = RUNS) -> Report:
    """Every figure for one repository of `files` files, made under `scratch`."""
    report = Report(files)
    store = scratch / "store.git"
    commit = _generate(store, scratch / "source.git", files)
    plain = scratch / "plain"
    workspace.prepare_workspace(store, commit, BRANCH, plain)
    copies = iter(range(10**6))

    def fresh() -> Path:
        return scratch / f"run-{next(copies)}"

    report.seconds["cp -a"] = _median(runs, lambda: _cp(plain, fresh()))
    report.seconds["git worktree add"] = _median(runs, lambda: _worktree(store, commit, fresh()))
    report.seconds["clone + chown (before)"] = _median(
        runs, lambda: _cloned(store, commit, fresh())
    )
    report.seconds["snapshot, clone"] = _snapshot_seconds(store, commit, plain)
    if refused := overlay.refusal():
        report.unavailable = refused
        return report
    cache = scratch / "checkouts"
    first = fresh()
    report.seconds["layered, first attempt"] = _timed(lambda: _layered(store, commit, cache, first))
    report.seconds["snapshot, layered"] = _snapshot_seconds(store, commit, first / "workspace")
    report.seconds["remove a layered workspace"] = _timed(lambda: checkouts.discard(first))
    prepared = [fresh() for _ in range(runs)]
    laps = iter(prepared)
    report.seconds["layered, next attempt"] = _median(
        runs, lambda: _layered(store, commit, cache, next(laps))
    )
    for workdir in prepared:
        checkouts.discard(workdir)
    return report


def show(report: Report) -> None:
    baseline = report.seconds["cp -a"]
    print(f"  {report.files:,} files")
    for name, seconds in report.seconds.items():
        ratio = "1.0x (baseline)" if name == "cp -a" else f"{seconds / baseline:6.2f}x"
        print(f"    {name:28} {seconds * 1000:9.1f} ms {ratio}")
    if report.unavailable:
        print(f"    layered: unavailable ({report.unavailable})")


def main() -> None:
    print(
        "workspace preparation (preparing -> running: ready and handed to the attempt's uid),"
        f" median of {RUNS} runs"
    )
    for files in FILES:
        scratch = Path(tempfile.mkdtemp(prefix="agenthub-bench-workspace-"))
        try:
            show(measure(files, scratch))
        finally:
            overlay.unmount_under(scratch)
            shutil.rmtree(scratch, ignore_errors=True)


def _generate(store: Path, source: Path, files: int) -> str:
    """A repository of `files` small files, a hundred to a directory, through fast-import (real
    git, without writing a work tree first); its store as AgentHub makes one."""
    subprocess.run(["git", "init", "-q", "--bare", str(source)], check=True)
    chunks = []
    for i in range(files):
        body = f"# file {i}\nVALUE = {i}\n".encode()
        chunks.append(b"blob\nmark :%d\ndata %d\n%s\n" % (i + 1, len(body), body))
    chunks.append(
        b"commit refs/heads/main\ncommitter Bench <bench@localhost> 0 +0000\ndata 6\nbench\n"
    )
    chunks += [
        b"M 100644 :%d d%03d/d%d/f%06d.py\n" % (i + 1, i // 1000, i // 100 % 10, i)
        for i in range(files)
    ]
    subprocess.run(
        ["git", "fast-import", "--quiet"], input=b"".join(chunks), cwd=source, check=True
    )
    remotes.create_store(str(source), store)
    return workspace.resolve_commit(store, "main")


def _cp(tree: Path, to: Path) -> None:
    subprocess.run(["cp", "-a", str(tree), str(to)], check=True)


def _worktree(store: Path, commit: str, to: Path) -> None:
    workspace.run_git(["worktree", "add", "--quiet", "--detach", str(to), commit], git_dir=store)


def _cloned(store: Path, commit: str, to: Path) -> None:
    workspace.prepare_workspace(store, commit, BRANCH, to)
    _chown_tree(to, UID)


def _layered(store: Path, commit: str, cache: Path, workdir: Path) -> None:
    prepared = checkouts.prepare(store, commit, BRANCH, workdir, cache=cache, uid=UID)
    if not prepared.layered:
        raise RuntimeError(prepared.note)
    _chown_tree(prepared.workspace, UID)  # what the backend does: nothing, for a layer


def _snapshot_seconds(store: Path, commit: str, ws: Path) -> float:
    """A snapshot after the agent changed one file."""
    (ws / "d000" / "d0" / "f000000.py").write_text("changed\n")
    index = ws.parent / f"{ws.name}.index"
    return _timed(lambda: workspace.snapshot(store, ws, commit, BRANCH, "bench", index_file=index))


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _median(runs: int, run: Callable[[], object]) -> float:
    return statistics.median(_timed(run) for _ in range(runs))
