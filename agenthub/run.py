"""`make run`: migrate, load the demo, start Redis (if none is configured), the ASGI server and
two workers, print where to go, and stop everything on Ctrl-C.

`server_command()` is also how the tests and `make bench` start the ASGI server, so they run the
one AGENTHUB_ASGI_SERVER chooses; `python -m agenthub.run serve <bind> <port>` runs just that
server (the application image's web command)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from agenthub.embedded_redis import die_with_parent, embedded_redis

WORKERS = 2
APP = "agenthub.asgi:application"


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agenthub.settings")
    if sys.argv[1:2] == ["serve"] and len(sys.argv) == 4:
        from django.conf import settings

        command = server_command(
            sys.argv[2],
            int(sys.argv[3]),
            settings.AGENTHUB_ASGI_SERVER,
            settings.AGENTHUB_WEB_PROCESSES,
        )
        os.execv(command[0], command)  # noqa: S606 - the server replaces this process
    import django

    django.setup()
    from django.conf import settings

    port = settings.AGENTHUB_PORT
    bind = os.environ.get("AGENTHUB_BIND", "127.0.0.1")
    url = f"http://{'localhost' if bind in ('127.0.0.1', '0.0.0.0') else bind}:{port}/"  # noqa: S104
    settings.AGENTHUB_DATA_DIR.mkdir(parents=True, exist_ok=True)
    from jobs.sandbox import SandboxError, check_backend

    try:
        check_backend(
            settings.AGENTHUB_SANDBOX,
            settings.AGENTHUB_DATA_DIR,
            allow_local=settings.AGENTHUB_ALLOW_LOCAL_SANDBOX,
        )
    except SandboxError as exc:
        print(f"AgentHub cannot run agents here: {exc}", file=sys.stderr)
        return 1
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], check=True)
    subprocess.run([*manage, "load_demo", "--url", url], check=True)
    scripted = _scripted_model(manage, settings.AGENTHUB_MODEL_SCRIPT)
    with _redis() as redis_url:
        env = {**os.environ, "REDIS_URL": redis_url}
        children = [
            *scripted,
            subprocess.Popen(
                server_command(
                    bind, port, settings.AGENTHUB_ASGI_SERVER, settings.AGENTHUB_WEB_PROCESSES
                ),
                env=env,
            ),
            *(
                subprocess.Popen(
                    [*manage, "agenthub_worker", "--name", f"agenthub-{os.getpid()}-{n}"], env=env
                )
                for n in range(1, WORKERS + 1)
            ),
        ]
        print(
            f"\nAgentHub is running at {url}\n"
            f"Demo users and API tokens: {settings.AGENTHUB_DATA_DIR / 'demo-credentials.json'}\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        return _supervise(children)


def _scripted_model(manage: list[str], script: str) -> list[subprocess.Popen[bytes]]:
    """With AGENTHUB_MODEL_SCRIPT, the scripted model server on a free port, and the demo team's
    credential for every provider pointing at it: the AI presets can be tried with no key."""
    if not script:
        return []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = _start(
        [sys.executable, "-m", "scripted_model.server", script, "--port", str(port)],
        dict(os.environ),
    )
    for provider in ("anthropic", "openai", "google"):
        subprocess.run(
            [
                *manage,
                "set_model_credential",
                "--team",
                "demo",
                "--provider",
                provider,
                "--base-url",
                f"http://127.0.0.1:{port}",
            ],
            input=b"scripted-model-server\n",
            check=True,
        )
    print(f"AGENTHUB_MODEL_SCRIPT: the scripted model server plays {script} on port {port}")
    return [server]


@contextlib.contextmanager
def _redis() -> Iterator[str]:
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    with embedded_redis() as url:
        print(f"REDIS_URL not set: started an embedded Redis at {url}")
        yield url


def server_command(bind: str, port: int, server: str, processes: int = 1) -> list[str]:
    """The command line that serves agenthub.asgi on bind:port with `server` (uvicorn|daphne),
    in `processes` processes (uvicorn's --workers; daphne has one)."""
    if server == "daphne":
        return [sys.executable, "-m", "daphne", "-b", bind, "-p", str(port), APP]
    return [
        *(sys.executable, "-m", "uvicorn", APP, "--host", bind, "--port", str(port)),
        *(("--workers", str(processes)) if processes > 1 else ()),
        # Django has no lifespan events; websockets through the `websockets` package.
        *("--lifespan", "off", "--ws", "websockets-sansio"),
        # Without it a stop waits for every open event stream and long poll to end by itself.
        *("--timeout-graceful-shutdown", "5"),
    ]


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env, preexec_fn=die_with_parent)  # noqa: PLW1509


def _supervise(children: list[subprocess.Popen[bytes]]) -> int:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    # A worker's first SIGTERM waits for its attempt to end; the second stops it now (the attempt
    # is then marked lost and retried by the next start).
    for _ in range(2):
        for child in children:
            if child.poll() is None:
                child.terminate()
        time.sleep(0.5)
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    failed = [c.args for c in children if c.returncode not in (0, -signal.SIGTERM, -signal.SIGINT)]
    return 1 if failed and not stopping else 0


if __name__ == "__main__":
    sys.exit(main())
