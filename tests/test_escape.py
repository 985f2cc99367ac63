"""The escape suite: an agent trying to get out, through the real pipeline (API submit → a real
worker process → the sandbox → events and result → review and merge), on docker and on bwrap.

Every case shows the attempt failing safely and the host untouched and, where possible, a
positive control showing the probe is real: the same probe succeeding on the host, or a harmless
twin of it succeeding inside the sandbox. In every case the same worker then takes the next job.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from jobs import workspace
from jobs.models import Agent, Attempt, Job, Repository, Team
from tests.conftest import Workers, processes_of, shell_agent, wait_for

pytestmark = pytest.mark.slow

BACKENDS = [pytest.param("docker", marks=pytest.mark.docker), "bwrap"]
FOLLOW_UP = "echo ok > ok.txt"
MARKER_PREFIX = "/tmp/agenthub-escape-marker"  # noqa: S108 - the host's /tmp, on purpose
REDIS = ("127.0.0.1", 6379)
DOCKER0 = "172.17.0.1"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "docker":
        found = subprocess.run(
            ["docker", "image", "inspect", settings.AGENTHUB_SANDBOX_IMAGE],
            capture_output=True,
            check=False,
        )
        assert found.returncode == 0, (
            f"no {settings.AGENTHUB_SANDBOX_IMAGE} on the Docker Engine: make sandbox-image"
        )
    return name


@pytest.fixture
def agent(backend: str, team: Team) -> Agent:
    return shell_agent(
        team,
        name=f"esc-{backend}",
        backend=backend,
        timeout_seconds=60,
        memory_mb=256,
        max_processes=64,
    )


def tuned(agent: Agent, **limits: Any) -> Agent:
    for name, value in limits.items():
        setattr(agent, name, value)
    agent.save(update_fields=list(limits))
    return agent


def submit(client: Any, agent: Agent, prompt: str) -> str:
    response = client.post("/api/v1/jobs", {"repo": "demo", "agent": agent.name, "prompt": prompt})
    assert response.status_code == 202, response.content
    return str(response.json()["id"])


def escape(
    client: Any, workers: Workers, agent: Agent, *scripts: str, **worker_env: str
) -> list[Attempt]:
    """Run each script as a job, then a harmless one, on one worker; return the scripts'
    attempts once the worker has shown it survived them and they left nothing running."""
    bad = [submit(client, agent, script) for script in scripts]
    follow_up = submit(client, agent, FOLLOW_UP)
    workers.burst(120, **worker_env)
    if Job.objects.get(public_id=follow_up).status in ("queued", "running"):
        workers.burst(120, **worker_env)
    attempts = [Job.objects.get(public_id=public_id).attempts.get() for public_id in bad]
    for attempt in attempts:
        assert attempt.card.get("backend") == agent.backend, (attempt.status, attempt.reason)
        assert attempt.is_finished, attempt.status
        assert_nothing_left(attempt)
    ok = Job.objects.get(public_id=follow_up)
    ok_attempt = ok.attempts.get()
    assert ok.status == "needs_review", (ok_attempt.reason, log_of(ok_attempt)[-2000:])
    assert [f["path"] for f in ok_attempt.files] == ["ok.txt"]
    assert ok_attempt.started_at and all(
        a.finished_at and ok_attempt.started_at >= a.finished_at for a in attempts
    )
    return attempts


def assert_nothing_left(attempt: Attempt) -> None:
    # Waited for, not asserted at once: when an agent exits by itself, bwrap's outer process
    # exits as soon as its init inside reports the exit code, so that init is reparented to the
    # host's PID 1 and stays a zombie of the sandbox uid until PID 1 reaps it (about a second).
    wait_for(
        lambda: processes_of(attempt.card["uid"]) == [],
        timeout=15,
        what=f"the processes of uid {attempt.card['uid']} to go",
    )
    if attempt.card["backend"] == "docker":
        left = subprocess.run(
            [
                "docker",
                "ps",
                "--all",
                "--quiet",
                "--filter",
                f"label=agenthub.attempt={attempt.pk}",
                "--filter",
                f"label=agenthub.instance={settings.AGENTHUB_INSTANCE}",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert left.stdout.strip() == ""


def log_of(attempt: Attempt) -> str:
    return "\n".join(attempt.events.order_by("seq").values_list("text", flat=True))


def host_shadow_root_line() -> str:
    line = Path("/etc/shadow").read_text().splitlines()[0]
    assert line.startswith("root:")
    return line


def store_main(repo: Repository) -> str:
    return workspace.resolve_commit(Path(repo.store_path), "main")


def approve_and_merge(api: Any, bob: Any, public_id: str) -> Any:
    review = api(bob).post(f"/api/v1/jobs/{public_id}/reviews", {"decision": "approve"})
    assert review.status_code == 201, review.content
    return api(bob).post(f"/api/v1/jobs/{public_id}/merge")


# --- writes and reads outside the workspace --------------------------------------------------


def test_agent_cannot_write_outside_the_workspace(api, alice, repo, workers, agent):
    name = f"agenthub-escape-{secrets.token_hex(6)}"
    store = Path(repo.store_path)
    targets = [Path("/") / name, Path("/etc") / name, Path("/root") / name, store / name]
    head, main = (store / "HEAD").read_bytes(), store_main(repo)
    # The cached checkout the attempt's workspace is layered over (jobs.checkouts).
    cached = settings.AGENTHUB_DATA_DIR / "checkouts" / main / "tree"
    targets.append(cached / name)
    script = "\n".join(
        [
            'try_write() { if (echo pwned > "$1") 2>/dev/null; then echo "WROTE $1"; '
            'else echo "REFUSED $1"; fi; }',
            *(f"try_write {target}" for target in targets),
            f"try_write {store}/HEAD",
            f"try_write {store}/refs/heads/main",
            f"try_write {cached}/.git/HEAD",
            "try_write /workspace/inside.txt",
            "try_write /tmp/inside.txt",
        ]
    )

    (attempt,) = escape(api(alice), workers, agent, script)

    log = log_of(attempt)
    for target in [*targets, store / "HEAD", store / "refs/heads/main", cached / ".git/HEAD"]:
        assert f"REFUSED {target}" in log
    for target in targets:
        assert not target.exists()
    assert (store / "HEAD").read_bytes() == head and store_main(repo) == main
    assert (cached / ".git" / "HEAD").read_text() == f"{main}\n"  # built, and left as built
    # Positive control: the same probe writes where the agent may write.
    assert "WROTE /workspace/inside.txt" in log and "WROTE /tmp/inside.txt" in log
    assert [f["path"] for f in attempt.files] == ["inside.txt"]


def test_agent_cannot_read_host_secrets(api, alice, repo, workers, agent):
    shadow = host_shadow_root_line()
    script = """
cat /etc/shadow && echo "READ /etc/shadow" || echo "REFUSED /etc/shadow"
echo "canary=[${AGENTHUB_CANARY_SECRET:-}]"
hits=$(cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c '^AGENTHUB_CANARY_SECRET=')
echo "environ hits=$hits"
ls -A /root/.ssh && echo "LISTED /root/.ssh" || echo "REFUSED /root/.ssh"
cat /root/.ssh/* ~/.ssh/* && echo "READ ssh keys" || echo "REFUSED ssh keys"
echo "job=[$AGENTHUB_JOB_ID]"
"""
    # The worker really holds the canary: it is in the environment the tests give it.
    assert workers.env()["AGENTHUB_CANARY_SECRET"] == Workers.CANARY

    (attempt,) = escape(api(alice), workers, agent, script)

    log = log_of(attempt)
    assert "REFUSED /etc/shadow" in log and shadow not in log
    assert "canary=[]" in log and "environ hits=0" in log and Workers.CANARY not in log
    assert "REFUSED /root/.ssh" in log and "REFUSED ssh keys" in log
    assert "BEGIN OPENSSH" not in log and "PRIVATE KEY" not in log
    # Positive control: a variable the agent is given does show.
    assert f"job=[{attempt.job.public_id}]" in log


# --- the network -----------------------------------------------------------------------------


class Listener(socketserver.ThreadingTCPServer):
    """A TCP server on every host address, recording who connected."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("0.0.0.0", 0), _Recorder)  # noqa: S104 - every address, on purpose
        self.peers: list[str] = []


class _Recorder(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, Listener)
        self.server.peers.append(self.client_address[0])


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def host_addresses() -> list[str]:
    """The host's own IPv4 addresses (`hostname -I`): its primary one and docker0's."""
    found = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=True).stdout
    addresses = [address for address in found.split() if ":" not in address]
    assert DOCKER0 in addresses, f"no docker0 ({DOCKER0}) among {addresses}: is dockerd running?"
    return addresses


def network_probe(port: int) -> str:
    targets = [REDIS, *((address, port) for address in ["127.0.0.1", *host_addresses()])]
    tcp = "\n".join(f"probe {host} {port}" for host, port in targets)
    python = "\n".join(f"py_probe({host!r}, {port})" for host, port in targets)
    return f"""
probe() {{
  if timeout 5 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; then echo "REACHED $1:$2"
  else echo "REFUSED $1:$2"; fi
}}
{tcp}
python3 - <<'EOF'
import socket
def py_probe(host, port):
    try:
        socket.create_connection((host, port), timeout=5).close()
        print(f"PY REACHED {{host}}:{{port}}")
    except OSError as exc:
        print(f"PY REFUSED {{host}}:{{port}} ({{exc}})")
{python}
try:
    socket.getaddrinfo("deb.debian.org", 443)
    print("PY RESOLVED deb.debian.org")
except OSError as exc:
    print(f"PY UNRESOLVED deb.debian.org ({{exc}})")
EOF
getent hosts deb.debian.org && echo "RESOLVED deb.debian.org" || echo "UNRESOLVED deb.debian.org"
getent hosts localhost >/dev/null && echo "RESOLVED localhost"
"""


def test_agent_cannot_reach_the_network(api, alice, repo, workers, agent, listener, tmp_path):
    port = listener.server_address[1]
    script = network_probe(port)
    targets = [f"{host}:{port}" for host in ["127.0.0.1", *host_addresses()]]
    # Positive control: on the host the very same probe reaches Redis and the listener on every
    # address (DNS is not asserted there: this host may have no resolver at all).
    host = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    ).stdout
    for target in [f"{REDIS[0]}:{REDIS[1]}", *targets]:
        assert f"REACHED {target}" in host and f"PY REACHED {target}" in host, host
    wait_for(lambda: len(listener.peers) == 2 * len(targets), timeout=5, what="the host's probes")
    listener.peers.clear()

    (attempt,) = escape(api(alice), workers, agent, script)

    log = log_of(attempt)
    for target in [f"{REDIS[0]}:{REDIS[1]}", *targets]:
        assert f"REFUSED {target}" in log and f"PY REFUSED {target}" in log, log
    assert "REACHED" not in log
    assert listener.peers == []
    assert "UNRESOLVED deb.debian.org" in log and "PY UNRESOLVED deb.debian.org" in log
    assert "RESOLVED localhost" in log  # the resolver itself works inside


# --- privileges ------------------------------------------------------------------------------


def test_agent_cannot_reach_docker_host_root_mount_unshare_or_setuid(
    api, alice, repo, workers, agent
):
    shadow = host_shadow_root_line()
    host_only = Path(f"/tmp/agenthub-escape-hostonly-{secrets.token_hex(6)}")  # noqa: S108
    content = f"host-only-{secrets.token_hex(12)}"
    host_only.write_text(content)
    host_only.chmod(0o644)
    script = f"""
for sock in /var/run/docker.sock /run/docker.sock; do
  if [ -e "$sock" ]; then echo "FOUND $sock"; else echo "ABSENT $sock"; fi
done
ls -A /proc/1/root/root && echo "LISTED /proc/1/root/root" || echo "REFUSED /proc/1/root/root"
cat /proc/1/root/etc/shadow && echo "READ shadow" || echo "REFUSED /proc/1/root/etc/shadow"
cat /proc/1/root{host_only} {host_only} && echo "READ host-only" || echo "REFUSED host-only"
mkdir -p /tmp/mnt
mount -t tmpfs x /tmp/mnt && echo "MOUNTED" || echo "REFUSED mount"
unshare -r true && echo "UNSHARED" || echo "REFUSED unshare"
python3 -c "
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
refused = libc.unshare(0x10000000) != 0  # CLONE_NEWUSER
print('REFUSED py unshare' if refused else 'UNSHARED py', os.strerror(ctypes.get_errno()))
"
su -c 'id -u > /tmp/su-uid' root </dev/null; echo "su exit $?"
[ -s /tmp/su-uid ] && echo "SU RAN AS $(cat /tmp/su-uid)"
grep -E '^(CapEff|CapPrm|NoNewPrivs):' /proc/self/status
echo "uid=$(id -u) euid=$(python3 -c 'import os; print(os.geteuid())')"
"""
    try:
        (attempt,) = escape(api(alice), workers, agent, script)
    finally:
        host_only.unlink()

    log = log_of(attempt)
    assert "ABSENT /var/run/docker.sock" in log and "ABSENT /run/docker.sock" in log
    assert "REFUSED /proc/1/root/root" in log and ".claude" not in log
    assert "REFUSED /proc/1/root/etc/shadow" in log and shadow not in log
    assert "REFUSED host-only" in log and content not in log
    assert "REFUSED mount" in log and "MOUNTED" not in log
    assert "REFUSED unshare" in log and "REFUSED py unshare" in log and "UNSHARED" not in log
    assert "SU RAN AS" not in log
    assert "CapEff:\t0000000000000000" in log and "CapPrm:\t0000000000000000" in log
    assert "NoNewPrivs:\t1" in log
    ids = next(line for line in log.splitlines() if line.startswith("uid=")).split()
    assert [int(i.split("=")[1]) != 0 for i in ids] == [True, True], ids


# --- resource exhaustion ---------------------------------------------------------------------


def test_a_fork_bomb_stops_at_the_process_limit(api, alice, repo, workers, agent):
    # Forks until the limit refuses one. Not bash's `sleep 30 &` in a loop: bash meets a refused
    # fork by retrying it with back-off for 15 s before it gives up, and that is all it adds.
    script = """python3 - <<'EOF'
import os, time
for n in range(1000):
    try:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
    except OSError as refused:
        print(f"fork {n}: {refused.strerror}", flush=True)
        break
else:
    print("spawned all")
EOF"""

    (attempt,) = escape(api(alice), workers, agent, script)

    log = log_of(attempt)
    assert "Resource temporarily unavailable" in log
    assert "spawned all" not in log
    refused = next(line for line in log.splitlines() if line.startswith("fork "))
    assert int(refused.split()[1].rstrip(":")) < agent.max_processes, refused
    assert attempt.status in ("failed", "succeeded"), attempt.reason
    assert (attempt.finished_at - attempt.started_at).total_seconds() < 60


def test_a_memory_bomb_fails_the_attempt_as_out_of_memory(api, alice, repo, workers, agent):
    script = 'echo "allocating"\npython3 -c "x = bytearray(2 * 1024**3)"'

    (attempt,) = escape(api(alice), workers, agent, script)

    assert "allocating" in log_of(attempt)
    assert attempt.status == "failed"
    assert "out of memory" in attempt.reason, (attempt.reason, log_of(attempt)[-1000:])


def test_filling_tmp_hits_its_size_limit(api, alice, repo, workers, agent):
    tuned(agent, memory_mb=128)  # bwrap sizes /tmp by the memory limit; docker's is 64 MB
    script = """
dd if=/dev/zero of=/tmp/fill bs=1M count=200
echo "dd exit $?"
echo "filled $(stat -c %s /tmp/fill)"
echo after > after.txt
"""

    (attempt,) = escape(api(alice), workers, agent, script)

    log = log_of(attempt)
    assert "No space left on device" in log and "dd exit 1" in log
    filled = int(next(line for line in log.splitlines() if line.startswith("filled ")).split()[1])
    assert 0 < filled < 200 * 1024**2
    assert attempt.status == "succeeded", attempt.reason
    assert [f["path"] for f in attempt.files] == ["after.txt"]


def test_a_flood_of_output_is_truncated_with_a_notice(api, alice, repo, workers, agent):
    limit = 1024 * 1024
    script = "head -c 100000000 /dev/zero | tr '\\0' 'x' | fold -w 1000\necho done > done.txt"

    (attempt,) = escape(api(alice), workers, agent, script, AGENTHUB_MAX_LOG_BYTES=str(limit))

    assert attempt.status == "succeeded", attempt.reason
    kinds_and_texts = list(attempt.events.order_by("seq").values_list("kind", "text"))
    notice = ("warning", f"output truncated after {limit} bytes")
    assert kinds_and_texts.count(notice) == 1
    after = kinds_and_texts[kinds_and_texts.index(notice) + 1 :]
    assert [kind for kind, _ in after] == ["status"]  # the notice ends the output
    logged = sum(len(text) for kind, text in kinds_and_texts if kind == "log")
    assert limit - 1000 <= logged <= limit
    assert len(kinds_and_texts) < 1200
    assert [f["path"] for f in attempt.files] == ["done.txt"]


# --- git planted in the workspace ------------------------------------------------------------

HOOKS = (
    "pre-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "post-checkout",
    "post-merge",
    "pre-merge-commit",
    "post-rewrite",
    "pre-push",
    "pre-receive",
    "update",
    "post-receive",
    "post-update",
    "reference-transaction",
    "post-index-change",
    "pre-auto-gc",
)


def git_plant(marker: Path) -> str:
    """Plants every way the workspace's git could run a command; each touches `marker-<how>`."""
    hooks = " ".join(HOOKS)
    return f"""
set -e
M={marker}
git config core.fsmonitor "touch $M-fsmonitor"
mkdir -p .git/hooks .git/evil-hooks
for hook in {hooks}; do
  printf '#!/bin/sh\\ntouch %s-hooks\\n' "$M" > .git/hooks/$hook
  printf '#!/bin/sh\\ntouch %s-hookspath\\n' "$M" > .git/evil-hooks/$hook
  chmod +x .git/hooks/$hook .git/evil-hooks/$hook
done
git config core.hooksPath .git/evil-hooks
git config filter.evil.clean "touch $M-filter; cat"
git config filter.evil.smudge "touch $M-filter; cat"
git config filter.evil.required true
git config diff.external "touch $M-diff-external"
git config diff.evil.textconv "touch $M-textconv; cat"
echo '* filter=evil diff=evil' > .gitattributes
echo change >> app.py
echo planted
"""


PLANTED = ("fsmonitor", "hooks", "hookspath", "filter", "diff-external", "textconv")


@pytest.fixture
def marker() -> Iterator[Path]:
    """A name in the HOST's /tmp: payloads touch `<marker>-<how>`, which inside a sandbox lands in
    its private /tmp instead. Whatever appears is removed afterwards."""
    path = Path(f"{MARKER_PREFIX}-{secrets.token_hex(6)}")
    yield path
    for found in path.parent.glob(f"{path.name}-*"):
        found.unlink()


def payloads_run(marker: Path) -> set[str]:
    return {
        found.name.removeprefix(f"{marker.name}-")
        for found in marker.parent.glob(f"{marker.name}-*")
    }


def run_planted_git_on_the_host(script: str, tmp_path: Path) -> None:
    """The positive control: plain git on the host, in a repository the test builds and plants
    with the same script, runs every payload."""
    control = tmp_path / "control"
    control.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "control",
        "GIT_AUTHOR_EMAIL": "control@localhost",
        "GIT_COMMITTER_NAME": "control",
        "GIT_COMMITTER_EMAIL": "control@localhost",
    }

    def sh(command: str) -> None:
        subprocess.run(["bash", "-c", command], cwd=control, env=env, capture_output=True)

    sh("git init -q -b main . && echo 'x = 1' > app.py && git add app.py && git commit -qm base")
    done = subprocess.run(["bash", "-c", script], cwd=control, env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    for command in (
        "git status",
        "git diff",
        "git diff --no-ext-diff",
        "git add -A",
        "git commit -qm planted",
        "git -c core.hooksPath=.git/hooks commit -q --allow-empty -m hooks",
    ):
        sh(command)


def test_git_config_planted_by_the_agent_never_runs_on_the_host(
    api, alice, bob, repo, workers, agent, marker, tmp_path
):
    script = git_plant(marker)
    run_planted_git_on_the_host(script, tmp_path)
    assert payloads_run(marker) == set(PLANTED)
    for found in marker.parent.glob(f"{marker.name}-*"):
        found.unlink()

    (attempt,) = escape(api(alice), workers, agent, script)
    assert "planted" in log_of(attempt), log_of(attempt)
    assert {f["path"] for f in attempt.files} == {".gitattributes", "app.py"}
    diff = api(bob).get(f"/api/v1/jobs/{attempt.job.public_id}/diff")
    assert diff.status_code == 200 and b"filter=evil" in diff.content
    merged = approve_and_merge(api, bob, attempt.job.public_id)

    assert merged.status_code == 200, merged.content
    assert payloads_run(marker) == set()


# --- results that are not plain files --------------------------------------------------------

ODD_NAME = "bad\tname\x01"
ODD_RESULT = """
ln -s /etc/passwd passwd-link
printf 'odd\\n' > $'bad\\tname\\x01'
blob=$(git hash-object -w app.py)
for path in ../escape .git/config; do
  git update-index --add --cacheinfo "100644,$blob,$path" && echo "INDEXED $path" \
    || echo "REFUSED $path"
done
tree=$(printf '100644 blob %s\\t..\\n100644 blob %s\\t.git\\n' "$blob" "$blob" | git mktree) \
  && git update-ref HEAD "$(git commit-tree "$tree" -m evil)" && echo "PLANTED tree $tree"
mkdir -p nested/.git && echo '[core]' > nested/.git/config
echo listed
"""
GIT_LOOKALIKE = "mkdir .GIT && echo '[core]' > .GIT/config\necho partial > partial.txt"


def test_odd_results_show_as_what_they_are_and_merge_writes_nothing_outside_the_store(
    api, alice, bob, repo, workers, agent
):
    passwd = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    host_passwd_first = Path("/etc/passwd").read_text().splitlines()[0]
    store = Path(repo.store_path)
    main = store_main(repo)

    odd, lookalike = escape(api(alice), workers, agent, ODD_RESULT, GIT_LOOKALIKE)

    assert odd.status == "succeeded" and "listed" in log_of(odd), (odd.reason, log_of(odd))
    assert sorted(f["path"] for f in odd.files) == sorted([ODD_NAME, "passwd-link"])
    patch = api(alice).get(f"/api/v1/jobs/{odd.job.public_id}/diff").content.decode()
    link = patch[patch.index("diff --git a/passwd-link") :]
    assert link.startswith("diff --git a/passwd-link b/passwd-link\nnew file mode 120000\n")
    assert "\n+/etc/passwd\n\\ No newline at end of file" in link
    assert host_passwd_first not in patch
    assert '"b/bad\\tname\\001"' in patch  # git quotes the name, control characters included

    # A path git itself refuses (".GIT" is ".git" to NTFS and HFS) never reaches the store:
    # either the result leaves it out or the attempt fails and says which path.
    lookalike_paths = [f["path"] for f in lookalike.files]
    assert not [p for p in lookalike_paths if p.lower().startswith(".git")]
    assert lookalike.status == "succeeded" or ".GIT" in lookalike.reason, lookalike.reason
    assert store_main(repo) == main

    around = {p: sorted(os.listdir(p)) for p in (store.parent, Path(repo.push_url).parent)}
    merged = approve_and_merge(api, bob, odd.job.public_id)

    assert merged.status_code in (200, 409), merged.content
    assert {p: sorted(os.listdir(p)) for p in around} == around
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() == passwd
    if merged.status_code == 200:
        tree = workspace.run_git(["ls-tree", "-r", "-z", "main"], git_dir=store).stdout
        entries = dict(
            (path.decode(), info.split()[0].decode())
            for info, _, path in (e.partition(b"\t") for e in tree.split(b"\0") if e)
        )
        assert entries["passwd-link"] == "120000" and ODD_NAME in entries
        assert not [p for p in entries if ".." in p.split("/") or ".git" in p.lower().split("/")]
