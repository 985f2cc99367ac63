"""What the job and review pages say about each attempt, in Chromium: the reproducibility card
of a docker attempt names its image, and a follow-up shows what it was asked."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from jobs import services
from jobs.models import Attempt, AttemptStatus

pytestmark = pytest.mark.slow

IMAGE_ID = "sha256:" + "ab" * 32


def finished_in_docker(user, repo) -> str:
    job = services.submit_job(user, repo="demo", agent="shell", prompt="echo hi > hi.txt")
    attempt = job.attempts.get()
    services.claim_attempt(attempt.pk, "test")
    card = {"backend": "docker", "image": "agenthub-sandbox:latest", "image_id": IMAGE_ID}
    services.mark_running(attempt.pk, {**card, "command": "bash -e $AGENTHUB_PROMPT_FILE"})
    files = [{"path": "hi.txt", "old_path": None, "status": "added", "added": 1, "deleted": 0}]
    Attempt.objects.filter(pk=attempt.pk).update(
        result_commit=job.base_commit, diff_hash="a" * 64, files=files
    )
    services.finish_attempt(attempt.pk, AttemptStatus.SUCCEEDED, exit_code=0)
    return job.public_id


def test_a_docker_attempts_card_names_its_image_and_a_follow_up_shows_what_it_was_asked(
    sign_in, alice, bob, repo, screenshot
):
    public_id = finished_in_docker(alice, repo)
    page = sign_in(bob)
    page.goto(f"/jobs/{public_id}/review/")
    expect(page.locator("[data-role=image-digest]")).to_have_text(IMAGE_ID)
    # The long ID wraps inside its card instead of widening the page.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
    screenshot(page, "review-docker-card")

    page.locator("textarea[name=comment]").fill("Please write fewer lines")
    with page.expect_response(lambda r: r.request.method == "POST" and "/review" in r.url):
        page.locator("[data-role=request-changes]").click()
    page.goto(f"/jobs/{public_id}/?attempt=2")
    asked = page.locator("[data-role=attempt-instruction]")
    expect(asked).to_contain_text("echo hi > hi.txt")
    expect(asked).to_contain_text("# Changes requested by bob on attempt 1:")
    expect(asked).to_contain_text("# Please write fewer lines")
    expect(page.locator("pre.prompt").first).to_have_text("echo hi > hi.txt")
    screenshot(page, "job-page-follow-up-instruction")
