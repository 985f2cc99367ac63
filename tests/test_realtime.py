"""Events and job updates reach the Channels groups over the real Redis channel layer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.layers import channel_layers, get_channel_layer

from jobs.events import job_group, team_group

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
