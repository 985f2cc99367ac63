"""Check results: the tools' own reports become a bounded `::summary::` (jobs/sandbox/report.py,
run in the sandbox), validated on the host (jobs/checks.py); a job whose check found problems
ends `findings` or `failed`, never a green "no changes", and says so wherever it is shown."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from agenthub_cli.commands import exit_status
from jobs import checks, events, remotes
from jobs.builtin import BUILTIN_AGENTS
from jobs.models import Agent, Attempt
from jobs.sandbox.tools import REPORT
from tests.conftest import commit_files, job_status

FAILING_SUITE = {
    "app.py": "def greet():\n    return 'hello'\n",
    "tests/test_app.py": "import pytest\n\nfrom app import greet\n\n\n"
    "def test_greet():\n    assert greet() == 'hello'\n\n\n"
    "def test_shout():\n    assert greet() == 'HELLO'\n\n\n"
    "class TestMore:\n    def test_in_class(self):\n        assert False\n\n\n"
    "@pytest.mark.skip\ndef test_later():\n    pass\n",
}
RISKY_CODE = {
    "app.py": "import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n",
    # assert is how tests check: bandit's B101 there is noise the preset leaves out.
    "tests/test_app.py": "def test_run():\n    assert True\n",
    "pkg/tests/test_more.py": "def test_more():\n    assert True\n",
}


def summary_line(output: str) -> dict[str, Any]:
    lines = [line for line in output.splitlines() if line.startswith("::summary::")]
    assert len(lines) == 1, output
    return checks.parse(lines[0].removeprefix("::summary::"))


def report(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, REPORT, *map(str, args)], cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_pytest_counts_come_from_its_own_junit_xml(tmp_path):
    project = write(tmp_path / "project", FAILING_SUITE)
    junit = tmp_path / "junit.xml"
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
        + [f"--junitxml={junit}", "-o", "junit_family=xunit1", "-c", "/dev/null", "."],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 1, ran.stdout
    output = report("pytest", junit, cwd=project)
    assert summary_line(output)["tests"] == {
        "passed": 1,
        "failed": 2,
        "errors": 0,
        "skipped": 1,
        "failing": ["tests/test_app.py::test_shout", "tests/test_app.py::TestMore::test_in_class"],
    }
    # The failures are annotations too, pointing at each test's line (xunit1's are 0-based).
    assert "::error file=tests/test_app.py,line=10::tests/test_app.py::test_shout failed" in output


def test_bandit_findings_by_severity_without_test_directories(tmp_path):
    project = write(tmp_path / "project", RISKY_CODE)
    command = BUILTIN_AGENTS["security-scan"]["command"]
    excluded = command.split("-x '")[1].split("'")[0]  # the preset's own exclude globs
    out = tmp_path / "bandit.json"
    subprocess.run(
        [sys.executable, "-m", "bandit", "-r", ".", "-q", "-f", "json", "-o", out, "-x", excluded],
        cwd=project,
        capture_output=True,
    )
    output = report("bandit", out, "--top", "10", cwd=project)
    findings = summary_line(output)["findings"]
    assert findings["total"] == 2, findings  # B404 import and B602 shell=True; no B101
    assert findings["by_severity"] == {"high": 1, "medium": 0, "low": 1}
    assert findings["top"][0] == {
        "file": "app.py",
        "line": 5,
        "severity": "high",
        "confidence": "high",
        "test": "B602",
        "text": "subprocess call with shell=True identified, security issue.",
    }
    assert "::error file=app.py,line=5::B602 (high)" in output
    assert checks.describe({"findings": findings}) == "2 findings (1 high, 1 low)"


def test_ruff_fixes_are_told_rule_by_rule(tmp_path):
    project = write(
        tmp_path / "project",
        {"m.py": "import os\nimport sys\n\n\ndef f(x):\n    return x == None\n"},
    )
    ruff = Path(sys.executable).with_name("ruff")

    def violations(name: str) -> Path:
        found = subprocess.run(
            [ruff, "check", "--no-cache", "--isolated", "--select", "F401,E711"]
            + ["--exit-zero", "--output-format", "json", "."],
            cwd=project,
            capture_output=True,
            check=True,
        ).stdout
        (tmp_path / name).write_bytes(found)
        return tmp_path / name

    before = violations("before.json")
    subprocess.run(
        [ruff, "check", "--no-cache", "--isolated", "--select", "F401", "--fix", "-q", "."],
        cwd=project,
    )
    fixes = summary_line(report("ruff", before, violations("after.json"), cwd=project))["fixes"]
    assert fixes == {"fixed": {"F401": 2}, "remaining": 1}
    assert checks.describe({"fixes": fixes}) == "fixed 2 (F401 ×2), 1 left"


@pytest.mark.parametrize(
    ("message", "why"),
    [
        ("not json", "Invalid JSON"),
        ("{}", "names none of"),
        ('{"tests": {"passed": -1, "failed": 0, "errors": 0, "skipped": 0}}', "tests.passed"),
        ('{"tests": {"passed": "1", "failed": 0, "errors": 0, "skipped": 0}}', "tests.passed"),
        ('{"verdict": "ok"}', "verdict"),
        ('{"findings": {"total": 1, "top": [{"file": "a"}]}}', "findings.top.0"),
        ('{"findings": {"total": 1, "by_severity": {"critical": 1}}}', "by_severity"),
        ('{"fixes": {"fixed": {}, "remaining": 0}, "x": "' + "a" * 70_000 + '"}', "bytes"),
    ],
)
def test_a_summary_that_is_not_a_check_result_is_refused_naming_why(message, why):
    with pytest.raises(checks.Invalid, match=why):
        checks.parse(message)


def test_the_output_parser_turns_a_summary_into_an_event_and_a_bad_one_into_a_warning():
    parser = events.OutputParser(events.Masker())
    now = datetime.now()
    good = '::summary::{"tests": {"passed": 3, "failed": 1, "errors": 0, "skipped": 0}}'
    draft = parser.feed("stdout", good, now)
    assert draft is not None
    assert (draft.kind, draft.text) == ("summary", "3 passed, 1 failed")
    assert draft.data["tests"]["failing"] == []
    bad = parser.feed("stdout", '::summary::{"tests": 3}', now)
    assert bad is not None and bad.kind == "warning"
    assert "a ::summary:: line was left out: tests" in bad.text


def test_findings_have_an_exit_status_of_their_own():
    assert exit_status({"status": "findings"}) == 4
    assert exit_status({"status": "no_changes"}) == 0
    assert exit_status({"status": "failed", "attempts": [{"status": "failed"}]}) == 1


# --- through the pipeline: real workers, real sandboxes ----------------------------------------


def _run_check(client: Any, workers: Any, repo: Any, files: dict[str, str], agent: str) -> str:
    commit_files(Path(repo.source), files)
    remotes.sync_store(Path(repo.store_path), repo.source, timeout=60)
    response = client.post("/api/v1/jobs", {"repo": "demo", "agent": agent, "prompt": "check"})
    assert response.status_code == 202, response.content
    workers.burst()
    return str(response.json()["id"])


@pytest.mark.slow
def test_failing_tests_fail_the_job_with_their_counts_and_why_at_the_top(api, alice, repo, workers):
    client = api(alice)
    public_id = _run_check(client, workers, repo, FAILING_SUITE, "pytest")
    job = client.get(f"/api/v1/jobs/{public_id}").json()
    assert job["status"] == "failed", job
    assert job["summary"]["tests"]["failing"] == [
        "tests/test_app.py::test_shout",
        "tests/test_app.py::TestMore::test_in_class",
    ]
    assert job["attempts"][-1]["summary"] == job["summary"]
    assert job["summary_text"] == "1 passed, 2 failed, 1 skipped"
    assert job["reason"] == "the agent exited with code 1"
    web = Client()
    web.force_login(alice)
    page = web.get(f"/jobs/{public_id}/").content.decode()
    outcome = page.split('data-role="outcome"')[1].split("</section>")[0]
    assert "1 passed, 2 failed, 1 skipped" in outcome
    assert "Why: the agent exited with code 1" in outcome
    assert "tests/test_app.py::TestMore::test_in_class" in outcome
    # The dashboard's card says it too.
    assert "1 passed, 2 failed, 1 skipped" in web.get("/").content.decode()


@pytest.mark.slow
def test_a_scan_with_findings_ends_findings_not_no_changes(api, alice, repo, workers):
    client = api(alice)
    public_id = _run_check(client, workers, repo, RISKY_CODE, "security-scan")
    assert job_status(public_id) == "findings"
    job = client.get(f"/api/v1/jobs/{public_id}").json()
    assert job["summary"]["findings"]["total"] == 2, job["summary"]
    assert job["summary_text"] == "2 findings (1 high, 1 low)"
    assert job["reason"] == ""
    listed = client.get("/api/v1/jobs", status="findings").json()["jobs"]
    assert [j["id"] for j in listed] == [public_id]
    assert listed[0]["summary_text"] == "2 findings (1 high, 1 low)"
    kinds = [e["kind"] for e in client.get(f"/api/v1/jobs/{public_id}/events").json()["events"]]
    assert "summary" in kinds


@pytest.mark.slow
@pytest.mark.docker
def test_the_report_reaches_a_docker_sandbox_too(api, alice, team, repo, workers):
    preset = Agent.objects.get(team=None, name="security-scan")
    Agent.objects.create(
        team=team,
        name="docker-scan",
        command=preset.command,
        report_only=True,
        backend="docker",
    )
    client = api(alice)
    public_id = _run_check(client, workers, repo, RISKY_CODE, "docker-scan")
    attempt = Attempt.objects.get(job__public_id=public_id)
    assert attempt.card["backend"] == "docker"
    assert job_status(public_id) == "findings", json.dumps(attempt.summary)
    assert attempt.summary["findings"]["by_severity"]["high"] == 1
