"""Submitting through the API: validation, errors as {error, detail}, and queueing."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from jobs.models import Attempt, AuditEntry, Job, Membership

pytestmark = pytest.mark.django_db


def submit(client: Any, **body: Any) -> Any:
    return client.post(
        "/api/v1/jobs", {"repo": "demo", "agent": "shell", "prompt": "echo hi", **body}
    )


def test_submit_returns_202_with_id_status_and_url(api, alice, repo):
    response = submit(api(alice), title="Say hi")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert body["url"].endswith(f"/api/v1/jobs/{body['id']}")
    job = Job.objects.get(public_id=body["id"])
    assert (job.title, job.submitter, job.base_ref) == ("Say hi", alice, "main")
    assert list(job.attempts.values_list("number", "status")) == [(1, "queued")]
    assert AuditEntry.objects.filter(action="job.submit", job=job, actor=alice).count() == 1


def test_submit_creates_one_attempt_per_requested_attempt(api, alice, repo):
    body = submit(api(alice), attempts=3).json()
    attempts = Attempt.objects.filter(job__public_id=body["id"]).order_by("number")
    assert [a.branch for a in attempts] == [f"agenthub/{body['id']}/{n}" for n in (1, 2, 3)]


def test_public_ids_are_short_and_distinct(api, alice, repo):
    ids = {submit(api(alice)).json()["id"] for _ in range(5)}
    assert len(ids) == 5
    assert all(len(i) == 10 and i.isalnum() for i in ids)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"repo": "nope"}, "repo"),
        ({"agent": "nope"}, "agent"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"base_ref": "--upload-pack=x"}, "base_ref"),
        ({"base_ref": "../../etc"}, "base_ref"),
        ({"base_ref": "no-such-branch"}, "base_ref"),
        ({"attempts": 0}, "attempts"),
        ({"attempts": 99}, "attempts"),
        ({"attempts": "many"}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"priority": "1"}, "priority"),
        ({"priority": 11}, "priority"),
    ],
)
def test_bad_input_is_400_naming_the_field(api, alice, repo, body, field):
    response = submit(api(alice), **body)
    assert response.status_code == 400, response.content
    data = response.json()
    assert data["error"] == "invalid"
    assert data["field"] == field
    assert data["detail"]
    assert not Job.objects.exists()


def test_missing_prompt_key_is_400(api, alice, repo):
    response = api(alice).post("/api/v1/jobs", {"repo": "demo", "agent": "shell"})
    assert (response.status_code, response.json()["field"]) == (400, "prompt")


def test_prompt_over_64_kib_is_413(api, alice, repo):
    response = submit(api(alice), prompt="x" * (64 * 1024 + 1))
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert not Job.objects.exists()


def test_prompt_of_exactly_64_kib_is_accepted(api, alice, repo):
    assert submit(api(alice), prompt="x" * (64 * 1024)).status_code == 202


def test_body_that_is_not_json_is_400(api, alice, repo):
    client = api(alice)
    response = client.client.post(
        "/api/v1/jobs", "{nope", content_type="application/json", **client.headers
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


@pytest.mark.parametrize("body", ["[1]", "null", '"echo hi"'])
def test_body_that_is_not_a_json_object_is_400(api, alice, repo, body):
    client = api(alice)
    response = client.client.post(
        "/api/v1/jobs", body, content_type="application/json", **client.headers
    )
    assert response.status_code == 400
    assert "must be a JSON object" in response.json()["detail"]


def test_no_credentials_is_401_json(api, repo):
    response = submit(api(None))
    assert response.status_code == 401
    assert set(response.json()) == {"error", "detail"}


def test_a_wrong_token_is_401(api, alice, repo):
    client = api(alice)
    client.headers = {"HTTP_AUTHORIZATION": "Bearer ah_not-a-token"}
    assert submit(client).status_code == 401


def test_outsider_cannot_submit_to_another_teams_repository(api, carol, repo):
    response = submit(api(carol))
    assert (response.status_code, response.json()["field"]) == (400, "repo")


def test_session_posts_need_a_csrf_token(client, alice, repo):
    client.force_login(alice)
    client.handler.enforce_csrf_checks = True
    response = client.post("/api/v1/jobs", "{}", content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_job_list_is_scoped_to_the_team_newest_first(api, alice, carol, repo):
    first = submit(api(alice)).json()["id"]
    second = submit(api(alice)).json()["id"]
    assert [j["id"] for j in api(alice).get("/api/v1/jobs").json()["jobs"]] == [second, first]
    assert api(carol).get("/api/v1/jobs").json()["jobs"] == []
    assert api(alice).get("/api/v1/jobs", status="merged").json()["count"] == 0


def test_job_list_filters_by_submitter_by_name_or_me(api, alice, bob, repo):
    alices = submit(api(alice)).json()["id"]
    bobs = submit(api(bob)).json()["id"]

    def listed(user: Any, **params: Any) -> list[str]:
        response = api(user).get("/api/v1/jobs", **params)
        assert response.status_code == 200, response.content
        return [j["id"] for j in response.json()["jobs"]]

    assert listed(alice) == [bobs, alices]
    assert listed(alice, submitter="me") == [alices]
    assert listed(bob, submitter="me") == [bobs]
    assert listed(alice, submitter="bob") == [bobs]
    assert listed(bob, submitter="alice", status="queued") == [alices]
    assert listed(bob, submitter="alice", status="merged") == []


def test_job_list_keeps_the_jobs_of_a_submitter_who_left_the_team(api, alice, bob, repo):
    alices = submit(api(alice)).json()["id"]
    Membership.objects.filter(user=alice).delete()
    response = api(bob).get("/api/v1/jobs", submitter="alice")
    assert [j["id"] for j in response.json()["jobs"]] == [alices]


@pytest.mark.parametrize("name", ["nobody", "carol"])  # carol exists, in another team
def test_job_list_names_an_unknown_submitter(api, alice, carol, repo, name):
    response = api(alice).get("/api/v1/jobs", submitter=name)
    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["field"]) == ("invalid", "submitter")
    assert body["detail"].startswith(f"submitter: there is no user {name!r} in your teams")
    assert "'me'" in body["detail"]  # what would be accepted


def test_the_submitter_filter_is_in_the_openapi_document(client):
    document = client.get("/api/v1/openapi.json").json()
    parameters = document["paths"]["/api/v1/jobs"]["get"]["parameters"]
    submitter = next(p for p in parameters if p["name"] == "submitter")
    assert submitter["in"] == "query" and not submitter.get("required")
    assert "`me`" in submitter["description"]


def test_outsider_gets_404_for_everything_about_a_job(api, alice, carol, repo):
    public_id = submit(api(alice)).json()["id"]
    outsider = api(carol)
    for path in ("", "/events", "/diff", "/wait?timeout=0"):
        assert outsider.get(f"/api/v1/jobs/{public_id}{path}").status_code == 404, path
    for path in ("/reviews", "/merge", "/cancel", "/rerun"):
        response = outsider.post(f"/api/v1/jobs/{public_id}{path}", {"decision": "approve"})
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"


def test_cancelling_a_queued_job_ends_it_without_a_worker(api, alice, repo):
    public_id = submit(api(alice)).json()["id"]
    assert api(alice).post(f"/api/v1/jobs/{public_id}/cancel").status_code == 202
    job = Job.objects.get(public_id=public_id)
    assert job.status == "cancelled"
    assert job.attempts.get().status == "cancelled"


def test_a_member_cannot_cancel_someone_elses_job(api, alice, repo, team):
    from tests.conftest import _member

    dave = _member("dave", team, "member")
    public_id = submit(api(alice)).json()["id"]
    assert api(dave).post(f"/api/v1/jobs/{public_id}/cancel").status_code == 403


@pytest.mark.django_db
def test_a_wrong_method_is_a_json_405_naming_the_allowed_ones(api, alice):
    client = api(alice)
    response = client.client.put("/api/v1/jobs", **client.headers)
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert "POST" in response.json()["detail"] and "POST" in response["Allow"]


def test_a_rerun_can_ask_a_changed_instruction_and_keeps_the_submitted_one(api, alice, repo):
    public_id = submit(api(alice)).json()["id"]
    api(alice).post(f"/api/v1/jobs/{public_id}/cancel")
    answer = api(alice).post(
        f"/api/v1/jobs/{public_id}/rerun", {"instruction": "echo second try > try.txt"}
    )
    assert answer.status_code == 202 and answer.json()["attempt"] == 2
    job = Job.objects.get(public_id=public_id)
    assert job.prompt != "echo second try > try.txt"  # as submitted
    assert job.attempts.get(number=2).instruction == "echo second try > try.txt"
    assert job.audit.get(action="job.rerun").data["instruction_changed"] is True

    api(alice).post(f"/api/v1/jobs/{public_id}/cancel")
    too_long = "x" * (settings.AGENTHUB_MAX_PROMPT_BYTES + 1)
    refused = api(alice).post(f"/api/v1/jobs/{public_id}/rerun", {"instruction": too_long})
    assert refused.status_code == 413 and refused.json()["field"] == "instruction"
