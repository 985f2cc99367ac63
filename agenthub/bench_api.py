"""`make bench`'s API figures: a plain `make run` stack (agenthub/run.py: SQLite, an embedded
Redis, the ASGI server and its workers running the submitted jobs meanwhile) on a free port and a
fresh data directory, loaded with one new connection per request.

The client is asyncio over raw sockets, `Connection: close`: no HTTP library on the path, so
the client spends a few tens of microseconds per request of the CPU it measures (the machine's
cores are shared with the server and the workers). Each figure is printed beside the baseline
measured in the same run, because absolute numbers on a shared machine are noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agenthub.embedded_redis import die_with_parent, embedded_redis
from agenthub.run import WORKERS

SUBMIT = {"repo": "demo", "agent": "shell", "prompt": "true", "title": "bench"}
UNFINISHED = ("queued", "running")


@dataclass
class Sizes:
    """How much load each phase puts on: `make bench` uses the defaults, the test tiny ones."""

    warmup: int = 10
    sequential: int = 100
    concurrent: int = 200
    clients: tuple[int, ...] = (20, 50)
    in_process: int = 50
    jobs: int = 100
    patience: float = 120.0


@dataclass
class Stack:
    host: str
    port: int
    data_dir: Path
    redis_url: str
    env: dict[str, str]
    tokens: dict[str, str]


@dataclass
class Report:
    """Latencies in seconds by phase name; the figures `targets()` compares."""

    server: str
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    in_process: list[float] = field(default_factory=list)
    jobs_per_second: float = 0.0
    jobs_finished: int = 0


# --- the stack ------------------------------------------------------------------------------


@contextlib.contextmanager
def stack(server: str, root: Path) -> Iterator[Stack]:
    """`python -m agenthub.run` (what `make run` runs) on a fresh data directory under `root`,
    with the bwrap sandbox and the team limit at the worker count. The embedded Redis is started
    here, as run.py would, so that the bench can time a round trip to it. The rate limit is raised
    past what the bench sends, but still counted on every request."""
    data = Path(tempfile.mkdtemp(prefix="stack-", dir=root))
    data.chmod(0o755)  # the sandbox user traverses it to reach the workspaces
    port = _free_port()
    with embedded_redis() as redis_url:
        env = {
            **os.environ,
            "AGENTHUB_DATA_DIR": str(data),
            "AGENTHUB_PORT": str(port),
            "AGENTHUB_ASGI_SERVER": server,
            "AGENTHUB_SANDBOX": "bwrap",
            "AGENTHUB_TEAM_CONCURRENCY": str(WORKERS),
            "AGENTHUB_API_RATE_LIMIT": "1000000/60",
            "REDIS_URL": redis_url,
        }
        env.pop("DATABASE_URL", None)  # make run's default: SQLite in the data directory
        log = data / "stack.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agenthub.run"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # noqa: PLW1509
            )
        try:
            _wait_for_login_page("127.0.0.1", port, proc, log)
            users = json.loads((data / "demo-credentials.json").read_text())["users"]
            tokens = {name: user["token"] for name, user in users.items()}
            yield Stack("127.0.0.1", port, data, redis_url, env, tokens)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            shutil.rmtree(data, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_login_page(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"make run's stack exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            status, _, _ = asyncio.run(request(host, port, "GET", "/accounts/login/"))
            if status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"make run's stack did not answer in 120 s:\n{log.read_text()[-3000:]}")


# --- the client -----------------------------------------------------------------------------


async def request(
    host: str, port: int, method: str, path: str, token: str = "", body: bytes = b""
) -> tuple[int, bytes, float]:
    """One request on a new connection: (status, body, seconds from connect to the last byte)."""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
        if token:
            head.append(f"Authorization: Bearer {token}")
        if body:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        raw = await reader.read()
    finally:
        writer.close()
    elapsed = time.perf_counter() - start
    headers, _, content = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in headers.lower():
        content = _dechunk(content)
    return int(headers.split(b" ", 2)[1]), content, elapsed


def _dechunk(data: bytes) -> bytes:
    out, rest = [], data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2 :]
    return b"".join(out)


async def _load(
    target: Stack, report: Report, phase: str, count: int, clients: int, call: tuple[Any, ...]
) -> None:
    """`count` calls from `clients` concurrent clients, each call on its own connection."""
    remaining = iter(range(count))
    samples: list[float] = []

    async def client() -> None:
        for _ in remaining:
            status, _, seconds = await request(target.host, target.port, *call)
            report.statuses[status] = report.statuses.get(status, 0) + 1
            samples.append(seconds)

    await asyncio.gather(*(client() for _ in range(clients)))
    report.latencies[phase] = samples


async def _sockets(
    target: Stack, report: Report, phase: str, count: int, clients: int, session: str
) -> None:
    """`count` websockets to the dashboard from `clients` concurrent clients, each timed from
    connecting to its first message (the header counters)."""
    from websockets.asyncio.client import connect

    origin = f"http://{target.host}:{target.port}"
    remaining = iter(range(count))
    samples: list[float] = []

    async def client() -> None:
        for _ in remaining:
            start = time.perf_counter()
            async with connect(
                f"ws://{target.host}:{target.port}/ws/dashboard/",
                additional_headers={"Cookie": f"sessionid={session}", "Origin": origin},
            ) as socket_:
                json.loads(await socket_.recv())
            samples.append(time.perf_counter() - start)

    await asyncio.gather(*(client() for _ in range(clients)))
    report.latencies[phase] = samples


def _count(target: Stack, token: str, status: str) -> int:
    path = f"/api/v1/jobs?status={status}&per_page=1"
    code, body, _ = asyncio.run(request(target.host, target.port, "GET", path, token))
    if code != 200:
        raise RuntimeError(f"GET {path} answered {code}: {body[:200]!r}")
    return int(json.loads(body)["count"])


# --- the phases -----------------------------------------------------------------------------


def measure(target: Stack, sizes: Sizes, server: str) -> Report:
    """The workers' throughput; then warm-ups, sequential GETs of one job and submits, concurrent
    GETs and submits (the workers running what was submitted meanwhile); in-process
    `submit_job`; websockets opened sequentially and concurrently."""
    report = Report(server)
    token = target.tokens["alice"]
    submit = ("POST", "/api/v1/jobs", token, json.dumps(SUBMIT).encode())
    status, body, _ = asyncio.run(request(target.host, target.port, *submit))
    if status != 202:
        raise RuntimeError(f"POST /api/v1/jobs answered {status}: {body[:300]!r}")
    get = ("GET", f"/api/v1/jobs/{json.loads(body)['id']}", token)

    async def phases() -> None:
        await _load(target, report, "warm-up GET", sizes.warmup, 1, get)
        await _load(target, report, "warm-up submit", sizes.warmup, 1, submit)
        await _load(target, report, "GET one job", sizes.sequential, 1, get)
        await _load(target, report, "submit", sizes.sequential, 1, submit)
        for clients in sizes.clients:
            await _load(target, report, f"GET @{clients}", sizes.concurrent, clients, get)
            await _load(target, report, f"submit @{clients}", sizes.concurrent, clients, submit)

    # First, while the queue is empty: the workers' throughput.
    _throughput(target, report, sizes.jobs, sizes.patience)
    asyncio.run(phases())
    report.latencies["Redis PING"] = _redis_round_trips(target.redis_url, sizes.sequential)
    report.in_process, session = _in_process_submits(target, sizes.in_process)

    async def websockets() -> None:
        await _sockets(target, report, "websocket", sizes.sequential, 1, session)
        for clients in sizes.clients:
            phase = f"websocket @{clients}"
            await _sockets(target, report, phase, sizes.concurrent, clients, session)

    asyncio.run(websockets())
    return report


def _redis_round_trips(url: str, count: int) -> list[float]:
    import redis

    client = redis.Redis.from_url(url)
    client.ping()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        client.ping()
        samples.append(time.perf_counter() - start)
    return samples


def _in_process_submits(target: Stack, count: int) -> tuple[list[float], str]:
    """`services.submit_job` timed in a process of its own on the stack's database and Redis
    (this process's Django is set up on the audit bench's scratch database); and a session of
    alice's for the websockets."""
    done = subprocess.run(
        [sys.executable, "-m", "agenthub.bench_api", "in-process", str(count)],
        env={**target.env, "DJANGO_SETTINGS_MODULE": "agenthub.settings"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"in-process submit failed:\n{done.stderr[-3000:]}")
    answer = json.loads(done.stdout.splitlines()[-1])
    return [float(x) for x in answer["samples"]], str(answer["session"])


def _time_submit_job(count: int) -> dict[str, Any]:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    from jobs import services

    alice = get_user_model()._default_manager.get(username="alice")
    samples = []
    for n in range(count + 3):  # three warm-ups
        start = time.perf_counter()
        services.submit_job(alice, repo="demo", agent="shell", prompt="true", title="bench")
        if n >= 3:
            samples.append(time.perf_counter() - start)
    browser = Client()
    browser.force_login(alice)
    return {"samples": samples, "session": browser.cookies["sessionid"].value}


def _throughput(target: Stack, report: Report, jobs: int, patience: float) -> None:
    """Jobs per second end to end: `jobs` submits from 20 clients on an idle stack, timed from
    the first submit until none is queued or running (or `patience` seconds have passed)."""
    token = target.tokens["alice"]

    def unfinished() -> int:
        return sum(_count(target, token, status) for status in UNFINISHED)

    submit = ("POST", "/api/v1/jobs", token, json.dumps(SUBMIT).encode())
    start = time.perf_counter()
    asyncio.run(_load(target, Report(report.server), "jobs", jobs, 20, submit))
    left = unfinished()
    while left and time.perf_counter() - start < patience:
        time.sleep(0.2)
        left = unfinished()
    report.jobs_finished = jobs - left
    report.jobs_per_second = report.jobs_finished / (time.perf_counter() - start)


# --- the report -----------------------------------------------------------------------------


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def show(report: Report, sandbox_start: float | None) -> None:
    base = statistics.median(report.latencies["GET one job"])
    print(f"\nAPI on make run's stack ({report.server}), new connection per request, ms")
    print(f"  {'':22} {'p50':>8} {'p99':>8} {'p50/GET':>8} {'p99/GET':>8}")
    for phase, samples in report.latencies.items():
        if phase.startswith("warm-up"):
            continue
        p50, p99 = statistics.median(samples), percentile(samples, 0.99)
        ms = f"{p50 * 1000:8.2f} {p99 * 1000:8.2f}"
        print(f"  {phase:22} {ms} {p50 / base:7.2f}x {p99 / base:7.2f}x")
    statuses = ", ".join(f"{count}×{code}" for code, count in sorted(report.statuses.items()))
    print(f"  responses: {statuses}")
    in_process = statistics.median(report.in_process)
    print(f"  in-process submit_job p50 {in_process * 1000:.1f} ms")
    print(
        f"  {report.jobs_finished} `true` shell jobs on bwrap finished by {WORKERS} workers: "
        f"{report.jobs_per_second:.1f}/s"
        + (
            f"; one bare bwrap start is {sandbox_start * 1000:.0f} ms, "
            f"{WORKERS / sandbox_start:.0f}/s for {WORKERS} workers"
            if sandbox_start
            else ""
        )
    )
    print("  targets")
    for name, value, target, met in targets(report):
        print(f"    {name:44} {value:8.1f}   target {target:10}  {'met' if met else 'MISSED'}")


def targets(report: Report) -> list[tuple[str, float, str, bool]]:
    """(what, measured, target, met) for issue 12's four targets."""
    get = statistics.median(report.latencies["GET one job"])
    submit = statistics.median(report.latencies["submit"])
    rows = [("submit p50 / GET p50 (sequential)", submit / get, "≤ 1.5x", submit / get <= 1.5)]
    if "submit @20" in report.latencies:
        p99 = percentile(report.latencies["submit @20"], 0.99) / get
        rows.append(("submit p99 @20 clients / sequential GET p50", p99, "≤ 10x", p99 <= 10))
    in_process = statistics.median(report.in_process) * 1000
    rows.append(("in-process submit_job p50, ms", in_process, "≤ 5 ms", in_process <= 5))
    rate = report.jobs_per_second
    rows.append(("trivial jobs per second", rate, "≥ 50/s", rate >= 50))
    return rows


if __name__ == "__main__" and sys.argv[1:2] == ["in-process"]:
    print(json.dumps(_time_submit_job(int(sys.argv[2]))))
