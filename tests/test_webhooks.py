"""Job callbacks: signed POSTs to callback_url when a job settles, retried by a real RQ worker."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.conf import settings

from tests.conftest import wait_for


class Receiver:
    """A local HTTP endpoint that records callbacks and fails the first `failures` of them."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[tuple[Any, bytes]] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((self.headers, body))
                self.send_response(500 if len(receiver.calls) <= receiver.failures else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def statuses(self) -> list[str]:
        return [json.loads(body)["status"] for _, body in self.calls]


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(failures: int = 0) -> Receiver:
        made.append(Receiver(failures))
        return made[-1]

    yield make
    for r in made:
        r.server.shutdown()


def submit(client: Any, url: str) -> str:
    body = {"repo": "demo", "agent": "shell", "prompt": "touch x", "callback_url": url}
    response = client.post("/api/v1/jobs", body)
    assert response.status_code == 202, response.content
    return response.json()["id"]


@pytest.mark.slow
def test_a_settled_job_is_posted_to_its_callback_signed(api, alice, repo, workers, receiver):
    hook = receiver()
    public_id = submit(api(alice), hook.url)
    workers.burst()
    wait_for(lambda: hook.calls, timeout=10, what="the callback")
    headers, body = hook.calls[0]
    expected = hmac.new(settings.AGENTHUB_WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-AgentHub-Signature"] == f"sha256={expected}"
    payload = json.loads(body)
    assert (payload["status"], payload["job"]["id"]) == ("needs_review", public_id)


@pytest.mark.slow
def test_a_failed_callback_is_retried(api, alice, repo, workers, receiver):
    hook = receiver(failures=1)
    submit(api(alice), hook.url)
    workers.start()
    wait_for(lambda: len(hook.calls) >= 2, timeout=30, what="the retried callback")
    assert hook.statuses()[:2] == ["needs_review", "needs_review"]


@pytest.mark.django_db
def test_callback_url_must_be_http(api, alice, repo):
    response = api(alice).post(
        "/api/v1/jobs",
        {"repo": "demo", "agent": "shell", "prompt": "true", "callback_url": "file:///etc/passwd"},
    )
    assert (response.status_code, response.json()["field"]) == (400, "callback_url")
