"""Pages: the dashboard, the job page and the review page, their scoping and their escaping."""

from __future__ import annotations

import html
import json
import re

import pytest
from asgiref.sync import async_to_sync

from jobs import services, views
from jobs.models import Job

pytestmark = pytest.mark.django_db

XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"
ESCAPED_XSS = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_dashboard_lists_the_teams_jobs_as_text_never_html(client, alice, repo):
    services.submit_job(alice, repo="demo", agent="shell", prompt="true", title=XSS)
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<script>alert(1)" not in page and "<img src=x" not in page


def test_every_page_has_a_strict_content_security_policy(client, alice, repo):
    client.force_login(alice)
    policy = client.get("/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_the_policy_is_set_in_an_async_chain_too(async_client):
    """Under daphne the middlewares run async; the policy and the API's JSON 405 hold there."""
    response = async_to_sync(async_client.get)("/accounts/login/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    response = async_to_sync(async_client.put)("/api/v1/jobs")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


def test_dashboard_hides_other_teams_jobs(client, alice, carol, repo):
    services.submit_job(
        alice, repo="demo", agent="shell", prompt="true", title="alice's secret plan"
    )
    client.force_login(carol)
    assert "secret plan" not in client.get("/").content.decode()


def test_dashboard_filters_return_just_the_list_for_htmx(client, alice, repo):
    services.submit_job(alice, repo="demo", agent="shell", prompt="true", title="first task")
    client.force_login(alice)
    response = client.get(
        "/", {"status": "merged"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="job-list"
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="job-list"')
    assert "first task" not in body and "No job matches this filter." in body


def test_submitting_from_the_form_returns_a_fresh_form_and_the_new_card(client, alice, repo):
    client.force_login(alice)
    response = client.post(
        "/jobs/submit",
        {"repo": "demo/demo", "agent": "shell", "prompt": "echo hi", "attempts": 1, "priority": 0},
        HTTP_HX_REQUEST="true",
    )
    job = Job.objects.get()
    body = response.content.decode()
    assert 'id="submit-form"' in body
    assert f'id="job-{job.public_id}"' in body and 'class="new-card"' in body
    assert job.submitter == alice and job.status == "queued"


def test_submit_errors_are_shown_on_the_form(client, alice, repo):
    client.force_login(alice)
    response = client.post(
        "/jobs/submit",
        {
            "repo": "demo/demo",
            "agent": "shell",
            "prompt": "true",
            "base_ref": "../../etc",
            "attempts": 1,
            "priority": 0,
        },
        HTTP_HX_REQUEST="true",
    )
    assert "Invalid ref" in response.content.decode()
    assert not Job.objects.exists()


def test_outsiders_get_404_for_job_pages(client, alice, carol, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    client.force_login(carol)
    for path in ("/", "log.txt", "review/", "review/panel", "diff/file?path=x"):
        url = f"/jobs/{job.public_id}/{path}" if path != "/" else f"/jobs/{job.public_id}/"
        assert client.get(url).status_code == 404, url
    for path in ("review/decide", "merge", "cancel", "rerun"):
        assert (
            client.post(f"/jobs/{job.public_id}/{path}", {"decision": "approve"}).status_code == 404
        )


def test_job_page_shows_the_prompt_as_text(client, alice, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt=XSS)
    client.force_login(alice)
    page = client.get(f"/jobs/{job.public_id}/").content.decode()
    assert "&lt;script&gt;alert(1)" in page and "<script>alert(1)" not in page


def test_staff_can_manage_teams_and_members_in_the_admin(admin_client, team):
    page = admin_client.get(f"/admin/jobs/team/{team.pk}/change/")
    assert page.status_code == 200
    assert "membership" in page.content.decode().lower()


def test_repositories_are_added_by_command_not_the_admin(admin_client):
    assert admin_client.get("/admin/jobs/repository/add/").status_code == 403


def test_cancel_and_rerun_buttons_act_and_return_to_the_job(client, alice, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    client.force_login(alice)
    response = client.post(f"/jobs/{job.public_id}/cancel")
    assert response["Location"] == f"/jobs/{job.public_id}/"
    assert Job.objects.get(pk=job.pk).status == "cancelled"
    client.post(f"/jobs/{job.public_id}/rerun")
    assert list(job.attempts.values_list("number", "status")) == [(1, "cancelled"), (2, "queued")]


def test_the_job_page_says_what_an_action_did_and_why_a_stale_one_could_not(client, alice, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    client.force_login(alice)
    page = client.post(f"/jobs/{job.public_id}/cancel", follow=True).content.decode()
    assert f"Job {job.public_id} is cancelled." in page
    # A Cancel left on a page drawn before the job ended.
    page = client.post(f"/jobs/{job.public_id}/cancel", follow=True).content.decode()
    assert f"Job {job.public_id} is cancelled; there is nothing to cancel." in page


def test_the_job_pages_controls_follow_its_state(client, alice, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    client.force_login(alice)

    def controls() -> str:
        return client.get(f"/jobs/{job.public_id}/actions").content.decode()

    queued = controls()
    assert 'data-role="cancel"' in queued
    assert 'data-role="rerun"' not in queued and 'data-role="review-link"' not in queued
    services.cancel_job(alice, job)
    cancelled = controls()
    assert 'data-role="cancel"' not in cancelled and 'data-role="rerun"' in cancelled
    assert 'data-role="review-link"' not in cancelled  # nothing to review


def test_review_page_explains_why_the_submitter_cannot_approve(client, alice, repo):
    from tests.test_review import finished_job

    job = finished_job(alice)
    client.force_login(alice)
    page = client.get(f"/jobs/{job.public_id}/review/").content.decode()
    assert 'data-role="approve" disabled' in page
    assert "You submitted this job; someone else has to review it." in page


# --- line comments on the review page ----------------------------------------------------------

PATCH = (
    "diff --git a/app.py b/app.py\n"
    "index 1111111..2222222 100644\n"
    "--- a/app.py\n"
    "+++ b/app.py\n"
    "@@ -1,2 +1,3 @@\n"
    " def greet():\n"
    "-    return 'hello'\n"
    "+    return 'hi'\n"
    "+# done\n"
)
FILES = [
    {"path": "app.py", "status": "modified", "added": 2, "deleted": 1, "binary": False},
]


def finish_with_patch(attempt) -> Job:
    """End a queued attempt with a one-file result, as a worker would, without running one."""
    from jobs.models import Attempt, AttemptStatus

    services.claim_attempt(attempt.pk, "test")
    Attempt.objects.filter(pk=attempt.pk).update(
        result_commit=attempt.job.base_commit,
        diff_hash=f"{attempt.number}" * 64,
        patch=PATCH,
        files=FILES,
    )
    services.finish_attempt(attempt.pk, AttemptStatus.SUCCEEDED, exit_code=0)
    return Job.objects.get(pk=attempt.job_id)


def job_to_review(alice) -> Job:
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    return finish_with_patch(job.attempts.get())


def decide(client, job, decision, comment="", comments=(), htmx=True):
    data = {"decision": decision, "comment": comment, "attempt": 1}
    for name in ("path", "line", "side", "body"):
        data[f"comment_{name}"] = [str(c[name]) for c in comments]
    extra = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    return client.post(f"/jobs/{job.public_id}/review/decide", data, **extra)


def test_a_decision_sends_its_line_comments_to_the_follow_up(client, alice, bob, repo):
    job = job_to_review(alice)
    client.force_login(bob)
    response = decide(
        client,
        job,
        "request_changes",
        comment="Nearly.",
        comments=[
            {"path": "app.py", "line": 3, "side": "new", "body": "Say why it is done."},
            {"path": "app.py", "line": 2, "side": "old", "body": "Keep hello."},
        ],
    )
    review = job.reviews_qs().get()
    assert [c.as_dict() for c in review.line_comments.all()] == [
        {"path": "app.py", "line": 2, "side": "old", "body": "Keep hello."},
        {"path": "app.py", "line": 3, "side": "new", "body": "Say why it is done."},
    ]
    follow_up = job.attempts.get(number=2)
    assert "# Nearly.\n# app.py:2 (removed): Keep hello.\n" in follow_up.instruction
    assert "# app.py:3: Say why it is done." in follow_up.instruction
    # review.js marks the pending comments as given on this trigger.
    assert json.loads(response["HX-Trigger"]) == {"review-decided": {"decision": "request_changes"}}
    history = response.content.decode()
    assert "requested changes on attempt 1: Nearly. · 2 line comments" in history
    assert "<code>app.py:2 (removed)</code> — Keep hello." in history


def test_a_line_comment_on_a_file_not_changed_is_refused_and_everything_typed_comes_back(
    client, alice, bob, repo
):
    job = job_to_review(alice)
    client.force_login(bob)
    response = decide(
        client,
        job,
        "request_changes",
        comment="My overall remark",
        comments=[
            {"path": "app.py", "line": 3, "side": "new", "body": "A good line"},
            {"path": "nope.py", "line": 1, "side": "new", "body": XSS},
        ],
    )
    body = response.content.decode()
    assert "comments[1].path: &#x27;nope.py&#x27; is not a file attempt 1 changes." in body
    assert ">My overall remark</textarea>" in body
    assert '<input type="hidden" name="comment_body" value="A good line">' in body
    assert "2 line comments will be sent with your review" in body
    # The hostile body is kept as text: in the pending list and in its hidden field.
    assert "<script>alert(1)" not in body
    assert body.count(ESCAPED_XSS) == 2
    assert not job.reviews_qs().exists()
    assert Job.objects.get(pk=job.pk).status == "needs_review"


def test_a_line_that_is_not_a_number_is_named_in_the_error(client, alice, bob, repo):
    job = job_to_review(alice)
    client.force_login(bob)
    wrong = {"path": "app.py", "line": "3x", "side": "new", "body": "x"}
    body = decide(client, job, "approve", comments=[wrong]).content.decode()
    assert "comments[0].line: expected a line number, not &#x27;3x&#x27;." in body
    assert not job.reviews_qs().exists()


def test_without_javascript_a_refused_decision_shows_the_page_with_the_comment_kept(
    client, alice, bob, repo
):
    job = job_to_review(alice)
    client.force_login(bob)
    response = decide(client, job, "maybe", comment="Typed before the mistake", htmx=False)
    body = response.content.decode()
    assert response.status_code == 200 and "<html" in body
    assert "Choose approve, reject or request changes." in body
    assert ">Typed before the mistake</textarea>" in body


def test_given_line_comments_render_as_text_under_the_diff_and_in_history(client, alice, bob, repo):
    job = job_to_review(alice)
    services.review_job(
        bob, job, "approve", line_comments=[{"path": "app.py", "line": 3, "body": XSS}]
    )
    client.force_login(alice)
    page = client.get(f"/jobs/{job.public_id}/review/").content.decode()
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    listed = page[page.index('data-role="submitted-line-comments"') : page.index("diff-layout")]
    assert 'data-path="app.py" data-side="new" data-line="3"' in listed
    assert ESCAPED_XSS in listed
    history = page[page.index("<h3>History</h3>") :]
    assert "approved attempt 1 · 1 line comment" in history
    assert "<code>app.py:3</code> — &lt;script&gt;alert(1)" in history


def test_an_older_attempts_line_comments_are_in_history_but_not_under_the_new_diff(
    client, alice, bob, repo
):
    job = job_to_review(alice)
    services.review_job(
        bob,
        job,
        "request_changes",
        line_comments=[{"path": "app.py", "line": 3, "body": "Not yet."}],
    )
    finish_with_patch(job.attempts.get(number=2))
    client.force_login(bob)
    latest = client.get(f"/jobs/{job.public_id}/review/").content.decode()
    assert "submitted-line-comments" not in latest
    assert "<code>app.py:3</code> — Not yet." in latest
    first = client.get(f"/jobs/{job.public_id}/review/?attempt=1").content.decode()
    assert 'data-role="submitted-line-comments"' in first


def test_the_review_page_gives_line_comments_what_they_need(client, alice, bob, repo):
    job = job_to_review(alice)
    client.force_login(bob)
    page = client.get(f"/jobs/{job.public_id}/review/").content.decode()
    assert '<script src="/static/agenthub/review.js" defer></script>' in page
    assert '<div class="diff-scroll" data-path="app.py">' in page
    assert 'data-role="pending-comments" hidden' in page


def test_a_reject_from_the_review_page_needs_a_reason(client, alice, bob, repo):
    job = job_to_review(alice)
    client.force_login(bob)
    refused = decide(client, job, "reject", comment="  ").content.decode()
    assert "Say why you reject it in the comment" in refused
    assert Job.objects.get(pk=job.pk).status == "needs_review"
    decide(client, job, "reject", comment="Not this way: the tests go first.")
    assert Job.objects.get(pk=job.pk).status == "rejected"


def test_error_pages_are_in_the_apps_layout_with_a_way_back(client, alice, carol, repo):
    from django.template.loader import render_to_string

    job = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    client.force_login(carol)
    response = client.get(f"/jobs/{job.public_id}/")
    assert response.status_code == 404
    page = response.content.decode()
    assert 'class="topbar"' in page and "Back to the dashboard" in page
    assert "it belongs to a team you are not in" in page
    # Django renders 500.html without a request: it must render from nothing.
    assert "Something went wrong on our side" in render_to_string("500.html")


def test_the_dashboard_tells_an_empty_filter_from_no_jobs_and_pages_its_jobs(
    client, alice, repo, settings
):
    client.force_login(alice)
    assert "No jobs yet." in client.get("/").content.decode()
    services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    page = client.get("/?status=merged").content.decode()
    assert "No job matches this filter." in page and "No jobs yet." not in page

    for n in range(views.JOBS_PER_PAGE):
        services.submit_job(alice, repo="demo", agent="shell", prompt="true", title=f"job {n}")
    first = client.get("/?agent=shell").content.decode()
    assert first.count('class="job-card') == views.JOBS_PER_PAGE
    assert 'href="?agent=shell&amp;page=2" rel="next"' in first
    second = client.get("/?agent=shell&page=2").content.decode()
    assert second.count('class="job-card') == 1
    assert "Page 2 of 2" in second and 'href="?agent=shell&amp;page=1" rel="prev"' in second


def test_waiting_for_my_review_is_what_this_reviewer_may_decide(client, alice, bob, repo):
    job = job_to_review(alice)
    services.submit_job(alice, repo="demo", agent="shell", prompt="true")  # nothing to review
    client.force_login(bob)
    assert 'data-count="1"' in client.get("/review-waiting").content.decode()
    listed = client.get("/?review=1").content.decode()
    assert listed.count('class="job-card') == 1 and f'id="job-{job.public_id}"' in listed
    client.force_login(alice)  # her own job is not hers to review
    assert 'data-count="0"' in client.get("/review-waiting").content.decode()
    assert client.get("/?review=1").content.decode().count('class="job-card') == 0


def test_the_submit_form_explains_itself(client, alice, repo):
    from jobs import checks
    from jobs.events import _COMMAND

    client.force_login(alice)
    page = client.get("/").content.decode()
    # The agent's description where it is chosen; the base branch's hint where its field
    # points (aria-describedby).
    assert "shell — The instruction is a bash script, run in the workspace." in page
    assert 'aria-describedby="id_base_ref_helptext"' in page
    assert 'id="id_base_ref_helptext">Empty: the repository' in page
    # Every workflow command the help shows is one the log understands.
    help_text = page.split('data-role="prompt-help"')[1].split("</details>")[0]
    shown = [html.unescape(c) for c in re.findall(r"<code>(::[^<]*)</code>", help_text)]
    assert len(shown) == 8
    assert all(_COMMAND.match(command) for command in shown)
    summary = next(c for c in shown if c.startswith("::summary::"))
    assert checks.parse(summary.removeprefix("::summary::"))["tests"]["passed"] == 10


def test_a_team_without_a_repository_is_told_what_to_do(client, carol, other_team):
    client.force_login(carol)
    page = client.get("/").content.decode()
    assert "Your team has no repository yet: ask a team admin to add one." in page


def test_the_review_page_says_who_submitted_what_when_and_to_which_agent(client, alice, bob, repo):
    job = job_to_review(alice)
    client.force_login(bob)
    page = client.get(f"/jobs/{job.public_id}/review/").content.decode()
    said = page.split('data-role="submitted-by">')[1].split("</p>")[0]
    assert "Submitted by <strong>alice</strong>" in said
    assert f'<time datetime="{job.created_at.isoformat()}" data-local="">' in said
    assert f"{job.created_at:%Y-%m-%d %H:%M} UTC</time>" in said and "agent shell" in said


def test_re_run_from_the_job_page_with_a_changed_instruction(client, alice, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    services.cancel_job(alice, job)
    client.force_login(alice)
    assert 'name="instruction"' in client.get(f"/jobs/{job.public_id}/actions").content.decode()
    client.post(f"/jobs/{job.public_id}/rerun", {"instruction": "echo again > again.txt"})
    assert job.attempts.get(number=2).instruction == "echo again > again.txt"
    client.post(f"/jobs/{job.public_id}/cancel")
    client.post(f"/jobs/{job.public_id}/rerun", {"instruction": "  true  "})  # as submitted
    assert job.attempts.get(number=3).instruction == ""


def test_the_job_page_times_the_shown_attempt_waiting_and_running_apart(client, alice, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    services.cancel_job(alice, job)
    second = services.rerun_job(alice, job)
    client.force_login(alice)
    page = client.get(f"/jobs/{job.public_id}/").content.decode()
    wait = page.split('data-span="wait"')[1].split(">")[0]
    run = page.split('data-span="run"')[1].split(">")[0]
    # A re-run is timed from its own queueing, not the job's first submit.
    assert f'data-created="{second.created_at.isoformat()}"' in wait
    assert 'data-finished=""' in wait and 'data-created=""' in run
