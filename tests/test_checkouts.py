"""Layered workspaces against the real thing: real git, the kernel's overlayfs with idmapped
layers, and real bwrap and docker sandboxes writing into them.

The cached checkout is fingerprinted (every entry's inode, times, size, mode, owner and bytes)
before an agent runs and compared after: what the agent did must show in its own layer and in
the snapshot, and never in the cache.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs import checkouts, overlay, remotes
from jobs import workspace as git
from tests import sandbox_support as support
from tests.sandbox_support import Run
from tests.test_workspace import commit_all, plain_git

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="mounting a layer and switching to per-attempt uids needs root"
)

engine, image, test_id = support.engine, support.image, support.test_id
start, run = support.start, support.run
# Away from the sandbox tests' (300_000 to 500_000) and the attempts' (200_000 + pk).
uid = support.uid_fixture(600_000)
BRANCH = "agenthub/ab12cd/1"


@pytest.fixture(params=["bwrap", pytest.param("docker", marks=pytest.mark.docker)])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    plain_git(tmp_path, "init", "-q", "-b", "main", str(source))
    files = {
        "README.md": "hello\n",
        "app.py": "print('one')\n",
        "run.sh": "echo run\n",
        ".gitignore": "*.pyc\n",
        "src/lib.py": "def lib():\n    return 1\n",
        "src/deep/util.py": "UTIL = 1\n",
        "docs/guide.md": "# guide\n",
    }
    for name, text in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    commit_all(source, "initial")
    path = tmp_path / "store.git"
    remotes.create_store(str(source), path)
    return path


@pytest.fixture
def base(store: Path) -> str:
    return git.resolve_commit(store, "main")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "checkouts"


@pytest.fixture
def attempts(tmp_path: Path) -> Path:
    return tmp_path / "attempts"


@pytest.fixture
def prepared(
    store: Path, base: str, attempts: Path, cache: Path, uid: int
) -> Iterator[checkouts.Prepared]:
    workdir = attempts / "1"
    result = checkouts.prepare(store, base, BRANCH, workdir, cache=cache, uid=uid)
    yield result
    checkouts.discard(workdir)


# support.start runs sandboxes on the module's `workspace`: here, the attempt's layered one.
@pytest.fixture
def workspace(prepared: checkouts.Prepared) -> Path:
    return prepared.workspace


def fingerprint(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under `root` with what any write would change."""
    found: dict[str, tuple[object, ...]] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(directory, name)
            info = path.lstat()
            content = path.read_bytes() if stat.S_ISREG(info.st_mode) else b""
            found[str(path.relative_to(root))] = (
                info.st_ino,
                info.st_mtime_ns,
                info.st_ctime_ns,
                info.st_size,
                info.st_mode,
                info.st_uid,
                hashlib.sha256(content).hexdigest(),
            )
    return found


def snapshot_of(store: Path, ws: Path, base: str) -> str | None:
    index = ws.parent / "snapshot.index"
    return git.snapshot(store, ws, base, BRANCH, "agent run", index_file=index)


def statuses(store: Path, base: str, commit: str) -> dict[str, str]:
    return {stat.path: stat.status for stat in git.diff(store, base, commit).files}


# --- the layer ---------------------------------------------------------------------------------


def test_an_attempt_is_its_base_on_a_branch_of_its_own_owned_by_its_uid(
    prepared: checkouts.Prepared, base: str, uid: int
) -> None:
    ws = prepared.workspace

    assert prepared.layered and prepared.note == ""
    assert overlay.is_layer(ws)
    # First: git run here as root would write an index of root's.
    assert {path.lstat().st_uid for path in [ws, *ws.rglob("*")]} == {uid}
    assert (ws / ".git" / "HEAD").read_text() == f"ref: refs/heads/{BRANCH}\n"
    assert plain_git(ws, "-c", "safe.directory=*", "rev-parse", "HEAD") == base
    assert plain_git(ws, "-c", "safe.directory=*", "status", "--porcelain") == ""
    assert plain_git(ws, "-c", "safe.directory=*", "remote") == ""


def test_the_agent_works_its_repository_with_git_in_the_sandbox(run: Run) -> None:
    script = (
        "git status --porcelain && git symbolic-ref HEAD && echo more >> README.md && "
        "git -c user.name=a -c user.email=a@b commit -qam 'by the agent' && git log --format=%s -1"
    )

    result = run(script)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == [f"refs/heads/{BRANCH}", "by the agent"]


def test_the_checkout_is_built_once_and_a_second_attempt_does_not_rewrite_it(
    prepared: checkouts.Prepared, store: Path, base: str, attempts: Path, cache: Path, uid: int
) -> None:
    before = fingerprint(cache / base)
    (prepared.workspace / "README.md").write_text("changed by the first attempt\n")

    second = checkouts.prepare(
        store, base, "agenthub/ab12cd/2", attempts / "2", cache=cache, uid=uid + 1
    )
    try:
        assert second.layered
        assert (second.workspace / "README.md").read_text() == "hello\n"
        assert sorted(p.name for p in cache.iterdir()) == [".lock", base]
        assert fingerprint(cache / base) == before
    finally:
        checkouts.discard(attempts / "2")


def test_two_workers_preparing_one_commit_share_one_checkout(
    store: Path, base: str, cache: Path
) -> None:
    trees: list[Path] = []
    threads = [
        threading.Thread(target=lambda: trees.append(checkouts.cached(store, base, cache)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert trees == [cache / base / checkouts.TREE] * 3
    assert sorted(p.name for p in cache.iterdir()) == [base]  # no half-built copy left
    assert plain_git(trees[0], "-c", "safe.directory=*", "status", "--porcelain") == ""


def test_the_agents_writes_land_only_in_its_layer(
    run: Run, prepared: checkouts.Prepared, store: Path, base: str, cache: Path, attempts: Path
) -> None:
    before = fingerprint(cache / base)
    script = " && ".join(
        [
            "echo changed > app.py",
            "rm README.md",
            "git mv -k docs/guide.md docs/manual.md",
            "mv src/deep src/deeper",  # a directory of the base, renamed
            "chmod +x run.sh",
            "echo new > new.txt",
            "echo cached > new.pyc",  # ignored by the base's .gitignore
            "mkdir -p vendor/lib && git init -q vendor/lib",  # a nested repository
        ]
    )

    result = run(script)

    assert result.exit_code == 0, result.stderr
    assert fingerprint(cache / base) == before
    upper = attempts / "1" / checkouts.LAYER / "upper"
    assert (upper / "app.py").read_text() == "changed\n"
    assert os.stat(upper / "README.md").st_rdev == os.makedev(0, 0)  # a whiteout
    commit = snapshot_of(store, prepared.workspace, base)
    assert commit is not None
    assert statuses(store, base, commit) == {
        "app.py": "modified",
        "README.md": "deleted",
        "docs/manual.md": "renamed",
        "src/deeper/util.py": "renamed",
        "run.sh": "modified",
        "new.txt": "added",
    }


def test_the_sandbox_cannot_reach_the_cache_or_write_through_to_it(
    run: Run, cache: Path, base: str, attempts: Path
) -> None:
    tree = cache / base / checkouts.TREE
    before = fingerprint(cache / base)
    targets = [tree / "README.md", tree / "new.txt", cache / "planted"]
    targets += [attempts / "1" / checkouts.LAYER / "upper" / "planted"]
    script = "\n".join(
        [
            'try_write() { if (echo pwned > "$1") 2>/dev/null; then echo "WROTE $1"; '
            'else echo "REFUSED $1"; fi; }',
            *(f"try_write {target}" for target in targets),
            "try_write /workspace/README.md",
        ]
    )

    result = run(script)

    assert [f"REFUSED {target}" for target in targets] == result.stdout[:-1]
    assert result.stdout[-1] == "WROTE /workspace/README.md"  # the same probe, where it may
    assert fingerprint(cache / base) == before
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700 and cache.stat().st_uid == 0
    assert stat.S_IMODE((attempts / "1" / checkouts.LAYER).stat().st_mode) == 0o700


def test_snapshot_of_a_layer_without_changes_is_none(
    prepared: checkouts.Prepared, store: Path, base: str
) -> None:
    assert overlay.changes(prepared.workspace) == []
    assert snapshot_of(store, prepared.workspace, base) is None


def test_a_layer_names_exactly_what_changed(prepared: checkouts.Prepared) -> None:
    ws = prepared.workspace
    (ws / "src" / "deep" / "util.py").write_text("UTIL = 2\n")
    (ws / "docs" / "guide.md").unlink()
    (ws / "added.txt").write_text("added\n")
    (ws / "new" / "deeper").mkdir(parents=True)
    (ws / "new" / "deeper" / "file.txt").write_text("in a new directory\n")
    (ws / ".git" / "agent-notes").write_text("the agent's own repository is not looked at\n")

    assert sorted(overlay.changes(ws) or []) == [
        b"added.txt",
        b"docs/guide.md",
        b"new",
        b"src/deep/util.py",
    ]


def test_a_layer_that_changed_too_much_is_snapshot_whole(
    prepared: checkouts.Prepared, store: Path, base: str
) -> None:
    ws = prepared.workspace
    # In a directory of the base: a directory the agent makes is named once, as itself.
    for n in range(overlay.MAX_CHANGES + 1):
        (ws / "src" / f"{n}.txt").write_text(f"{n}\n")
    (ws / "README.md").unlink()

    assert overlay.changes(ws) is None
    commit = snapshot_of(store, ws, base)
    assert commit is not None
    changed = statuses(store, base, commit)
    assert len(changed) == overlay.MAX_CHANGES + 2 and changed["README.md"] == "deleted"


def test_discard_unmounts_the_layer_and_keeps_the_checkout(
    prepared: checkouts.Prepared, attempts: Path, cache: Path, base: str
) -> None:
    (prepared.workspace / "README.md").write_text("changed\n")
    before = fingerprint(cache / base)

    checkouts.discard(attempts / "1")

    assert overlay.mounts_under(attempts) == []
    assert not (attempts / "1").exists()
    assert fingerprint(cache / base) == before
    assert (cache / base / checkouts.TREE / "README.md").read_text() == "hello\n"


# --- where no layer can be mounted -------------------------------------------------------------


def test_a_workspace_that_cannot_be_layered_is_cloned_and_says_why(
    store: Path, base: str, tmp_path: Path, cache: Path, uid: int
) -> None:
    # overlayfs options are one comma-separated string: such a path cannot be a layer.
    workdir = tmp_path / "attempts,1"

    prepared = checkouts.prepare(store, base, BRANCH, workdir, cache=cache, uid=uid)
    try:
        assert not prepared.layered
        assert "full clone" in prepared.note and "overlayfs options" in prepared.note
        assert plain_git(prepared.workspace, "symbolic-ref", "HEAD") == f"refs/heads/{BRANCH}"
        assert not overlay.is_layer(prepared.workspace)
    finally:
        checkouts.discard(workdir)


def test_a_checkout_is_named_by_a_full_commit_id(store: Path, cache: Path) -> None:
    with pytest.raises(ValueError, match="40 or 64 lowercase hexadecimal digits"):
        checkouts.cached(store, "main", cache)


# --- retention ---------------------------------------------------------------------------------


def test_retention_removes_checkouts_no_attempt_uses(
    prepared: checkouts.Prepared, store: Path, base: str, cache: Path, attempts: Path, tmp_path
) -> None:
    source = tmp_path / "other"
    plain_git(tmp_path, "clone", "-q", str(store), str(source))
    (source / "other.txt").write_text("other\n")
    other = commit_all(source, "other")
    plain_git(source, "push", "-q", "origin", "HEAD:refs/heads/other")
    checkouts.cached(store, other, cache)
    past = os.stat(cache / other).st_mtime - 10

    assert checkouts.remove_unused(cache, attempts, cutoff=past) == []
    removed = checkouts.remove_unused(cache, attempts, cutoff=past + 3600)

    assert removed == [other]  # the one attempt 1 is layered over stays
    assert sorted(p.name for p in cache.iterdir()) == [".lock", base]
    assert (prepared.workspace / "README.md").read_text() == "hello\n"
