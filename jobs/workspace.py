"""The git core: stores, agent workspaces, snapshots, diffs and merges.

Every repository AgentHub touches is untrusted, so every git call goes through `run_git`, which
starts from a minimal environment and overrides every config key that could make git run a
program (hooks, fsmonitor, transports). The host never lets git read a workspace's own `.git`:
snapshots use the store as the git dir and the workspace only as a work tree, so whatever the
agent wrote into `.git/config` or `.git/hooks` stays inert.

Plain arguments in, plain values out; the service layer owns the ORM side.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pygit2

from jobs import git_auth, overlay

DEFAULT_IDENTITY = ("AgentHub", "agenthub@localhost")
AGENT_IDENTITY = ("AgentHub Agent", "agent@agenthub.localhost")
MAX_REF_LENGTH = 200

# A HOME that does not exist, so no ~/.gitconfig, ~/.config/git/{ignore,attributes} or
# credential store can be found.
_EMPTY_HOME = "/nonexistent/agenthub-git-home"

SSH_COMMAND = "ssh -o BatchMode=yes"
# Passed as `-c` to every git the host runs; command-line config outranks every config file.
_HARDENING = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "submodule.recurse=false",
    # Safe because the host always names the git dir explicitly instead of discovering it.
    "safe.directory=*",
    # Only the transports we accept as sources; `ext::` and other helpers stay refused.
    "protocol.allow=never",
    "protocol.file.allow=always",
    "protocol.https.allow=always",
    "protocol.ssh.allow=always",
    f"core.sshCommand={SSH_COMMAND}",
)

_DIFF_OPTIONS = ["--no-ext-diff", "--no-textconv", "--no-color", "-M"]
_STATUSES = {
    "A": "added",
    "M": "modified",
    "D": "deleted",
    "R": "renamed",
    "T": "type-changed",
}
_FORBIDDEN_IN_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_URL_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")


def redacted(text: str) -> str:
    """Credentials in the URLs of `text` hidden."""
    return _URL_CREDENTIALS.sub(r"\1***@", text)


class GitError(Exception):
    def __init__(self, command: list[str], returncode: int | None, stderr: str) -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        shown = redacted(shlex.join(["git", *command]))
        outcome = "timed out" if returncode is None else f"failed with exit code {returncode}"
        super().__init__(f"`{shown}` {outcome}: {stderr.strip() or '(no stderr)'}")


def reason(exc: Exception) -> str:
    """What went wrong, for a person: git's own last words (not the command line, whose
    hardening options say nothing to them), credentials hidden."""
    if not isinstance(exc, GitError):
        return str(exc)[:300]
    if exc.returncode is None:
        return "timed out"
    said = [line.strip() for line in exc.stderr.splitlines() if line.strip()]
    return redacted("; ".join(said[:3]) or str(exc))[:300]


class InvalidRef(ValueError):
    pass


class RefNotFound(LookupError):
    pass


@dataclass(frozen=True)
class FileStat:
    path: str
    status: str
    added: int
    deleted: int
    binary: bool
    old_path: str | None


@dataclass(frozen=True)
class Diff:
    patch: str
    files: list[FileStat]
    hash: str


@dataclass(frozen=True)
class MergeResult:
    commit: str | None
    conflicts: list[str]
    fast_forward: bool


def validate_ref_name(ref: str) -> None:
    """Reject anything `git check-ref-format --branch` would, plus names git reads as options."""
    problem = _ref_problem(ref)
    if problem:
        raise InvalidRef(
            f"Invalid ref {ref!r}: {problem}. Use a branch or tag name such as 'main', "
            f"'feature/x-1' or 'v1.2' (letters, digits, '-', '_', '.', '/'), or a commit SHA."
        )


def _ref_problem(ref: str) -> str | None:
    if not ref:
        return "it is empty"
    if len(ref) > MAX_REF_LENGTH:
        return f"it is longer than {MAX_REF_LENGTH} characters"
    if ref.startswith("-"):
        return "it starts with '-'"
    if ref in ("@", "HEAD"):
        return "it names HEAD rather than a branch, tag or commit"
    if _FORBIDDEN_IN_REF.search(ref):
        return "it contains a space, a control character or one of ~ ^ : ? * [ \\"
    if ".." in ref:
        return "it contains '..'"
    if "@{" in ref:
        return "it contains '@{'"
    if ref.startswith("/") or ref.endswith("/") or "//" in ref:
        return "it has an empty path component (leading, trailing or double '/')"
    if ref.endswith("."):
        return "it ends with '.'"
    for part in ref.split("/"):
        if part.startswith("."):
            return "a path component starts with '.'"
        if part.endswith(".lock"):
            return "a path component ends with '.lock'"
    return None


def run_git(
    args: list[str],
    *,
    git_dir: Path | None = None,
    work_tree: Path | None = None,
    index_file: Path | None = None,
    input: bytes | None = None,
    check: bool = True,
    timeout: float = 120,
    identity: tuple[str, str] | None = None,
    auth: git_auth.Auth | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """git with the hardening options, a minimal environment and, for a fetch or push, the
    repository's credentials (jobs/git_auth.py)."""
    env = _environment(identity or DEFAULT_IDENTITY)
    for name, path in (
        ("GIT_DIR", git_dir),
        ("GIT_WORK_TREE", work_tree),
        ("GIT_INDEX_FILE", index_file),
    ):
        if path is not None:
            env[name] = str(path.absolute())
    try:
        with git_auth.git_options(auth, SSH_COMMAND) as (options, auth_env):
            result = subprocess.run(
                ["git", *config_options(_HARDENING), *options, *args],
                input=input,
                stdin=subprocess.DEVNULL if input is None else None,
                capture_output=True,
                env={**env, **auth_env},
                # Never inside a work tree: with no GIT_DIR, git must not discover a repository.
                cwd="/",
                timeout=timeout,
                check=False,
            )
    except subprocess.TimeoutExpired as exc:
        raise GitError(args, None, f"no result after {timeout} seconds") from exc
    if check and result.returncode != 0:
        raise GitError(args, result.returncode, _text(result.stderr))
    return result


def _environment(identity: tuple[str, str]) -> dict[str, str]:
    name, email = identity
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": "C.UTF-8",
        "HOME": _EMPTY_HOME,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def config_options(settings: tuple[str, ...]) -> list[str]:
    return [option for setting in settings for option in ("-c", setting)]


@dataclass(frozen=True)
class Ref:
    commit: str
    is_branch: bool


def read_ref(store: Path, ref: str) -> Ref:
    """The commit a branch, tag or commit names in the store, and whether it is a branch.

    Read in-process with libgit2, so the submit path never forks; reading refs runs no
    repository-controlled hook, filter or config."""
    validate_ref_name(ref)
    try:
        repo = pygit2.Repository(str(store), pygit2.enums.RepositoryOpenFlag.BARE)
        commit = repo.revparse_single(ref).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.InvalidSpecError):
        raise RefNotFound(f"No branch, tag or commit named {ref!r} in {store}.") from None
    except pygit2.GitError as exc:
        raise GitError(["rev-parse", ref], 1, str(exc)) from exc
    return Ref(str(commit.id), f"refs/heads/{ref}" in repo.references)


def has_commit(store: Path, commit: str) -> bool:
    validate_ref_name(commit)
    found = run_git(["cat-file", "-e", f"{commit}^{{commit}}"], git_dir=store, check=False)
    return found.returncode == 0


def resolve_commit(store: Path, ref: str) -> str:
    return read_ref(store, ref).commit


def default_branch(store: Path) -> str:
    head = run_git(["symbolic-ref", "--quiet", "HEAD"], git_dir=store).stdout
    return _text(head).strip().removeprefix("refs/heads/")


def is_ancestor(store: Path, a: str, b: str) -> bool:
    validate_ref_name(a)
    validate_ref_name(b)
    args = ["merge-base", "--is-ancestor", "--end-of-options", a, b]
    result = run_git(args, git_dir=store, check=False)
    if result.returncode not in (0, 1):
        raise GitError(args, result.returncode, _text(result.stderr))
    return result.returncode == 0


def prepare_workspace(store: Path, base_commit: str, branch: str | None, path: Path) -> None:
    """Clone the store into `path`, check out `base_commit` on a new branch `branch` (detached
    for jobs.checkouts' cache).

    The clone goes through upload-pack, so objects are copied: the workspace is later handed to
    the sandbox uid, and nothing it can write may be shared with the store.
    """
    validate_ref_name(base_commit)
    if branch is not None:
        validate_ref_name(branch)
    run_git(
        [
            "clone",
            "--no-local",
            "--no-checkout",
            "--template=",
            "--",
            str(store.absolute()),
            str(path.absolute()),
        ]
    )
    git_dir = path / ".git"
    # --force: after --no-checkout the index is empty, which a plain checkout would read as
    # every file having been deleted.
    on = ["-B", branch] if branch else ["--detach"]
    checkout = ["checkout", "--quiet", "--force", *on, base_commit, "--"]
    run_git(checkout, git_dir=git_dir, work_tree=path)
    run_git(["remote", "remove", "origin"], git_dir=git_dir)
    name, email = AGENT_IDENTITY
    run_git(["config", "user.name", name], git_dir=git_dir)
    run_git(["config", "user.email", email], git_dir=git_dir)


def snapshot(
    store: Path,
    workspace: Path,
    base_commit: str,
    branch: str,
    message: str,
    *,
    index_file: Path,
    identity: tuple[str, str] | None = None,
    on_skipped: Callable[[list[str]], None] | None = None,
) -> str | None:
    """Commit the workspace's files on top of `base_commit` into the store as `branch`.

    Returns the new commit, or None when the files equal the base. Git runs with the store as
    its git dir and a private index, so the workspace's `.git` is never read. Paths git refuses
    to record (such as `.GIT/config`) are left out and reported to `on_skipped`.
    """
    validate_ref_name(base_commit)
    validate_ref_name(branch)
    tree = _Tree(store, workspace, index_file)
    tree.git(["read-tree", base_commit])
    # A layered workspace names what its agent changed: only that is read, not the whole tree.
    changed = overlay.changes(workspace)
    if changed is None:
        _add(tree, [b":(exclude,literal)" + path for path in _listed(tree, [])[1]], on_skipped)
    elif changed:
        plain = _listed(tree, [os.fsdecode(b":(literal)" + path) for path in changed])[0]
        if plain:
            _add(tree, [b":(literal)" + path for path in plain], on_skipped)
    written = _text(tree.git(["write-tree"])).strip()
    if written == _tree_of(store, base_commit):
        return None
    commit = _commit_tree(store, written, [base_commit], message, identity)
    ref = f"refs/heads/{branch}"
    run_git(["update-ref", "-m", "agenthub snapshot", ref, commit], git_dir=store)
    return commit


@dataclass(frozen=True)
class _Tree:
    """The store as git dir, the workspace as work tree, and a private index."""

    store: Path
    workspace: Path
    index_file: Path

    def git(self, args: list[str], input: bytes | None = None) -> bytes:
        return self.run(args, input).stdout

    def run(
        self, args: list[str], input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        return run_git(
            args,
            git_dir=self.store,
            work_tree=self.workspace,
            index_file=self.index_file,
            input=input,
            check=check,
        )


_INVALID_PATH = re.compile(r"^error: invalid path '(.*)'$", re.MULTILINE)


def _add(
    tree: _Tree, pathspecs: list[bytes], on_skipped: Callable[[list[str]], None] | None
) -> None:
    args = ["add", "--all", "--ignore-errors", "--pathspec-from-file=-", "--pathspec-file-nul"]
    added = tree.run(args, b"".join(pathspec + b"\0" for pathspec in pathspecs), check=False)
    if added.returncode != 0:
        skipped = _INVALID_PATH.findall(_text(added.stderr))
        if not skipped:
            raise GitError(args[:2], added.returncode, _text(added.stderr))
        if on_skipped is not None:
            on_skipped(skipped)


def _listed(tree: _Tree, named: list[str]) -> tuple[list[bytes], list[bytes]]:
    """Among the paths `named` (pathspecs; every path when empty): those `git add` may record,
    tracked in the base or untracked and not ignored; and those holding a repository of their
    own, untracked ones the agent made and submodules. The latter are left out of the snapshot
    (kept as in the base): plain `git add` would record their HEAD as a gitlink, following a
    planted `.git` file to any repository on the host.
    """
    workspace = os.fsencode(tree.workspace)
    plain, nested = [], []
    others = tree.git(["ls-files", "-z", "--others", "--exclude-standard", "--", *named])
    for path in others.split(b"\0"):
        if not path.endswith(b"/"):
            plain.append(path)
        elif os.path.lexists(os.path.join(workspace, path, b".git")):
            nested.append(path)
    for entry in tree.git(["ls-files", "-z", "--stage", "--", *named]).split(b"\0"):
        info, _, path = entry.partition(b"\t")
        (nested if info.startswith(b"160000 ") else plain).append(path)
    return [path for path in plain if path], nested


def _tree_of(store: Path, commit: str) -> str:
    return _text(run_git(["rev-parse", f"{commit}^{{tree}}"], git_dir=store).stdout).strip()


def _commit_tree(
    store: Path, tree: str, parents: list[str], message: str, identity: tuple[str, str] | None
) -> str:
    parent_options = [option for parent in parents for option in ("-p", parent)]
    result = run_git(
        ["commit-tree", tree, *parent_options, "-F", "-"],
        git_dir=store,
        input=message.encode(),
        identity=identity,
    )
    return _text(result.stdout).strip()


def diff(store: Path, base_commit: str, commit: str) -> Diff:
    """The reviewable change from `base_commit` to `commit`; binary files show as differing."""
    validate_ref_name(base_commit)
    validate_ref_name(commit)
    patch = run_git(["diff", *_DIFF_OPTIONS, base_commit, commit, "--"], git_dir=store).stdout
    stats = run_git(
        ["diff", *_DIFF_OPTIONS, "--raw", "--numstat", "-z", base_commit, commit, "--"],
        git_dir=store,
    ).stdout
    return Diff(
        patch=_text(patch),
        files=_parse_stats(stats),
        hash=hashlib.sha256(patch).hexdigest(),
    )


def _parse_stats(output: bytes) -> list[FileStat]:
    r"""Parse `--raw --numstat -z`: every raw record, then every numstat record, in one order.

    Raw: `:<modes> <oids> <status>\0<path>\0` (renames add `<new path>\0`).
    Numstat: `<added>\t<deleted>\t<path>\0`, or `<added>\t<deleted>\t\0<old>\0<new>\0`.
    """
    fields = iter(output.split(b"\0"))
    statuses: list[tuple[str, str, str | None]] = []
    field = next(fields, b"")
    while field.startswith(b":"):
        letter = _text(field.split()[-1][:1])
        path = _text(next(fields))
        old_path = None
        if letter == "R":
            old_path, path = path, _text(next(fields))
        if letter not in _STATUSES:
            raise GitError(["diff", "--raw"], 0, f"unexpected file status {letter!r}")
        statuses.append((path, _STATUSES[letter], old_path))
        field = next(fields, b"")
    files = []
    for path, status, old_path in statuses:
        added, deleted, inline_path = field.split(b"\t", 2)
        if not inline_path:
            next(fields)
            next(fields)
        binary = added == b"-"
        files.append(
            FileStat(
                path=path,
                status=status,
                added=0 if binary else int(added),
                deleted=0 if binary else int(deleted),
                binary=binary,
                old_path=old_path,
            )
        )
        field = next(fields, b"")
    return files


def escaping_paths(store: Path, commit: str) -> list[str]:
    """Paths in `commit`'s tree that would leave a checkout or write into a .git directory.

    git refuses to create such entries itself, but an agent can hand-craft trees (mktree,
    hash-object); merge_job refuses them before anything moves (used by services.merge_job).
    """
    listing = run_git(["ls-tree", "-r", "-z", "--name-only", "--full-tree", commit], git_dir=store)
    found = []
    for raw in listing.stdout.split(b"\0"):
        if raw and any(_escapes(part) for part in raw.split(b"/")):
            found.append(_text(raw))
    return found


def _escapes(part: bytes) -> bool:
    # ".git", and what some filesystems read as ".git" (".GIT", ".git.", ".git ").
    return part in (b"", b".", b"..") or part.lower().rstrip(b". ") == b".git"


def merge(
    store: Path,
    target_branch: str,
    commit: str,
    message: str,
    *,
    identity: tuple[str, str] | None = None,
    trailers: list[str] | None = None,
) -> MergeResult:
    """Merge `commit` into `target_branch` inside the bare store, without a working tree.

    `trailers` end the merge commit's `message`; on a fast-forward, `commit` is first rewritten
    with them added to its own message (same tree and parents), so what lands says them too.
    On conflict nothing moves. The target only ever moves by compare-and-swap against the tip
    read here, so a concurrent merge raises GitError instead of being lost.
    """
    validate_ref_name(target_branch)
    target = f"refs/heads/{target_branch}"
    tip = resolve_commit(store, target)
    commit = resolve_commit(store, commit)
    if is_ancestor(store, commit, tip):
        return MergeResult(commit=tip, conflicts=[], fast_forward=True)
    if is_ancestor(store, tip, commit):
        if trailers:
            commit = _rewritten(store, commit, trailers, identity)
        _move_ref(store, target, commit, tip)
        return MergeResult(commit=commit, conflicts=[], fast_forward=True)
    args = ["merge-tree", "--write-tree", "--name-only", "-z", "--no-messages", tip, commit]
    result = run_git(args, git_dir=store, check=False)
    if result.returncode not in (0, 1):
        raise GitError(args, result.returncode, _text(result.stderr))
    tree, *conflicts = [_text(field) for field in result.stdout.split(b"\0") if field]
    if result.returncode == 1:
        return MergeResult(commit=None, conflicts=conflicts, fast_forward=False)
    merged = _commit_tree(store, tree, [tip, commit], add_trailers(message, trailers), identity)
    _move_ref(store, target, merged, tip)
    return MergeResult(commit=merged, conflicts=[], fast_forward=False)


def add_trailers(message: str, trailers: list[str] | None) -> str:
    """`message` with `trailers` added to its closing trailer block (or as a new one)."""
    if not trailers:
        return message
    message = message.rstrip("\n")
    last = message.rsplit("\n\n", 1)[-1]
    joined = "\n" if last and all(":" in line for line in last.splitlines()) else "\n\n"
    return message + joined + "\n".join(trailers) + "\n"


def _rewritten(
    store: Path, commit: str, trailers: list[str], identity: tuple[str, str] | None
) -> str:
    """`commit` again with `trailers` added to its message: same tree, same parents."""
    shown = run_git(["log", "-1", "--format=%T %P%x00%B", commit], git_dir=store).stdout
    header, _, message = _text(shown).partition("\0")
    tree, *parents = header.split()
    return _commit_tree(store, tree, parents, add_trailers(message, trailers), identity)


def _move_ref(store: Path, ref: str, new: str, old: str) -> None:
    run_git(["update-ref", "-m", "agenthub merge", ref, new, old], git_dir=store)


def bundle(store: Path, commits: dict[str, str], out: Path) -> None:
    """A git bundle at `out` holding `commits` (name -> commit) and their history, each as
    refs/agenthub/bundles/<token>/<name>, for a clone on someone's own machine."""
    token = secrets.token_hex(6)
    refs = {f"refs/agenthub/bundles/{token}/{name}": commit for name, commit in commits.items()}
    try:
        for ref, commit in refs.items():
            validate_ref_name(commit)
            run_git(["update-ref", ref, commit], git_dir=store)
        run_git(["bundle", "create", str(out.absolute()), *refs], git_dir=store, timeout=600)
    finally:
        for ref in refs:
            run_git(["update-ref", "-d", ref], git_dir=store, check=False)


def _text(raw: bytes) -> str:
    # Names and patches go to JSON and HTML, where lone surrogates are not allowed.
    return raw.decode("utf-8", errors="replace")
