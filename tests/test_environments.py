"""Repository environments (jobs/environments.py) through the pipeline, on real workers and real
sandboxes: set up once with the package registries, reused while its key holds, rebuilt when a
manifest changes; secrets reach the setup and never the agent; a failed step says which."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import time
from io import StringIO
from pathlib import Path
from typing import Any

import httpx
import platformdirs
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from jobs import environments, remotes, retention
from jobs.models import Attempt, AuditEntry, Job, Membership, Repository, Role
from tests.conftest import commit_files, shell_agent

# A real third-party project with real test dependencies: humanize's sdist from PyPI (hatchling
# and hatch-vcs to build it; freezegun, pytest-benchmark, pytest-cov and more to test it). The
# sdist is kept in the user's cache; the packages its setup downloads through the registries-only
# egress, in the package cache the test's workers keep there too, so a run after the first
# downloads nothing it already has.
SDIST = (
    "https://files.pythonhosted.org/packages/d0/a7/"
    "5391f6db94bf16289ca63ce2632eef2eba7b9991e701016ac66f04539d47/humanize-4.17.0.tar.gz"
)
SDIST_SHA256 = "1d6a36c453dbfbb3f0b34601d2e0b4ce5d48d780305cd45714843f0068fde6ac"
TEST_CACHE = Path(platformdirs.user_cache_dir("agenthub-tests"))


def humanize_sdist() -> Path:
    kept = TEST_CACHE / SDIST.rsplit("/", 1)[1]
    if not kept.exists():
        TEST_CACHE.mkdir(parents=True, exist_ok=True)
        body = httpx.get(SDIST, timeout=60, follow_redirects=True).raise_for_status().content
        assert hashlib.sha256(body).hexdigest() == SDIST_SHA256, "not the sdist we pinned"
        partial = kept.with_suffix(".part")
        partial.write_bytes(body)
        partial.rename(kept)
    return kept


def commit_project(repo: Repository) -> None:
    """The sdist's tree, committed over the demo repository's and synced into the store."""
    source = Path(repo.source)
    with tarfile.open(humanize_sdist()) as sdist:
        sdist.extractall(source.parent / "sdist", filter="data")
    shutil.copytree(source.parent / "sdist" / "humanize-4.17.0", source, dirs_exist_ok=True)
    commit_files(source, {}, "humanize 4.17.0")
    remotes.sync_store(Path(repo.store_path), repo.source, timeout=60)


def submit(client: Any, workers: Any, agent: str, prompt: str = "go", **env: str) -> Job:
    response = client.post("/api/v1/jobs", {"repo": "demo", "agent": agent, "prompt": prompt})
    assert response.status_code == 202, response.content
    workers.burst(600, **env)
    return Job.objects.get(public_id=response.json()["id"])


def log_of(attempt: Attempt) -> str:
    return "\n".join(e.text for e in attempt.events.order_by("seq"))


def problems(attempt: Attempt) -> str:
    """The lines of its log that say what went wrong."""
    found = [line for line in log_of(attempt).splitlines() if "rror" in line or "failed" in line]
    return "\n".join(found[:40])


def preparing_seconds(attempt: Attempt) -> float:
    """From preparing to running, as the status events say."""
    status = {e.data["status"]: e.ts for e in attempt.events.filter(kind="status")}
    return (status["running"] - status["preparing"]).total_seconds()


@pytest.mark.slow
def test_a_real_projects_environment_is_set_up_once_reused_and_rebuilt_when_a_manifest_changes(
    api, alice, repo, workers
):
    commit_project(repo)
    client = api(alice)
    cache = {"AGENTHUB_PACKAGE_CACHE_DIR": str(TEST_CACHE / "package-cache")}
    first = submit(client, workers, "pytest", **cache).attempts.get()
    assert first.job.status == "no_changes", (first.reason, problems(first))
    tests = first.summary["tests"]
    assert tests["passed"] > 700 and tests["failed"] == tests["errors"] == 0, tests
    built = first.card["environment"]
    assert built["reused"] is False and built["setup_seconds"] > 0
    assert built["detected"] == "pyproject.toml (extra tests)"
    assert first.events.filter(
        kind="group", text="environment setup (detected pyproject.toml (extra tests))"
    ).exists()
    shown = client.get(f"/api/v1/jobs/{first.job.public_id}").json()["attempts"][0]
    assert shown["environment"] == built

    second = submit(client, workers, "pytest", **cache).attempts.get()
    assert second.job.status == "no_changes", log_of(second)[-3000:]
    assert second.summary["tests"] == tests
    assert second.card["environment"] == {**built, "reused": True, "setup_seconds": None}
    groups = list(second.events.filter(kind="group").values_list("text", flat=True))
    # The setup did not run again; what it generated in its checkout that git ignores
    # (hatch-vcs's src/humanize/_version.py, which humanize imports) came back into this one.
    assert groups == ["checkout files from the environment"], groups
    print(
        f"\nhumanize: setup {built['setup_seconds']:.1f} s; preparation "
        f"{preparing_seconds(first):.2f} s setting up, {preparing_seconds(second):.2f} s reusing"
    )

    # A changed manifest rebuilds it; any agent runs with it, and what the setup wrote (an
    # editable install, hatch-vcs's version file) is no change of the agent's.
    pyproject = (Path(repo.source) / "pyproject.toml").read_text()
    commit_files(Path(repo.source), {"pyproject.toml": pyproject + "# a changed manifest\n"})
    remotes.sync_store(Path(repo.store_path), repo.source, timeout=60)
    prompt = "python -B -c 'import humanize, freezegun; print(humanize.intcomma(1234567))'"
    third = submit(client, workers, "shell", prompt, **cache).attempts.get()
    assert third.job.status == "no_changes", (third.files, log_of(third)[-3000:])
    assert "1,234,567" in log_of(third)
    assert third.card["environment"]["key"] != built["key"]
    assert third.card["environment"]["reused"] is False
    rebuilt = third.card["environment"]["setup_seconds"]
    print(f"humanize: rebuilt with the package cache in {rebuilt:.1f} s")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["bwrap", pytest.param("docker", marks=pytest.mark.docker)])
def test_secrets_reach_the_setup_never_the_agent_and_the_environment_is_read_only(
    api, alice, team, repo, workers, backend
):
    Repository.objects.filter(pk=repo.pk).update(
        setup_script='echo "token=$INDEX_TOKEN"\necho made > "$VIRTUAL_ENV/marker"\n',
        maintenance_script="echo maintained",
    )
    repo.refresh_from_db()
    repo.secrets = {"INDEX_TOKEN": "s3cr3t-value"}
    repo.save()
    shell_agent(team, name="probe", backend=backend)
    probe = (
        'echo "agent sees [${INDEX_TOKEN:-}]"\n'
        'cat "$VIRTUAL_ENV/marker"; command -v python3\n'
        'touch "$VIRTUAL_ENV/changed" || echo "environment is read-only"\n'
    )
    attempt = submit(api(alice), workers, "probe", probe).attempts.get()
    log = log_of(attempt)
    assert attempt.status == "succeeded", (attempt.reason, log)
    assert attempt.card["backend"] == backend
    assert "token=***" in log and "s3cr3t-value" not in log
    assert "agent sees []" in log
    assert "made" in log and f"{environments.ENV_PATH}/bin/python3" in log
    assert "environment is read-only" in log
    assert "maintained" in log
    # The maintenance script runs again in the next attempt; the setup does not.
    again = submit(api(alice), workers, "probe", "true").attempts.get()
    assert "maintained" in log_of(again) and "token=" not in log_of(again)


@pytest.mark.slow
def test_a_failed_setup_fails_the_attempt_naming_the_step(api, alice, team, repo, workers):
    Repository.objects.filter(pk=repo.pk).update(setup_script="echo one\nfalse\necho never\n")
    shell_agent(team, name="probe")
    attempt = submit(api(alice), workers, "probe", "echo agent ran").attempts.get()
    assert attempt.status == "failed"
    assert attempt.reason == "environment setup failed (exit 1) at: false"
    assert "agent ran" not in log_of(attempt) and "never" not in log_of(attempt)
    assert not list(environments.root().glob(".build-*"))  # nothing half-made is kept


# --- settings: the API, the page, manage.py, retention -----------------------------------------


def test_team_admins_read_and_change_the_environment_over_the_api(api, alice, bob, repo):
    Membership.objects.filter(user=alice).update(role=Role.ADMIN)
    client = api(alice)
    changed = client.patch_json(
        "/api/v1/repos/demo",
        {"setup_script": "pip install -e .", "secrets": {"INDEX_TOKEN": "s3cr3t-value"}},
    )
    assert changed.status_code == 200, changed.content
    shown = client.get("/api/v1/repos/demo", team="demo").json()
    assert shown["setup_script"] == "pip install -e ."
    assert shown["secrets"] == ["INDEX_TOKEN"]  # names only, never values
    assert "s3cr3t-value" not in changed.content.decode() + str(
        list(AuditEntry.objects.values_list("data", flat=True))
    )
    assert Repository.objects.get(pk=repo.pk).secrets == {"INDEX_TOKEN": "s3cr3t-value"}
    # Bad input names what was wrong, and nothing is saved.
    bad = client.patch_json("/api/v1/repos/demo", {"setup_script": "if then fi ("})
    assert (
        bad.status_code == 400
        and "setup_script: The script is not a valid bash" in bad.json()["detail"]
    )
    unknown = client.patch_json("/api/v1/repos/demo", {"store_path": "/etc"})
    assert unknown.status_code == 400 and "store_path" in unknown.json()["detail"]
    assert Repository.objects.get(pk=repo.pk).setup_script == "pip install -e ."
    rebuilt = client.post("/api/v1/repos/demo/environment/rebuild")
    assert rebuilt.status_code == 202 and rebuilt.json()["environment_generation"] == 1
    assert AuditEntry.objects.filter(action="repository.rebuild_environment").exists()
    # A reviewer is not an admin.
    assert api(bob).get("/api/v1/repos/demo").status_code == 403


def test_the_repository_page_rebuilds_the_environment(alice, repo):
    Membership.objects.filter(user=alice).update(role=Role.ADMIN)
    web = Client()
    web.force_login(alice)
    page = web.get(f"/teams/{repo.team.name}/repositories/demo/").content.decode()
    assert "Rebuild environment" in page and "Setup script" in page
    done = web.post(f"/teams/{repo.team.name}/repositories/demo/environment/rebuild")
    assert done.status_code == 302
    assert Repository.objects.get(pk=repo.pk).environment_generation == 1


def test_add_repository_takes_a_setup_file(team, make_source, tmp_path):
    setup = tmp_path / "setup.sh"
    setup.write_text("pip install -e '.[test]'\n")
    call_command(
        "add_repository",
        str(make_source("src")),
        team="demo",
        name="w",
        setup_file=str(setup),
        stdout=StringIO(),
    )
    assert Repository.objects.get(name="w").setup_script == "pip install -e '.[test]'\n"
    setup.write_text("if then (\n")
    with pytest.raises(CommandError, match="not a valid bash script"):
        call_command(
            "add_repository",
            str(make_source("other")),
            team="demo",
            name="x",
            setup_file=str(setup),
        )


def test_retention_removes_environments_nobody_used(db, settings):
    root = environments.root()
    (root / "old-key" / "bin").mkdir(parents=True)
    (root / "fresh-key").mkdir()
    (root / ".build-half-1").mkdir()
    month_ago = time.time() - 30 * 86400
    for name in ("old-key", ".build-half-1"):
        os.utime(root / name, (month_ago, month_ago))
    report = retention.apply()
    removed = {w.name: w.reason for w in report.workspaces}
    assert removed == {
        "environments/old-key": "unused for 14 days",
        "environments/.build-half-1": "left half-built",
    }
    assert sorted(p.name for p in root.iterdir()) == ["fresh-key"]
