"""The `agenthub` CLI, run in-process against a real server over HTTP (pytest-django's
live_server), with real RQ workers, real git and the real sandbox behind it."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User

from jobs.cli import clean, main
from jobs.models import ApiToken, Attempt, Job
from tests.conftest import job_status

pytestmark = pytest.mark.slow


@dataclass
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def agenthub(live_server: Any, capsys: Any, monkeypatch: Any) -> Run:
    """`agenthub(user, *args)` runs the CLI as that user (None: without a token)."""
    monkeypatch.setenv("AGENTHUB_URL", live_server.url)
    monkeypatch.delenv("AGENTHUB_TOKEN", raising=False)
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
        alice, "submit", "--repo", "demo", "--agent", "shell", "--wait", "echo x > x.txt"
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


def test_logs_follow_streams_a_running_attempt_to_its_end(agenthub, alice, repo, workers):
    prompt = "for i in 1 2 3; do echo tick $i; sleep 1; done\necho '::progress::50 half'"
    public_id = submit(agenthub, alice, prompt)
    workers.start()

    done = agenthub(alice, "logs", public_id, "--follow")

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
    assert done.err == "agenthub: Sign in or send 'Authorization: Bearer <token>'.\n"


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
    assert done.err.startswith("agenthub: cannot reach http://127.0.0.1:9: ")
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
