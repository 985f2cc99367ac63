"""Copy-on-write layers: an attempt's workspace as a kernel overlayfs over a read-only tree.

The lower layer is a cached checkout (jobs.checkouts) that belongs to root and is never
mounted anywhere a sandbox can see; only the merged directory is handed to the sandbox. The
overlay's lower layer is an *idmapped* clone of that tree (Linux ≥ 5.19: idmapped layers), so
every cached file shows as the attempt's own uid without a single chown: the agent can modify,
chmod, rename and delete base files as if it had checked them out itself, git inside the
sandbox sees a repository it owns, and each change is copied up into the attempt's upper
directory, owned by the attempt's uid. Nothing the agent does reaches the cache.

Mounting needs root (CAP_SYS_ADMIN in the host's mount namespace, which the Docker Engine
shares); `mount()` raises Unavailable, naming why, where it cannot, and jobs.checkouts falls
back to a clone. The merged directory is mounted in the worker's own mount namespace, so a
Docker Engine on the same host bind-mounts it like any directory, and bwrap's staging (which
opens the workspace by file descriptor) takes it as it is.

Plain paths in and out; Python 3.11 has no os.mount, so the system calls go through ctypes
(as jobs.sandbox.bwrap does for its own mount namespace).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# <linux/mount.h>, <fcntl.h>, <sched.h>; x86_64 and aarch64 share the new mount API's numbers.
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE, AT_RECURSIVE, AT_EMPTY_PATH, AT_FDCWD = 1, 0x8000, 0x1000, -100
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x100000
CLONE_NEWUSER = 0x10000000
MNT_DETACH = 2
# redirect_dir: renaming a lower directory works (the upper one records where it came from);
# without it rename(2) of a base directory fails with EXDEV, which `git mv` does not handle.
# volatile: no sync of the upper filesystem, on the agent's writes or at unmount (which would
# otherwise flush every dirty page of the data directory's filesystem, seconds on a busy host):
# after a crash a layer is thrown away, and what is kept of an attempt is its snapshot in the
# store, which git writes itself.
MOUNT_OPTIONS = "redirect_dir=on,volatile"
# mount(2) takes the layers as one comma-separated string; these would change its meaning.
UNSAFE_IN_OPTIONS = re.compile(r"[,:\\=\s]")
# More changed paths than this and the snapshot looks at the whole tree instead of naming them.
MAX_CHANGES = 2000
OPAQUE_XATTR, REDIRECT_XATTR = "trusted.overlay.opaque", "trusted.overlay.redirect"


class Unavailable(OSError):
    """This host or process cannot mount the layer; the message says why."""


@dataclass(frozen=True)
class Layer:
    """An attempt's layer: `merged` is the workspace; `upper` holds what the agent changed."""

    merged: Path
    upper: Path
    work: Path
    lower: Path  # where the idmapped clone of the cache is mounted while the overlay is made


def layer_in(directory: Path, merged: Path) -> Layer:
    return Layer(merged, directory / "upper", directory / "work", directory / "lower")


def mount(tree: Path, layer: Layer, uid: int) -> None:
    """Mount at `layer.merged` a view of `tree` whose writes go to a fresh upper directory, every
    file of `tree` shown as owned by `uid`. `layer`'s directories must not exist yet (`merged`'s
    parent must)."""
    for path in (tree, layer.merged, layer.upper):
        if UNSAFE_IN_OPTIONS.search(str(path.absolute())):
            raise Unavailable(
                errno.EINVAL,
                f"{path} holds a character overlayfs options cannot carry (,:\\= or a space)",
            )
    refused = refusal()
    if refused:
        raise Unavailable(errno.EPERM, refused)
    # Private: the upper directory is reachable only through the merged workspace.
    layer.upper.parent.mkdir(mode=0o700, exist_ok=True)
    for path in (layer.upper, layer.work, layer.lower, layer.merged):
        path.mkdir(mode=0o700)
    # The merged root takes the upper root's owner and mode: the workspace is the agent's.
    os.chown(layer.upper, uid, uid)
    layer.upper.chmod(0o755)
    with _user_namespace(uid) as userns:
        _mount_idmapped(tree, layer.lower, userns)
    try:
        options = (
            f"lowerdir={layer.lower.absolute()},upperdir={layer.upper.absolute()},"
            f"workdir={layer.work.absolute()},{MOUNT_OPTIONS}"
        )
        _call("mount", b"overlay", bytes(layer.merged.absolute()), b"overlay", 0, options.encode())
    finally:
        # The overlay holds a private clone of each layer's mount; this one is not needed.
        _call("umount2", bytes(layer.lower.absolute()), MNT_DETACH)


def refusal() -> str | None:
    """Why no layer can be mounted here at all, before anything is built for one."""
    if os.geteuid() != 0:
        return "the worker is not root, so it cannot mount overlayfs"
    return None


def unmount_under(directory: Path) -> None:
    """Unmount every mount at or below `directory`, deepest first (a layer's merged workspace,
    and an idmapped clone a killed worker left half made). Lazily: a sandbox still holding one
    cannot keep it from going."""
    for point in sorted(mounts_under(directory), key=len, reverse=True):
        _call("umount2", os.fsencode(point), MNT_DETACH)


def mounts_under(directory: Path) -> list[str]:
    root = os.path.realpath(directory)
    return [point for point in _mount_points() if point == root or point.startswith(root + os.sep)]


def is_layer(workspace: Path) -> bool:
    """Used by the sandbox backends: a layered workspace's files already show as the attempt's
    uid, and chowning them would copy every one up into its layer."""
    return os.path.realpath(workspace) in _mount_points()


def changes(workspace: Path) -> list[bytes] | None:
    """The paths (relative, as bytes) the layer mounted at `workspace` may have changed: what its
    upper directory holds, deleted paths included; a directory made anew (opaque) or renamed
    (redirected) as itself, since everything under it may differ. None when `workspace` is not
    a layer or the agent changed more than MAX_CHANGES paths: look at the whole tree then."""
    upper = _upper_of(os.path.realpath(workspace))
    if upper is None:
        return None
    found: list[bytes] = []
    for path in _changed(os.fsencode(upper), b""):
        found.append(path)
        if len(found) > MAX_CHANGES:
            return None
    return found


def _changed(upper: bytes, relative: bytes) -> Iterator[bytes]:
    with os.scandir(os.path.join(upper, relative) if relative else upper) as entries:
        for entry in entries:
            path = os.path.join(relative, entry.name) if relative else entry.name
            if not relative and entry.name == b".git":
                continue  # the agent's own repository; the snapshot never reads it
            if not entry.is_dir(follow_symlinks=False):
                yield path
            elif _xattr(entry.path, OPAQUE_XATTR) == b"y" or _xattr(entry.path, REDIRECT_XATTR):
                yield path
            else:
                yield from _changed(upper, path)


def _xattr(path: bytes, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _upper_of(point: str) -> str | None:
    for fields in _mountinfo():
        if fields[4] == point and fields[-3] == "overlay":
            options = dict(
                option.partition("=")[::2] for option in fields[-1].split(",") if "=" in option
            )
            return options.get("upperdir")
    return None


def _mount_points() -> set[str]:
    return {fields[4] for fields in _mountinfo()}


def _mountinfo() -> list[list[str]]:
    """/proc/self/mountinfo's lines as fields, octal escapes (\\040 for a space) undone."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
        return [
            [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field) for field in line.split()]
            for line in fh
        ]


class _user_namespace:  # noqa: N801 - used as a context manager, like open()
    """A user namespace mapping its root to host `uid` (and gid), as an open fd: what an
    idmapped mount is made from. A multi-threaded worker cannot unshare itself, so a short-lived
    child does and the parent writes its maps (as root, no newuidmap needed)."""

    def __init__(self, uid: int) -> None:
        self.uid = uid
        self.fd = -1

    def __enter__(self) -> int:
        unshare = _libc()["unshare"]

        def in_child() -> None:
            if unshare(CLONE_NEWUSER) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")

        # Popen returns once the child has exec'd, so it has unshared by then.
        child = subprocess.Popen(  # noqa: S603 - a fixed command
            ["sleep", "60"], preexec_fn=in_child, stdin=subprocess.DEVNULL, env={}, cwd="/"
        )
        try:
            for name in ("uid_map", "gid_map"):
                with open(f"/proc/{child.pid}/{name}", "w") as fh:
                    fh.write(f"0 {self.uid} 1\n")
            self.fd = os.open(f"/proc/{child.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise Unavailable(exc.errno, f"could not map a user namespace: {exc}") from exc
        finally:
            child.kill()
            child.wait()
        return self.fd

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _mount_idmapped(tree: Path, at: Path, userns: int) -> None:
    syscall = _libc()["syscall"]
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | AT_RECURSIVE
    clone = syscall(SYS_OPEN_TREE, AT_FDCWD, bytes(tree.absolute()), flags)
    if clone < 0:
        raise _unavailable("open_tree", tree)
    try:
        attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns)
        size = ctypes.sizeof(attr)
        if syscall(SYS_MOUNT_SETATTR, clone, b"", AT_EMPTY_PATH, ctypes.byref(attr), size) < 0:
            raise _unavailable("an idmapped mount (mount_setattr)", tree)
        target = bytes(at.absolute())
        if syscall(SYS_MOVE_MOUNT, clone, b"", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0:
            raise _unavailable("move_mount", at)
    finally:
        os.close(clone)


def _unavailable(what: str, path: Path) -> Unavailable:
    code = ctypes.get_errno()
    return Unavailable(code, f"{what} of {path}: {os.strerror(code)} (needs Linux 5.19 or newer)")


def _call(name: str, *args: object) -> None:
    if _libc()[name](*args) != 0:
        code = ctypes.get_errno()
        raise Unavailable(code, f"{name}: {os.strerror(code)}")


@functools.cache
def _libc() -> dict[str, Callable[..., int]]:
    """Looked up in the parent: dlsym in a forked child of a threaded worker may deadlock."""
    libc = ctypes.CDLL(None, use_errno=True)
    return {name: getattr(libc, name) for name in ("syscall", "mount", "umount2", "unshare")}
