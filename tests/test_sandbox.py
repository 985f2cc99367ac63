"""The bubblewrap and local backends' own behaviour against the real thing: bubblewrap, real
processes. What every real backend promises (output, environment, isolation, limits, kill) is
tested once, against bwrap and docker alike, in test_sandbox_contract.py.

Each security test shows the attempt failing inside the bwrap sandbox and the host untouched and,
where that is safe for the host, the same command succeeding through the local backend: proof
that the test could fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobs.sandbox import SandboxError, SandboxSpec, get_backend
from tests import sandbox_support as support
from tests.sandbox_support import LIMITS, Run, Start, live_processes, read_until

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the sandbox switches to per-attempt uids, which needs root"
)

workspace, start, run = support.workspace, support.start, support.run
# Away from test_sandbox_docker.py's (400_000) and test_sandbox_contract.py's (500_000).
uid = support.uid_fixture(300_000)


@pytest.fixture
def backend() -> str:
    return "bwrap"


def _group_members(pgid: int) -> list[dict[str, str]]:
    return [p for p in live_processes() if p["pgid"] == str(pgid)]


def test_agent_runs_as_an_unprivileged_user_without_capabilities(run: Run) -> None:
    probe = (
        "id -u; id -un; hostname; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; "
        "unshare --user true && echo NESTED-USERNS"
    )

    result = run(probe)

    assert result.stdout == [
        "1000",
        "agent",
        "agenthub",
        "CapEff:\t0000000000000000",
        "NoNewPrivs:\t1",
    ]
    assert "NESTED-USERNS" in run("unshare --user true && echo NESTED-USERNS", "local").stdout


def test_symlinks_in_the_workspace_cannot_reach_host_files(
    run: Run, workspace: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    (workspace / "absolute").symlink_to(secret)
    (workspace / "relative").symlink_to("../secret.txt")
    (workspace / "hostname").symlink_to("/etc/hostname")
    links = "absolute relative hostname"

    result = run(f"cat {links}; for link in {links}; do echo pwned > $link; done")

    assert result.stdout == []
    assert secret.read_text() == "top secret\n"
    assert secret.stat().st_uid == 0 and Path("/etc/hostname").stat().st_uid == 0
    assert run("cat absolute relative", "local").stdout == ["top secret", "top secret"]


def test_local_backend_points_read_only_file_variables_at_the_host_files(
    run: Run, tmp_path: Path
) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("fix the bug\n")
    path = "/run/agenthub/prompt.txt"

    result = run(
        'cat "$AGENTHUB_PROMPT_FILE"',
        "local",
        env={"AGENTHUB_PROMPT_FILE": path},
        ro_files={path: prompt},
    )

    assert result.stdout == ["fix the bug"]


def test_local_backend_kill_ends_its_process_group(start: Start) -> None:
    process = start("sleep 600 & echo ready; sleep 600", "local")
    read_until(process, "ready")
    assert [p["name"] for p in _group_members(process.pid)].count("sleep") == 2

    process.kill()

    assert _group_members(process.pid) == []
    assert process.wait() == -9


def test_unreachable_workspace_is_refused_with_a_hint(tmp_path: Path, uid: int) -> None:
    hidden = tmp_path / "hidden"
    (hidden / "workspace").mkdir(parents=True)
    hidden.chmod(0o700)
    spec = SandboxSpec(
        workspace=hidden / "workspace", command="true", env={}, limits=LIMITS, uid=uid
    )

    with pytest.raises(SandboxError, match=f"chmod o\\+x {hidden}"):
        get_backend("bwrap").start(spec)


def test_local_backend_is_refused_unless_allowed() -> None:
    with pytest.raises(SandboxError, match="AGENTHUB_ALLOW_LOCAL_SANDBOX=1"):
        get_backend("local")

    assert get_backend("local", allow_local=True).name == "local"


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(SandboxError, match="'nope'.*bwrap, local"):
        get_backend("nope")
