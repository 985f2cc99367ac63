from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from jobs.models import ApiToken, AuditEntry, Repository, hash_token

pytestmark = pytest.mark.django_db


def test_add_repository_makes_a_store_for_the_team(team, make_source):
    source = make_source("widgets")
    out = StringIO()
    call_command("add_repository", str(source), team="demo", name="widgets", stdout=out)
    repo = Repository.objects.get(team=team, name="widgets")
    assert repo.default_branch == "main"
    assert "Registered demo/widgets" in out.getvalue()
    assert AuditEntry.objects.filter(action="repository.register", target="widgets").count() == 1


def test_add_repository_names_what_was_wrong(team, tmp_path):
    with pytest.raises(CommandError, match="No such path"):
        call_command("add_repository", str(tmp_path / "nope"), team="demo", name="x")
    with pytest.raises(CommandError, match="No team named 'nope'"):
        call_command("add_repository", str(tmp_path), team="nope", name="x")


def test_issue_token_prints_a_key_that_authenticates(alice, client):
    out = StringIO()
    call_command("issue_token", "alice", stdout=out)
    key = out.getvalue().strip()
    assert ApiToken.objects.get(key_hash=hash_token(key)).user == alice
    assert client.get("/api/v1/jobs", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
