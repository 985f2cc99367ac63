"""The job page's activity feed in Chromium: what an AI agent said and did, its tool calls
folded with their results, the file it touched linking to the review page, its usage; the
agent's text shown as text, never markup; and its closing message on the review page."""

from __future__ import annotations

from decimal import Decimal

import pytest
from playwright.sync_api import expect

from gateway.credentials import set_credential
from gateway.models import ModelRequest
from jobs import services
from jobs.events import Draft, append_events
from jobs.models import Attempt, AttemptStatus

pytestmark = pytest.mark.slow

SAID = "I will write <b>HELLO.md</b> now."
USAGE = {
    "turns": 2,
    "input_tokens": 2400,
    "output_tokens": 690,
    "cache_tokens": 200,
    "cost_usd": 0.0176,
}


def claude_code_job(alice, repo) -> str:
    set_credential("test", repo.team, "anthropic", "sk-test")
    job = services.submit_job(alice, repo="demo", agent="claude-code", prompt="Write HELLO.md")
    attempt = job.attempts.get()
    services.claim_attempt(attempt.pk, "test")
    services.mark_running(attempt.pk, {"backend": "bwrap"})
    append_events(
        attempt.pk,
        [
            Draft("log", '{"type":"system","subtype":"init"}', "stdout"),
            Draft("message", SAID),
            Draft(
                "tool_call",
                "Write /workspace/HELLO.md",
                data={"tool": "Write", "input": "/workspace/HELLO.md", "path": "HELLO.md"},
            ),
            Draft("tool_result", "File created successfully", data={"ok": True}),
            Draft("tool_call", "Bash ls", data={"tool": "Bash", "input": "ls", "command": "ls"}),
            Draft("tool_result", "ls: cannot open", data={"ok": False}),
            Draft("message", "I wrote HELLO.md."),
            Draft("usage", "2 turns, 2400 tokens in, 690 out", data=USAGE),
            Draft("model_call", "claude-sonnet-4-5: 1200 tokens in, 345 out, $0.0088"),
        ],
    )
    for _ in range(2):  # what the gateway counted
        ModelRequest.objects.create(
            attempt_id=attempt.pk,
            provider="anthropic",
            path="/v1/messages",
            input_tokens=1200,
            output_tokens=345,
            cost_usd=Decimal("0.0088"),
        )
    files = [{"path": "HELLO.md", "old_path": None, "status": "added", "added": 1, "deleted": 0}]
    Attempt.objects.filter(pk=attempt.pk).update(
        result_commit=job.base_commit, diff_hash="a" * 64, files=files
    )
    services.finish_attempt(
        attempt.pk,
        AttemptStatus.SUCCEEDED,
        exit_code=0,
        summary={"message": "I wrote HELLO.md.", **USAGE},
    )
    return job.public_id


@pytest.mark.parametrize("width", [1280, 390])
def test_the_activity_feed_shows_what_the_agent_said_and_did(
    sign_in, alice, repo, screenshot, width
):
    public_id = claude_code_job(alice, repo)
    page = sign_in(alice)
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"/jobs/{public_id}/")
    feed = page.locator("[data-role=activity]")
    messages = feed.locator(".act-message")
    expect(messages).to_have_count(2)
    expect(messages.first).to_have_text(SAID)  # the markup is text
    assert feed.locator("b").count() == 0
    calls = feed.locator("details.act-tool")
    expect(calls).to_have_count(2)
    expect(calls.first).to_have_class("act act-tool ok")
    expect(calls.nth(1)).to_have_class("act act-tool error")
    link = calls.first.locator("a.act-path")
    expect(link).to_have_text("HELLO.md")
    assert "#path=HELLO.md" in (link.get_attribute("href") or "")
    # Folded: the result shows once the call is opened.
    result = calls.first.locator(".act-result")
    expect(result).to_be_hidden()
    calls.first.locator("summary").click()
    expect(result).to_have_text("File created successfully")
    expect(feed.locator(".act-usage")).to_have_text("2 turns, 2400 tokens in, 690 out")
    expect(feed.locator(".act-model")).to_have_text(
        "claude-sonnet-4-5: 1200 tokens in, 345 out, $0.0088"
    )
    expect(page.locator("[data-role=usage-line]")).to_have_text(
        "2 model requests · 2400 tokens in, 690 out · $0.0176"
    )
    # The raw log keeps the raw output, and only it.
    expect(page.locator("#log")).to_contain_text('{"type":"system","subtype":"init"}')
    expect(page.locator("#log")).not_to_contain_text(SAID)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    screenshot(page, f"job-activity-feed-{width}")

    link.click()
    expect(page.locator("[data-role=agent-summary]")).to_contain_text("I wrote HELLO.md.")
    expect(page.locator(".diff-file[data-path='HELLO.md']")).to_be_in_viewport()
    screenshot(page, f"review-agent-summary-{width}")
