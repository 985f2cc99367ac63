"""The demo that `make run` loads: the standing cast, their credentials, and the demo repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.contrib.auth import authenticate

from jobs import workspace
from jobs.demo import credentials_path, load_demo
from jobs.models import Agent, ApiToken, Membership, Repository, hash_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def data_dir(tmp_path, settings):
    settings.AGENTHUB_DATA_DIR = tmp_path
    return tmp_path


def test_demo_creates_the_cast_with_working_passwords_and_tokens(data_dir, agents):
    data = load_demo("http://localhost:8000/")
    saved = json.loads(credentials_path().read_text())
    assert saved == data and saved["url"] == "http://localhost:8000/"
    roles = {
        m.user.username: (m.team.name, m.role)
        for m in Membership.objects.select_related("user", "team")
    }
    assert roles == {
        "alice": ("demo", "member"),
        "bob": ("demo", "reviewer"),
        "carol": ("acme", "member"),
        "admin": ("demo", "admin"),
    }
    for name, user in saved["users"].items():
        assert authenticate(username=name, password=user["password"]) is not None
        assert ApiToken.objects.get(key_hash=hash_token(user["token"])).user.username == name
    assert oct(credentials_path().stat().st_mode & 0o777) == "0o600"


def test_demo_repository_has_code_and_tests(data_dir, agents):
    load_demo("http://localhost:8000/")
    repo = Repository.objects.get(team__name="demo", name="demo")
    listing = workspace.run_git(
        ["ls-tree", "-r", "--name-only", "main"], git_dir=Path(repo.store_path)
    )
    files = listing.stdout.decode().split()
    assert "calc/ops.py" in files and "test_calc.py" in files


def test_running_the_demo_twice_reuses_everything(data_dir, agents):
    first = load_demo("http://localhost:8000/")
    second = load_demo("http://localhost:8000/")
    assert first == second
    assert Repository.objects.count() == 1
    assert ApiToken.objects.count() == 4


def test_demo_team_has_a_docs_agent_that_merges_documentation_unreviewed(data_dir, agents):
    load_demo("http://localhost:8000/")
    load_demo("http://localhost:8000/")
    docs = Agent.objects.get(team__name="demo", name="docs")
    assert docs.command == Agent.objects.get(team=None, name="shell").command
    assert docs.silent_merge_patterns == ["docs/**", "*.md"]
    assert docs.merges_silently(["docs/usage.txt", "README.md"])
    assert not docs.merges_silently(["README.md", "calc/ops.py"])
