"""The websocket consumers, driven with Channels' WebsocketCommunicator over the real Redis
channel layer: access before anything is sent, backlog then live, resume without gap or
duplicate, and sign-out closing every socket."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import channel_layers
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from jobs import events, services
from jobs.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)
APP = URLRouter(websocket_urlpatterns)


@pytest.fixture(autouse=True)
def fresh_channel_layer() -> Any:
    """Each test runs its own event loop; the Redis layer's receive lock belongs to the loop it
    was first used in, so a layer shared across tests can fail in the next one."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def log(*texts: str) -> list[events.Draft]:
    return [events.Draft("log", text, "stdout") for text in texts]


async def connect(user: Any, path: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(APP, path)
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def receive_until(
    communicator: WebsocketCommunicator, kind: str, timeout: float = 3
) -> dict[str, Any]:
    while True:
        message = await communicator.receive_json_from(timeout=timeout)
        if message["type"] == kind:
            return message


async def seqs_received(communicator: WebsocketCommunicator, until: int) -> list[int]:
    seen: list[int] = []
    while not seen or seen[-1] < until:
        message = await receive_until(communicator, "events")
        seen += [e["seq"] for e in message["events"]]
    return seen


@pytest.fixture
def job(alice, repo):
    return services.submit_job(alice, repo="demo", agent="shell", prompt="true")


def test_job_socket_sends_the_backlog_after_seq_then_live_events(alice, job):
    attempt = job.attempts.get()
    events.append_events(attempt.pk, log("a", "b", "c"))  # seq 2..4 (1 is "queued")

    async def scenario() -> list[int]:
        communicator = await connect(alice, f"/ws/jobs/{job.public_id}/?after=2")
        backlog = await seqs_received(communicator, 4)
        await sync_to_async(events.append_events)(attempt.pk, log("d", "e"))
        live = await seqs_received(communicator, 6)
        await communicator.disconnect()
        return backlog + live

    assert async_to_sync(scenario)() == [3, 4, 5, 6]


def test_reconnecting_with_the_last_seq_misses_nothing_and_repeats_nothing(alice, job):
    attempt = job.attempts.get()

    async def scenario() -> list[int]:
        first = await connect(alice, f"/ws/jobs/{job.public_id}/")
        await sync_to_async(events.append_events)(attempt.pk, log(*"abc"))
        seen = await seqs_received(first, 4)
        await first.disconnect()
        await sync_to_async(events.append_events)(attempt.pk, log(*"defg"))  # while disconnected
        second = await connect(alice, f"/ws/jobs/{job.public_id}/?after={seen[-1]}")
        await sync_to_async(events.append_events)(attempt.pk, log("h"))
        seen += await seqs_received(second, 9)
        await second.disconnect()
        return seen

    assert async_to_sync(scenario)() == list(range(1, 10))


def test_events_arrive_in_order_across_many_batches(alice, job):
    attempt = job.attempts.get()

    async def scenario() -> list[int]:
        communicator = await connect(alice, f"/ws/jobs/{job.public_id}/")
        for batch in range(20):
            await sync_to_async(events.append_events)(
                attempt.pk, log(*(f"{batch}-{i}" for i in range(10)))
            )
        seen = await seqs_received(communicator, 201)
        await communicator.disconnect()
        return seen

    assert async_to_sync(scenario)() == list(range(1, 202))


def test_outsiders_socket_is_closed_with_4403_before_anything_is_sent(carol, job):
    async def scenario() -> dict[str, Any]:
        communicator = WebsocketCommunicator(APP, f"/ws/jobs/{job.public_id}/")
        communicator.scope["user"] = carol
        await communicator.connect()
        return await communicator.receive_output(timeout=3)

    assert async_to_sync(scenario)() == {"type": "websocket.close", "code": 4403}


def test_anonymous_sockets_are_refused(job):
    from django.contrib.auth.models import AnonymousUser

    async def scenario() -> tuple[bool, Any]:
        communicator = WebsocketCommunicator(APP, "/ws/dashboard/")
        communicator.scope["user"] = AnonymousUser()
        connected, code = await communicator.connect()
        return connected, code

    assert async_to_sync(scenario)() == (False, 4401)


def test_dashboard_gets_the_counter_and_its_teams_job_cards_only(alice, carol, repo):
    async def scenario() -> tuple[dict[str, Any], dict[str, Any], bool]:
        mine = await connect(alice, "/ws/dashboard/")
        theirs = await connect(carol, "/ws/dashboard/")
        counter = await receive_until(mine, "counter")
        await receive_until(theirs, "counter")
        job = await sync_to_async(services.submit_job)(
            alice, repo="demo", agent="shell", prompt="x"
        )
        update = await receive_until(mine, "job")
        counted = await receive_until(mine, "counter")
        carol_heard = not await theirs.receive_nothing(timeout=1)
        await mine.disconnect()
        await theirs.disconnect()
        assert update["job"]["id"] == job.public_id
        return counter, counted, carol_heard

    before, after, carol_heard = async_to_sync(scenario)()
    assert (before["running"], before["queued"]) == (0, 0)
    assert (after["running"], after["queued"]) == (0, 1)
    assert not carol_heard


def test_job_cards_pushed_to_the_dashboard_are_escaped(alice, repo):
    async def scenario() -> dict[str, Any]:
        socket = await connect(alice, "/ws/dashboard/")
        await sync_to_async(services.submit_job)(
            alice, repo="demo", agent="shell", prompt="x", title="<img src=x onerror=alert(1)>"
        )
        update = await receive_until(socket, "job")
        await socket.disconnect()
        return update

    html = async_to_sync(scenario)()["html"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img" not in html


def test_signing_out_closes_the_users_sockets(client, alice, job):
    client.force_login(alice)

    async def scenario() -> dict[str, Any]:
        socket = await connect(alice, f"/ws/jobs/{job.public_id}/")
        await sync_to_async(client.post)("/accounts/logout/")
        while True:
            output = await socket.receive_output(timeout=3)
            if output["type"] == "websocket.close":
                return output

    assert async_to_sync(scenario)()["code"] == 4401
