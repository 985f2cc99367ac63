"""The `agenthub` CLI against a real server over HTTP (pytest-django's live_server, or the ASGI
server where events must stream), with real RQ workers, real git and the real sandbox behind it."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.models import User

from agenthub.run import server_command
from agenthub_cli.client import Client, CliError
from agenthub_cli.commands import line_comment
from agenthub_cli.config import config_path, credentials, save_config
from agenthub_cli.main import main
from agenthub_cli.output import clean
from jobs.models import ApiToken, Attempt, Job, Review
from tests.conftest import ROOT, Workers, job_status, shell_agent, wait_for

AGENTHUB = Path(sys.executable).with_name("agenthub")  # the installed console script
pytestmark = pytest.mark.slow


@dataclass
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def agenthub(live_server: Any, capsys: Any, monkeypatch: Any, tmp_path: Path) -> Run:
    """`agenthub(user, *args)` runs the CLI as that user (None: without a token)."""
    monkeypatch.setenv("AGENTHUB_URL", live_server.url)
    monkeypatch.delenv("AGENTHUB_TOKEN", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    # `agenthub login` writes here, never into the real user's configuration.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    tokens: dict[int, str] = {}

    def run(user: User | None, *args: str) -> Result:
        if user is not None and user.pk not in tokens:
            tokens[user.pk] = ApiToken.issue(user, "cli")[1]
        argv = [*args] if user is None else ["--token", tokens[user.pk], *args]
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def submit(agenthub: Run, user: User, prompt: str, *extra: str) -> str:
    done = agenthub(user, "submit", "--repo", "demo", "--agent", "shell", *extra, prompt)
    assert done.code == 0, done.err
    return done.out.strip()


def log_lines(output: str) -> list[str]:
    """The text of the `[log]` lines, without their timestamps."""
    return [line.split("] ", 1)[1] for line in output.splitlines() if " [log" in line]


def test_submit_prints_only_the_id_and_the_job_waits_queued(agenthub, alice, repo):
    done = agenthub(alice, "submit", "--repo", "demo", "--agent", "shell", "--title", "Hi", "true")
    assert done.code == 0, done.err
    public_id = done.out.strip()
    assert done.out == f"{public_id}\n"
    job = Job.objects.get(public_id=public_id)
    assert (job.status, job.title, job.submitter) == ("queued", "Hi", alice)


def test_submit_reads_the_prompt_from_stdin(agenthub, alice, repo, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("echo from stdin > f.txt\n"))
    public_id = submit(agenthub, alice, "-")
    assert Job.objects.get(public_id=public_id).prompt == "echo from stdin > f.txt\n"


def test_submit_reports_the_field_the_api_refused(agenthub, alice, repo):
    done = agenthub(alice, "submit", "--repo", "demo", "--agent", "nope", "true")
    assert done.code == 1
    assert done.out == ""
    assert done.err.startswith("agenthub: ")
    assert "(field: agent)" in done.err
    assert "Traceback" not in done.err


def test_wait_exits_0_at_needs_review_and_rings_the_bell(agenthub, alice, repo, workers):
    public_id = submit(agenthub, alice, "echo hello > hello.txt")
    workers.burst()

    done = agenthub(alice, "wait", public_id)

    assert done.code == 0, done.err
    assert done.out == f"{public_id} needs_review  echo hello > hello.txt\n"
    assert done.err.endswith("\a")


def test_submit_wait_returns_when_a_running_worker_is_done(agenthub, alice, repo, workers):
    workers.start()
    done = agenthub(
        alice,
        "submit",
        "--repo",
        "demo",
        "--agent",
        "shell",
        "--wait",
        "echo x > x.txt",
        "--timeout",
        "120",
    )
    assert done.code == 0, done.err
    public_id, final = done.out.splitlines()
    assert final == f"{public_id} needs_review  echo x > x.txt"
    assert done.err == "\a"


def test_wait_exits_1_when_the_job_failed(agenthub, alice, repo, workers):
    public_id = submit(agenthub, alice, "exit 3")
    workers.burst()
    done = agenthub(alice, "wait", public_id)
    assert done.code == 1
    assert done.out.startswith(f"{public_id} failed  ")
    assert done.err.endswith("\a")


def test_wait_exits_2_at_its_overall_timeout(agenthub, alice, repo):
    public_id = submit(agenthub, alice, "true")  # no worker: it stays queued
    done = agenthub(alice, "wait", public_id, "--timeout", "1")
    assert done.code == 2
    assert done.out == ""
    assert f"job {public_id} is still queued after 1 s" in done.err


def test_logs_print_the_output_lines_in_order_exactly_once(agenthub, alice, repo, workers):
    public_id = submit(agenthub, alice, "for i in 1 2 3 4 5; do echo line $i; done\necho oops >&2")
    workers.burst()

    done = agenthub(alice, "logs", public_id)

    assert done.code == 0, done.err
    # stdout and stderr are separate pipes, so only the order within each one is defined.
    lines = log_lines(done.out)
    assert [t for t in lines if t != "oops"] == ["line 1", "line 2", "line 3", "line 4", "line 5"]
    assert len(re.findall(r"^\d\d:\d\d:\d\d \[log:stderr\] oops$", done.out, re.MULTILINE)) == 1
    lines = done.out.splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d \[status\] queued", lines[0])
    assert lines[-1].endswith("[status] succeeded")
    assert len(lines) == Attempt.objects.get(job__public_id=public_id).last_seq


def test_logs_follow_on_a_finished_job_ends(agenthub, alice, repo, workers):
    public_id = submit(agenthub, alice, "echo one\necho two")
    workers.burst()

    done = agenthub(alice, "logs", public_id, "-f")

    assert done.code == 0, done.err
    assert log_lines(done.out) == ["one", "two"]
    assert done.out == agenthub(alice, "logs", public_id).out


def test_logs_follow_streams_a_running_attempt_to_its_end(
    agenthub, alice, repo, workers, asgi_server
):
    prompt = "for i in 1 2 3; do echo tick $i; sleep 1; done\necho '::progress::50 half'"
    public_id = submit(agenthub, alice, prompt)
    workers.start()

    done = agenthub(alice, "--url", asgi_server, "logs", public_id, "--follow")

    assert done.code == 0, done.err
    assert log_lines(done.out) == ["tick 1", "tick 2", "tick 3"]
    assert "[progress] 50% half" in done.out
    assert done.out.splitlines()[-1].endswith("[status] succeeded")


def test_logs_of_an_attempt_that_does_not_exist_is_not_found(agenthub, alice, repo):
    public_id = submit(agenthub, alice, "true")
    done = agenthub(alice, "logs", public_id, "--attempt", "7")
    assert done.code == 1
    assert done.err == f"agenthub: Job {public_id} has no attempt 7.\n"


def test_escape_sequences_in_log_lines_are_neutralised(agenthub, alice, repo, workers):
    public_id = submit(agenthub, alice, r"printf 'a \033[31mred\033]0;title\007 \033[0m\rb\n'")
    workers.burst()

    done = agenthub(alice, "logs", public_id)

    assert "\x1b" not in done.out and "\a" not in done.out and "\r" not in done.out
    assert "a ^[[31mred^[]0;title ^[[0mb" in log_lines(done.out)


def test_diff_prints_the_patch(agenthub, alice, repo, workers):
    public_id = submit(agenthub, alice, "echo hello > hello.txt")
    workers.burst()

    done = agenthub(alice, "diff", public_id)

    assert done.code == 0, done.err
    assert done.out == Attempt.objects.get(job__public_id=public_id).patch
    assert "+++ b/hello.txt" in done.out and "+hello" in done.out


def test_diff_is_exact_when_piped_and_neutralised_on_a_terminal(
    agenthub, alice, repo, workers, monkeypatch
):
    public_id = submit(agenthub, alice, r"printf 'x\033[2Jy\n' > esc.txt")
    workers.burst()

    piped = agenthub(alice, "diff", public_id)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    shown = agenthub(alice, "diff", public_id)

    assert "+x\x1b[2Jy\n" in piped.out
    assert "+x^[[2Jy\n" in shown.out and "\x1b" not in shown.out


def test_status_summarises_the_job_and_json_prints_it_raw(agenthub, alice, repo, workers):
    public_id = submit(agenthub, alice, "echo hello > hello.txt", "--title", "Say hello")
    workers.burst()

    human = agenthub(alice, "status", public_id)
    raw = agenthub(alice, "status", public_id, "--json")

    assert human.code == 0, human.err
    assert human.out.splitlines()[0] == f"{public_id}  needs_review"
    assert "title:    Say hello" in human.out
    assert "repo:     demo @ main" in human.out
    assert "agent:    shell" in human.out
    assert "  attempt 1: succeeded  1 file(s) +1 -0  exit 0" in human.out
    assert raw.code == 0
    assert '"status": "needs_review"' in raw.out
    assert '"diff_stats"' in raw.out


def test_submitter_cannot_approve_own_job(agenthub, alice, repo, workers):
    public_id = submit(agenthub, alice, "echo hello > hello.txt")
    workers.burst()

    done = agenthub(alice, "review", public_id, "--approve")

    assert done.code == 1
    assert done.err == "agenthub: You submitted this job; someone else has to review it.\n"
    assert job_status(public_id) == "needs_review"


def test_reviewer_approves_then_merge_prints_the_commit(agenthub, alice, bob, repo, workers):
    public_id = submit(agenthub, alice, "echo hello > hello.txt")
    workers.burst()

    approved = agenthub(bob, "review", public_id, "--approve", "--comment", "fine")
    merged = agenthub(bob, "merge", public_id)

    assert approved.code == 0, approved.err
    assert approved.out == f"{public_id} approved (attempt 1)\n"
    assert merged.code == 0, merged.err
    assert re.fullmatch(r"[0-9a-f]{40}\n", merged.out)
    job = Job.objects.get(public_id=public_id)
    assert (job.status, job.merge_commit) == ("merged", merged.out.strip())


def test_review_sends_comments_on_lines_of_the_diff(agenthub, alice, bob, repo, workers):
    public_id = submit(agenthub, alice, "echo hello > hello.txt && echo x >> app.py")
    workers.burst()
    refused = agenthub(bob, "review", public_id, "--approve", "--line", "nope.py:1", "x")
    assert refused.code == 1
    assert "'nope.py' is not a file attempt" in refused.err

    done = agenthub(
        bob, "review", public_id, "--request-changes", "-m", "echo again > again.txt",
        "--line", "hello.txt:1", "say hello, world",
        "--line", "app.py:3:new", "drop this line",
    )  # fmt: skip

    assert done.code == 0, done.err
    assert (
        done.out == f"{public_id} queued (attempt 1, follow-up attempt 2)\n"
    )  # the follow-up waits for a worker
    review = Review.objects.get(attempt__job__public_id=public_id)
    assert [c.as_dict() for c in review.line_comments.all()] == [
        {"path": "app.py", "line": 3, "side": "new", "body": "drop this line"},
        {"path": "hello.txt", "line": 1, "side": "new", "body": "say hello, world"},
    ]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("app.py:12", {"path": "app.py", "line": 12, "side": "new"}),
        ("src/a:b.py:3:old", {"path": "src/a:b.py", "line": 3, "side": "old"}),
        ("src/a:b.py:3", {"path": "src/a:b.py", "line": 3, "side": "new"}),
    ],
)
def test_a_line_is_named_path_colon_line(where, expected):
    assert line_comment(where, "text") == {**expected, "body": "text"}


@pytest.mark.parametrize("where", ["app.py", "app.py:0", "app.py:x", ":3", "app.py:3:left"])
def test_a_line_that_is_not_path_colon_line_is_a_usage_error(where):
    with pytest.raises(CliError, match="write PATH:LINE") as refused:
        line_comment(where, "text")
    assert refused.value.code == 2


def test_merge_conflict_lists_the_files_and_exits_1(agenthub, alice, bob, repo, workers):
    first = submit(agenthub, alice, "echo \"def greet(): return 'hi'\" > app.py")
    second = submit(agenthub, alice, "echo \"def greet(): return 'hey'\" > app.py")
    workers.burst()
    for public_id in (first, second):
        assert agenthub(bob, "review", public_id, "--approve").code == 0
    assert agenthub(bob, "merge", first).code == 0

    done = agenthub(bob, "merge", second)

    assert done.code == 1
    assert done.out == ""
    assert "conflicts in 1 file(s)" in done.err
    assert "  app.py\n" in done.err
    assert job_status(second) == "conflict"


def test_merge_before_approval_prints_the_reason(agenthub, alice, bob, repo, workers):
    public_id = submit(agenthub, alice, "echo hello > hello.txt")
    workers.burst()
    done = agenthub(bob, "merge", public_id)
    assert done.code == 1
    assert "only an approved job can be merged" in done.err


def test_cancel_then_rerun(agenthub, alice, repo):
    public_id = submit(agenthub, alice, "true")

    cancelled = agenthub(alice, "cancel", public_id)
    rerun = agenthub(alice, "rerun", public_id)

    assert cancelled.out == f"{public_id} cancelled\n"
    assert rerun.code == 0, rerun.err
    assert rerun.out == f"{public_id} queued (attempt 2)\n"
    assert job_status(public_id) == "queued"


def test_outsider_status_is_not_found(agenthub, alice, carol, repo):
    public_id = submit(agenthub, alice, "true")
    done = agenthub(carol, "status", public_id)
    assert done.code == 1
    assert done.out == ""
    assert done.err == f"agenthub: No job '{public_id}' in your teams.\n"


def test_missing_token_exits_1_with_the_401_detail(agenthub, alice, repo):
    public_id = submit(agenthub, alice, "true")
    done = agenthub(None, "status", public_id)
    assert done.code == 1
    assert done.err == (
        "agenthub: Sign in or send 'Authorization: Bearer <token>'. Run `agenthub login`"
        " or set AGENTHUB_TOKEN or pass --token to use a valid API token.\n"
    )


def test_token_and_url_come_from_the_environment(agenthub, alice, repo, monkeypatch):
    public_id = submit(agenthub, alice, "true")
    monkeypatch.setenv("AGENTHUB_TOKEN", ApiToken.issue(alice, "env")[1])
    done = agenthub(None, "status", public_id)
    assert done.code == 0, done.err
    assert done.out.startswith(f"{public_id}  queued")


def test_flags_after_the_command_override_the_environment(agenthub, alice, live_server):
    dead = "http://127.0.0.1:9"
    key = ApiToken.issue(alice, "late")[1]
    done = agenthub(None, "--url", dead, "status", "x", "--url", live_server.url)
    assert done.code == 1  # reached the live server: it answered 401, not "cannot reach"
    done = agenthub(None, "status", "nope", "--token", key)
    assert done.err == "agenthub: No job 'nope' in your teams.\n"


def test_unreachable_server_exits_3_naming_the_url(agenthub, alice):
    done = agenthub(alice, "--url", "http://127.0.0.1:9", "status", "abc")
    assert done.code == 3
    assert done.err.startswith("agenthub: cannot reach AgentHub at http://127.0.0.1:9: ")
    assert "Traceback" not in done.err


def test_a_url_that_is_not_http_is_a_usage_error(agenthub, alice):
    done = agenthub(alice, "--url", "file:///etc/passwd", "status", "abc")
    assert done.code == 2
    assert "must look like http://localhost:8000" in done.err


def test_usage_errors_exit_2(agenthub, alice):
    assert agenthub(alice, "review", "abc").code == 2  # no decision
    assert agenthub(alice, "review", "abc", "--approve", "--reject").code == 2
    assert agenthub(alice, "wait", "abc", "--timeout", "-1").code == 2
    assert agenthub(alice, "frobnicate").code == 2


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain\ttab", "plain\ttab"),
        ("\x1b[2J\x1b]8;;http://x\x1b\\", "^[[2J^[]8;;http://x^[\\"),
        ("bell\a back\b cr\r nl\n del\x7f", "bell back cr nl del"),
        ("c1 \x9b31m csi", "c1 31m csi"),
        ("unicode é ✓", "unicode é ✓"),
    ],
)
def test_clean_neutralises_terminal_controls(text, shown):
    assert clean(text) == shown


# --- exit statuses of --wait -------------------------------------------------------------------


def test_submit_wait_exits_1_and_rings_when_the_job_failed(agenthub, alice, repo, workers):
    workers.start()
    done = agenthub(
        alice,
        "submit",
        "--repo",
        "demo",
        "--agent",
        "shell",
        "--wait",
        "exit 3",
        "--timeout",
        "120",
    )
    assert done.code == 1
    public_id = done.out.splitlines()[0]
    # Why it failed, on the same line.
    assert done.out.splitlines()[1] == (
        f"{public_id} failed  exit 3 — the agent exited with code 3"
    )
    assert done.err == "\a"


def test_submit_wait_exits_2_and_rings_when_the_job_timed_out(agenthub, alice, team, repo, workers):
    shell_agent(team, name="quick", timeout_seconds=1)
    workers.start()
    done = agenthub(
        alice,
        "submit",
        "--repo",
        "demo",
        "--agent",
        "quick",
        "--wait",
        "sleep 60",
        "--timeout",
        "120",
    )
    assert done.code == 2
    public_id = done.out.splitlines()[0]
    assert Attempt.objects.get(job__public_id=public_id).status == "timed_out"
    assert done.out.splitlines()[1].startswith(f"{public_id} failed  sleep 60 — timed out after")
    assert done.err == "\a"


def test_wait_exits_2_when_the_job_was_cancelled(agenthub, alice, repo):
    public_id = submit(agenthub, alice, "true")
    assert agenthub(alice, "cancel", public_id).code == 0
    done = agenthub(alice, "wait", public_id)
    assert done.code == 2
    assert done.out == f"{public_id} cancelled  true — cancelled by alice\n"
    assert done.err == "\a"


# --- submit: the prompt from a file or stdin ---------------------------------------------------


def test_submit_reads_the_prompt_from_a_file(agenthub, alice, repo, tmp_path):
    script = tmp_path / "task.sh"
    script.write_text("echo from a file > f.txt\n")
    done = agenthub(alice, "submit", "--repo", "demo", "--agent", "shell", "--file", str(script))
    assert done.code == 0, done.err
    assert Job.objects.get(public_id=done.out.strip()).prompt == "echo from a file > f.txt\n"


def test_submit_reads_piped_stdin_without_a_prompt_argument(agenthub, alice, repo, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("echo piped\n"))
    done = agenthub(alice, "submit", "--repo", "demo", "--agent", "shell")
    assert done.code == 0, done.err
    assert Job.objects.get(public_id=done.out.strip()).prompt == "echo piped\n"


def test_submit_refuses_a_prompt_and_a_file_together(agenthub, alice, repo, tmp_path):
    (tmp_path / "task.sh").write_text("true\n")
    done = agenthub(
        alice,
        "submit",
        "--repo",
        "demo",
        "--agent",
        "shell",
        "--file",
        str(tmp_path / "task.sh"),
        "true",
    )
    assert done.code == 2
    assert done.err == "agenthub: give the instruction as PROMPT or with --file, not both\n"
    assert not Job.objects.exists()


def test_submit_names_a_prompt_file_it_cannot_read(agenthub, alice, repo, tmp_path):
    missing = tmp_path / "missing.sh"
    done = agenthub(alice, "submit", "--repo", "demo", "--agent", "shell", "--file", str(missing))
    assert done.code == 2
    assert done.err.startswith("agenthub: cannot read the prompt file: ")
    assert str(missing) in done.err


# --- diff | git apply --------------------------------------------------------------------------


def cli_env(url: str, token: str, tmp_path: Path) -> dict[str, str]:
    """The environment of the installed `agenthub` script run as a subprocess."""
    return {
        **os.environ,
        "AGENTHUB_URL": url,
        "AGENTHUB_TOKEN": token,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def test_diff_piped_to_git_apply_applies_on_a_checkout_of_the_base(
    agenthub, alice, repo, workers, live_server, tmp_path
):
    prompt = (
        "printf 'def greet():\\n    return \"hi\"\\n' > app.py\nmkdir docs\necho notes > docs/n.md"
    )
    public_id = submit(agenthub, alice, prompt)
    workers.burst()
    base = Attempt.objects.get(job__public_id=public_id).base_commit
    checkout = tmp_path / "checkout"
    git("clone", "-q", repo.source, str(checkout), cwd=tmp_path)
    git("checkout", "-q", base, cwd=checkout)
    env = cli_env(live_server.url, ApiToken.issue(alice, "pipe")[1], tmp_path)

    diff = subprocess.Popen([AGENTHUB, "diff", public_id], stdout=subprocess.PIPE, env=env)
    check = subprocess.run(["git", "apply", "--check"], stdin=diff.stdout, cwd=checkout)
    assert diff.wait() == 0
    assert check.returncode == 0

    patch = subprocess.run([AGENTHUB, "diff", public_id], capture_output=True, env=env).stdout
    subprocess.run(["git", "apply"], input=patch, cwd=checkout, check=True)
    assert (checkout / "app.py").read_text() == 'def greet():\n    return "hi"\n'
    assert (checkout / "docs" / "n.md").read_text() == "notes\n"


# --- logs -f streams over Server-Sent Events ---------------------------------------------------


@pytest.fixture
def asgi_server(workers: Workers, tmp_path: Path) -> Iterator[str]:
    """The ASGI server `make run` starts, serving the project on the test database. Unlike
    live_server (WSGI, which buffers a streamed response whole), it sends each Server-Sent Event
    as it is written."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "server.log").open("wb")
    command = server_command("127.0.0.1", port, settings.AGENTHUB_ASGI_SERVER)
    # A quick keep-alive: an open stream checks its credentials again at each one.
    env = workers.env(AGENTHUB_SSE_KEEPALIVE="1")
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stderr=log)

    def listening() -> bool:
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, what="the ASGI server to listen")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def test_logs_follow_prints_each_line_as_it_happens_and_exactly_once(
    agenthub, alice, repo, workers, asgi_server, tmp_path
):
    # The agent waits for a file the test puts into its workspace after seeing the first line.
    prompt = "echo first\nuntil [ -e .go ]; do sleep 0.1; done\nrm .go\necho second"
    public_id = submit(agenthub, alice, prompt)
    workers.start()
    env = cli_env(asgi_server, ApiToken.issue(alice, "follow")[1], tmp_path)
    follow = subprocess.Popen(
        [AGENTHUB, "logs", public_id, "-f"], stdout=subprocess.PIPE, env=env, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(follow.stdout.readline, "")))
    reader.start()
    try:
        wait_for(lambda: any(x.endswith("[log] first\n") for x in lines), 60, "the first line")
        attempt = Attempt.objects.get(job__public_id=public_id)
        assert follow.poll() is None and attempt.status == "running"
        (settings.AGENTHUB_DATA_DIR / "attempts" / str(attempt.pk) / "workspace" / ".go").touch()
        assert follow.wait(timeout=60) == 0
    finally:
        follow.kill()  # on failure: not left waiting for events that never come
        reader.join()
    assert log_lines("".join(lines)) == ["first", "second"]
    assert lines[-1].endswith("[status] succeeded\n")
    attempt.refresh_from_db()
    assert len(lines) == attempt.last_seq


def test_logs_follow_stops_with_the_reason_when_its_token_is_revoked(
    alice, repo, asgi_server, tmp_path
):
    from jobs import tokens

    client = Client(asgi_server, ApiToken.issue(alice, "submit")[1])
    public_id = client.json(
        "POST", "/jobs", body={"repo": "demo", "agent": "shell", "prompt": "true"}
    )["id"]  # no worker runs: the attempt stays queued and the stream open
    token, key = ApiToken.issue(alice, "follow")
    follow = subprocess.Popen(
        [AGENTHUB, "logs", public_id, "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(asgi_server, key, tmp_path),
        text=True,
    )
    try:
        assert follow.stdout.readline().endswith("[status] queued\n")
        tokens.revoke(alice, token.pk)
        assert follow.wait(timeout=30) == 1
    finally:
        follow.kill()
    error = follow.stderr.read()
    assert error.startswith("agenthub: ") and "revoked" in error


def test_logs_colour_warnings_errors_and_stderr_only_on_a_terminal(
    agenthub, alice, repo, workers, monkeypatch
):
    prompt = "echo plain\necho oops >&2\necho '::warning::careful'\necho '::error::broken'"
    public_id = submit(agenthub, alice, prompt)
    workers.burst()

    piped = agenthub(alice, "logs", public_id)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    coloured = agenthub(alice, "logs", public_id)
    monkeypatch.setenv("NO_COLOR", "1")
    no_colour = agenthub(alice, "logs", public_id)

    assert "\x1b" not in piped.out
    assert re.search(r"^\x1b\[33m\d\d:\d\d:\d\d \[warning\] careful\x1b\[0m$", coloured.out, re.M)
    assert re.search(r"^\x1b\[31m\d\d:\d\d:\d\d \[error\] broken\x1b\[0m$", coloured.out, re.M)
    assert re.search(r"^\x1b\[35m.* \[log:stderr\] oops\x1b\[0m$", coloured.out, re.M)
    assert re.search(r"^\d\d:\d\d:\d\d \[log\] plain$", coloured.out, re.M)
    assert no_colour.out == piped.out


def test_colour_never_lets_an_agents_escape_sequences_through(
    agenthub, alice, repo, workers, monkeypatch
):
    public_id = submit(agenthub, alice, r"printf '\033[2J::error::\033]0;x\007\n' >&2")
    workers.burst()
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    done = agenthub(alice, "logs", public_id)
    assert "[log:stderr] ^[[2J::error::^[]0;x\x1b[0m" in done.out
    assert "\x1b[2J" not in done.out and "\a" not in done.out


# --- list --------------------------------------------------------------------------------------


def test_list_shows_the_teams_jobs_newest_first_in_a_table(agenthub, alice, bob, carol, repo):
    first = submit(agenthub, alice, "true", "--title", "First")
    second = submit(agenthub, bob, "true", "--title", "Second \x1b[31mred")

    done = agenthub(alice, "list")
    outsider = agenthub(carol, "list")

    assert done.code == 0, done.err
    header, *rows = done.out.splitlines()
    assert header.split() == ["ID", "STATUS", "REPO", "AGENT", "BY", "AGE", "TITLE"]
    assert [row.split()[:5] for row in rows] == [
        [second, "queued", "demo", "shell", "bob"],
        [first, "queued", "demo", "shell", "alice"],
    ]
    assert rows[0].endswith("Second ^[[31mred")
    assert outsider.out == "" and outsider.err == "agenthub: no jobs\n"


def test_list_filters_by_status_and_repository(agenthub, alice, repo):
    kept = submit(agenthub, alice, "true")
    gone = submit(agenthub, alice, "true")
    agenthub(alice, "cancel", gone)

    queued = agenthub(alice, "list", "--status", "queued", "--repo", "demo")
    elsewhere = agenthub(alice, "list", "--repo", "nope")

    assert [row.split()[0] for row in queued.out.splitlines()[1:]] == [kept]
    assert elsewhere.out == ""


def test_list_mine_shows_only_the_callers_jobs(agenthub, alice, bob, repo):
    alices = submit(agenthub, alice, "true")
    bobs = submit(agenthub, bob, "true")

    mine = agenthub(alice, "list", "--mine")
    by_bob = agenthub(alice, "list", "--submitter", "bob")
    everyone = agenthub(alice, "list")

    def id_and_submitter(output: str) -> list[tuple[str, str]]:
        return [(row.split()[0], row.split()[4]) for row in output.splitlines()[1:]]

    assert mine.code == 0, mine.err
    assert id_and_submitter(mine.out) == [(alices, "alice")]
    assert id_and_submitter(by_bob.out) == [(bobs, "bob")]
    assert id_and_submitter(everyone.out) == [(bobs, "bob"), (alices, "alice")]


def test_list_names_a_submitter_that_is_unknown(agenthub, alice, repo):
    done = agenthub(alice, "list", "--submitter", "nobody")
    assert done.code == 1
    assert done.err.startswith("agenthub: submitter: there is no user 'nobody' in your teams")
    assert done.err.endswith(" (field: submitter)\n")


def test_list_names_a_status_that_does_not_exist(agenthub, alice, repo):
    done = agenthub(alice, "list", "--status", "bogus")
    assert done.code == 1
    assert done.err.startswith("agenthub: ") and done.err.endswith(" (field: status)\n")
    assert "needs_review" in done.err  # the states that would be accepted


def test_list_says_when_there_are_more_pages(agenthub, alice, repo):
    ids = [submit(agenthub, alice, "true") for _ in range(3)]
    done = agenthub(alice, "list", "--limit", "2")
    assert [row.split()[0] for row in done.out.splitlines()[1:]] == ids[:0:-1]
    assert done.err == "agenthub: page 1 of 2 (3 jobs); --page for more\n"


# --- review --request-changes ------------------------------------------------------------------


def test_request_changes_with_a_message_starts_a_follow_up_attempt(
    agenthub, alice, bob, repo, workers
):
    public_id = submit(agenthub, alice, "echo hello > hello.txt")
    workers.burst()

    done = agenthub(bob, "review", public_id, "--request-changes", "-m", "say goodbye too")

    assert done.code == 0, done.err
    assert done.out == f"{public_id} queued (attempt 1, follow-up attempt 2)\n"
    review = Review.objects.get(attempt__job__public_id=public_id)
    assert (review.decision, review.comment, review.reviewer) == (
        "request_changes",
        "say goodbye too",
        bob,
    )
    follow_up = Attempt.objects.get(job__public_id=public_id, number=2)
    assert "# say goodbye too" in follow_up.instruction


# --- --json on every command -------------------------------------------------------------------


def test_every_command_prints_json_with_the_same_exit_statuses(
    agenthub, alice, bob, repo, workers, live_server
):
    created = json.loads(
        agenthub(
            alice,
            "--json",
            "submit",
            "--repo",
            "demo",
            "--agent",
            "shell",
            "echo hello > hello.txt",
        ).out
    )
    public_id = created["id"]
    assert created["status"] == "queued"
    workers.burst()

    waited = agenthub(alice, "wait", public_id, "--json")
    status = agenthub(alice, "status", public_id, "--json")
    listed = agenthub(alice, "list", "--json")
    logs = agenthub(alice, "logs", public_id, "--json")
    diff = agenthub(alice, "diff", public_id, "--json")
    review = agenthub(bob, "review", public_id, "--approve", "--json")
    merge = agenthub(bob, "merge", public_id, "--json")

    assert waited.code == 0 and waited.err == "\a"
    assert json.loads(waited.out)["status"] == "needs_review"
    assert json.loads(status.out)["attempts"][0]["diff_stats"]["files"] == 1
    assert [job["id"] for job in json.loads(listed.out)["jobs"]] == [public_id]
    events = [json.loads(line) for line in logs.out.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["kind"] == "status" and events[-1]["text"] == "succeeded"
    patch = json.loads(diff.out)
    assert patch["patch"] == Attempt.objects.get(job__public_id=public_id).patch
    assert patch["diff_hash"] == Attempt.objects.get(job__public_id=public_id).diff_hash
    assert json.loads(review.out)["decision"] == "approve"
    assert json.loads(merge.out)["commit"] == Job.objects.get(public_id=public_id).merge_commit

    other = submit(agenthub, alice, "true")
    cancel = agenthub(alice, "cancel", other, "--json")
    waited = agenthub(alice, "wait", other, "--json")
    rerun = agenthub(alice, "rerun", other, "--json")
    assert json.loads(cancel.out) == {"id": other, "status": "cancelled"}
    assert waited.code == 2 and json.loads(waited.out)["status"] == "cancelled"
    assert json.loads(rerun.out) == {"id": other, "status": "queued", "attempt": 2}


def test_json_errors_are_json_too(agenthub, alice, bob, repo, live_server):
    missing = agenthub(alice, "status", "nope", "--json")
    refused = agenthub(alice, "submit", "--repo", "demo", "--agent", "nope", "true", "--json")
    unreachable = agenthub(alice, "--json", "--url", "http://127.0.0.1:9", "status", "x")

    assert missing.code == 1
    assert json.loads(missing.out) == {
        "error": "not_found",
        "detail": "No job 'nope' in your teams.",
        "http_status": 404,
    }
    assert refused.code == 1 and json.loads(refused.out)["field"] == "agent"
    assert unreachable.code == 3
    assert json.loads(unreachable.out)["error"] == "unreachable"


def test_merge_conflict_in_json_lists_the_files(agenthub, alice, bob, repo, workers):
    first = submit(agenthub, alice, "echo one > app.py")
    second = submit(agenthub, alice, "echo two > app.py")
    workers.burst()
    for public_id in (first, second):
        assert agenthub(bob, "review", public_id, "--approve").code == 0
    assert agenthub(bob, "merge", first).code == 0

    done = agenthub(bob, "merge", second, "--json")

    assert done.code == 1
    body = json.loads(done.out)
    assert (body["http_status"], body["conflicts"]) == (409, ["app.py"])


# --- login and the configuration file ----------------------------------------------------------


def test_login_saves_the_url_and_token_for_later_commands(
    agenthub, alice, repo, live_server, monkeypatch
):
    public_id = submit(agenthub, alice, "true")
    key = ApiToken.issue(alice, "login")[1]
    monkeypatch.delenv("AGENTHUB_URL")

    done = agenthub(None, "login", "--url", live_server.url + "/", "--token", key)

    assert done.code == 0, done.err
    path = config_path()
    assert done.out == f"Logged in to {live_server.url}; saved to {path}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {"url": live_server.url, "token": key}
    later = agenthub(None, "status", public_id)
    assert later.code == 0, later.err
    assert later.out.startswith(f"{public_id}  queued")


def test_login_reads_the_token_from_stdin_and_prints_json(
    agenthub, alice, live_server, monkeypatch
):
    key = ApiToken.issue(alice, "piped")[1]
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{key}\n"))
    done = agenthub(None, "login", "--url", live_server.url, "--json")
    assert done.code == 0, done.err
    assert json.loads(done.out) == {"url": live_server.url, "config": str(config_path())}
    assert json.loads(config_path().read_text())["token"] == key


def test_login_with_a_bad_token_saves_nothing(agenthub, live_server):
    done = agenthub(None, "login", "--url", live_server.url, "--token", "wrong")
    assert done.code == 1
    assert done.err.startswith("agenthub: The API token is not valid. Run `agenthub login`")
    assert not config_path().exists()


def test_logout_forgets_the_saved_login_and_the_token_stays_valid(agenthub, alice, live_server):
    token, key = ApiToken.issue(alice, "laptop")
    save_config(live_server.url, key)

    done = agenthub(None, "logout")

    assert done.code == 0, done.err
    assert done.out == f"Logged out: removed {config_path()}.\n"
    assert not config_path().exists()
    token.refresh_from_db()
    assert token.is_usable
    again = agenthub(None, "logout", "--json")
    assert json.loads(again.out) == {
        "config": str(config_path()),
        "removed": False,
        "revoked": None,
    }


def test_logout_revoke_revokes_the_saved_token_on_the_server(agenthub, alice, live_server):
    other, _ = ApiToken.issue(alice, "ci")
    token, key = ApiToken.issue(alice, "laptop")
    save_config(live_server.url, key)

    done = agenthub(None, "logout", "--revoke")

    assert done.code == 0, done.err
    assert done.out == f"Logged out: revoked token 'laptop' and removed {config_path()}.\n"
    token.refresh_from_db()
    other.refresh_from_db()
    assert token.revoked_at is not None and other.revoked_at is None
    assert not config_path().exists()


def test_the_environment_overrides_the_saved_login(agenthub, alice, carol, repo, live_server):
    public_id = submit(agenthub, alice, "true")
    save_config(live_server.url, ApiToken.issue(carol, "saved")[1])
    assert agenthub(None, "status", public_id).code == 1  # carol's token: not found
    done = agenthub(alice, "status", public_id)  # --token wins over the file
    assert done.code == 0, done.err


def test_a_saved_token_is_never_sent_to_another_server(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("AGENTHUB_URL", raising=False)
    monkeypatch.delenv("AGENTHUB_TOKEN", raising=False)
    save_config("http://hub.example:8000", "secret")
    here = type("Args", (), {"url": None, "token": None})()
    there = type("Args", (), {"url": "http://elsewhere.example", "token": None})()
    assert credentials(here) == ("http://hub.example:8000", "secret")
    assert credentials(there) == ("http://elsewhere.example", None)


# --- messages a person can act on --------------------------------------------------------------


def test_a_bad_token_says_so_and_how_to_fix_it(agenthub, live_server):
    done = agenthub(None, "--token", "wrong", "status", "abc")
    assert done.code == 1
    assert done.err == (
        "agenthub: The API token is not valid. Run `agenthub login` or set AGENTHUB_TOKEN"
        " to use a valid API token.\n"
    )


def test_an_unknown_job_is_named(agenthub, alice, repo):
    done = agenthub(alice, "diff", "nope")
    assert done.code == 1
    assert done.err == "agenthub: No job 'nope' in your teams.\n"


def test_a_url_that_is_not_agenthub_is_named(agenthub, alice, live_server):
    done = agenthub(alice, "--url", f"{live_server.url}/wrong", "status", "abc")
    assert done.code == 1
    assert done.err == (
        f"agenthub: {live_server.url}/wrong answered HTTP 404 Not Found, not as the AgentHub API"
        " does; check the URL (AGENTHUB_URL or `agenthub login`).\n"
    )


@pytest.mark.parametrize(
    ("retry_after", "says"),
    [("30", "Retry in 30 s."), (None, "Try again later."), ("soon", "Try again later.")],
)
def test_rate_limiting_says_when_to_retry(retry_after, says):
    headers = {"Retry-After": retry_after} if retry_after else {}
    body = {"error": "rate_limited", "detail": "Too many requests."}
    response = httpx.Response(429, headers=headers, json=body)
    error = Client("http://hub", "key").error(response)
    assert error.code == 1
    assert error.message == f"rate limited by AgentHub: Too many requests. {says}"


def test_rate_limiting_reads_an_http_date_too():
    response = httpx.Response(
        429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, json={"detail": "Slow."}
    )
    assert Client("http://hub", "key").error(response).message.endswith("Retry in 0 s.")


def test_a_redirect_is_not_followed_but_names_the_server_it_points_at():
    response = httpx.Response(301, headers={"Location": "https://hub/api/v1/jobs/abc"})
    error = Client("http://hub", "key").error(response)
    assert error.message == "http://hub redirects to https://hub; use that as the server URL."
