"""The whole stack in a real browser: the ASGI server, an RQ worker running jobs in the bwrap
sandbox, Channels over Redis, and Chromium. alice submits and watches, bob reviews and merges,
carol (of another team) sees nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from jobs import services
from notify.models import NotificationPreference
from tests.conftest import job_status
from tests.e2e.conftest import JOB_TIMEOUT_MS, wait_for_socket

pytestmark = pytest.mark.slow

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=2">'
# The job page keeps this many of the latest log rows, status rows included (app.js).
MAX_LOG_ROWS = 5000


def submit(page: Page, title: str, prompt: str) -> str:
    """Submit through the dashboard's form; returns the new job's id once its card is on top."""
    page.select_option("#id_repo", "demo/demo")
    expect(page.locator("#id_agent")).to_have_value("shell")
    page.fill("#id_title", title)
    page.fill("#id_prompt", prompt)
    page.click("#submit-form button[type=submit]")
    card = page.locator("#job-list > .job-card").first
    expect(card.locator(".title")).to_have_text(title)
    job_id = card.get_attribute("data-job")
    assert job_id
    return job_id


def card_of(page: Page, job_id: str) -> Locator:
    return page.locator(f"#job-{job_id}")


def log_texts(page: Page) -> list[str]:
    return page.locator("#log .line.kind-log .text").all_text_contents()


def stdout_of(full_log: list[str]) -> list[str]:
    """The output lines of log.txt's "HH:MM:SS [stdout] text" rows."""
    return [line.split("] ", 1)[1] for line in full_log if " [stdout] " in line]


def assert_nothing_ran(page: Page) -> None:
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    assert page.locator('img[src="x"]').count() == 0
    assert (
        page.evaluate(
            "() => [...document.scripts].filter((s) => s.textContent.includes('__pwned')).length"
        )
        == 0
    )


# Records the card's data-status and the counter's data-running each time the DOM changes, so
# the test can assert the exact sequence of states instead of sampling them.
TRAIL = """(id) => {
    const trail = { status: [], running: [] };
    const note = (list, value) => {
        if (value !== undefined && list[list.length - 1] !== value) list.push(value);
    };
    const look = () => {
        note(trail.status, document.getElementById("job-" + id)?.dataset.status);
        note(trail.running, document.getElementById("jobs-counter").dataset.running);
    };
    look();
    new MutationObserver(look).observe(document.body,
        { subtree: true, childList: true, attributes: true });
    window.__e2eTrail = trail;
}"""


def test_alice_watches_her_job_go_from_queued_to_needs_review_without_reloading(
    sign_in, alice, repo, workers, screenshot
):
    older = services.submit_job(alice, repo="demo", agent="shell", prompt="true", title="older")
    services.cancel_job(alice, older)
    page = sign_in(alice)
    expect(card_of(page, older.public_id)).to_be_visible()
    page.evaluate("() => { window.__e2eNotReloaded = true; }")

    # No worker yet: the job stays queued until the test lets it run.
    job_id = submit(page, "say hello", "echo start; sleep 3; echo hello > hello.txt; echo done")
    card = card_of(page, job_id)
    submitted = page.locator("#submit-form [data-role=submitted]")
    expect(submitted).to_have_text(f"Job {job_id} queued: say hello")
    expect(submitted.locator("a")).to_have_attribute("href", f"/jobs/{job_id}/")
    expect(page.locator("#job-list > .job-card").nth(1)).to_have_id(f"job-{older.public_id}")
    expect(card).to_have_attribute("data-status", "queued")
    expect(card.locator(".chip[data-role=status]")).to_have_text("Queued")
    expect(page.locator("#jobs-counter")).to_have_attribute("data-queued", "1")
    page.evaluate(TRAIL, job_id)

    workers.start()
    expect(card).to_have_attribute("data-status", "running", timeout=JOB_TIMEOUT_MS)
    expect(card.locator(".chip[data-role=status]")).to_have_text("Running")
    expect(page.locator("#jobs-counter")).to_have_attribute("data-running", "1")
    screenshot(page, "dashboard-running-job")

    # A second tab on the job page while the job sleeps between its two echoes.
    job_page = page.context.new_page()
    job_page.goto(f"/jobs/{job_id}/")
    expect(job_page.locator("#log .line.kind-log .text")).to_have_text(["start"])
    expect(job_page.locator(".job-head [data-role=status]")).to_have_text("Running")
    actions = job_page.locator("#job-actions")
    expect(actions.locator("[data-role=cancel]")).to_be_visible()
    expect(actions.locator("[data-role=rerun], [data-role=review-link]")).to_have_count(0)
    job_page.evaluate("() => { window.__e2eNotReloaded = true; }")
    screenshot(job_page, "job-page-running")
    expect(job_page.locator("#log .line.kind-log .text")).to_have_text(
        ["start", "done"], timeout=JOB_TIMEOUT_MS
    )
    expect(job_page.locator(".job-head [data-role=status]")).to_have_text(
        "Needs Review", timeout=JOB_TIMEOUT_MS
    )
    # The controls follow the job without a reload: no Cancel once it has ended, Re-run and
    # Review now that there is a result.
    expect(actions.locator("[data-role=cancel]")).to_have_count(0)
    expect(actions.locator("[data-role=rerun]")).to_be_visible()
    expect(actions.locator("[data-role=review-link]")).to_have_text("Review")
    assert job_page.evaluate("() => window.__e2eNotReloaded") is True

    expect(card).to_have_attribute("data-status", "needs_review", timeout=JOB_TIMEOUT_MS)
    expect(card.locator(".chip[data-role=status]")).to_have_text("Needs Review")
    expect(page.locator("#jobs-counter")).to_have_attribute("data-running", "0")
    trail = page.evaluate("() => window.__e2eTrail")
    assert trail == {"status": ["queued", "running", "needs_review"], "running": ["0", "1", "0"]}
    assert page.evaluate("() => window.__e2eNotReloaded") is True


def test_the_filter_lives_in_the_address_and_back_restores_it(sign_in, alice, repo):
    cancelled = services.submit_job(alice, repo="demo", agent="shell", prompt="true", title="gone")
    services.cancel_job(alice, cancelled)
    services.submit_job(alice, repo="demo", agent="shell", prompt="true", title="waiting")
    page = sign_in(alice)
    expect(page.locator("#job-list > .job-card")).to_have_count(2)

    page.select_option("#job-filters select[name=status]", "cancelled")
    expect(page).to_have_url(re.compile(r"\?status=cancelled"))
    expect(page.locator("#job-list > .job-card")).to_have_count(1)
    page.select_option("#job-filters select[name=status]", "merged")
    expect(page.locator("#job-list [data-role=no-match]")).to_contain_text(
        "No job matches this filter."
    )
    page.go_back()
    expect(page).to_have_url(re.compile(r"\?status=cancelled"))
    expect(page.locator("#job-list > .job-card")).to_have_count(1)
    expect(page.locator("#job-filters select[name=status]")).to_have_value("cancelled")


def test_cancel_asks_first_and_then_says_it_cancelled(sign_in, alice, repo, screenshot):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="true", title="waits")
    page = sign_in(alice)
    page.goto(f"/jobs/{job.public_id}/")
    asked: list[str] = []

    def answer(accept: bool) -> None:
        def on_dialog(dialog: Any) -> None:
            asked.append(dialog.message)
            if accept:
                dialog.accept()
            else:
                dialog.dismiss()

        page.once("dialog", on_dialog)

    # Queued: it has waited, it has not run.
    expect(page.locator("[data-span=run]")).to_have_text("—")
    expect(page.locator("[data-span=wait]")).to_have_text(re.compile(r"^\d+ s$"))
    answer(accept=False)
    page.click("#job-actions [data-role=cancel]")
    assert asked == [
        f"Cancel job {job.public_id}? A running attempt is stopped; what it changed so far is kept."
    ]
    assert job_status(job.public_id) == "queued"

    answer(accept=True)
    page.click("#job-actions [data-role=cancel]")
    expect(page.locator("[role=status].notice")).to_have_text(f"Job {job.public_id} is cancelled.")
    expect(page.locator(".job-head [data-role=status]")).to_have_text("Cancelled")
    expect(page.locator("#job-actions [data-role=rerun]")).to_be_visible()
    screenshot(page, "job-page-cancelled")
    assert job_status(job.public_id) == "cancelled"


def test_bob_is_alerted_opens_the_review_from_the_alert_approves_and_merges_as_alice_watches(
    sign_in, alice, bob, repo, workers, screenshot
):
    NotificationPreference.objects.create(user=bob, toast_after_seconds=0, alert_after_seconds=1)
    workers.start()
    bob_page = sign_in(bob)
    expect(bob_page.locator("body")).to_have_attribute("data-alert-after", "1")
    alice_page = sign_in(alice)
    # Two seconds of sleep: over bob's one-second threshold for the prominent alert.
    job_id = submit(
        alice_page, "add cube", "printf 'def cube(x):\\n    return x ** 3\\n' >> app.py; sleep 2"
    )

    alert = bob_page.locator(f"#toasts .toast.alert[data-job='{job_id}']")
    expect(alert).to_be_visible(timeout=JOB_TIMEOUT_MS)
    # The header counts what waits for bob's review, live.
    expect(bob_page.locator("#review-waiting")).to_have_text("1 waiting for your review")
    expect(alert.locator("a")).to_have_text("add cube — needs review")
    screenshot(bob_page, "bob-alert-toast")
    alert.locator("a").click()
    expect(bob_page).to_have_url(re.compile(rf"/jobs/{job_id}/review/$"))

    expect(card_of(alice_page, job_id)).to_have_attribute("data-status", "needs_review")
    alice_page.goto(f"/jobs/{job_id}/review/")
    wait_for_socket(alice_page, "/ws/dashboard/")
    alice_page.evaluate("() => { window.__e2eNotReloaded = true; }")
    expect(alice_page.locator("#review-panel [data-role=approve]")).to_be_disabled()
    expect(alice_page.locator("#review-panel [data-role=why-not]")).to_have_text(
        "You submitted this job; someone else has to review it."
    )

    added = bob_page.locator(".diff-review .diff-unified tr.add td.code.hl")
    expect(added).to_have_count(2)
    # Pygments' token classes on the added Python lines: keyword, function name, number.
    expect(added.nth(0).locator("span.k")).to_have_text("def")
    expect(added.nth(0).locator("span.nf")).to_have_text("cube")
    expect(added.nth(1).locator("span.mi")).to_have_text("3")
    screenshot(bob_page, "review-page-diff")

    bob_page.click("#review-panel [data-role=approve]")
    expect(bob_page.locator("#review-panel .chip[data-role=status]")).to_have_text("Approved")
    # An approval counts once: the button says why it is off.
    expect(bob_page.locator("#review-panel [data-role=approve]")).to_be_disabled()
    expect(bob_page.locator("#review-panel [data-role=why-not-approve]")).to_have_text(
        "You approved attempt 1 already."
    )
    expect(bob_page.locator("#review-waiting")).to_be_hidden()
    bob_page.click("#review-panel [data-role=merge]")
    expect(bob_page.locator("#review-panel .chip[data-role=status]")).to_have_text("Merged")
    expect(bob_page.locator("#review-panel [data-role=merged]")).to_contain_text("Merged into main")
    expect(bob_page.locator("#review-panel [data-role=push]")).to_contain_text(
        "Pushed: pushed to main"
    )

    expect(alice_page.locator(".job-head [data-role=status]")).to_have_text("Merged")
    expect(alice_page.locator("#review-panel .chip[data-role=status]")).to_have_text("Merged")
    expect(alice_page.locator("#review-panel [data-role=merged]")).to_contain_text(
        "Merged into main"
    )
    assert alice_page.evaluate("() => window.__e2eNotReloaded") is True


def test_a_5000_line_log_arrives_complete_and_in_order_across_two_dropped_sockets(
    sign_in, alice, repo, workers
):
    page = sign_in(alice)
    job_id = submit(
        page,
        "count to 5000",
        'for i in $(seq 1 5000); do echo "line $i"; [ $((i % 500)) = 0 ] && sleep 0.3; done',
    )
    page.goto(f"/jobs/{job_id}/")
    wait_for_socket(page, "/ws/jobs/")
    workers.start()

    for count, (sockets, lines) in enumerate([(1, 500), (2, 2500)], start=1):
        page.wait_for_function(
            "(n) => document.querySelectorAll('#log .line.kind-log').length >= n",
            arg=lines,
            timeout=JOB_TIMEOUT_MS,
        )
        shown = page.evaluate(
            """() => {
                const shown = document.querySelectorAll('#log .line.kind-log').length;
                window.agenthubJob.drop();
                return shown;
            }"""
        )
        assert shown < 5000, f"drop {count} came after the stream ended"
        wait_for_socket(page, "/ws/jobs/", count=sockets + 1)

    expect(page.locator(".job-head [data-role=status]")).to_have_text(
        "No Changes", timeout=JOB_TIMEOUT_MS
    )
    # The full log (one event a line, seq 1..total) has every line, once, in order.
    full_log = page.request.get(f"/jobs/{job_id}/log.txt").text().splitlines()
    assert stdout_of(full_log) == [f"line {i}" for i in range(1, 5001)]
    total = len(full_log)
    page.wait_for_function(
        "(total) => document.querySelector('#log .line:last-child')?.dataset.seq === String(total)",
        arg=total,
    )

    seqs = [
        int(s)
        for s in page.eval_on_selector_all("#log .line", "rows => rows.map((r) => r.dataset.seq)")
    ]
    # The status rows (queued, preparing, running, succeeded) push the log past the page's
    # limit: it hides the oldest rows, says how many, and what it shows has no gap.
    hidden = max(0, total - MAX_LOG_ROWS)
    assert seqs == list(range(hidden + 1, total + 1))
    if hidden:
        expect(page.locator("#log .hidden-lines")).to_have_text(
            f"{hidden} earlier lines not shown — see the full log."
        )
    assert log_texts(page) == stdout_of(full_log[hidden:])


def test_markup_in_a_title_prompt_file_name_and_log_line_is_shown_as_text_and_never_run(
    sign_in, alice, repo, workers
):
    # The CSP is switched off in this browser, so only escaping stands between the payload and
    # the page: the test proves the templates and app.js escape, not that the CSP blocks.
    page = sign_in(alice, bypass_csp=True)
    workers.start()
    title = SCRIPT + IMG
    prompt = f"echo '{SCRIPT} {IMG}'\necho hi > '{IMG}.txt'"
    job_id = submit(page, title, prompt)
    card = card_of(page, job_id)
    expect(card).to_have_attribute("data-status", "needs_review", timeout=JOB_TIMEOUT_MS)
    expect(card.locator(".title")).to_have_text(title)
    assert_nothing_ran(page)

    page.goto(f"/jobs/{job_id}/")
    expect(page.locator(".job-head h1")).to_have_text(title)
    expect(page.locator("pre.prompt")).to_have_text(prompt)
    expect(page.locator("#log .line.kind-log .text")).to_have_text([f"{SCRIPT} {IMG}"])
    assert_nothing_ran(page)

    page.goto(f"/jobs/{job_id}/review/")
    expect(page.locator(".job-head h1")).to_have_text(title)
    expect(page.locator(".diff-review .diff-new-path")).to_have_text(f"{IMG}.txt")
    expect(page.locator(".diff-review .diff-tree-name")).to_have_text([f"{IMG}.txt"])
    assert_nothing_ran(page)


def test_carol_of_another_team_sees_nothing_of_alices_job(sign_in, alice, carol, repo, workers):
    carol_page = sign_in(carol)
    alice_page = sign_in(alice)
    workers.start()
    job_id = submit(alice_page, "secret work", "echo hi > hi.txt")
    expect(card_of(alice_page, job_id)).to_have_attribute(
        "data-status", "needs_review", timeout=JOB_TIMEOUT_MS
    )

    other_tab = carol_page.context.new_page()
    for path in (f"/jobs/{job_id}/", f"/jobs/{job_id}/review/", f"/jobs/{job_id}/log.txt"):
        response = other_tab.goto(path)
        assert response is not None and response.status == 404, path
    closed = carol_page.evaluate(
        """(path) => new Promise((resolve) => {
            const socket = new WebSocket(`ws://${location.host}${path}`);
            const types = [];
            socket.onmessage = (event) => types.push(JSON.parse(event.data).type);
            socket.onclose = (event) => resolve({ code: event.code, types });
        })""",
        f"/ws/jobs/{job_id}/",
    )
    assert closed == {"code": 4403, "types": []}

    # By now alice's job has long settled: nothing of it reached carol's open dashboard.
    expect(carol_page.locator("#job-list .job-card")).to_have_count(0)
    assert "secret work" not in carol_page.content()
    dashboard = carol_page.evaluate(
        "() => window.__e2eSockets.filter((s) => s.url.includes('/ws/dashboard/'))"
    )
    assert [s["types"] for s in dashboard] == [["counter"]]
