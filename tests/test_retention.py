"""Retention: logs of attempts finished long ago and workspaces left on disk are removed; jobs,
results, reviews and the audit trail are kept. Real database, real Redis, real files and uids."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path

import django_rq
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from redis import Redis

from jobs import events, retention, services
from jobs.models import Attempt, AttemptStatus, AuditEntry, Event, Review
from tests.conftest import wait_for

# Batched deletes of events, locked rows and the audit trail's head.
pytestmark = [pytest.mark.django_db, pytest.mark.database]

# An unprivileged uid for the files a sandbox leaves behind (below the runner's 200000 + id).
SANDBOX_UID = 199_123
WORKER_UID = 199_124


@pytest.fixture
def data_dir(settings) -> Iterator[Path]:
    """A data directory of this test's own, so only its workspaces are looked at."""
    path = Path(tempfile.mkdtemp(prefix="retention-", dir=settings.AGENTHUB_DATA_DIR))
    path.chmod(0o755)
    (path / "attempts").mkdir()
    settings.AGENTHUB_DATA_DIR = path
    yield path
    subprocess.run(["chattr", "-R", "-i", str(path)], capture_output=True)
    shutil.rmtree(path)


@pytest.fixture
def redis() -> Iterator[Redis]:
    connection = django_rq.get_connection("default")

    def forget_runs() -> None:
        keys = connection.keys(retention.WORKSPACES_DUE_KEY + ":*")
        connection.delete(retention.EVENTS_DUE_KEY, *keys)

    forget_runs()
    yield connection
    forget_runs()


def attempt_of(user, *, status=AttemptStatus.SUCCEEDED, days_ago=0.0, lines=3) -> Attempt:
    """An attempt with `lines` log events that ended (or, if unfinished, started) days ago."""
    job = services.submit_job(user, repo="demo", agent="shell", prompt="echo hi")
    attempt = job.attempts.get()
    drafts = [events.Draft("log", f"line {i}", stream="stdout") for i in range(lines)]
    events.append_events(attempt.pk, drafts)
    when = timezone.now() - timedelta(days=days_ago)
    finished = Attempt(status=status).is_finished
    Attempt.objects.filter(pk=attempt.pk).update(
        status=status, started_at=when, finished_at=when if finished else None
    )
    attempt.refresh_from_db()
    return attempt


def logged(attempt: Attempt) -> int:
    return Event.objects.filter(attempt=attempt).count()


def workspace(data_dir: Path, name: str | int) -> Path:
    """A workspace as a sandbox leaves it: files of another uid, a file nobody may write, a
    read-only directory, an unreadable one, and a symlink to a directory outside."""
    path = data_dir / "attempts" / str(name)
    (path / "workspace" / "pkg" / "deep").mkdir(parents=True)
    (path / "workspace" / "app.py").write_text("print('hi')\n" * 100)
    (path / "workspace" / "pkg" / "deep" / "data.bin").write_bytes(b"x" * 4096)
    (path / "workspace" / "secret").mkdir()
    (path / "workspace" / "secret" / "key").write_text("k")
    (path / "workspace" / "outside").symlink_to(data_dir.parent)
    for child in [path, *path.rglob("*")]:
        os.chown(child, SANDBOX_UID, SANDBOX_UID, follow_symlinks=False)
    (path / "workspace" / "app.py").chmod(0o444)
    (path / "workspace" / "pkg" / "deep").chmod(0o555)
    (path / "workspace" / "pkg").chmod(0o555)
    (path / "workspace" / "secret").chmod(0)
    return path


# --- logs ------------------------------------------------------------------------------------


def test_old_finished_attempts_lose_their_events_and_are_marked(alice, repo, data_dir):
    old = attempt_of(alice, days_ago=91, lines=4)
    old_failed = attempt_of(alice, status=AttemptStatus.FAILED, days_ago=200)
    recent = attempt_of(alice, days_ago=89)
    running = attempt_of(alice, status=AttemptStatus.RUNNING, days_ago=300)

    counts = {a.pk: logged(a) for a in (old, old_failed, recent, running)}

    report = retention.apply()

    assert report.events == counts[old.pk] + counts[old_failed.pk]
    assert [(log.job, log.attempt, log.events) for log in report.logs] == [
        (old.job.public_id, 1, counts[old.pk]),
        (old_failed.job.public_id, 1, counts[old_failed.pk]),
    ]
    assert report.jobs == sorted([old.job.public_id, old_failed.job.public_id])
    for gone in (old, old_failed):
        assert not Event.objects.filter(attempt=gone).exists()
        gone.refresh_from_db()
        assert gone.card[retention.LOG_REMOVED_AT].startswith(f"{timezone.now():%Y-%m-%d}")
    for kept in (recent, running):
        assert logged(kept) == counts[kept.pk]
        kept.refresh_from_db()
        assert retention.LOG_REMOVED_AT not in kept.card


def test_events_of_unfinished_attempts_are_kept_whatever_their_dates(alice, repo, data_dir):
    # Inconsistent on purpose: a finish time must not be enough, the status has to be final.
    queued = attempt_of(alice, status=AttemptStatus.QUEUED, days_ago=400)
    running = attempt_of(alice, status=AttemptStatus.RUNNING, days_ago=400)
    Attempt.objects.filter(pk__in=[queued.pk, running.pk]).update(
        finished_at=timezone.now() - timedelta(days=400)
    )
    before = logged(queued), logged(running)
    assert retention.apply().events == 0
    assert (logged(queued), logged(running)) == before


def test_events_go_in_batches_until_none_is_left(alice, repo, data_dir, monkeypatch):
    monkeypatch.setattr(retention, "EVENT_BATCH", 3)
    monkeypatch.setattr(retention, "ATTEMPT_BATCH", 2)
    old = [attempt_of(alice, days_ago=100, lines=n) for n in (10, 3, 1)]
    counts = [logged(a) for a in old]
    assert counts[0] > 3 * 3
    report = retention.apply()
    assert [log.events for log in report.logs] == counts
    assert not Event.objects.filter(attempt__in=old).exists()


def test_jobs_results_reviews_and_the_audit_trail_are_kept(alice, bob, repo, data_dir):
    attempt = attempt_of(alice, days_ago=100)
    Attempt.objects.filter(pk=attempt.pk).update(patch="diff --git a/x b/x\n", diff_hash="abc")
    Review.objects.create(attempt=attempt, reviewer=bob, decision="approve", diff_hash="abc")
    trail = list(AuditEntry.objects.values_list("pk", "action"))
    assert trail

    retention.apply()

    attempt.refresh_from_db()
    assert (attempt.patch, attempt.status) == ("diff --git a/x b/x\n", AttemptStatus.SUCCEEDED)
    assert attempt.job.reviews_qs().count() == 1
    assert list(AuditEntry.objects.values_list("pk", "action"))[: len(trail)] == trail


# --- workspaces --------------------------------------------------------------------------------


def test_left_over_workspaces_are_removed_whatever_their_permissions(alice, repo, data_dir):
    old = attempt_of(alice, days_ago=8)
    recent = attempt_of(alice, days_ago=6)
    running = attempt_of(alice, status=AttemptStatus.RUNNING, days_ago=30)
    queued = attempt_of(alice, status=AttemptStatus.QUEUED, days_ago=30)
    for attempt in (old, recent, running, queued):
        workspace(data_dir, attempt.pk)
    workspace(data_dir, 987654321)  # its attempt is gone
    workspace(data_dir, "not-a-number")
    (data_dir / "attempts" / "stray-file").write_text("left over")

    report = retention.apply()

    removed = {w.name: w.reason for w in report.workspaces}
    assert set(removed) == {str(old.pk), "987654321", "not-a-number", "stray-file"}
    assert removed[str(old.pk)].startswith("attempt succeeded at")
    assert removed["987654321"] == "its attempt no longer exists"
    assert removed["not-a-number"] == "not an attempt"
    assert report.bytes_freed >= 3 * (1200 + 4096 + 1) and report.failures == []
    remaining = sorted(p.name for p in (data_dir / "attempts").iterdir())
    assert remaining == sorted(str(a.pk) for a in (recent, running, queued))
    # The symlink was removed, never followed.
    assert data_dir.parent.is_dir() and data_dir.is_dir()


def test_workspace_retention_of_zero_days_still_spares_unfinished_attempts(alice, repo, data_dir):
    done = attempt_of(alice, days_ago=0.001)
    preparing = attempt_of(alice, status=AttemptStatus.PREPARING)
    for attempt in (done, preparing):
        workspace(data_dir, attempt.pk)
    report = retention.apply(workspace_days=0)
    assert [w.name for w in report.workspaces] == [str(done.pk)]
    assert [p.name for p in (data_dir / "attempts").iterdir()] == [str(preparing.pk)]


def run_as(uid: int, path: Path) -> int:
    """Remove `path` in a child process of an ordinary user: 0 removed, 13 refused."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            retention.remove_tree(path)
            code = 0 if not os.path.lexists(path) else 2
        except PermissionError:
            code = 13
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_worker_that_is_not_root_removes_read_only_directories_of_its_own(data_dir):
    home = data_dir / "home"
    home.mkdir()
    os.chown(home, WORKER_UID, WORKER_UID)
    tree = home / "ws"
    (tree / "ro" / "deeper").mkdir(parents=True)
    (tree / "ro" / "deeper" / "file").write_text("x")
    (tree / "closed").mkdir()
    (tree / "closed" / "file").write_text("x")
    for child in [tree, *tree.rglob("*")]:
        os.chown(child, WORKER_UID, WORKER_UID)
    for ro in (tree / "ro" / "deeper", tree / "ro", tree):
        ro.chmod(0o555)
    (tree / "closed").chmod(0)

    assert run_as(WORKER_UID, tree) == 0
    assert not tree.exists()


def test_files_of_another_uid_are_refused_to_a_worker_that_is_not_root(data_dir):
    home = data_dir / "home"
    home.mkdir()
    os.chown(home, WORKER_UID, WORKER_UID)
    tree = home / "ws"
    (tree / "sandbox").mkdir(parents=True)
    (tree / "sandbox" / "file").write_text("x")
    os.chown(tree, WORKER_UID, WORKER_UID)
    # tree/sandbox and its file stay root's: not ours to change or remove.

    assert run_as(WORKER_UID, tree) == 13
    assert (tree / "sandbox" / "file").exists()


def test_a_workspace_that_cannot_be_removed_is_reported_and_the_rest_goes_on(alice, repo, data_dir):
    stuck = workspace(data_dir, "stuck")
    subprocess.run(
        ["chattr", "+i", str(stuck / "workspace" / "pkg" / "deep" / "data.bin")], check=True
    )
    workspace(data_dir, "loose")

    report = retention.apply()

    assert [w.name for w in report.workspaces] == ["loose"]
    assert len(report.failures) == 1 and report.failures[0].startswith("workspace stuck: ")
    assert "data.bin" in report.failures[0]
    assert AuditEntry.objects.get(action="retention.apply").data["failures"] == report.failures


# --- the command -------------------------------------------------------------------------------


def run_command(*args: str) -> str:
    out = StringIO()
    call_command("apply_retention", *args, stdout=out)
    return out.getvalue()


def test_the_command_names_what_it_removed(alice, repo, data_dir):
    old = attempt_of(alice, days_ago=91)
    workspace(data_dir, "orphan")
    count = logged(old)

    output = run_command()

    assert f"Removed {count} log events of 1 attempt finished more than 90 days ago." in output
    assert f"job {old.job.public_id} attempt 1: {count} events" in output
    assert "Removed 1 workspace " in output and "orphan: not an attempt" in output
    assert not Event.objects.filter(attempt=old).exists()
    assert not (data_dir / "attempts" / "orphan").exists()


def test_a_dry_run_removes_nothing_and_writes_no_audit_entry(alice, repo, data_dir):
    old = attempt_of(alice, days_ago=91)
    workspace(data_dir, "orphan")
    entries, count = AuditEntry.objects.count(), logged(old)

    output = run_command("--dry-run")

    assert output.startswith("Dry run: nothing was removed.")
    assert f"Would remove {count} log events of 1 attempt" in output and "orphan" in output
    assert logged(old) == count
    assert (data_dir / "attempts" / "orphan" / "workspace" / "pkg" / "deep").is_dir()
    old.refresh_from_db()
    assert retention.LOG_REMOVED_AT not in old.card
    assert AuditEntry.objects.count() == entries


def test_the_command_takes_other_periods_and_reports_as_json(alice, repo, data_dir):
    ten_days = attempt_of(alice, days_ago=10)
    count = logged(ten_days)
    report = json.loads(run_command("--events-days", "5", "--workspaces-days", "1", "--json"))
    assert report["events"] == count and report["jobs"] == [ten_days.job.public_id]
    assert (report["event_days"], report["workspace_days"], report["dry_run"]) == (5, 1, False)
    assert report["logs"] == [{"job": ten_days.job.public_id, "attempt": 1, "events": count}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--events-days", "0"], "--events-days must be at least 1 (got 0)"),
        (["--workspaces-days", "-1"], "--workspaces-days must be at least 0 (got -1)"),
        (["--events-days", "soon"], "--events-days: invalid int value: 'soon'"),
    ],
)
def test_the_command_names_a_bad_option(args, message, data_dir):
    with pytest.raises(CommandError, match=re.escape(message)):
        run_command(*args)


def test_the_command_fails_when_a_workspace_could_not_be_removed(data_dir):
    stuck = workspace(data_dir, "stuck")
    subprocess.run(["chattr", "+i", str(stuck / "workspace" / "app.py")], check=True)
    with pytest.raises(CommandError, match="1 workspace could not be removed"):
        run_command()


# --- the audit trail ---------------------------------------------------------------------------


def test_one_audit_entry_per_run_that_removed_something_and_none_otherwise(alice, repo, data_dir):
    old = [attempt_of(alice, days_ago=100) for _ in range(3)]
    workspace(data_dir, "orphan")
    count = sum(logged(a) for a in old)

    retention.apply()
    retention.apply()  # nothing left to do

    entry = AuditEntry.objects.get(action="retention.apply")
    assert (entry.actor_name, entry.actor) == ("system", None)
    assert entry.data["events"] == count and entry.data["workspaces"] == ["orphan"]
    assert entry.data["attempts"] == [f"{a.job.public_id}/1" for a in old]
    assert entry.data["bytes_freed"] > 0


# --- the periodic run --------------------------------------------------------------------------


def test_workers_apply_retention_once_per_interval(alice, repo, data_dir, redis):
    first = attempt_of(alice, days_ago=100)

    assert retention.apply_if_due(redis) is not None
    second = attempt_of(alice, days_ago=100)
    count = logged(second)
    assert retention.apply_if_due(redis) is None

    assert logged(first) == 0 and logged(second) == count
    assert AuditEntry.objects.filter(action="retention.apply").count() == 1
    assert 0 < redis.ttl(retention.EVENTS_DUE_KEY) <= 3600


def test_each_worker_host_cleans_its_own_workspaces(alice, repo, data_dir, redis):
    # Another host applied the database part just now; this host's disk is still due.
    redis.set(retention.EVENTS_DUE_KEY, "other-host", ex=3600)
    old = attempt_of(alice, days_ago=100)
    workspace(data_dir, "orphan")
    count = logged(old)

    report = retention.apply_if_due(redis)

    assert report is not None and [w.name for w in report.workspaces] == ["orphan"]
    assert report.logs == [] and logged(old) == count


@pytest.mark.slow
def test_a_running_worker_applies_retention(alice, repo, workers, settings, redis, data_dir):
    old = attempt_of(alice, days_ago=100)
    workspace(data_dir, "orphan")

    workers.start()

    wait_for(
        lambda: AuditEntry.objects.filter(action="retention.apply").exists(),
        what="the worker's retention run",
    )
    assert not Event.objects.filter(attempt=old).exists()
    assert not (data_dir / "attempts" / "orphan").exists()


# --- the job page ------------------------------------------------------------------------------


def test_the_job_page_says_the_log_was_removed_by_retention(client, alice, repo, data_dir):
    old = attempt_of(alice, days_ago=100)
    recent = attempt_of(alice, days_ago=1)
    retention.apply()
    client.force_login(alice)

    page = client.get(f"/jobs/{old.job.public_id}/").content.decode()
    assert (
        f"Log removed by retention on {timezone.now():%Y-%m-%d}; the result, diff and audit "
        "trail are kept." in page
    )
    assert 'id="log"' not in page

    page = client.get(f"/jobs/{recent.job.public_id}/").content.decode()
    assert "Log removed by retention" not in page and 'id="log"' in page
