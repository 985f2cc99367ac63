"""Webhooks (hooks/): a team's hooks and a job's callback_url get a signed POST when a job settles,
retried by real RQ workers, logged per try; the SSRF guard keeps them off private addresses unless
AGENTHUB_WEBHOOK_ALLOW_PRIVATE says otherwise; team admins and staff manage them, audited."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import json
import re
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import urllib3
from django.contrib.auth.models import User
from django.test import Client

from hooks import guard, services, transport
from hooks.models import EVENT_STATUSES, Delivery, DeliveryStatus, Webhook
from jobs import services as jobs
from jobs.errors import BadInput
from jobs.models import AuditEntry, Job, JobStatus, Role, Team
from tests.conftest import _member, wait_for

ALLOW = {"AGENTHUB_WEBHOOK_ALLOW_PRIVATE": "true"}


class Receiver:
    """A local HTTP endpoint that records what it is sent and answers with `answers` in turn
    (then 204)."""

    def __init__(self, answers: list[int]) -> None:
        self.calls: list[tuple[Any, bytes]] = []
        self.answers = list(answers)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((self.headers, body))
                answer = receiver.answers.pop(0) if receiver.answers else 204
                text = b"try again" if answer >= 300 else b""
                self.send_response(answer)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"


@pytest.fixture
def receiver() -> Iterator[Any]:
    made: list[Receiver] = []

    def make(*answers: int) -> Receiver:
        made.append(Receiver(list(answers)))
        return made[-1]

    yield make
    for r in made:
        r.server.shutdown()
        r.server.server_close()


@pytest.fixture
def allow_private(settings: Any) -> None:
    settings.AGENTHUB_WEBHOOK_ALLOW_PRIVATE = True


@pytest.fixture
def dana(team: Team) -> User:
    """The team admin of demo."""
    return _member("dana", team, Role.ADMIN)


@pytest.fixture
def staff(db: None) -> User:
    """A site admin: staff, not a superuser, with no model permissions of its own."""
    return User.objects.create_user("sam", "sam@example.com", "pw", is_staff=True)


def verified(secret: str, headers: Any, body: bytes) -> bool:
    """What a receiver does: HMAC the raw body with the secret, compare in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-AgentHub-Signature"])


def cancelled_job(user: User, **fields: Any) -> Job:
    """A job that settles at once, in this process: submitted, then cancelled while queued.
    Its hooks' deliveries are made when that commits (see `settled` for tests in a transaction).
    """
    job = jobs.submit_job(user, repo="demo", agent="shell", prompt="true", **fields)
    return jobs.cancel_job(user, job)


@pytest.fixture
def settled(django_capture_on_commit_callbacks: Any) -> Any:
    """cancelled_job for tests inside a transaction: runs what would run on commit."""

    def settle(user: User, **fields: Any) -> Job:
        # One commit each, as outside a transaction: a callback reads the job as it is then.
        with django_capture_on_commit_callbacks(execute=True):
            job = jobs.submit_job(user, repo="demo", agent="shell", prompt="true", **fields)
        with django_capture_on_commit_callbacks(execute=True):
            return jobs.cancel_job(user, job)

    return settle


def audit_actions(since: int) -> list[tuple[str, str]]:
    entries = AuditEntry.objects.filter(pk__gt=since).order_by("pk")
    return [(e.action, e.actor_name) for e in entries if e.action.startswith("webhook.")]


def audit_mark() -> int:
    last = AuditEntry.objects.order_by("-pk").first()
    return last.pk if last else 0


# --- delivery through real RQ workers ------------------------------------------------------------


@pytest.mark.slow
def test_a_settled_job_is_posted_to_its_callback_correctly_signed(
    alice, repo, workers, receiver, allow_private
):
    hook_receiver = receiver()
    job = jobs.submit_job(
        alice, repo="demo", agent="shell", prompt="touch x", callback_url=hook_receiver.url
    )
    secret = services.callback_secret(job)
    workers.burst(**ALLOW)
    wait_for(lambda: hook_receiver.calls, timeout=10, what="the callback")
    headers, body = hook_receiver.calls[0]
    assert secret and verified(secret, headers, body)
    delivery = Delivery.objects.get(hook__job=job)
    assert headers["X-AgentHub-Delivery"] == str(delivery.pk)
    assert headers["X-AgentHub-Event"] == "job.needs_review"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("AgentHub")
    assert body.decode() == delivery.body
    payload = json.loads(body)
    assert (payload["event"], payload["status"]) == ("job.needs_review", "needs_review")
    assert (payload["job"]["id"], payload["job"]["status"]) == (job.public_id, "needs_review")
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 204)


@pytest.mark.slow
def test_a_receiver_answering_500_twice_gets_the_third_try(
    alice, repo, workers, receiver, allow_private, monkeypatch
):
    # The retries are scheduled by whoever enqueues: here, this process (cancel_job).
    monkeypatch.setattr(services, "RETRY_INTERVALS", [1, 1, 1])
    hook_receiver = receiver(500, 500)
    hook = services.create_hook(alice, repo.team, hook_receiver.url)
    job = cancelled_job(alice)
    workers.start(**ALLOW)
    delivery = wait_for(
        lambda: Delivery.objects.filter(hook=hook, status=DeliveryStatus.DELIVERED).first(),
        timeout=60,
        what="the third try",
    )
    assert (delivery.job, delivery.event) == (job, "job.cancelled")
    assert delivery.status_codes == [500, 500, 204]
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (3, 204, "")
    assert [t["error"] for t in delivery.tries[:2]] == ["HTTP 500: try again"] * 2
    assert len(hook_receiver.calls) == 3
    # Every try is the same delivery: same id, same body, same signature.
    assert {h["X-AgentHub-Delivery"] for h, _ in hook_receiver.calls} == {str(delivery.pk)}
    assert {b for _, b in hook_receiver.calls} == {delivery.body.encode()}
    assert all(verified(hook.secret, h, b) for h, b in hook_receiver.calls)


@pytest.mark.slow
def test_a_receiver_that_always_fails_leaves_a_failed_delivery(
    alice, repo, workers, receiver, allow_private, monkeypatch
):
    monkeypatch.setattr(services, "RETRY_INTERVALS", [1])
    hook_receiver = receiver(503, 503, 503)
    hook = services.create_hook(alice, repo.team, hook_receiver.url)
    cancelled_job(alice)
    workers.start(**ALLOW)
    delivery = wait_for(
        lambda: Delivery.objects.filter(hook=hook, status=DeliveryStatus.FAILED).first(),
        timeout=60,
        what="the last try",
    )
    assert (delivery.status_codes, delivery.attempts) == ([503, 503], 2)
    assert delivery.delivered_at is None


@pytest.mark.slow
def test_a_hook_turned_private_is_refused_at_delivery_time(
    alice, repo, workers, receiver, allow_private
):
    hook_receiver = receiver()
    hook = services.create_hook(alice, repo.team, hook_receiver.url)
    cancelled_job(alice)
    workers.burst()  # without AGENTHUB_WEBHOOK_ALLOW_PRIVATE: the guard is on in the worker
    delivery = Delivery.objects.get(hook=hook)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, None)
    assert "127.0.0.1 is a loopback address" in delivery.last_error
    assert "AGENTHUB_WEBHOOK_ALLOW_PRIVATE" in delivery.last_error
    assert hook_receiver.calls == []


@pytest.mark.slow
def test_staff_redeliver_from_the_admin(
    client, staff, alice, repo, workers, receiver, allow_private
):
    hook_receiver = receiver(500)
    hook = services.create_hook(alice, repo.team, hook_receiver.url)
    cancelled_job(alice)
    first = Delivery.objects.get(hook=hook)
    services.attempt(str(first.pk))  # its only try: 500, failed
    assert Delivery.objects.get(pk=first.pk).status == "failed"
    mark = audit_mark()

    client.force_login(staff)
    response = client.post(
        "/admin/hooks/delivery/",
        {"action": "redeliver", "_selected_action": [str(first.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    again = Delivery.objects.get(redelivery_of=first)
    assert f"Redelivering {first.pk} as" in response.content.decode()
    assert audit_actions(mark) == [("webhook.redeliver", "sam")]
    workers.burst(**ALLOW)
    again.refresh_from_db()
    assert (again.status, again.status_codes, again.body) == ("delivered", [204], first.body)
    headers, body = hook_receiver.calls[-1]
    assert headers["X-AgentHub-Delivery"] == str(again.pk) != str(first.pk)
    assert body == first.body.encode() and verified(hook.secret, headers, body)


# --- signatures ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_tampered_body_fails_the_signature_check(alice, repo, receiver, settled, allow_private):
    hook_receiver = receiver()
    hook = services.create_hook(alice, repo.team, hook_receiver.url)
    other = services.create_hook(alice, repo.team, hook_receiver.url)
    job = settled(alice)
    for delivery in Delivery.objects.filter(job=job).order_by("hook_id"):
        services.attempt(str(delivery.pk))
    (headers, body), (other_headers, other_body) = hook_receiver.calls
    assert verified(hook.secret, headers, body)
    tampered = body.replace(b'"cancelled"', b'"merged"')
    assert tampered != body
    assert not verified(hook.secret, headers, tampered)
    # Each hook has its own secret: one hook's secret does not verify another's deliveries.
    assert hook.secret != other.secret
    assert verified(other.secret, other_headers, other_body)
    assert not verified(hook.secret, other_headers, other_body)


# --- which hooks fire ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_team_hooks_fire_for_the_teams_jobs_only(alice, carol, repo, other_team, allow_private):
    ours = services.create_hook(alice, repo.team, "http://127.0.0.1:9/ours")
    theirs = services.create_hook(carol, other_team, "http://127.0.0.1:9/theirs")
    merged_only = services.create_hook(alice, repo.team, "http://127.0.0.1:9/m", ["merged"])
    off = services.create_hook(alice, repo.team, "http://127.0.0.1:9/off")
    services.set_active(alice, off, False)
    job = cancelled_job(alice)
    made = Delivery.objects.filter(job=job)
    assert [d.hook for d in made] == [ours]
    assert made[0].event == "job.cancelled"
    assert not Delivery.objects.filter(hook__in=[theirs, merged_only, off]).exists()


@pytest.mark.django_db(transaction=True)
def test_a_jobs_callback_fires_for_that_job_only(alice, repo, allow_private):
    job = cancelled_job(alice, callback_url="http://127.0.0.1:9/cb")
    other = cancelled_job(alice)
    hook = Webhook.objects.get(job=job)
    assert (hook.team, hook.url, hook.created_by) == (job.team, "http://127.0.0.1:9/cb", alice)
    assert [d.job for d in Delivery.objects.filter(hook=hook)] == [job]
    assert not Delivery.objects.filter(job=other).exists()
    assert services.callback_secret(job) == hook.secret
    assert services.callback_secret(other) is None


def test_every_settled_status_is_an_event():
    settled = {"needs_review", "no_changes", "failed", "cancelled", "approved", "rejected"}
    settled |= {"changes_requested", "merged", "conflict", "findings"}
    assert set(EVENT_STATUSES) == settled
    assert JobStatus.QUEUED not in EVENT_STATUSES


# --- the SSRF guard ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",  # noqa: S104 - an address to refuse, not to bind
        "100.64.0.1",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "2002:7f00:1::1",
    ],
)
def test_the_guard_refuses_non_public_addresses(address):
    assert guard.why_not_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"])
def test_the_guard_lets_public_addresses_through(address):
    assert guard.why_not_public(ipaddress.ip_address(address)) == ""


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost:8000/hook", r"localhost resolves to \S+, a loopback address"),
        ("http://127.0.0.1/hook", "a loopback address"),
        ("https://10.0.0.8/hook", "a private address"),
        ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("http://[::1]:9000/", "a loopback address"),
        ("http://0.0.0.0:8000/", "an unspecified address"),
        ("ftp://example.com/hook", "Give an http:// or https:// URL"),
        ("file:///etc/passwd", "Give an http:// or https:// URL"),
        ("http://nosuchhost.invalid/hook", "does not resolve"),
    ],
)
@pytest.mark.django_db
def test_a_hook_to_a_private_address_is_refused_when_the_guard_is_on(alice, team, url, message):
    with pytest.raises(services.Refused, match=message):
        services.create_hook(alice, team, url)
    assert not Webhook.objects.exists()


@pytest.mark.django_db
def test_a_private_callback_url_is_refused_on_submit(alice, repo, api):
    # The API checks where the URL leads (the SSRF guard) before the job is made; submit_job
    # itself checks its form, and every delivery is checked again when it is sent.
    loopback = api(alice).post(
        "/api/v1/jobs",
        {"repo": "demo", "agent": "shell", "prompt": "true", "callback_url": "http://127.0.0.1:1/"},
    )
    assert (loopback.status_code, loopback.json()["field"]) == (400, "callback_url")
    assert "a loopback address" in loopback.json()["detail"]
    with pytest.raises(BadInput) as refused:
        jobs.submit_job(alice, repo="demo", agent="shell", prompt="true", callback_url="ftp://x/")
    assert refused.value.field == "callback_url"
    response = api(alice).post(
        "/api/v1/jobs",
        {"repo": "demo", "agent": "shell", "prompt": "true", "callback_url": "http://10.0.0.1/"},
    )
    assert response.status_code == 400
    assert "callback_url" in json.dumps(response.json())
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_the_submit_answer_gives_the_callback_secret_once(alice, repo, api, allow_private):
    answer = api(alice).post(
        "/api/v1/jobs",
        {"repo": "demo", "agent": "shell", "prompt": "true", "callback_url": "http://127.0.0.1:9/"},
    )
    assert answer.status_code == 202
    job = Job.objects.get(public_id=answer.json()["id"])
    assert answer.json()["callback_secret"] == services.callback_secret(job)
    assert answer.json()["callback_secret"]
    shown = api(alice).get(f"/api/v1/jobs/{job.public_id}").json()
    assert answer.json()["callback_secret"] not in json.dumps(shown)
    without = api(alice).post("/api/v1/jobs", {"repo": "demo", "agent": "shell", "prompt": "true"})
    assert without.json()["callback_secret"] is None


@pytest.mark.django_db
def test_callback_url_must_be_http(alice, repo):
    with pytest.raises(BadInput, match="must be an http") as refused:
        jobs.submit_job(
            alice, repo="demo", agent="shell", prompt="true", callback_url="file:///etc/passwd"
        )
    assert refused.value.field == "callback_url"


@pytest.mark.django_db
def test_the_setting_lets_private_addresses_through(alice, team, allow_private):
    hook = services.create_hook(alice, team, "http://localhost:8000/hook")
    assert hook.url == "http://localhost:8000/hook"


def test_a_try_connects_to_the_checked_address_without_resolving_again(receiver):
    hook_receiver = receiver()
    # The name cannot resolve: reaching the receiver proves the checked address was used.
    target = guard.Target(
        scheme="http",
        host="hooks.example.invalid",
        port=hook_receiver.port,
        path="/hook?x=1",
        address="127.0.0.1",
    )
    answer = transport.post(target, b"{}", {"X-Test": "1"}, timeout=5)
    assert answer.status == 204
    headers, body = hook_receiver.calls[0]
    assert headers["Host"] == f"hooks.example.invalid:{hook_receiver.port}"
    assert body == b"{}"


def test_redirects_are_not_followed(receiver):
    hook_receiver = receiver(302)
    target = guard.resolve(hook_receiver.url, allow_private=True)
    assert transport.post(target, b"{}", {}, timeout=5).status == 302
    assert len(hook_receiver.calls) == 1


# --- HTTPS to the checked address, verified against the URL's host name --------------------------


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_receiver(receiver, tmp_path, monkeypatch):
    """A receiver speaking HTTPS with a certificate for `localhost`, trusted through
    SSL_CERT_FILE as a public CA would be."""
    hook_receiver = receiver()
    cert_file, key_file = _certificate(tmp_path, "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    hook_receiver.server.socket = context.wrap_socket(hook_receiver.server.socket, server_side=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    return hook_receiver


def test_https_is_verified_against_the_urls_host_name(tls_receiver):
    target = guard.Target(
        scheme="https", host="localhost", port=tls_receiver.port, path="/", address="127.0.0.1"
    )
    assert transport.post(target, b"{}", {}, timeout=5).status == 204
    # The same address under another name: the certificate does not match, nothing is sent.
    wrong = guard.Target(
        scheme="https", host="other.example", port=tls_receiver.port, path="/", address="127.0.0.1"
    )
    with pytest.raises(urllib3.exceptions.SSLError):
        transport.post(wrong, b"{}", {}, timeout=5)
    assert len(tls_receiver.calls) == 1


# --- the team's page -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_team_admin_adds_deactivates_activates_and_deletes_a_hook_each_audited(
    client, dana, team, allow_private
):
    client.force_login(dana)
    mark = audit_mark()
    response = client.post(
        f"/teams/{team.name}/webhooks/add",
        {"url": "http://127.0.0.1:9/hook", "events": ["merged", "failed"]},
    )
    assert response.status_code == 302
    hook = Webhook.objects.get()
    assert (hook.team, hook.job, hook.events, hook.created_by) == (
        team,
        None,
        ["failed", "merged"],
        dana,
    )
    page = client.get(f"/teams/{team.name}/").content.decode()
    assert "http://127.0.0.1:9/hook" in page and hook.secret in page
    assert "failed, merged" in page

    client.post(f"/teams/{team.name}/webhooks/{hook.pk}/active", {"active": "0"})
    assert not Webhook.objects.get(pk=hook.pk).active
    client.post(f"/teams/{team.name}/webhooks/{hook.pk}/active", {"active": "1"})
    assert Webhook.objects.get(pk=hook.pk).active
    client.post(f"/teams/{team.name}/webhooks/{hook.pk}/delete")
    assert not Webhook.objects.exists()
    assert audit_actions(mark) == [
        ("webhook.create", "dana"),
        ("webhook.update", "dana"),
        ("webhook.update", "dana"),
        ("webhook.delete", "dana"),
    ]
    created = AuditEntry.objects.filter(pk__gt=mark, action="webhook.create").get()
    assert created.team == team
    assert hook.secret not in json.dumps(created.data)


@pytest.mark.django_db
def test_the_team_page_refuses_a_private_url_naming_the_field(client, dana, team):
    client.force_login(dana)
    mark = audit_mark()
    response = client.post(f"/teams/{team.name}/webhooks/add", {"url": "http://192.168.0.10/"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "URL: 192.168.0.10 is a private address: webhooks may only reach public" in page
    assert not Webhook.objects.exists() and audit_actions(mark) == []


@pytest.mark.django_db
def test_the_team_page_shows_deliveries_with_their_status_codes_and_redelivers(
    client, dana, alice, repo, receiver, settled, allow_private
):
    hook_receiver = receiver(500)
    hook = services.create_hook(dana, repo.team, hook_receiver.url)
    job = settled(alice)
    delivery = Delivery.objects.get(hook=hook)
    with pytest.raises(services.DeliveryFailed):  # 500, and another try will follow
        services.attempt(str(delivery.pk), retries_left=1)
    client.force_login(dana)
    page = client.get(f"/teams/{repo.team.name}/").content.decode()
    row = page[page.index(f'id="delivery-{delivery.pk}"') :].split("</tr>")[0]
    assert job.public_id in row and "job.cancelled" in row
    assert '<td class="wrap">500' in row and "HTTP 500: try again" in row
    assert "chip-pending" in row

    mark = audit_mark()
    response = client.post(f"/teams/{repo.team.name}/webhooks/deliveries/{delivery.pk}/redeliver")
    assert response.status_code == 302
    again = Delivery.objects.get(redelivery_of=delivery)
    assert (again.body, again.hook) == (delivery.body, hook)
    assert audit_actions(mark) == [("webhook.redeliver", "dana")]


@pytest.mark.django_db
def test_members_get_403_and_outsiders_404_on_hook_pages(client, alice, carol, team, allow_private):
    hook = services.create_hook(alice, team, "http://127.0.0.1:9/hook")
    paths = [
        f"/teams/{team.name}/webhooks/add",
        f"/teams/{team.name}/webhooks/{hook.pk}/active",
        f"/teams/{team.name}/webhooks/{hook.pk}/delete",
    ]
    for user, status in ((alice, 403), (carol, 404)):
        client.force_login(user)
        for path in paths:
            assert client.post(path, {"url": "http://127.0.0.1:9/x"}).status_code == status, path
    assert list(Webhook.objects.all()) == [hook] and hook.active


@pytest.mark.django_db
def test_an_admin_cannot_reach_another_teams_hook_through_their_own_team(
    client, dana, carol, team, other_team, allow_private
):
    theirs = services.create_hook(carol, other_team, "http://127.0.0.1:9/hook")
    client.force_login(dana)
    assert client.post(f"/teams/{team.name}/webhooks/{theirs.pk}/delete").status_code == 404
    assert Webhook.objects.filter(pk=theirs.pk).exists()


@pytest.mark.django_db
def test_a_hooks_url_and_a_receivers_answer_are_shown_as_text(
    client, dana, alice, repo, settled, allow_private
):
    hook = services.create_hook(dana, repo.team, "http://127.0.0.1:9/?q=<b>bold</b>")
    settled(alice)
    Delivery.objects.filter(hook=hook).update(last_error="HTTP 500: <script>alert(1)</script>")
    client.force_login(dana)
    page = client.get(f"/teams/{repo.team.name}/").content.decode()
    assert "?q=&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold" not in page
    assert "HTTP 500: &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page


@pytest.mark.django_db
def test_staff_add_a_hook_in_the_admin_through_the_guard(
    client, staff, team, allow_private, settings
):
    client.force_login(staff)
    mark = audit_mark()
    response = client.post(
        "/admin/hooks/webhook/add/", {"team": team.pk, "url": "http://127.0.0.1:9/a"}
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Webhook.objects.get().url == "http://127.0.0.1:9/a"
    assert audit_actions(mark) == [("webhook.create", "sam")]
    settings.AGENTHUB_WEBHOOK_ALLOW_PRIVATE = False
    response = client.post(
        "/admin/hooks/webhook/add/", {"team": team.pk, "url": "http://127.0.0.1:9/b"}
    )
    assert response.status_code == 200
    assert "a loopback address" in response.content.decode()
    assert Webhook.objects.count() == 1


@pytest.mark.django_db
def test_the_delivery_log_is_read_only_with_status_codes(
    client, staff, alice, repo, receiver, settled, allow_private
):
    hook_receiver = receiver(500)
    hook = services.create_hook(alice, repo.team, hook_receiver.url)
    settled(alice)
    delivery = Delivery.objects.get(hook=hook)
    services.attempt(str(delivery.pk))
    client.force_login(staff)
    listing = client.get("/admin/hooks/delivery/", {"status__exact": "failed"})
    assert listing.status_code == 200
    assert str(delivery.pk) in listing.content.decode()
    detail = client.get(f"/admin/hooks/delivery/{delivery.pk}/change/")
    assert detail.status_code == 200
    assert "HTTP 500: try again" in detail.content.decode()
    assert client.post(f"/admin/hooks/delivery/{delivery.pk}/change/", {}).status_code == 403
    assert (
        client.post(f"/admin/hooks/delivery/{delivery.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert client.get("/admin/hooks/delivery/").status_code == 200


@pytest.mark.django_db
def test_unknown_statuses_are_refused_naming_the_choices(alice, team, allow_private):
    with pytest.raises(BadInput, match="Unknown job statuses done; choose among needs_review") as e:
        services.create_hook(alice, team, "http://127.0.0.1:9/hook", ["done"])
    assert e.value.field == "events"


@pytest.mark.django_db
def test_staff_switch_hooks_off_and_on_and_delete_them_with_their_log_in_the_admin(
    client, staff, alice, repo, settled, allow_private
):
    hook = services.create_hook(alice, repo.team, "http://127.0.0.1:9/hook")
    settled(alice)
    assert Delivery.objects.filter(hook=hook).count() == 1
    client.force_login(staff)
    mark = audit_mark()
    for action in ("deactivate", "activate"):
        response = client.post(
            "/admin/hooks/webhook/", {"action": action, "_selected_action": [hook.pk]}
        )
        assert response.status_code == 302
    assert Webhook.objects.get(pk=hook.pk).active
    page = client.get(f"/admin/hooks/webhook/{hook.pk}/change/").content.decode()
    assert hook.secret in page
    assert client.post(f"/admin/hooks/webhook/{hook.pk}/change/", {}).status_code == 403
    response = client.post(f"/admin/hooks/webhook/{hook.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Webhook.objects.exists() and not Delivery.objects.exists()
    assert audit_actions(mark) == [
        ("webhook.update", "sam"),
        ("webhook.update", "sam"),
        ("webhook.delete", "sam"),
    ]


# --- editing a hook and rotating its secret on the team's page -----------------------------------


def hook_entries(since: int) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(pk__gt=since, action__startswith="webhook."))


def shows_no_secret(entry: AuditEntry, *secrets: str) -> bool:
    written = json.dumps([entry.target, entry.before, entry.after, entry.data])
    return not any(secret in written for secret in secrets)


def input_tag(page: str, name: str, value: str | None = None) -> str:
    """The <input> of the field (and choice), to look at its attributes."""
    pattern = rf'<input [^>]*name="{name}"' + (rf' value="{value}"' if value else "") + "[^>]*>"
    match = re.search(pattern, page)
    assert match, f"no input {name}={value} in the page"
    return match.group(0)


@pytest.mark.slow
def test_team_admin_edits_the_url_and_the_next_delivery_goes_to_the_new_one(
    client, dana, alice, repo, workers, receiver, allow_private
):
    old_receiver, new_receiver = receiver(), receiver()
    hook = services.create_hook(dana, repo.team, old_receiver.url, ["failed"])
    path = f"/teams/{repo.team.name}/webhooks/{hook.pk}/"
    client.force_login(dana)
    form = client.get(path).content.decode()
    assert f'value="{old_receiver.url}"' in input_tag(form, "url")
    assert "checked" in input_tag(form, "events", "failed")
    assert "checked" not in input_tag(form, "events", "cancelled")
    assert "checked" in input_tag(form, "active")

    mark = audit_mark()
    response = client.post(path, {"url": new_receiver.url, "events": ["cancelled"], "active": "on"})
    assert response.status_code == 302
    assert response["Location"] == f"/teams/{repo.team.name}/#hook-{hook.pk}"
    hook.refresh_from_db()
    assert (hook.url, hook.events, hook.active) == (new_receiver.url, ["cancelled"], True)
    (entry,) = hook_entries(mark)
    assert (entry.action, entry.actor, entry.team) == ("webhook.update", dana, repo.team)
    assert entry.data["changes"] == {
        "url": [old_receiver.url, new_receiver.url],
        "events": [["failed"], ["cancelled"]],
    }
    assert shows_no_secret(entry, hook.secret)

    job = cancelled_job(alice)
    workers.burst(**ALLOW)
    delivery = Delivery.objects.get(hook=hook)
    assert (delivery.job, delivery.status, delivery.status_codes) == (job, "delivered", [204])
    assert old_receiver.calls == []
    ((headers, body),) = new_receiver.calls
    assert headers["X-AgentHub-Delivery"] == str(delivery.pk)
    assert verified(hook.secret, headers, body)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://169.254.169.254/latest/meta-data/",
            "URL: 169.254.169.254 is a link-local address",
        ),
        ("http://localhost:8000/hook", r"URL: localhost resolves to \S+, a loopback address"),
        ("ftp://example.com/hook", "URL: Give an http:// or https:// URL"),
        ("not a url", "URL: Enter a valid URL."),
    ],
)
@pytest.mark.django_db
def test_an_edit_to_a_private_address_is_refused_naming_the_field(client, dana, team, url, message):
    # A public address (an IP, so no DNS is needed); the guard is on.
    hook = services.create_hook(dana, team, "https://93.184.215.14/hook", ["merged"])
    client.force_login(dana)
    mark = audit_mark()
    response = client.post(
        f"/teams/{team.name}/webhooks/{hook.pk}/", {"url": url, "events": ["failed"]}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert re.search(message, page), page[page.find('class="error"') - 200 :][:800]
    # The form keeps what was typed, to correct it.
    assert "checked" in input_tag(page, "events", "failed")
    unchanged = Webhook.objects.get(pk=hook.pk)
    assert (unchanged.url, unchanged.events, unchanged.active) == (hook.url, ["merged"], True)
    assert hook_entries(mark) == []


@pytest.mark.django_db
def test_staff_edit_a_hook_and_a_form_that_changes_nothing_writes_no_entry(
    client, staff, alice, team, allow_private
):
    hook = services.create_hook(alice, team, "http://127.0.0.1:9/hook")
    path = f"/teams/{team.name}/webhooks/{hook.pk}/"
    client.force_login(staff)
    mark = audit_mark()
    # "active" left out: the box unticked, the hook switched off.
    assert client.post(path, {"url": " http://127.0.0.1:9/hook "}).status_code == 302
    assert client.post(path, {"url": "http://127.0.0.1:9/hook"}).status_code == 302
    assert not Webhook.objects.get(pk=hook.pk).active
    (entry,) = hook_entries(mark)
    assert (entry.action, entry.actor_name) == ("webhook.update", "sam")
    assert entry.data["changes"] == {"active": [True, False]}
    page = client.get(f"/teams/{team.name}/").content.decode()
    assert f'href="{path}"' in page


@pytest.mark.django_db
def test_rotating_the_secret_signs_every_later_try_with_the_new_secret_only(
    client, dana, alice, repo, receiver, settled, allow_private
):
    hook_receiver = receiver(500)
    hook = services.create_hook(dana, repo.team, hook_receiver.url)
    old = hook.secret
    settled(alice)
    queued = Delivery.objects.get(hook=hook)
    with pytest.raises(services.DeliveryFailed):  # 500: its retry follows after the rotation
        services.attempt(str(queued.pk), retries_left=1)

    client.force_login(dana)
    mark = audit_mark()
    response = client.post(f"/teams/{repo.team.name}/webhooks/{hook.pk}/rotate-secret")
    assert response.status_code == 302
    assert response["Location"] == f"/teams/{repo.team.name}/#hook-{hook.pk}"
    hook.refresh_from_db()
    assert hook.secret != old and len(hook.secret) == 64
    page = client.get(f"/teams/{repo.team.name}/").content.decode()
    assert hook.secret in page and old not in page
    assert "has a new secret" in page

    # Each try signs with the hook's secret at send time: the retry of the delivery made before
    # the rotation, like the next delivery, verifies with the new secret, not the old.
    services.attempt(str(queued.pk))
    settled(alice)
    following = Delivery.objects.filter(hook=hook).exclude(pk=queued.pk).get()
    services.attempt(str(following.pk))
    before, *after = hook_receiver.calls
    assert verified(old, *before) and not verified(hook.secret, *before)
    assert [h["X-AgentHub-Delivery"] for h, _ in after] == [str(queued.pk), str(following.pk)]
    for headers, body in after:
        assert verified(hook.secret, headers, body) and not verified(old, headers, body)

    (entry,) = hook_entries(mark)
    assert (entry.action, entry.actor, entry.team) == ("webhook.rotate_secret", dana, repo.team)
    assert shows_no_secret(entry, old, hook.secret)


@pytest.mark.django_db
def test_members_and_reviewers_get_403_and_other_teams_admins_404_on_edit_and_rotate(
    client, alice, bob, team, other_team, allow_private
):
    hook = services.create_hook(alice, team, "http://127.0.0.1:9/hook")
    olga = _member("olga", other_team, Role.ADMIN)
    edit = f"/teams/{team.name}/webhooks/{hook.pk}/"
    rotate = f"/teams/{team.name}/webhooks/{hook.pk}/rotate-secret"
    mark = audit_mark()
    for user, status in ((alice, 403), (bob, 403), (olga, 404)):
        client.force_login(user)
        assert client.get(edit).status_code == status, user
        for path in (edit, rotate):
            response = client.post(path, {"url": "http://127.0.0.1:9/x", "active": "on"})
            assert response.status_code == status, (user, path)
    # Nor through the team they do administer.
    client.force_login(olga)
    assert client.get(f"/teams/{other_team.name}/webhooks/{hook.pk}/").status_code == 404
    assert (
        client.post(f"/teams/{other_team.name}/webhooks/{hook.pk}/rotate-secret").status_code == 404
    )
    unchanged = Webhook.objects.get(pk=hook.pk)
    assert (unchanged.url, unchanged.secret) == (hook.url, hook.secret)
    assert hook_entries(mark) == []


@pytest.mark.django_db
def test_rotate_is_post_only_and_both_forms_need_the_csrf_token(dana, team, allow_private):
    hook = services.create_hook(dana, team, "http://127.0.0.1:9/hook")
    edit = f"/teams/{team.name}/webhooks/{hook.pk}/"
    rotate = f"/teams/{team.name}/webhooks/{hook.pk}/rotate-secret"
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(dana)
    assert browser.get(rotate).status_code == 405
    assert browser.post(rotate).status_code == 403
    assert browser.post(edit, {"url": "http://127.0.0.1:9/x", "active": "on"}).status_code == 403
    page = browser.get(f"/teams/{team.name}/").content.decode()
    form = page[page.index(f'action="{rotate}"') :].split("</form>")[0]
    token = input_tag(form, "csrfmiddlewaretoken").split('value="')[1].split('"')[0]
    assert browser.post(rotate, {"csrfmiddlewaretoken": token}).status_code == 302
    assert Webhook.objects.get(pk=hook.pk).secret != hook.secret
    assert Webhook.objects.get(pk=hook.pk).url == hook.url
