"""Model credentials on the team page: admins store, replace and delete a key per provider; the
key is never shown again, not even to them; members cannot reach the form."""

from __future__ import annotations

import pytest
from django.test import Client

from gateway.models import ModelCredential
from jobs.models import AuditEntry, Role, Team
from tests.conftest import _member

KEY = "sk-ant-team-page-key-8086"


@pytest.fixture
def admin(client: Client, team: Team) -> Client:
    client.force_login(_member("dana", team, Role.ADMIN))
    return client


def test_an_admin_stores_a_key_that_is_never_shown_again_and_deletes_it(admin, team):
    answer = admin.post(
        "/teams/demo/credentials", {"provider": "anthropic", "key": KEY}, follow=True
    )
    page = answer.content.decode()
    assert "Stored the anthropic key (encrypted)." in page
    assert KEY not in page and "https://api.anthropic.com" in page
    credential = ModelCredential.objects.get(team=team, provider="anthropic")
    assert credential.key() == KEY and KEY not in credential.sealed_key
    assert KEY not in admin.get("/teams/demo/").content.decode()
    entry = AuditEntry.objects.filter(action="modelcredential.create").get()
    assert KEY not in str(entry.data)

    answer = admin.post("/teams/demo/credentials/anthropic/delete", follow=True)
    assert "Deleted the anthropic key." in answer.content.decode()
    assert not ModelCredential.objects.filter(team=team).exists()


def test_a_self_hosted_server_needs_its_base_url_and_nothing_is_stored(admin, team):
    answer = admin.post(
        "/teams/demo/credentials", {"provider": "openai-compatible", "key": "k", "base_url": ""}
    )
    assert answer.status_code == 200
    assert "openai-compatible needs a base URL" in answer.content.decode()
    assert not ModelCredential.objects.filter(team=team).exists()
    stored = admin.post(
        "/teams/demo/credentials",
        {"provider": "openai-compatible", "key": "k", "base_url": "http://10.0.0.5:8000/v1"},
    )
    assert stored.status_code == 302
    assert ModelCredential.objects.get(team=team).upstream == "http://10.0.0.5:8000/v1"


def test_members_cannot_set_keys(client, alice, team):
    client.force_login(alice)
    answer = client.post("/teams/demo/credentials", {"provider": "anthropic", "key": KEY})
    assert answer.status_code == 403
    assert not ModelCredential.objects.filter(team=team).exists()
