"""The standing cast (alice member, bob reviewer, carol outsider, admin), repositories made with
real git, API clients with real tokens, and real RQ workers started as subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import django_rq
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from agenthub.run import server_command
from jobs import builtin, overlay, services, workspace
from jobs.models import Agent, ApiToken, Attempt, Job, Membership, Repository, Role, Team

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _empty_queues() -> None:
    for name in ("high", "default", "low"):
        django_rq.get_queue(name).empty()


@pytest.fixture(autouse=True, scope="session")
def _attempt_ids_of_our_own(
    request: pytest.FixtureRequest, django_db_setup: None, django_db_blocker: Any
) -> None:
    """An attempt's sandbox runs as host uid SANDBOX_UID_BASE + its id (jobs/runner.py), which
    RLIMIT_NPROC counts and the sandbox's clean-up sweeps. Each pytest-xdist process has a test
    database of its own, so each numbers its attempts from a range of its own: two processes
    never run sandboxes as one uid. (Flushes between tests keep the counters.)"""
    worker = getattr(request.config, "workerinput", {}).get("workerid")
    if not worker:
        return
    start = int(worker.removeprefix("gw")) * 10_000 + 1
    table = Attempt._meta.db_table
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, false)", [table, start]
            )
        else:
            cursor.execute("DELETE FROM sqlite_sequence WHERE name = %s", [table])
            cursor.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, start - 1]
            )


@pytest.fixture
def agents(db: None) -> None:
    # Transactional tests truncate the tables, presets included; put them back.
    builtin.install(Agent)


@pytest.fixture
def team(agents: None) -> Team:
    return Team.objects.create(name="demo", concurrency_limit=2)


@pytest.fixture
def other_team(db: None) -> Team:
    return Team.objects.create(name="acme")


def _member(name: str, team: Team, role: str, **extra: Any) -> User:
    user = User.objects.create_user(name, f"{name}@example.com", "pw", **extra)
    Membership.objects.create(team=team, user=user, role=role)
    return user


@pytest.fixture
def alice(team: Team) -> User:
    return _member("alice", team, Role.MEMBER)


@pytest.fixture
def bob(team: Team) -> User:
    return _member("bob", team, Role.REVIEWER)


@pytest.fixture
def carol(other_team: Team) -> User:
    return _member("carol", other_team, Role.MEMBER)


class Api:
    """A JSON client for one user, authenticated by a real API token."""

    def __init__(self, user: User | None) -> None:
        self.client = Client()
        self.headers = {}
        if user is not None:
            _, key = ApiToken.issue(user, "tests")
            self.headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params, **self.headers)

    def post(self, path: str, body: Any = None) -> Any:
        data = json.dumps(body if body is not None else {})
        return self.client.post(path, data, content_type="application/json", **self.headers)

    def patch_json(self, path: str, body: Any = None) -> Any:
        data = json.dumps(body if body is not None else {})
        return self.client.patch(path, data, content_type="application/json", **self.headers)

    def put(self, path: str, body: Any = None) -> Any:
        data = json.dumps(body if body is not None else {})
        return self.client.put(path, data, content_type="application/json", **self.headers)


@pytest.fixture
def api() -> Callable[[User | None], Api]:
    return Api


def commit_files(path: Path, files: dict[str, str], message: str = "change") -> str:
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    git_dir = path / ".git"
    workspace.run_git(["add", "-A"], git_dir=git_dir, work_tree=path)
    workspace.run_git(["commit", "-q", "-m", message], git_dir=git_dir, work_tree=path)
    return workspace.run_git(["rev-parse", "HEAD"], git_dir=git_dir).stdout.decode().strip()


@pytest.fixture
def make_source(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "source", files: dict[str, str] | None = None) -> Path:
        path = tmp_path / name
        path.mkdir()
        workspace.run_git(["init", "-q", "-b", "main", str(path)])
        commit_files(path, files or {"app.py": "def greet():\n    return 'hello'\n"}, "initial")
        return path

    return make


@pytest.fixture
def repo(team: Team, make_source: Callable[..., Path], tmp_path: Path) -> Repository:
    """The team's `demo` repository, whose merges are pushed to a local bare upstream.

    Its store and the attempts' workspaces live under the test process's AGENTHUB_DATA_DIR.
    """
    source = make_source()
    upstream = tmp_path / "upstream.git"
    workspace.run_git(["clone", "-q", "--bare", str(source), str(upstream)])
    return services.register_repository("tests", team, "demo", str(source), push_url=str(upstream))


def shell_agent(team: Team | None = None, **fields: Any) -> Agent:
    """A team agent running the instruction as bash, with test-sized limits."""
    preset = Agent.objects.get(team=None, name="shell")
    return Agent.objects.create(
        team=team,
        name=fields.pop("name", "sh"),
        command=preset.command,
        **{"timeout_seconds": 60, "memory_mb": 1024, "max_processes": 64, **fields},
    )


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


class Workers:
    """Real `manage.py agenthub_worker` processes against the test database and Redis."""

    CANARY = "canary-9f3e1c-not-for-agents"

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "AGENTHUB_DATA_DIR": str(settings.AGENTHUB_DATA_DIR),
            # Pinned so results do not depend on whether a Docker Engine runs; the docker
            # backend has tests of its own that ask for it.
            "AGENTHUB_SANDBOX": "bwrap",
            "AGENTHUB_HEARTBEAT_TIMEOUT": "5",
            "AGENTHUB_RECONCILE_INTERVAL": "1",
            # A host secret no agent may see (tests/test_isolation.py looks for it).
            "AGENTHUB_CANARY_SECRET": self.CANARY,
            **extra,
        }

    def burst(self, timeout: float = 120, **extra: str) -> None:
        """Run one worker until the queues are empty."""
        done = subprocess.run(
            self._command("--burst"),
            env=self.env(**extra),
            timeout=timeout,
            capture_output=True,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]

    def start(self, **extra: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(self._command(), env=self.env(**extra), cwd=ROOT)
        self.procs.append(proc)
        return proc

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "manage.py", "agenthub_worker", *args]

    def stop(self) -> None:
        # RQ's first SIGTERM waits for the current job; the second stops it (cold shutdown).
        for _ in range(2):
            for proc in self.procs:
                if proc.poll() is None:
                    proc.terminate()
            time.sleep(0.3)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(transactional_db: None) -> Iterator[Workers]:
    running = Workers()
    yield running
    running.stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def job_status(public_id: str) -> str:
    return Job.objects.get(public_id=public_id).status


def processes_of(uid: int, job: str = "") -> list[int]:
    """PIDs of processes whose real uid is `uid` (used to prove sandboxes leave nothing), and,
    given a job, that run for it: the test processes' databases number attempts alike, so
    another test's sandbox may have the same uid."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            environ = (entry / "environ").read_bytes() if job else b""
        except OSError:
            continue
        if job and f"AGENTHUB_JOB_ID={job}".encode() not in environ.split(b"\0"):
            continue
        for line in status.splitlines():
            if line.startswith("Uid:") and int(line.split()[1]) == uid:
                found.append(int(entry.name))
    return found


@pytest.fixture(autouse=True, scope="session")
def _no_layer_left_mounted() -> Iterator[None]:
    """A worker a test kills mid-attempt (test_pipeline's lost workers) leaves its attempt's
    layer mounted, as on a real host until retention: unmount them all at the end, so the data
    directory can be removed."""
    yield
    overlay.unmount_under(settings.AGENTHUB_DATA_DIR)


@pytest.fixture(autouse=True, scope="session")
def _close_stray_connections(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Threads of asgiref's executor (consumers, async views under test) keep database
    connections of their own; end them so the test database can be dropped at the end."""
    yield
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


# --- a live server: the ASGI server `make run` starts --------------------------------------


@dataclass
class Server:
    host: str
    port: int
    pid: int


@pytest.fixture
def server_env() -> dict[str, str]:
    """Extra environment for the server (a test parametrizes this to change it)."""
    return {}


@pytest.fixture
def asgi_server() -> str:
    """Which ASGI server serves (a test parametrizes this to try the other)."""
    return settings.AGENTHUB_ASGI_SERVER


@pytest.fixture
def web_processes() -> int:
    """How many processes serve (AGENTHUB_WEB_PROCESSES; one unless a test asks for more)."""
    return 1


@pytest.fixture
def server(
    transactional_db: None,
    tmp_path: Path,
    server_env: dict[str, str],
    asgi_server: str,
    web_processes: int,
) -> Iterator[Server]:
    """The ASGI server `make run` starts, serving agenthub.asgi on a free port against the test
    database and Redis."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            server_command("127.0.0.1", port, asgi_server, web_processes),
            env=Workers().env(**server_env),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def listening() -> bool:
        assert proc.poll() is None, log.read_text()
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, what=f"{asgi_server} to listen")
        yield Server("127.0.0.1", port, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
