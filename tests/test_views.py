"""Pages: the dashboard, the job page and the review page, their scoping and their escaping."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from jobs import services
from jobs.models import Job

pytestmark = pytest.mark.django_db

XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"


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
    assert "first task" not in body and "No jobs yet" in body


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


def test_review_page_explains_why_the_submitter_cannot_approve(client, alice, repo):
    from tests.test_review import finished_job

    job = finished_job(alice)
    client.force_login(alice)
    page = client.get(f"/jobs/{job.public_id}/review/").content.decode()
    assert 'data-role="approve" disabled' in page
    assert "You submitted this job; someone else has to review it." in page
