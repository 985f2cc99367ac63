"""Line comments on the review page in a real browser, under the strict CSP: bob comments on
lines of alice's result in both views, by mouse and by keyboard, removes one, keeps them across a
refresh of the review panel, and requests changes; the follow-up attempt's instruction carries
the comment he kept, and the page shows it under its line and in the History."""

from __future__ import annotations

import pytest
from playwright.sync_api import Locator, Page, expect

from jobs import services
from jobs.models import LineComment
from tests.conftest import job_status

pytestmark = pytest.mark.slow

# app.py of the test repository is "def greet():\n    return 'hello'\n". The result keeps line
# 1, removes old line 2, and adds new lines 2-6 (5 is `def cube(x):`).
PROMPT = (
    "printf 'def greet():\\n    return \"hi\"\\n\\n\\ndef cube(x):\\n    return x ** 3\\n' > app.py"
)
KEPT = "Name it cube_of? <b>not bold</b>"
DROPPED = "Why drop hello?"


def unified_added(page: Page, number: int) -> Locator:
    """The unified view's row of added line `number` (its new-number cell is the second)."""
    return page.locator(".diff-unified tr.add").filter(
        has=page.locator(f'td.num:nth-child(2)[data-n="{number}"]')
    )


def split_removed(page: Page, number: int) -> Locator:
    return page.locator(".diff-split tr").filter(has=page.locator(f'td.num.del[data-n="{number}"]'))


def pending_count(page: Page) -> Locator:
    return page.locator("#review-panel [data-role=pending-count]")


def panel_refreshed(page: Page) -> None:
    """Make the panel reload itself as app.js does when the job changes, and wait for it (the
    refresh replaces what the panel holds, its heading included)."""
    page.evaluate(
        """() => {
            document.querySelector("#review-panel > h2").dataset.old = "true";
            document.body.dispatchEvent(new Event("job-changed"));
        }"""
    )
    expect(page.locator("#review-panel > h2:not([data-old])")).to_have_count(1)


def test_bob_comments_on_lines_removes_one_and_requests_changes_with_the_other(
    sign_in, alice, bob, repo, workers, tmp_path
):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt=PROMPT, title="cube")
    workers.burst()
    assert job_status(job.public_id) == "needs_review"
    shots = tmp_path / "shots"
    shots.mkdir()

    # The submitter cannot review, so she gets no way to comment.
    alice_page = sign_in(alice)
    alice_page.goto(f"/jobs/{job.public_id}/review/")
    expect(alice_page.locator("#review-panel [data-role=approve]")).to_be_disabled()
    expect(alice_page.locator(".diff-review")).not_to_have_class("can-comment")
    unified_added(alice_page, 5).locator("td.num").nth(1).click()
    expect(alice_page.locator(".line-comment-form")).to_have_count(0)
    expect(alice_page.locator(".lc-add")).to_have_count(0)

    page = sign_in(bob)
    problems: list[str] = []
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(f"/jobs/{job.public_id}/review/")
    expect(page.locator(".diff-review")).to_have_class("diff-review can-comment")

    # 1. Unified view, mouse: the "+" shows on hover; the number cell opens the editor too.
    row = unified_added(page, 5)
    plus = row.locator(".lc-add")
    expect(plus).to_have_css("opacity", "0")
    row.hover()
    expect(plus).to_have_css("opacity", "1")
    row.locator("td.num").nth(1).click()
    editor = page.locator(".diff-unified tr.line-comments .line-comment-form textarea")
    expect(editor).to_be_focused()
    expect(editor).to_have_attribute("aria-label", "Comment on app.py:5")
    editor.fill(KEPT)
    page.screenshot(path=str(shots / "1-editor.png"), full_page=True)
    page.locator(".diff-unified [data-role=add-line-comment]").click()
    expect(page.locator(".line-comment-form")).to_have_count(0)
    expect(pending_count(page)).to_have_text("1 line comment will be sent with your review")

    # 2. Split view, keyboard: the removed line's "+", Enter, type, Ctrl+Enter.
    page.click("label[for=diff-view-split]")
    removed_plus = split_removed(page, 2).locator("td.marker.del .lc-add")
    removed_plus.focus()
    expect(removed_plus).to_have_css("opacity", "1")
    page.keyboard.press("Enter")
    page.keyboard.type(DROPPED)
    page.keyboard.press("Control+Enter")
    expect(removed_plus).to_be_focused()
    expect(pending_count(page)).to_have_text("2 line comments will be sent with your review")
    expect(page.locator("#review-panel .pending-list li code")).to_have_text(
        ["app.py:5", "app.py:2 (removed)"]
    )
    # Each comment sits under its line, in both tables, the removed line's in the left half.
    split_thread = split_removed(page, 2).locator("xpath=following-sibling::tr[1]")
    expect(split_thread).to_have_attribute("data-thread", "old:2")
    expect(
        split_thread.locator("td.thread-old .line-comment.pending .line-comment-body")
    ).to_have_text(DROPPED)
    expect(page.locator(".diff-unified .line-comment.pending .line-comment-body")).to_have_text(
        [DROPPED, KEPT]
    )

    # The panel is replaced when the job changes; pending comments and the typed comment stay.
    page.fill("#id_comment", "Nearly there.")
    panel_refreshed(page)
    expect(pending_count(page)).to_have_text("2 line comments will be sent with your review")
    expect(page.locator("#review-panel input[name=comment_body]")).to_have_count(2)
    expect(page.locator("#id_comment")).to_have_value("Nearly there.")
    page.screenshot(path=str(shots / "2-split-pending.png"), full_page=True)

    # 3. Remove the removed line's comment (from the diff), and send the other one.
    split_thread.get_by_role("button", name="Remove the comment on app.py:2 (removed)").click()
    expect(pending_count(page)).to_have_text("1 line comment will be sent with your review")
    expect(page.locator(".diff-review tr[data-thread='old:2']")).to_have_count(0)
    page.click("label[for=diff-view-unified]")
    page.click("#review-panel [data-role=request-changes]")
    expect(page.locator("#review-panel .chip[data-role=status]")).to_have_text("Queued")
    history = page.locator("#review-panel ul.reviews > li")
    expect(history).to_contain_text(
        "bob requested changes on attempt 1: Nearly there. · 1 line comment"
    )
    expect(history.locator(".review-line-comments li")).to_have_text([f"app.py:5 — {KEPT}"])
    # Sent: no longer pending, shown as given.
    expect(page.locator(".line-comment.pending")).to_have_count(0)
    expect(page.locator("#review-panel [data-role=pending-comments]")).to_have_count(0)
    expect(page.locator(".diff-unified .line-comment-submitted .line-comment-head")).to_have_text(
        "bob requested changes"
    )

    follow_up = job.attempts.get(number=2)
    assert f"# app.py:5: {KEPT}" in follow_up.instruction
    assert DROPPED not in follow_up.instruction
    assert list(LineComment.objects.values_list("path", "line", "side", "body")) == [
        ("app.py", 5, "new", KEPT)
    ]
    assert list(job.attempts.values_list("number", "status")) == [(1, "succeeded"), (2, "queued")]

    # 4. After a reload the page renders it from the database, under line 5 of attempt 1.
    page.reload()
    expect(page.locator("[data-role=submitted-line-comments]")).to_be_hidden()
    thread = unified_added(page, 5).locator("xpath=following-sibling::tr[1]")
    expect(thread).to_have_class("line-comments")
    expect(thread.locator(".line-comment-submitted .line-comment-body")).to_have_text(KEPT)
    expect(thread.locator(".line-comment-head")).to_have_text("bob requested changes · app.py:5")
    expect(thread.locator(".line-comment-where")).to_be_hidden()
    expect(page.locator("#review-panel .review-line-comments li")).to_have_text(
        [f"app.py:5 — {KEPT}"]
    )
    assert page.locator(".diff-review b").count() == 0  # the body's markup stayed text
    page.screenshot(path=str(shots / "3-after-reload.png"), full_page=True)
    page.click("label[for=diff-view-split]")
    split_given = page.locator(".diff-split tr.line-comments td.thread-new .line-comment-body")
    expect(split_given).to_have_text(KEPT)
    page.screenshot(path=str(shots / "4-split-after-reload.png"), full_page=True)

    assert problems == []  # no script errors, nothing refused by the CSP
