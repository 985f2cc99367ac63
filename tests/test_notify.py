"""Notifications: preferences, browser push subscriptions, who hears of a settled job, and a real
encrypted Web Push received by a push service of our own on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import django_rq
import http_ece
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.shortcuts import resolve_url
from django.test import Client, RequestFactory
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright
from pywebpush import WebPushException

from jobs.models import Agent, Job, JobStatus, Membership, Repository, Role
from notify import services, webpush
from notify.context_processors import notifications
from notify.models import NotificationPreference, PushSubscription

SUBSCRIPTIONS = "/notify/subscriptions"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """What a browser keeps for a push subscription: its ECDH key pair and auth secret."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def keys(self) -> dict[str, str]:
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"p256dh": b64url(point), "auth": b64url(self.auth)}

    def subscription(self, endpoint: str) -> dict[str, Any]:
        """The shape of PushSubscription.toJSON()."""
        return {"endpoint": endpoint, "expirationTime": None, "keys": self.keys()}


class PushService:
    """A push service on 127.0.0.1 that records each request and answers with `status`."""

    def __init__(self) -> None:
        self.status = 201
        self.received: list[dict[str, Any]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                service.received.append({"path": self.path, "headers": headers, "body": body})
                self.send_response(service.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def push_service(settings: Any) -> Iterator[PushService]:
    settings.AGENTHUB_PUSH_ALLOW_INSECURE_LOCALHOST = True
    service = PushService()
    yield service
    service.close()


@pytest.fixture(autouse=True)
def _own_data_dir(settings: Any, tmp_path: Path) -> None:
    # The VAPID key pair lives in the data directory; each test starts without one.
    settings.AGENTHUB_DATA_DIR = tmp_path


@pytest.fixture
def queue() -> Any:
    found = django_rq.get_queue("default")
    found.empty()
    return found


def signed_in(user: User, **client_options: Any) -> Client:
    client = Client(**client_options)
    client.force_login(user)
    return client


def post_json(client: Client, body: Any, method: str = "post", **headers: Any) -> Any:
    send = getattr(client, method)
    return send(SUBSCRIPTIONS, json.dumps(body), content_type="application/json", **headers)


def subscribe(user: User, name: str) -> PushSubscription:
    return PushSubscription.objects.create(
        user=user, endpoint=f"https://push.example.com/{name}", **Browser().keys()
    )


def settled_job(repo: Repository, submitter: User, status: str, seconds: float = 120) -> Job:
    now = timezone.now()
    return Job.objects.create(
        team=repo.team,
        repository=repo,
        agent=Agent.objects.get(team=None, name="shell"),
        submitter=submitter,
        title="Make the greeting friendlier",
        prompt="sed -i s/hello/hi/ app.py",
        base_ref="main",
        base_commit="0" * 40,
        target_branch="main",
        status=status,
        created_at=now - timedelta(seconds=seconds),
        finished_at=now,
    )


@pytest.fixture
def dave(team: Any) -> User:
    """A team admin."""
    user = User.objects.create_user("dave", "dave@example.com", "pw")
    Membership.objects.create(team=team, user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def reviewing_carol(carol: User) -> User:
    """The outsider, made a reviewer of her own team, to prove roles do not cross teams."""
    Membership.objects.filter(user=carol).update(role=Role.REVIEWER)
    return carol


# --- preferences -------------------------------------------------------------------------------


def test_preferences_form_saves_the_choices(alice: User) -> None:
    client = signed_in(alice)
    answer = client.post(
        "/settings/notifications/",
        {"toast_after_seconds": "5", "alert_after_seconds": "120", "sound": "on"},
        follow=True,
    )
    assert answer.status_code == 200
    assert "Notification settings saved." in answer.content.decode()
    prefs = NotificationPreference.objects.get(user=alice)
    assert prefs.as_dict() == {
        "toast_after_seconds": 5,
        "alert_after_seconds": 120,
        "sound": True,
        "do_not_disturb": False,
    }


def test_preferences_form_rejects_an_alert_sooner_than_the_toast(alice: User) -> None:
    answer = signed_in(alice).post(
        "/settings/notifications/", {"toast_after_seconds": "30", "alert_after_seconds": "20"}
    )
    assert answer.status_code == 200
    assert answer.context["form"].errors == {
        "alert_after_seconds": [
            "The prominent alert cannot come sooner than the toast: use 30 seconds or more, "
            "or lower the toast threshold."
        ]
    }
    assert "cannot come sooner than the toast" in answer.content.decode()
    assert not NotificationPreference.objects.filter(user=alice).exists()


def test_preferences_page_shows_the_defaults_and_the_push_button(alice: User) -> None:
    page = signed_in(alice).get("/settings/notifications/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="toast_after_seconds" value="10"' in html
    assert 'name="alert_after_seconds" value="60"' in html
    assert 'id="enable-push"' in html
    assert "agenthub/push.js" in html


def test_anonymous_user_is_sent_to_sign_in(client: Client) -> None:
    answer = client.get("/settings/notifications/")
    assert answer.status_code == 302
    assert answer["Location"].startswith(resolve_url(settings.LOGIN_URL))


def test_page_gets_the_users_preferences_or_the_defaults(alice: User) -> None:
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    assert notifications(request)["notification_prefs"]["push_enabled"] is False
    assert notifications(request)["notification_prefs"]["alert_after_seconds"] == 60

    NotificationPreference.objects.create(
        user=alice, toast_after_seconds=0, alert_after_seconds=30, do_not_disturb=True
    )
    request.user = alice
    assert dict(notifications(request)["notification_prefs"]) == {
        "toast_after_seconds": 0,
        "alert_after_seconds": 30,
        "sound": False,
        "do_not_disturb": True,
        "push_enabled": True,
    }


# --- subscriptions -----------------------------------------------------------------------------


def test_subscription_is_created_then_updated_by_its_endpoint(alice: User, bob: User) -> None:
    endpoint = "https://fcm.googleapis.com/fcm/send/abc:def"
    first = post_json(
        signed_in(alice), Browser().subscription(endpoint), HTTP_USER_AGENT="Firefox/140"
    )
    assert first.status_code == 201
    assert first.json()["created"] is True

    browser = Browser()
    again = post_json(signed_in(bob), browser.subscription(endpoint))
    assert again.status_code == 200
    saved = PushSubscription.objects.get()
    # The same browser, now signed in as bob, with the keys it sent last.
    assert (saved.user, saved.p256dh, saved.auth) == (
        bob,
        browser.keys()["p256dh"],
        browser.keys()["auth"],
    )


def test_subscription_rejects_an_endpoint_that_is_not_https(alice: User) -> None:
    answer = post_json(signed_in(alice), Browser().subscription("http://push.example.com/x"))
    assert answer.status_code == 400
    assert answer.json()["field"] == "endpoint"
    assert "https" in answer.json()["detail"]
    assert not PushSubscription.objects.exists()


def test_subscription_rejects_an_endpoint_on_a_private_network(alice: User) -> None:
    answer = post_json(signed_in(alice), Browser().subscription("https://10.0.0.5/push"))
    assert answer.status_code == 400
    assert answer.json()["field"] == "endpoint"


def test_subscription_to_localhost_needs_the_development_setting(
    alice: User, settings: Any
) -> None:
    local = Browser().subscription("http://127.0.0.1:9/push")
    refused = post_json(signed_in(alice), local)
    assert refused.status_code == 400
    assert "AGENTHUB_PUSH_ALLOW_INSECURE_LOCALHOST" in refused.json()["detail"]

    settings.AGENTHUB_PUSH_ALLOW_INSECURE_LOCALHOST = True
    assert post_json(signed_in(alice), local).status_code == 201


@pytest.mark.parametrize(
    ("keys", "wrong_field"),
    [
        (None, "keys"),
        ({"auth": Browser().keys()["auth"]}, "keys.p256dh"),
        ({"p256dh": Browser().keys()["p256dh"]}, "keys.auth"),
        ({**Browser().keys(), "p256dh": b64url(b"\x04" + bytes(64))}, "keys.p256dh"),
        ({**Browser().keys(), "auth": b64url(bytes(8))}, "keys.auth"),
        ({**Browser().keys(), "auth": "not base64!"}, "keys.auth"),
    ],
)
def test_subscription_names_the_missing_or_wrong_key(
    alice: User, keys: Any, wrong_field: str
) -> None:
    body = {"endpoint": "https://push.example.com/x", **({"keys": keys} if keys else {})}
    answer = post_json(signed_in(alice), body)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid"
    assert answer.json()["field"] == wrong_field
    assert answer.json()["detail"].startswith(wrong_field)


def test_subscription_requires_the_csrf_token_of_the_session(alice: User) -> None:
    client = signed_in(alice, enforce_csrf_checks=True)
    body = Browser().subscription("https://push.example.com/x")
    assert post_json(client, body).status_code == 403

    client.get("/settings/notifications/")  # sets the csrftoken cookie, as the page does
    token = client.cookies["csrftoken"].value
    assert post_json(client, body, HTTP_X_CSRFTOKEN=token).status_code == 201


def test_subscription_requires_sign_in(client: Client, db: None) -> None:
    answer = post_json(client, Browser().subscription("https://push.example.com/x"))
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized"


def test_one_person_may_subscribe_only_so_many_browsers(alice: User) -> None:
    for n in range(services.MAX_SUBSCRIPTIONS_PER_USER):
        subscribe(alice, f"browser-{n}")
    answer = post_json(signed_in(alice), Browser().subscription("https://push.example.com/more"))
    assert answer.status_code == 409
    # A browser already subscribed may still refresh its keys.
    again = Browser().subscription("https://push.example.com/browser-0")
    assert post_json(signed_in(alice), again).status_code == 200


def test_unsubscribing_removes_only_your_own_subscription(alice: User, bob: User) -> None:
    mine, theirs = subscribe(alice, "mine"), subscribe(bob, "theirs")
    client = signed_in(alice)
    assert post_json(client, {"endpoint": theirs.endpoint}, method="delete").status_code == 404
    assert post_json(client, {"endpoint": mine.endpoint}, method="delete").status_code == 204
    assert list(PushSubscription.objects.all()) == [theirs]


# --- VAPID and the service worker --------------------------------------------------------------


def test_vapid_keys_are_created_once_and_reused(tmp_path: Path) -> None:
    first = webpush.vapid_keys()
    path = tmp_path / "vapid.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert webpush.vapid_keys() == first
    assert json.loads(path.read_text())["public_key"] == first.public_key

    point = unb64url(first.public_key)
    assert len(point) == 65 and point[0] == 4
    signer_point = first.signer().public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert signer_point == point
    assert list(tmp_path.iterdir()) == [path]


def test_browser_gets_the_vapid_public_key(alice: User) -> None:
    answer = signed_in(alice).get("/notify/vapid-public-key")
    assert answer.status_code == 200
    assert answer.json() == {"public_key": webpush.vapid_keys().public_key}


def test_service_worker_is_served_for_the_whole_site(client: Client) -> None:
    answer = client.get("/sw.js")
    assert answer.status_code == 200
    assert answer["Service-Worker-Allowed"] == "/"
    assert answer["Content-Type"].startswith("text/javascript")
    assert b"showNotification" in answer.content


# --- who hears of a settled job ----------------------------------------------------------------


def test_submitter_hears_their_job_settled(repo: Repository, alice: User, bob: User) -> None:
    assert services.recipients(settled_job(repo, alice, JobStatus.FAILED)) == [alice]


def test_reviewers_and_admins_hear_a_job_needs_review(
    repo: Repository, alice: User, bob: User, dave: User, reviewing_carol: User
) -> None:
    job = settled_job(repo, alice, JobStatus.NEEDS_REVIEW)
    assert services.recipients(job) == [alice, bob, dave]


def test_reviewer_who_submitted_hears_once(repo: Repository, bob: User) -> None:
    assert services.recipients(settled_job(repo, bob, JobStatus.NEEDS_REVIEW)) == [bob]


def test_submitter_who_left_the_team_hears_nothing(repo: Repository, alice: User) -> None:
    job = settled_job(repo, alice, JobStatus.MERGED)
    Membership.objects.filter(user=alice).delete()
    assert services.recipients(job) == []


@pytest.mark.parametrize(
    ("status", "seconds", "prefs", "pushed"),
    [
        (JobStatus.NO_CHANGES, 120, {}, True),
        (JobStatus.NO_CHANGES, 5, {}, False),
        # Between toast and alert: a toast in an open page, no browser notification.
        (JobStatus.NEEDS_REVIEW, 30, {}, False),
        (JobStatus.NEEDS_REVIEW, 30, {"alert_after_seconds": 20}, True),
        (JobStatus.FAILED, 1, {}, True),
        (JobStatus.MERGED, 600, {"do_not_disturb": True}, False),
        (JobStatus.FAILED, 600, {"do_not_disturb": True}, False),
    ],
)
def test_push_follows_the_alert_threshold_and_do_not_disturb(
    status: str, seconds: int, prefs: dict[str, Any], pushed: bool
) -> None:
    wanted = NotificationPreference(**prefs)
    assert services.should_push(wanted, status, timedelta(seconds=seconds)) is pushed


def test_a_decision_is_timed_from_the_submit_not_by_the_run_before_it(
    repo: Repository, alice: User
) -> None:
    # The run took a second, two minutes ago; bob merged it now: alice waited two minutes.
    job = settled_job(repo, alice, JobStatus.MERGED, seconds=120)
    job.finished_at = job.created_at + timedelta(seconds=1)
    assert services.job_duration(job) >= timedelta(seconds=120)
    job.status = JobStatus.NO_CHANGES  # an ending the run itself reached: the run's time
    assert services.job_duration(job) == timedelta(seconds=1)


def test_notification_names_the_job_in_plain_text(repo: Repository, alice: User) -> None:
    job = settled_job(repo, alice, JobStatus.NEEDS_REVIEW)
    job.title = "Fix <b>everything</b>\n" + "x" * 300
    assert services.payload(job) == {
        "title": f"Job {job.public_id} needs review",
        "body": ("Fix <b>everything</b> " + "x" * 300)[:119] + "…",
        "url": f"/jobs/{job.public_id}/",
        "tag": job.public_id,
        "status": "needs_review",
    }


def test_settled_job_enqueues_a_push_for_each_browser_of_each_recipient(
    repo: Repository, alice: User, bob: User, dave: User, reviewing_carol: User, queue: Any
) -> None:
    laptop, phone, bobs = subscribe(alice, "laptop"), subscribe(alice, "phone"), subscribe(bob, "b")
    subscribe(dave, "dave")
    subscribe(reviewing_carol, "carol")
    NotificationPreference.objects.create(user=dave, do_not_disturb=True)
    job = settled_job(repo, alice, JobStatus.NEEDS_REVIEW, seconds=90)

    services.job_settled(job)

    enqueued = queue.get_jobs()
    assert sorted(j.args[0] for j in enqueued) == sorted([laptop.pk, phone.pk, bobs.pk])
    assert {j.func_name for j in enqueued} == {"notify.webpush.send_job_push"}
    assert all(j.args[1] == services.payload(job) for j in enqueued)
    assert enqueued[0].retries_left == len(webpush.RETRY_INTERVALS)


def test_quick_job_enqueues_nothing_but_a_quick_failure_does(
    repo: Repository, alice: User, queue: Any
) -> None:
    subscribe(alice, "laptop")
    services.job_settled(settled_job(repo, alice, JobStatus.NO_CHANGES, seconds=3))
    services.job_settled(settled_job(repo, alice, JobStatus.RUNNING, seconds=300))
    assert queue.count == 0
    services.job_settled(settled_job(repo, alice, JobStatus.FAILED, seconds=3))
    assert queue.count == 1


# --- delivery ----------------------------------------------------------------------------------


def test_push_reaches_the_browser_encrypted_and_signed(
    alice: User, push_service: PushService
) -> None:
    browser = Browser()
    subscription = PushSubscription.objects.create(
        user=alice, endpoint=f"{push_service.origin}/push/alice-laptop", **browser.keys()
    )
    message = {
        "title": "Job ab12cd34ef needs review",
        "body": "Make the greeting friendlier",
        "url": "/jobs/ab12cd34ef/",
        "tag": "ab12cd34ef",
        "status": "needs_review",
    }

    assert webpush.send_job_push(subscription.pk, message) == "sent"

    [request] = push_service.received
    headers = request["headers"]
    assert request["path"] == "/push/alice-laptop"
    assert headers["content-encoding"] == "aes128gcm"
    assert int(headers["ttl"]) == webpush.TTL_SECONDS

    # VAPID (RFC 8292): "vapid t=<JWT>,k=<our public key>", the JWT signed with its private key.
    scheme, _, params = headers["authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(param.split("=", 1) for param in params.split(","))
    assert fields["k"] == webpush.vapid_keys().public_key
    signed, _, signature = fields["t"].rpartition(".")
    raw = unb64url(signature)
    vapid_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(fields["k"]))
    vapid_key.verify(  # raises InvalidSignature when it does not verify
        encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
        signed.encode(),
        ec.ECDSA(hashes.SHA256()),
    )
    header, claims = (json.loads(unb64url(part)) for part in signed.split("."))
    assert header == {"typ": "JWT", "alg": "ES256"}
    assert claims["aud"] == push_service.origin
    assert claims["sub"] == "mailto:admin@localhost"
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600

    # Message encryption (RFC 8291): only the browser's private key and auth secret open it.
    plain = http_ece.decrypt(
        request["body"], private_key=browser.key, auth_secret=browser.auth, version="aes128gcm"
    )
    assert json.loads(plain) == message

    subscription.refresh_from_db()
    assert subscription.last_success_at is not None
    assert subscription.failures == 0


def test_subscription_the_push_service_calls_gone_is_deleted(
    alice: User, push_service: PushService
) -> None:
    push_service.status = 410
    subscription = PushSubscription.objects.create(
        user=alice, endpoint=f"{push_service.origin}/push/old", **Browser().keys()
    )
    assert webpush.send_job_push(subscription.pk, {"title": "t"}) == "gone"
    assert len(push_service.received) == 1
    assert not PushSubscription.objects.exists()


def test_failed_push_is_counted_and_raised_for_rq_to_retry(
    alice: User, push_service: PushService
) -> None:
    push_service.status = 503
    subscription = PushSubscription.objects.create(
        user=alice, endpoint=f"{push_service.origin}/push/busy", **Browser().keys()
    )
    with pytest.raises(WebPushException):
        webpush.send_job_push(subscription.pk, {"title": "t"})
    subscription.refresh_from_db()
    assert subscription.failures == 1
    assert subscription.last_success_at is None


def test_push_to_localhost_is_refused_once_the_setting_is_off(
    alice: User, push_service: PushService, settings: Any
) -> None:
    subscription = PushSubscription.objects.create(
        user=alice, endpoint=f"{push_service.origin}/push/dev", **Browser().keys()
    )
    settings.AGENTHUB_PUSH_ALLOW_INSECURE_LOCALHOST = False
    assert webpush.send_job_push(subscription.pk, {"title": "t"}) == "refused"
    assert push_service.received == []


# --- the browser -------------------------------------------------------------------------------

# Headless Chromium has no push service, so the page gets a PushManager that hands out the
# subscription of a test Browser whose endpoint is our PushService; everything else is real:
# push.js, /sw.js, the CSRF-checked POST, the encrypted push, the service worker's notification.
FAKE_PUSH_MANAGER = """(subscription) => {
  // Kept in localStorage: a real browser keeps its subscription across page loads.
  const stored = () => localStorage.getItem("test-push-key");
  const make = (bytes) => ({
    endpoint: subscription.endpoint,
    options: { applicationServerKey: new Uint8Array(bytes).buffer },
    toJSON: () => subscription,
    unsubscribe: async () => { localStorage.removeItem("test-push-key"); return true; },
  });
  PushManager.prototype.getSubscription = async function () {
    return stored() ? make(JSON.parse(stored())) : null;
  };
  PushManager.prototype.subscribe = async function (options) {
    const bytes = Array.from(new Uint8Array(options.applicationServerKey));
    localStorage.setItem("test-push-key", JSON.stringify(bytes));
    return make(bytes);
  };
  window.subscribedWithKey = () => btoa(String.fromCharCode(...JSON.parse(stored())))
    .replace(/[+]/g, "-").replace(/[/]/g, "_").replace(/=+$/, "");
}"""
NOTIFICATIONS_SHOWN = """async () => {
  const registration = await navigator.serviceWorker.ready;
  return (await registration.getNotifications())
    .map((n) => ({ title: n.title, body: n.body, tag: n.tag, url: n.data.url }));
}"""


def test_browser_turns_on_notifications_and_shows_a_push_when_no_page_is_visible(
    live_server: Any,
    repo: Repository,
    alice: User,
    push_service: PushService,
    queue: Any,
    monkeypatch: Any,
) -> None:
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    browser_keys = Browser()
    endpoint = f"{push_service.origin}/push/alice-chromium"
    session = signed_in(alice).cookies[settings.SESSION_COOKIE_NAME].value
    origin = live_server.url

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=shutil.which("chromium"))
        context = chromium.new_context()
        context.grant_permissions(["notifications"], origin=origin)
        context.add_cookies([{"name": "sessionid", "value": session, "url": origin}])
        context.add_init_script(
            f"({FAKE_PUSH_MANAGER})({json.dumps(browser_keys.subscription(endpoint))})"
        )
        page = context.new_page()
        devtools = context.new_cdp_session(page)
        registrations: list[dict[str, Any]] = []
        devtools.on(
            "ServiceWorker.workerRegistrationUpdated",
            lambda event: registrations.extend(event["registrations"]),
        )
        devtools.send("ServiceWorker.enable")

        page.goto(f"{origin}/settings/notifications/")
        expect(page.locator("#push-state")).to_have_text("Browser notifications are off.")
        expect(page.locator("#disable-push")).to_have_attribute("hidden", "")
        page.click("#enable-push")
        expect(page.locator("#push-state")).to_have_text("Browser notifications are on.")
        expect(page.locator("#enable-push")).to_have_attribute("hidden", "")
        assert page.evaluate("window.subscribedWithKey()") == webpush.vapid_keys().public_key
        saved = PushSubscription.objects.get(user=alice)
        assert (saved.endpoint, saved.p256dh) == (endpoint, browser_keys.keys()["p256dh"])

        # The job settles; a real RQ worker delivers the push to the push service.
        job = settled_job(repo, alice, JobStatus.NEEDS_REVIEW)
        services.job_settled(job)
        django_rq.get_worker("default", worker_class="rq.worker.SimpleWorker").work(burst=True)
        [request] = push_service.received
        message = http_ece.decrypt(
            request["body"],
            private_key=browser_keys.key,
            auth_secret=browser_keys.auth,
            version="aes128gcm",
        )

        # The push service hands it to the service worker: silent while the page is visible
        # (the page alerts by itself), a notification once no AgentHub page is.
        [scope] = {r["registrationId"] for r in registrations if r["scopeURL"] == f"{origin}/"}
        push = {"origin": origin, "registrationId": scope, "data": message.decode()}
        devtools.send("ServiceWorker.deliverPushMessage", push)
        page.wait_for_timeout(300)
        assert page.evaluate(NOTIFICATIONS_SHOWN) == []
        page.goto("about:blank")
        devtools.send("ServiceWorker.deliverPushMessage", push)
        page.wait_for_timeout(300)
        page.goto(f"{origin}/settings/notifications/")
        assert page.evaluate(NOTIFICATIONS_SHOWN) == [
            {
                "title": f"Job {job.public_id} needs review",
                "body": "Make the greeting friendlier",
                "tag": job.public_id,
                "url": f"/jobs/{job.public_id}/",
            }
        ]

        expect(page.locator("#push-state")).to_have_text("Browser notifications are on.")
        page.click("#disable-push")
        expect(page.locator("#push-state")).to_have_text("Browser notifications are off.")
        assert not PushSubscription.objects.exists()
        chromium.close()
