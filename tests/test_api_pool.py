"""The hot API calls (submit, get, list) are async views whose ORM work runs in the event loop's
thread pool when the loop is the outermost program, as under uvicorn or daphne. Driven here from
asyncio.run, so they take that path rather than the test client's thread: the answers, errors,
auth and rate limit are the same there."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import django_rq
import pytest
from django.test import AsyncClient, override_settings

from jobs import services
from jobs.models import ApiToken, AuditEntry, Job
from jobs.services.submission import Written

pytestmark = pytest.mark.usefixtures("transactional_db")  # the pool's threads see commits only

SUBMIT = {"repo": "demo", "agent": "shell", "prompt": "echo hi"}


def run(*calls: tuple[str, str, dict[str, Any]], **headers: str) -> list[Any]:
    """The calls in order from one async client, as the outermost program."""

    async def go() -> list[Any]:
        client = AsyncClient()
        answers = []
        for method, path, body in calls:
            if method == "post":
                answers.append(
                    await client.post(path, body, content_type="application/json", headers=headers)
                )
            else:
                answers.append(await client.get(path, body, headers=headers))
        return answers

    return asyncio.run(go())


def bearer(user: Any) -> dict[str, str]:
    return {"authorization": f"Bearer {ApiToken.issue(user, 'pool')[1]}"}


def test_submit_get_and_list_answer_from_the_pool(alice, repo, monkeypatch):
    threads: dict[str, str] = {}
    write_jobs, settle = services.write_jobs, Written.settle

    def spy_write(*args: Any, **kwargs: Any) -> Any:
        threads["write"] = threading.current_thread().name
        return write_jobs(*args, **kwargs)

    def spy_settle(written: Written) -> None:
        threads["settle"] = threading.current_thread().name
        settle(written)

    monkeypatch.setattr(services, "write_jobs", spy_write)
    monkeypatch.setattr(Written, "settle", spy_settle)
    (submitted,) = run(("post", "/api/v1/jobs", SUBMIT), **bearer(alice))
    assert submitted.status_code == 202, submitted.json()
    public_id = submitted.json()["id"]
    attempt = Job.objects.get(public_id=public_id).attempts.get()
    assert attempt.status == "queued" and attempt.dispatched_at is not None
    # Written, then settled (handed to RQ) after the answer, both in the pool.
    assert set(threads) == {"write", "settle"}
    assert threading.main_thread().name not in threads.values()
    assert [job.args[0] for job in django_rq.get_queue("default").get_jobs()] == [attempt.pk]

    got, listed = run(
        ("get", f"/api/v1/jobs/{public_id}", {}), ("get", "/api/v1/jobs", {}), **bearer(alice)
    )
    assert (got.status_code, got.json()["id"]) == (200, public_id)
    assert [job["id"] for job in listed.json()["jobs"]] == [public_id]


def test_errors_keep_their_json_shape_in_the_pool(alice, carol, repo):
    job = services.submit_job(alice, **SUBMIT)
    bad, unknown, other_teams, bad_filter = run(
        ("post", "/api/v1/jobs", {**SUBMIT, "repo": "nope"}),
        ("get", "/api/v1/jobs/nope", {}),
        ("get", f"/api/v1/jobs/{job.public_id}", {}),
        ("get", "/api/v1/jobs", {"submitter": "alice"}),
        **bearer(carol),
    )
    assert bad.status_code == 400 and bad.json()["field"] == "repo"
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    assert other_teams.status_code == 404
    assert bad_filter.status_code == 400 and bad_filter.json()["field"] == "submitter"


def test_auth_and_the_rate_limit_hold_in_the_pool(alice, repo):
    (anonymous,) = run(("get", "/api/v1/jobs", {}))
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    (revoked,) = run(("get", "/api/v1/jobs", {}), authorization="Bearer not-a-token")
    assert revoked.status_code == 401

    with override_settings(AGENTHUB_API_RATE_LIMIT="2/60"):
        answers = run(*[("get", "/api/v1/jobs", {})] * 3, **bearer(alice))
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[-1]["Retry-After"]


def test_a_session_needs_its_csrf_token_in_the_pool(alice, repo):
    async def go() -> tuple[Any, Any]:
        client = AsyncClient(enforce_csrf_checks=True)
        await client.aforce_login(alice)
        listed = await client.get("/api/v1/jobs")
        posted = await client.post("/api/v1/jobs", SUBMIT, content_type="application/json")
        return listed, posted

    listed, posted = asyncio.run(go())
    assert listed.status_code == 200
    assert posted.status_code == 403 and "CSRF" in posted.json()["detail"]


def test_concurrent_submits_share_a_transaction_and_each_gets_its_own_answer(
    alice, repo, monkeypatch
):
    groups: list[int] = []
    write_jobs = services.write_jobs

    def spy(submissions: Any) -> Any:
        groups.append(len(submissions))
        return write_jobs(submissions)

    monkeypatch.setattr(services, "write_jobs", spy)
    headers = bearer(alice)
    bodies = [{**SUBMIT, "title": f"job {n}"} for n in range(8)]
    bodies[3] = {**SUBMIT, "agent": "no-such-agent"}

    async def go() -> list[Any]:
        client = AsyncClient()
        return await asyncio.gather(
            *(
                client.post("/api/v1/jobs", body, content_type="application/json", headers=headers)
                for body in bodies
            )
        )

    answers = asyncio.run(go())
    assert [a.status_code for a in answers] == [202, 202, 202, 400, 202, 202, 202, 202]
    assert answers[3].json()["field"] == "agent"
    ids = [a.json()["id"] for n, a in enumerate(answers) if n != 3]
    assert len(set(ids)) == 7
    titles = dict(Job.objects.filter(public_id__in=ids).values_list("public_id", "title"))
    assert [titles[i] for i in ids] == [f"job {n}" for n in range(8) if n != 3]
    # The first went alone; the others arrived while it was written and went together.
    assert sum(groups) == 8 and max(groups) > 1, groups
    assert AuditEntry.objects.filter(action="job.submit").count() == 7
    verify = list(AuditEntry.objects.order_by("seq"))
    assert [e.prev_hash for e in verify[1:]] == [e.hash for e in verify[:-1]]
