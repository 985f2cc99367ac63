"""Events and job updates reach the Channels groups over the real Redis channel layer, and
followers of /api/v1/jobs/<id>/events get them as Server-Sent Events from a real ASGI server."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from channels.layers import channel_layers, get_channel_layer
from django.test import Client
from websockets.sync.client import connect

from jobs import services
from jobs.events import Draft, append_events, job_group, team_group
from jobs.models import ApiToken
from tests.conftest import Server, wait_for

pytestmark = pytest.mark.slow


async def listen(groups: list[str], run: Any) -> list[dict[str, Any]]:
    """Join the groups, run the blocking `run` in a thread, and collect what arrives."""
    channel_layers.backends.clear()  # a layer of this event loop's own (see test_consumers)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    for group in groups:
        await layer.group_add(group, channel)
    await asyncio.get_running_loop().run_in_executor(None, run)
    received = []
    while True:
        try:
            received.append(await asyncio.wait_for(layer.receive(channel), timeout=2))
        except TimeoutError:
            return received


def test_events_and_status_are_published_to_job_and_team_groups(api, alice, repo, workers):
    client = api(alice)
    public_id = client.post(
        "/api/v1/jobs",
        {
            "repo": "demo",
            "agent": "shell",
            "prompt": "echo '::add-mask::s3cret'\necho hi s3cret\ntouch new.txt",
        },
    ).json()["id"]

    messages = asyncio.run(listen([job_group(public_id), team_group(repo.team_id)], workers.burst))

    batches = [m for m in messages if m["type"] == "job.events"]
    seqs = [e["seq"] for m in batches for e in m["events"]]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    stored = client.get(f"/api/v1/jobs/{public_id}/events").json()["events"]
    assert seqs == [e["seq"] for e in stored if e["seq"] > 1]  # seq 1 was before we joined
    texts = [e["text"] for m in batches for e in m["events"]]
    assert "hi ***" in texts
    assert "s3cret" not in repr(batches)
    updates = [m["job"]["status"] for m in messages if m["type"] == "job.update"]
    assert updates[-1] == "needs_review"
    assert "running" in updates


def serving_children(pid: int) -> list[int]:
    """uvicorn's processes (multiprocessing's spawned children; not its resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(child)
        for child in children
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def threads(server: Server) -> int:
    return len(os.listdir(f"/proc/{server.pid}/task"))


@dataclass
class Sse:
    id: int | None
    kind: str
    data: dict[str, Any]


class Follower:
    """A Server-Sent Events client over a plain HTTP connection; close() is a disconnect."""

    def __init__(
        self,
        server: Server,
        path: str,
        key: str,
        last_event_id: int | None = None,
        *,
        cookie: str = "",
    ):
        self.connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
        headers = {"Accept": "text/event-stream"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if cookie:
            headers["Cookie"] = cookie
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.connection.request("GET", path, headers=headers)
        self.response = self.connection.getresponse()
        assert self.response.status == 200, self.response.read()
        assert self.response.getheader("Content-Type") == "text/event-stream"

    def next(self) -> Sse:
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline()
            assert line, "the stream ended before the next event"
            text = line.decode().rstrip("\n")
            if not text and fields:
                seq = fields.get("id")
                return Sse(int(seq) if seq else None, fields["event"], json.loads(fields["data"]))
            if text and not text.startswith(":"):
                name, _, value = text.partition(": ")
                fields[name] = value

    def until_end(self) -> list[Sse]:
        received = [self.next()]
        while received[-1].kind != "end":
            received.append(self.next())
        assert self.response.readline() == b"", "nothing follows the end"
        return received

    def close(self) -> None:
        self.connection.close()


def test_a_follower_disconnected_twice_mid_stream_gets_every_event_exactly_once(
    server, alice, repo
):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="echo hi")
    attempt = job.attempts.get()
    _, key = ApiToken.issue(alice, "follower")
    path = f"/api/v1/jobs/{job.public_id}/events"

    def write(*texts: str) -> None:
        append_events(attempt.pk, [Draft("log", text, "stdout") for text in texts])

    write("one", "two", "three")
    follower = Follower(server, path, key)
    seen = [follower.next(), follower.next()]  # the queued status and "one" of the backlog
    follower.close()

    write("four", "five")  # while it is away
    follower = Follower(server, path, key, last_event_id=seen[-1].id)
    seen += [follower.next() for _ in range(4)]  # two, three, four, five
    write("six", "seven")  # live
    seen.append(follower.next())  # six; seven may be on its way when it goes
    follower.close()

    write("eight")
    services.cancel_job(alice, job)
    follower = Follower(server, path, key, last_event_id=seen[-1].id)
    seen += follower.until_end()
    follower.close()

    stored = [e.as_dict() for e in attempt.events.order_by("seq")]
    assert [e.id for e in seen[:-1]] == [e["seq"] for e in stored]
    assert [e.data for e in seen[:-1]] == stored
    texts = [e.data["text"] for e in seen if e.kind == "log"]
    assert texts == ["one", "two", "three", "four", "five", "six", "seven", "eight"]
    assert (seen[-1].kind, seen[-1].data) == ("end", {"status": "cancelled"})


def test_hundreds_of_followers_do_not_hold_a_thread_each(server, alice, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="echo hi")
    _, key = ApiToken.issue(alice, "followers")
    path = f"/api/v1/jobs/{job.public_id}/events"
    followers = [Follower(server, path, key) for _ in range(200)]
    try:
        assert {f.next().data["text"] for f in followers} == {"queued"}
        assert threads(server) < 20
        append_events(job.attempts.get().pk, [Draft("log", "to everyone", "stdout")])
        assert {f.next().data["text"] for f in followers} == {"to everyone"}
    finally:
        for follower in followers:
            follower.close()


def test_a_stream_without_credentials_is_401_json(server, alice, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="echo hi")
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    connection.request(
        "GET", f"/api/v1/jobs/{job.public_id}/events", headers={"Accept": "text/event-stream"}
    )
    response = connection.getresponse()
    assert response.status == 401
    assert json.loads(response.read())["error"] == "unauthorized"


def test_another_teams_stream_is_404(server, alice, carol, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="echo hi")
    _, key = ApiToken.issue(carol, "outsider")
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    connection.request(
        "GET",
        f"/api/v1/jobs/{job.public_id}/events",
        headers={"Accept": "text/event-stream", "Authorization": f"Bearer {key}"},
    )
    response = connection.getresponse()
    assert (response.status, json.loads(response.read())["error"]) == (404, "not_found")


def waiting_clients(
    server: Server, public_id: str, key: str, count: int, timeout: int
) -> list[http.client.HTTPConnection]:
    """Clients that asked GET .../wait and have not read the answer yet."""
    connections = []
    for _ in range(count):
        connection = http.client.HTTPConnection(server.host, server.port, timeout=120)
        connection.request(
            "GET",
            f"/api/v1/jobs/{public_id}/wait?timeout={timeout}",
            headers={"Authorization": f"Bearer {key}"},
        )
        connections.append(connection)
    return connections


def listeners(public_id: str) -> int:
    """How many channels are in the job's group of the channel layer."""

    async def count() -> int:
        channel_layers.backends.clear()  # a layer of this event loop's own
        layer = get_channel_layer()
        return await layer.connection(0).zcard(layer._group_key(job_group(public_id)))

    return asyncio.run(count())


def test_hundreds_of_waiting_clients_hold_no_thread_each_and_hear_when_it_ends(server, alice, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="echo hi")
    _, key = ApiToken.issue(alice, "waiters")
    waiting = waiting_clients(server, job.public_id, key, 100, timeout=60)
    try:
        wait_for(lambda: listeners(job.public_id) == 100, what="every client to be waiting")
        assert threads(server) < 20
        services.cancel_job(alice, job)
        answers = [json.loads(c.getresponse().read()) for c in waiting]
    finally:
        for connection in waiting:
            connection.close()
    assert {(a["status"], a["timed_out"]) for a in answers} == {("cancelled", False)}
    assert answers[0]["id"] == job.public_id and answers[0]["attempts"][0]["status"] == "cancelled"


def test_a_wait_ends_at_its_timeout(server, alice, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="echo hi")
    _, key = ApiToken.issue(alice, "waiter")
    (connection,) = waiting_clients(server, job.public_id, key, 1, timeout=1)
    response = connection.getresponse()
    answer = json.loads(response.read())
    assert response.status == 200
    assert (answer["status"], answer["timed_out"]) == ("queued", True)
    assert listeners(job.public_id) == 0


# The keep-alive is where an open stream checks its credentials again: once a second here.
QUICK_CHECKS = pytest.mark.parametrize("server_env", [{"AGENTHUB_SSE_KEEPALIVE": "1"}])


def ended_with_error(follower: Follower) -> Sse:
    """Read past the backlog to the event that ends the stream; it must be an error."""
    while (event := follower.next()).kind not in ("error", "end"):
        pass
    assert follower.response.readline() == b"", "nothing follows the error"
    return event


@QUICK_CHECKS
def test_revoking_a_token_ends_the_streams_it_opened(server, alice, repo):
    from jobs import tokens

    job = services.submit_job(alice, repo="demo", agent="shell", prompt="echo hi")
    token, key = ApiToken.issue(alice, "follower")
    path = f"/api/v1/jobs/{job.public_id}/events"
    follower = Follower(server, path, key)
    assert follower.next().data["text"] == "queued"

    tokens.revoke(alice, token.pk)

    event = ended_with_error(follower)
    assert event.kind == "error"
    assert event.data["error"] == "unauthorized"
    assert "revoked" in event.data["detail"]
    follower.close()
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    connection.request("GET", path, headers={"Authorization": f"Bearer {key}"})
    assert connection.getresponse().status == 401


@QUICK_CHECKS
def test_signing_out_ends_the_streams_of_the_session(server, alice, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="echo hi")
    browser = Client()
    browser.force_login(alice)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    follower = Follower(server, f"/api/v1/jobs/{job.public_id}/events", "", cookie=cookie)
    assert follower.next().data["text"] == "queued"

    browser.logout()  # deletes the session

    event = ended_with_error(follower)
    assert (event.kind, event.data["error"]) == ("error", "unauthorized")
    assert "session has ended" in event.data["detail"]
    follower.close()


@QUICK_CHECKS
def test_leaving_the_team_ends_the_stream_as_not_found(server, alice, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="echo hi")
    _, key = ApiToken.issue(alice, "follower")
    follower = Follower(server, f"/api/v1/jobs/{job.public_id}/events", key)
    assert follower.next().data["text"] == "queued"

    alice.memberships.all().delete()

    event = ended_with_error(follower)
    assert (event.kind, event.data["error"]) == ("error", "not_found")
    follower.close()


@QUICK_CHECKS
def test_a_stream_whose_credentials_hold_stays_open_across_checks(server, alice, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="echo hi")
    _, key = ApiToken.issue(alice, "follower")
    follower = Follower(server, f"/api/v1/jobs/{job.public_id}/events", key)
    assert follower.next().data["text"] == "queued"
    # Three checks pass (a keep-alive comment each), then a live event still arrives.
    for _ in range(3):
        assert follower.response.readline() == b": keep-alive\n"
        assert follower.response.readline() == b"\n"
    append_events(job.attempts.get().pk, [Draft("log", "still here", "stdout")])
    assert follower.next().data["text"] == "still here"
    follower.close()


@pytest.mark.parametrize(
    ("asgi_server", "web_processes"), [("uvicorn", 1), ("uvicorn", 2), ("daphne", 1)]
)
def test_each_asgi_server_serves_the_api_a_websocket_and_an_event_stream(
    server, alice, repo, web_processes
):
    if web_processes > 1:  # uvicorn's supervisor has that many serving processes
        wait_for(
            lambda: len(serving_children(server.pid)) == web_processes,
            what=f"{web_processes} processes serving",
        )
    _, key = ApiToken.issue(alice, "each server")
    bearer = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    body = json.dumps({"repo": "demo", "agent": "shell", "prompt": "echo hi"})
    connection.request("POST", "/api/v1/jobs", body=body, headers=bearer)
    response = connection.getresponse()
    assert response.status == 202
    public_id = json.loads(response.read())["id"]
    connection.request("GET", f"/api/v1/jobs/{public_id}", headers=bearer)
    response = connection.getresponse()
    assert (response.status, json.loads(response.read())["id"]) == (200, public_id)

    browser = Client()
    browser.force_login(alice)
    with connect(
        f"ws://{server.host}:{server.port}/ws/jobs/{public_id}/",
        additional_headers={
            "Cookie": f"sessionid={browser.cookies['sessionid'].value}",
            "Origin": f"http://{server.host}:{server.port}",
        },
        open_timeout=30,
    ) as websocket:
        assert json.loads(websocket.recv(timeout=30))["type"]

    follower = Follower(server, f"/api/v1/jobs/{public_id}/events", key)
    assert follower.next().data["text"] == "queued"
    follower.close()
