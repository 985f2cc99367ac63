"""API tokens: each person creates, lists and revokes their own; a revoked or expired token is
refused with 401, a valid one reaches only its user's teams; and requests are rate limited."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from jobs import ratelimit, services
from jobs.models import ApiToken, AuditEntry

pytestmark = pytest.mark.django_db


def bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def create(client: Any, **body: Any) -> Any:
    return client.post("/api/v1/tokens", {"name": "laptop", **body})


def test_a_new_token_shows_its_key_once_and_the_key_works(api, alice, client):
    created = create(api(alice), expires_in_days=30)
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["key"].startswith(body["prefix"])
    assert body["name"] == "laptop" and body["revoked_at"] is None
    token = ApiToken.objects.get(pk=body["id"])
    assert token.expires_at - timezone.now() > timedelta(days=29, hours=23)
    assert client.get("/api/v1/jobs", **bearer(body["key"])).status_code == 200
    listed = api(alice).get("/api/v1/tokens").json()
    shown = next(t for t in listed if t["id"] == body["id"])
    assert "key" not in shown and body["key"] not in repr(listed)
    assert shown["last_used_at"] is not None


def test_creating_a_token_is_audited_without_its_key(api, alice):
    key = create(api(alice)).json()["key"]
    entry = AuditEntry.objects.get(action="apitoken.create")
    assert entry.actor == alice
    assert "laptop" in entry.target
    assert key not in repr(entry.__dict__)


def test_a_token_can_expire_at_a_given_time(api, alice):
    at = (timezone.now() + timedelta(hours=2)).replace(microsecond=0)
    body = create(api(alice), expires_at=at.isoformat()).json()
    assert ApiToken.objects.get(pk=body["id"]).expires_at == at
    assert body["expires_at"] == at.isoformat()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": "soon"}, "expires_in_days"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"expires_in_days": 1, "expires_at": "2099-01-01T00:00:00Z"}, "expires_at"),
    ],
)
def test_bad_token_requests_are_400_naming_the_field(api, alice, body, field):
    response = create(api(alice), **body)
    assert response.status_code == 400, response.content
    assert (response.json()["error"], response.json()["field"]) == ("invalid", field)
    assert not ApiToken.objects.filter(name__in=["", "   ", "laptop"]).exists()


def test_a_person_lists_only_their_own_tokens(api, alice, carol):
    create(api(alice), name="alice's")
    create(api(carol), name="carol's")
    names = {t["name"] for t in api(alice).get("/api/v1/tokens").json()}
    assert "alice's" in names and "carol's" not in names


def test_a_revoked_token_gets_401_naming_it(api, alice, client):
    body = create(api(alice)).json()
    revoked = api(alice).client.delete(f"/api/v1/tokens/{body['id']}", **api(alice).headers)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    refused = client.get("/api/v1/jobs", **bearer(body["key"]))
    assert refused.status_code == 401
    assert refused.json()["error"] == "unauthorized"
    assert "'laptop' was revoked" in refused.json()["detail"]
    assert AuditEntry.objects.filter(action="apitoken.revoke", actor=alice).count() == 1


def test_revoking_twice_changes_nothing_more(api, alice):
    client = api(alice)
    token_id = create(client).json()["id"]
    first = client.client.delete(f"/api/v1/tokens/{token_id}", **client.headers).json()
    again = client.client.delete(f"/api/v1/tokens/{token_id}", **client.headers).json()
    assert again["revoked_at"] == first["revoked_at"]
    assert AuditEntry.objects.filter(action="apitoken.revoke").count() == 1


def test_an_expired_token_gets_401_naming_it(alice, client):
    _, key = ApiToken.issue(alice, "ci", expires_at=timezone.now() - timedelta(minutes=1))
    refused = client.get("/api/v1/jobs", **bearer(key))
    assert refused.status_code == 401
    assert "'ci' expired on" in refused.json()["detail"]


def test_someone_elses_token_cannot_be_revoked(api, alice, carol, client):
    body = create(api(alice)).json()
    outsider = api(carol)
    response = outsider.client.delete(f"/api/v1/tokens/{body['id']}", **outsider.headers)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert client.get("/api/v1/jobs", **bearer(body["key"])).status_code == 200
    assert not AuditEntry.objects.filter(action="apitoken.revoke").exists()


def test_another_teams_job_through_a_valid_token_is_404(api, alice, carol, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="echo hi")
    outsider = api(carol)
    for path in ("", "/events", "/diff", "/wait?timeout=0"):
        response = outsider.get(f"/api/v1/jobs/{job.public_id}{path}")
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found", path
    assert outsider.post(f"/api/v1/jobs/{job.public_id}/cancel").status_code == 404
    assert outsider.get("/api/v1/jobs").json()["count"] == 0


def test_tokens_need_credentials(api):
    anonymous = api(None)
    assert anonymous.get("/api/v1/tokens").status_code == 401
    assert create(anonymous).status_code == 401
    assert not ApiToken.objects.exists()


def test_a_signed_in_session_manages_tokens_with_its_csrf_token(alice, client):
    client.force_login(alice)
    client.handler.enforce_csrf_checks = True
    refused = client.post("/api/v1/tokens", {"name": "x"}, content_type="application/json")
    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
    client.get("/settings/tokens/")  # sets the CSRF cookie
    csrf = client.cookies["csrftoken"].value
    created = client.post(
        "/api/v1/tokens", {"name": "x"}, content_type="application/json", HTTP_X_CSRFTOKEN=csrf
    )
    assert created.status_code == 201
    assert [t["name"] for t in client.get("/api/v1/tokens").json()] == ["x"]


class TestRateLimit:
    WINDOW = 60  # the seconds of every limit below
    NEEDED = 5  # the longest a test's requests take (a long poll of 1 s, on a loaded host)

    @pytest.fixture(autouse=True)
    def fresh_counts(self) -> None:
        connection = ratelimit._redis(ratelimit.settings.REDIS_URL)
        for key in connection.scan_iter("agenthub:ratelimit:*"):
            connection.delete(key)
        # Requests are counted per fixed window (ratelimit.check): a test whose requests span
        # a window's end would see its count start again. Start each in a window with time left.
        left = self.WINDOW - time.time() % self.WINDOW
        if left < self.NEEDED:
            time.sleep(left)

    @override_settings(AGENTHUB_API_RATE_LIMIT="3/60")
    def test_a_token_over_its_limit_gets_429_with_retry_after(self, api, alice):
        client = api(alice)
        assert [client.get("/api/v1/jobs").status_code for _ in range(3)] == [200] * 3
        refused = client.get("/api/v1/jobs")
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert "3 requests in 60 s" in refused.json()["detail"]
        assert 1 <= int(refused["Retry-After"]) <= 60

    @override_settings(AGENTHUB_API_RATE_LIMIT="2/60")
    def test_each_token_has_its_own_count(self, api, alice):
        first, second = api(alice), api(alice)
        assert [first.get("/api/v1/jobs").status_code for _ in range(3)] == [200, 200, 429]
        assert second.get("/api/v1/jobs").status_code == 200

    @override_settings(AGENTHUB_API_RATE_LIMIT="2/60")
    def test_a_signed_in_user_is_limited_too(self, alice, client):
        client.force_login(alice)
        assert [client.get("/api/v1/jobs").status_code for _ in range(3)] == [200, 200, 429]

    @override_settings(AGENTHUB_API_RATE_LIMIT="1/60")
    def test_a_long_poll_counts_as_one_request(self, api, alice, repo):
        client = api(alice)
        job = services.submit_job(alice, repo="demo", agent="shell", prompt="echo hi")
        assert client.get(f"/api/v1/jobs/{job.public_id}/wait", timeout=1).status_code == 200
        assert client.get(f"/api/v1/jobs/{job.public_id}").status_code == 429

    @override_settings(AGENTHUB_API_RATE_LIMIT="0/60")
    def test_a_limit_of_zero_turns_it_off(self, api, alice):
        client = api(alice)
        assert {client.get("/api/v1/jobs").status_code for _ in range(5)} == {200}

    @override_settings(AGENTHUB_API_RATE_LIMIT="lots")
    def test_a_malformed_limit_is_refused_naming_the_setting(self):
        with pytest.raises(ratelimit.ImproperlyConfigured, match="AGENTHUB_API_RATE_LIMIT"):
            ratelimit.limit()


class TestPage:
    def test_it_creates_a_token_and_shows_its_key_once(self, alice, client):
        client.force_login(alice)
        shown = client.post("/settings/tokens/", {"name": "ci", "expires_in_days": "30"})
        token = ApiToken.objects.get(user=alice, name="ci")
        key = shown.context["created"]["key"]
        assert key.startswith(token.prefix) and key in shown.content.decode()
        assert token.expires_at is not None
        assert "no-cache" in shown["Cache-Control"]
        again = client.get("/settings/tokens/").content.decode()
        assert key not in again and f"{token.prefix}…" in again
        assert client.get("/api/v1/jobs", **bearer(key)).status_code == 200
        assert AuditEntry.objects.filter(action="apitoken.create", actor=alice).count() == 1

    def test_a_token_that_never_expires(self, alice, client):
        client.force_login(alice)
        client.post("/settings/tokens/", {"name": "forever", "expires_in_days": ""})
        assert ApiToken.objects.get(name="forever").expires_at is None

    def test_a_name_is_required(self, alice, client):
        client.force_login(alice)
        page = client.post("/settings/tokens/", {"name": "  ", "expires_in_days": "30"})
        assert page.status_code == 200
        assert "This field is required" in page.content.decode()
        assert not ApiToken.objects.exists()

    def test_it_revokes_a_token(self, alice, client):
        token, key = ApiToken.issue(alice, "old")
        client.force_login(alice)
        done = client.post(f"/settings/tokens/{token.pk}/revoke", follow=True)
        assert "Revoked old" in done.content.decode()
        assert client.get("/api/v1/jobs", **bearer(key)).status_code == 401

    def test_someone_elses_token_is_404(self, alice, carol, client):
        token, key = ApiToken.issue(alice, "alice's")
        client.force_login(carol)
        assert client.post(f"/settings/tokens/{token.pk}/revoke").status_code == 404
        assert "alice's" not in client.get("/settings/tokens/").content.decode()
        assert ApiToken.objects.get(pk=token.pk).revoked_at is None

    def test_it_needs_a_signed_in_user(self, client):
        assert client.get("/settings/tokens/")["Location"].startswith("/accounts/login/")

    def test_names_are_escaped(self, alice, client):
        ApiToken.issue(alice, "<b>bold</b>")
        client.force_login(alice)
        page = client.get("/settings/tokens/").content.decode()
        assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
