"""The Django admin: staff only; the job history and audit trail read-only even for superusers;
filters that find a job by reviewer, date range and touched file; a job page that answers who
approved what, on which prompt, running which command; team management that audits every edit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db.models import Max
from django.forms import CheckboxInput, MultiWidget
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs import services
from jobs.models import (
    Agent,
    Attempt,
    AttemptStatus,
    AuditEntry,
    Event,
    Job,
    JobStatus,
    Membership,
    Review,
    Role,
    Team,
)
from tests.conftest import _member

XSS = "<script>alert(1)</script>"


def finished_job(user: User, *, prompt: str = "true", files: list[str] = ()) -> Job:
    """A job whose attempt ended with a result touching `files`, without running a worker."""
    job = services.submit_job(user, repo="demo", agent="shell", prompt=prompt)
    attempt = job.attempts.get()
    services.claim_attempt(attempt.pk, "test")
    stats = [
        {"path": p, "old_path": None, "status": "M", "added": 1, "deleted": 0, "binary": False}
        for p in files
    ]
    Attempt.objects.filter(pk=attempt.pk).update(
        result_commit=job.base_commit, diff_hash="a" * 64, files=stats
    )
    services.finish_attempt(attempt.pk, AttemptStatus.SUCCEEDED, exit_code=0)
    job.refresh_from_db()
    return job


def made_on(job: Job, day: str) -> Job:
    Job.objects.filter(pk=job.pk).update(
        created_at=timezone.make_aware(datetime.fromisoformat(day))
    )
    return job


def listed(client: Client, path: str, **params: Any) -> list[str]:
    """The public IDs (or primary keys) a changelist shows with these filters, all pages."""
    response = client.get(path, params)
    assert response.status_code == 200, response
    return [str(obj) for obj in response.context["cl"].queryset]


@pytest.fixture
def staff(db: None) -> User:
    """A site admin: staff, not a superuser, with no model permissions of its own."""
    return User.objects.create_user("sam", "sam@example.com", "pw", is_staff=True)


# --- who gets in ---------------------------------------------------------------------------


def test_a_signed_in_non_staff_user_is_sent_to_the_admin_login(client, alice):
    client.force_login(alice)
    for path in ("/admin/", "/admin/jobs/job/", "/admin/jobs/auditentry/export.csv"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/admin/login/"), path


def test_staff_without_permissions_can_read_the_history(client, staff, alice, repo):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    client.force_login(staff)
    assert listed(client, "/admin/jobs/job/") == [job.public_id]
    assert client.get(f"/admin/jobs/job/{job.pk}/change/").status_code == 200


# --- read-only, superusers included ----------------------------------------------------------


@pytest.fixture
def reviewed_job(alice, bob, repo) -> Job:
    job = finished_job(alice, files=["app.py"])
    remark = {"path": "app.py", "line": 2, "body": "<b>tidy</b> later"}
    services.review_job(bob, job, "approve", line_comments=[remark])
    return job


def test_line_comments_show_escaped_on_the_job_and_review_pages(admin_client, reviewed_job):
    review = Review.objects.get(attempt__job=reviewed_job)
    for path in (
        f"/admin/jobs/job/{reviewed_job.pk}/change/",
        f"/admin/jobs/review/{review.pk}/change/",
    ):
        body = admin_client.get(path).content.decode()
        assert "app.py:2" in body
        assert "&lt;b&gt;tidy&lt;/b&gt; later" in body and "<b>tidy" not in body


def one_of_each(job: Job) -> dict[str, Any]:
    return {
        "job": job,
        "attempt": job.attempts.get(),
        "event": Event.objects.filter(attempt__job=job).first(),
        "review": Review.objects.get(attempt__job=job),
        "auditentry": AuditEntry.objects.filter(job=job).first(),
    }


@pytest.mark.parametrize("model", ["job", "attempt", "event", "review", "auditentry"])
def test_a_superuser_sees_history_read_only(admin_client, reviewed_job, model):
    obj = one_of_each(reviewed_job)[model]
    page = admin_client.get(f"/admin/jobs/{model}/{obj.pk}/change/")
    assert page.status_code == 200
    body = page.content.decode()
    assert 'name="_save"' not in body and "Delete</a>" not in body
    assert admin_client.get(f"/admin/jobs/{model}/add/").status_code == 403
    changelist = admin_client.get(f"/admin/jobs/{model}/").content.decode()
    assert 'name="action"' not in changelist  # no actions, so no bulk delete


@pytest.mark.parametrize("model", ["job", "attempt", "event", "review", "auditentry"])
def test_a_superuser_cannot_change_or_delete_history(admin_client, reviewed_job, model):
    obj = one_of_each(reviewed_job)[model]
    before = type(obj).objects.filter(pk=obj.pk).values().get()
    change = admin_client.post(f"/admin/jobs/{model}/{obj.pk}/change/", {"title": "rewritten"})
    assert change.status_code == 403
    assert admin_client.get(f"/admin/jobs/{model}/{obj.pk}/delete/").status_code == 403
    delete = admin_client.post(f"/admin/jobs/{model}/{obj.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    bulk = admin_client.post(
        f"/admin/jobs/{model}/", {"action": "delete_selected", "_selected_action": [obj.pk]}
    )
    assert bulk.status_code == 200  # no actions: the list is shown again
    assert type(obj).objects.filter(pk=obj.pk).values().get() == before


# --- filters and search ----------------------------------------------------------------------


@pytest.fixture
def history(alice, bob, team, repo) -> dict[str, Job]:
    """Three jobs of demo on three days; bob approved the one that touched src/app.py."""
    erin = _member("erin", team, Role.REVIEWER)
    early = made_on(finished_job(alice, prompt="echo early", files=["README.md"]), "2026-03-02")
    app = made_on(
        finished_job(alice, prompt="echo fix the greeting", files=["src/App.py", "docs/x.md"]),
        "2026-03-09",
    )
    late = made_on(finished_job(alice, prompt="echo late", files=["100_percent.txt"]), "2026-03-16")
    services.review_job(bob, app, "approve")
    services.review_job(erin, late, "reject")
    return {"early": early, "app": app, "late": late}


def test_jobs_are_found_by_a_touched_file(admin_client, history):
    def touching(text: str) -> list[str]:
        return listed(admin_client, "/admin/jobs/job/", touched=text)

    assert touching("src/app.py") == [history["app"].public_id]  # case-insensitive
    assert touching("App") == [history["app"].public_id]
    assert touching(".md") == [history["app"].public_id, history["early"].public_id]
    assert touching("0_p") == [history["late"].public_id]
    # LIKE's wildcards are taken literally.
    assert touching("%") == [] and touching("1_0") == []
    assert touching("nowhere.py") == []


def test_a_renamed_file_is_found_by_its_old_path(admin_client, alice, repo):
    job = finished_job(alice)
    renamed = {"path": "new.py", "old_path": "old.py", "status": "R", "added": 0, "deleted": 0}
    Attempt.objects.filter(job=job).update(files=[{**renamed, "binary": False}])
    assert listed(admin_client, "/admin/jobs/job/", touched="old.py") == [job.public_id]


def test_jobs_are_filtered_by_a_range_of_days(admin_client, history):
    def between(since: str, until: str) -> list[str]:
        params = {k: v for k, v in (("created_at__from", since), ("created_at__to", until)) if v}
        return listed(admin_client, "/admin/jobs/job/", **params)

    # Both days are included.
    assert between("2026-03-09", "2026-03-16") == [
        history["late"].public_id,
        history["app"].public_id,
    ]
    assert between("2026-03-03", "2026-03-09") == [history["app"].public_id]
    assert between("", "2026-03-02") == [history["early"].public_id]
    assert between("2026-03-17", "") == []


def test_a_bad_date_is_named(admin_client, history):
    response = admin_client.get("/admin/jobs/job/", {"created_at__from": "2026-13-01"}, follow=True)
    messages = [str(m) for m in response.context["messages"]]
    assert "created_at__from='2026-13-01' is not a date: expected YYYY-MM-DD." in messages


def test_touched_file_and_range_and_reviewer_combine(admin_client, history, bob):
    found = listed(
        admin_client,
        "/admin/jobs/job/",
        touched="app.py",
        created_at__from="2026-03-08",
        created_at__to="2026-03-14",
        reviewer=bob.pk,
    )
    assert found == [history["app"].public_id]


def test_jobs_are_filtered_by_reviewer_status_submitter_and_team(admin_client, history, bob, alice):
    erin = User.objects.get(username="erin")
    assert listed(admin_client, "/admin/jobs/job/", reviewer=bob.pk) == [history["app"].public_id]
    assert listed(admin_client, "/admin/jobs/job/", reviewer=erin.pk) == [history["late"].public_id]
    assert listed(admin_client, "/admin/jobs/job/", status__exact=JobStatus.REJECTED) == [
        history["late"].public_id
    ]
    own = services.submit_job(bob, repo="demo", agent="shell", prompt="true")
    assert len(listed(admin_client, "/admin/jobs/job/", submitter__id__exact=alice.pk)) == 3
    assert listed(admin_client, "/admin/jobs/job/", submitter__id__exact=bob.pk) == [own.public_id]
    other = Team.objects.create(name="other")
    assert listed(admin_client, "/admin/jobs/job/", team__id__exact=other.pk) == []


def test_jobs_are_searched_by_public_id_title_and_prompt(admin_client, history):
    app = history["app"]
    assert listed(admin_client, "/admin/jobs/job/", q="greeting") == [app.public_id]
    assert listed(admin_client, "/admin/jobs/job/", q=app.public_id) == [app.public_id]


def test_the_filter_form_keeps_the_other_filters(admin_client, history, bob):
    body = admin_client.get("/admin/jobs/job/", {"reviewer": bob.pk}).content.decode()
    assert f'<input type="hidden" name="reviewer" value="{bob.pk}">' in body
    assert 'name="touched"' in body and 'name="created_at__from"' in body


def test_audit_entries_are_filtered_and_searched(admin_client, history, bob):
    app = history["app"]
    approvals = listed(admin_client, "/admin/jobs/auditentry/", action="review.approve")
    assert approvals == [str(AuditEntry.objects.get(action="review.approve"))]
    found = listed(admin_client, "/admin/jobs/auditentry/", q=app.public_id)
    assert found == [str(e) for e in AuditEntry.objects.filter(job=app).order_by("seq")]
    by_bob = AuditEntry.objects.filter(actor_name="bob").order_by("seq")
    assert listed(admin_client, "/admin/jobs/auditentry/", q="bob") == [str(e) for e in by_bob]
    today = timezone.localdate().isoformat()
    assert len(listed(admin_client, "/admin/jobs/auditentry/", ts__from=today)) == (
        AuditEntry.objects.count()
    )
    assert listed(admin_client, "/admin/jobs/auditentry/", ts__to="2000-01-01") == []


def test_a_jobs_events_are_listed_from_its_page(admin_client, reviewed_job):
    url = reverse("admin:jobs_event_changelist")
    response = admin_client.get(url, {"attempt__job__public_id": reviewed_job.public_id})
    shown = {e.pk for e in response.context["cl"].queryset}
    assert shown == set(
        Event.objects.filter(attempt__job=reviewed_job).values_list("pk", flat=True)
    )
    assert f"Events of job {reviewed_job.public_id}" in response.content.decode()


def test_the_audit_entry_page_shows_its_data_and_hashes(admin_client, reviewed_job):
    entry = AuditEntry.objects.get(action="review.approve")
    body = admin_client.get(f"/admin/jobs/auditentry/{entry.pk}/change/").content.decode()
    assert "&quot;diff_hash&quot;: &quot;" + "a" * 64 in body
    assert entry.hash in body and entry.prev_hash in body


# --- the job page, for a job run for real ------------------------------------------------------


@pytest.mark.slow
def test_the_job_page_answers_who_approved_what_on_which_prompt_running_what(
    api, alice, bob, repo, workers
):
    prompt = f"# {XSS}\nmkdir -p docs && echo hello > docs/notes.txt\n"
    public_id = (
        api(alice)
        .post("/api/v1/jobs", {"repo": "demo", "agent": "shell", "prompt": prompt, "title": XSS})
        .json()["id"]
    )
    workers.burst()
    job = Job.objects.get(public_id=public_id)
    assert job.status == JobStatus.NEEDS_REVIEW, job.attempts.get().reason
    services.review_job(bob, job, "approve", comment="looks <fine>")
    commit = services.merge_job(bob, job)
    admin = User.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(admin)

    body = client.get(f"/admin/jobs/job/{job.pk}/change/").content.decode()

    assert "# &lt;script&gt;alert(1)&lt;/script&gt;\nmkdir -p docs" in body
    assert XSS not in body
    assert "bash &quot;$AGENTHUB_PROMPT_FILE&quot;" in body  # the command on the card
    assert "<code>bwrap</code>" in body
    assert "<td>bob</td>" in body and "Approve" in body and "looks &lt;fine&gt;" in body
    assert commit in body
    assert "docs/notes.txt" in body
    assert f'href="{reverse("job-review", args=[public_id])}"' in body
    assert f'href="{reverse("job", args=[public_id])}"' in body
    events = Event.objects.filter(attempt__job=job).count()
    assert f"All {events} events of this job" in body
    assert "job.merge" in body


# --- team management, audited ----------------------------------------------------------------


def form_data(response: Any) -> dict[str, Any]:
    """What the admin form on the page would post as it stands (main form and inlines)."""
    forms = [response.context["adminform"].form]
    data: dict[str, Any] = {}
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({management.add_prefix(k): v for k, v in management.initial.items()})
        forms.extend(inline.formset.forms)
    for form in forms:
        for name, field in form.fields.items():
            key, value = form.add_prefix(name), form[name].value()
            if isinstance(field.widget, MultiWidget):
                for i, part in enumerate(field.widget.decompress(value)):
                    data[f"{key}_{i}"] = part.isoformat() if part else ""
            elif isinstance(field.widget, CheckboxInput):
                if value:
                    data[key] = "on"
            elif value is not None:
                data[key] = value
    return data


def new_entries(since: int) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(seq__gt=since).order_by("seq"))


def last_seq() -> int:
    return AuditEntry.objects.aggregate(n=Max("seq"))["n"] or 0


@pytest.fixture
def sam_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def test_adding_a_team_with_members_audits_each_once(sam_client, staff, alice, bob):
    data = form_data(sam_client.get("/admin/jobs/team/add/"))
    data.update(
        {
            "name": "ops",
            "concurrency_limit": "3",
            "memberships-TOTAL_FORMS": "2",
            "memberships-0-user": alice.pk,
            "memberships-0-role": "member",
            "memberships-1-user": bob.pk,
            "memberships-1-role": "reviewer",
        }
    )
    since = last_seq()
    response = sam_client.post("/admin/jobs/team/add/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    entries = new_entries(since)
    assert [(e.action, e.target) for e in entries] == [
        ("team.create", "ops"),
        ("membership.create", "alice in ops (member)"),
        ("membership.create", "bob in ops (reviewer)"),
    ]
    assert all(e.actor == staff and e.team.name == "ops" for e in entries)
    assert entries[0].data["changes"]["concurrency_limit"] == [None, 3]
    assert entries[2].data["changes"]["role"] == [None, "reviewer"]


def test_editing_a_team_audits_each_changed_object_once(sam_client, staff, team, alice, bob):
    url = f"/admin/jobs/team/{team.pk}/change/"
    data = form_data(sam_client.get(url))
    forms = {data[f"memberships-{i}-user"]: i for i in range(2)}
    a, b = forms[alice.pk], forms[bob.pk]
    data.update(
        {
            "concurrency_limit": "5",
            f"memberships-{a}-role": "admin",
            f"memberships-{b}-DELETE": "on",
        }
    )
    since = last_seq()
    assert sam_client.post(url, data).status_code == 302
    team_entry, *member_entries = new_entries(since)
    assert (team_entry.action, team_entry.actor, team_entry.data) == (
        "team.update",
        staff,
        {"changes": {"concurrency_limit": [2, 5]}},
    )
    assert sorted((e.action, e.actor, e.target, e.data) for e in member_entries) == [
        ("membership.delete", staff, "bob in demo (reviewer)", {}),
        (
            "membership.update",
            staff,
            "alice in demo (admin)",
            {"changes": {"role": ["member", "admin"]}},
        ),
    ]
    assert not Membership.objects.filter(user=bob).exists()


def test_saving_an_unchanged_form_audits_nothing(sam_client, team, alice):
    url = f"/admin/jobs/team/{team.pk}/change/"
    data = form_data(sam_client.get(url))
    since = last_seq()
    assert sam_client.post(url, data).status_code == 302
    assert new_entries(since) == []


def test_teams_are_not_deleted_from_the_admin(sam_client, team):
    assert sam_client.get(f"/admin/jobs/team/{team.pk}/delete/").status_code == 403
    assert Team.objects.filter(pk=team.pk).exists()


def test_agent_edits_are_audited_and_the_admin_never_shows_their_secrets(sam_client, staff, team):
    data = form_data(sam_client.get("/admin/jobs/agent/add/"))
    assert "secrets" not in data  # write-only: set on the team's agent page
    data.update({"team": team.pk, "name": "deploy", "command": 'bash "$AGENTHUB_PROMPT_FILE"'})
    since = last_seq()
    assert sam_client.post("/admin/jobs/agent/add/", data).status_code == 302
    agent = Agent.objects.get(team=team, name="deploy")
    agent.secrets = {"TOKEN": "s3cret-value"}
    agent.save(update_fields=["secrets"])
    url = f"/admin/jobs/agent/{agent.pk}/change/"
    page = sam_client.get(url)
    assert b"s3cret-value" not in page.content
    data = form_data(page)
    data.update({"timeout_seconds": "120", "secrets": '{"TOKEN": "posted"}'})
    assert sam_client.post(url, data).status_code == 302
    agent.refresh_from_db()
    assert agent.secrets == {"TOKEN": "s3cret-value"}  # a posted value is ignored
    response = sam_client.post(f"/admin/jobs/agent/{agent.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302

    entries = new_entries(since)
    assert [(e.action, e.actor, e.target, e.team) for e in entries] == [
        ("agent.create", staff, "deploy", team),
        ("agent.update", staff, "deploy", team),
        ("agent.delete", staff, "deploy", team),
    ]
    assert entries[1].data["changes"] == {"timeout_seconds": [1800, 120]}


def test_repository_edits_are_audited(sam_client, staff, repo):
    url = f"/admin/jobs/repository/{repo.pk}/change/"
    data = form_data(sam_client.get(url))
    data["push_url"] = "/srv/elsewhere.git"
    since = last_seq()
    assert sam_client.post(url, data).status_code == 302
    [entry] = new_entries(since)
    assert (entry.action, entry.actor, entry.target) == ("repository.update", staff, "demo/demo")
    assert entry.data["changes"]["push_url"][1] == "/srv/elsewhere.git"
    assert sam_client.get("/admin/jobs/repository/add/").status_code == 403
