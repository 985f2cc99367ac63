"""Staff pages: the operations page (real RQ workers and queues on Redis), the insights page
(statistics on known timestamps, charts as escaped SVG), and the RQ dashboard's door."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import django_rq
import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone
from rq.worker import Worker

from gateway.models import ModelRequest
from jobs import insights, services
from jobs.insights import Period, Spread
from jobs.models import Agent, Attempt, AttemptStatus, Job, JobStatus, Repository, Review
from tests.conftest import shell_agent, wait_for

STAFF_PAGES = ("/ops/", "/insights/", "/django-rq/")


@pytest.fixture
def staff(db: None) -> User:
    return User.objects.create_user("admin", "admin@example.com", "pw", is_staff=True)


def clear_rq_queues() -> None:
    """Empties the three queues and forgets their failed jobs. The failed registries are dropped
    as keys: deleting each job through RQ fetches its executions, and one whose execution hash
    has already expired makes RQ raise ("Execution … not found in Redis")."""
    for name in ("high", "default", "low"):
        queue = django_rq.get_queue(name)
        queue.empty()
        queue.connection.delete(queue.failed_job_registry.key)


@pytest.fixture
def empty_queues():
    clear_rq_queues()
    yield
    clear_rq_queues()


# --- who may enter -----------------------------------------------------------------------------


# AgentHub's own staff pages; django-rq's dashboard keeps the admin's sign-in.
OWN_STAFF_PAGES = ("/ops/", "/insights/")


@pytest.mark.django_db
@pytest.mark.parametrize("path", OWN_STAFF_PAGES)
def test_anonymous_visitors_are_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


@pytest.mark.parametrize("path", OWN_STAFF_PAGES)
def test_signed_in_non_staff_are_told_the_page_is_for_staff_in_the_apps_layout(client, alice, path):
    client.force_login(alice)
    response = client.get(path)
    assert response.status_code == 403
    page = response.content.decode()
    assert "This page is for AgentHub&#x27;s staff" in page
    assert 'class="topbar"' in page and "Back to the dashboard" in page
    assert "Django administration" not in page


@pytest.mark.parametrize("signed_in", [False, True])
def test_django_rqs_dashboard_keeps_the_admins_sign_in(client, alice, signed_in):
    if signed_in:
        client.force_login(alice)
    response = client.get("/django-rq/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/django-rq/"


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_staff_see_the_pages(client, staff, path):
    client.force_login(staff)
    assert client.get(path).status_code == 200


@pytest.mark.django_db
def test_rq_statistics_json_needs_staff_too(client, alice):
    assert client.get("/django-rq/stats.json/").status_code == 401
    client.force_login(alice)
    assert client.get("/django-rq/stats.json/").status_code == 401


# --- operations --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_idle_system_reads_as_healthy(client, staff, empty_queues):
    client.force_login(staff)
    page = client.get("/ops/").content.decode()
    # Workers killed by earlier tests stay registered in Redis until their key expires.
    assert re.search(r"\d+ workers? alive · 0 queued · oldest waiting – · 0 stuck", page)
    assert 'class="ops-summary good"' in page
    assert "Nothing is queued." in page


def test_it_shows_a_live_worker_and_the_attempt_it_runs(client, staff, alice, repo, workers):
    shell_agent(repo.team)
    proc = workers.start()

    def registered() -> Worker | None:
        found = Worker.all(connection=django_rq.get_connection())
        return next((worker for worker in found if worker.pid == proc.pid), None)

    worker = wait_for(registered, what="the worker to register")
    job = services.submit_job(alice, repo="demo", agent="sh", prompt="sleep 60")
    attempt = wait_for(
        lambda: Attempt.objects.filter(job=job, status=AttemptStatus.RUNNING).first(),
        what="the attempt to run",
    )
    client.force_login(staff)
    page = client.get("/ops/").content.decode()
    assert re.search(r"\d+ workers? alive · 0 queued", page)
    assert attempt.worker == f"{worker.hostname}:{worker.pid}"
    row = page[page.index(f"<code>{worker.name}</code>") :].split("</tr>")[0]
    assert "state-busy" in row
    assert f"<code>agenthub-{job.public_id}-1</code>" in row
    assert f'href="/jobs/{job.public_id}/">{job.public_id}/1</a>' in row
    assert "<td>high, default, low</td>" in row

    services.cancel_job(alice, job)
    wait_for(lambda: Attempt.objects.get(pk=attempt.pk).is_finished, what="the cancel")


def test_it_counts_failed_rq_jobs(client, staff, workers, empty_queues):
    # A delivery id that is not one raises in the worker: a real failed RQ job.
    django_rq.get_queue("low").enqueue("hooks.tasks.deliver", "not-a-delivery-id")
    workers.burst()
    client.force_login(staff)
    page = client.get("/ops/").content.decode()
    assert "1 failed RQ job kept" in page
    assert re.search(r"<tr><td>low</td><td>0</td><td>\d+</td><td class=\"bad\">1</td></tr>", page)


@pytest.mark.django_db
def test_it_shows_the_depth_of_each_rq_queue(client, staff, empty_queues):
    for _ in range(3):
        django_rq.get_queue("high").enqueue("jobs.tasks.run_attempt", 0)
    client.force_login(staff)
    page = client.get("/ops/").content.decode()
    assert "<tr><td>high</td><td>3</td><td>0</td><td>0</td></tr>" in page
    # Only the waiting column: a worker an earlier test killed can leave a "started" entry on
    # default until RQ's own cleanup removes it.
    assert "<tr><td>default</td><td>0</td>" in page


@pytest.mark.django_db
def test_it_shows_the_oldest_queued_attempt_and_what_holds_jobs_back(client, staff, alice, repo):
    old = services.submit_job(alice, repo="demo", agent="shell", prompt="true", title="old one")
    services.submit_job(alice, repo="demo", agent="shell", prompt="true", title="new one")
    old.attempts.update(created_at=timezone.now() - timedelta(minutes=20))
    # Submit dispatches within the team's limit; these two are held back as if it were full.
    Attempt.objects.update(dispatched_at=None)
    client.force_login(staff)
    page = client.get("/ops/").content.decode()
    assert re.search(r"alive · 2 queued · oldest waiting 20 min · 0 stuck", page)
    assert 'class="ops-summary warn"' in page
    oldest = page[page.index("Oldest queued attempt") :]
    assert f'<a href="/jobs/{old.public_id}/">{old.public_id}</a> old one' in oldest
    assert "<dt>Team</dt><dd>demo</dd>" in oldest
    assert "held back by the team's concurrency limit" in oldest
    assert '<strong class="big-inline">2</strong> queued attempts not yet handed' in page
    assert "<tr><td>demo</td><td>2</td><td>0</td><td>2</td></tr>" in page


@pytest.mark.django_db
def test_it_lists_attempts_stuck_in_running(client, staff, alice, repo, settings):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    now = timezone.now()
    job.attempts.update(
        status=AttemptStatus.RUNNING,
        dispatched_at=now,
        started_at=now,
        heartbeat_at=now - timedelta(seconds=settings.AGENTHUB_HEARTBEAT_TIMEOUT + 60),
        worker="gone-host:4242",
    )
    fresh = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
    fresh.attempts.update(status=AttemptStatus.RUNNING, heartbeat_at=now, worker="here:1")
    client.force_login(staff)
    page = client.get("/ops/").content.decode()
    assert "· 0 queued · oldest waiting – · 1 stuck" in page
    assert 'class="ops-summary warn"' in page
    stuck = page[page.index("Stuck attempts") :]
    assert f'<a href="/jobs/{job.public_id}/">{job.public_id}/1</a>' in stuck
    assert "<code>gone-host:4242</code>" in stuck
    assert fresh.public_id not in stuck


@pytest.mark.django_db
def test_it_still_renders_when_redis_is_down(client, staff):
    unreachable = {"URL": "redis://127.0.0.1:1/0"}
    client.force_login(staff)
    with override_settings(RQ_QUEUES={n: unreachable for n in ("high", "default", "low")}):
        response = client.get("/ops/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "Redis unreachable · 0 queued" in page and 'class="ops-summary warn"' in page
    assert "Redis cannot be reached" in page


@pytest.mark.django_db
def test_htmx_polls_get_just_the_health_region(client, staff):
    client.force_login(staff)
    body = client.get("/ops/", HTTP_HX_REQUEST="true").content.decode()
    assert body.lstrip().startswith('<div id="ops-health"')
    assert "<html" not in body


# --- statistics, pure --------------------------------------------------------------------------


def test_percentiles_interpolate_between_ranks():
    values = [10, 20, 60]
    assert insights.percentile(values, 50) == 20
    assert insights.percentile(values, 90) == pytest.approx(52)
    assert insights.percentile(values, 99) == pytest.approx(59.2)
    assert insights.percentile([7], 90) == 7
    assert insights.percentile([], 50) is None
    assert insights.percentile(list(range(1, 101)), 50) == pytest.approx(50.5)
    assert Spread.of([4, 1, 3, 2]) == Spread(4, 2.5, pytest.approx(3.7), pytest.approx(3.97))


def test_days_are_counted_in_the_site_time_zone():
    tz = ZoneInfo("Europe/Berlin")
    rows = [
        (datetime(2024, 3, 1, 22, 30, tzinfo=UTC), "merged"),  # 23:30 on 1 March in Berlin
        (datetime(2024, 3, 1, 23, 30, tzinfo=UTC), "failed"),  # already 2 March there
        (datetime(2024, 3, 2, 12, 0, tzinfo=UTC), "failed"),
        (datetime(2024, 3, 9, 12, 0, tzinfo=UTC), "merged"),  # outside the period
    ]
    buckets = insights.per_day(rows, Period(date(2024, 3, 1), date(2024, 3, 3)), tz)
    assert buckets == {
        date(2024, 3, 1): Counter(merged=1),
        date(2024, 3, 2): Counter(failed=2),
        date(2024, 3, 3): Counter(),
    }


def test_a_period_spans_whole_local_days():
    tz = ZoneInfo("America/New_York")
    start, end = Period(date(2024, 3, 9), date(2024, 3, 10)).bounds(tz)
    assert start == datetime(2024, 3, 9, 5, 0, tzinfo=UTC)
    assert end == datetime(2024, 3, 11, 4, 0, tzinfo=UTC)  # after the switch to summer time


def test_durations_read_as_people_say_them():
    assert insights.human_duration(None) == "–"
    assert insights.human_duration(2.54) == "2.5 s"
    assert insights.human_duration(42) == "42 s"
    assert insights.human_duration(9.97) == "10 s"
    assert insights.human_duration(99.6) == "2 min"
    assert insights.human_duration(4 * 60 + 10) == "4 min"
    assert insights.human_duration(3 * 3600) == "3.0 h"
    assert insights.human_duration(3 * 86400) == "3.0 d"


def test_axis_ticks_are_round_numbers():
    assert insights.nice_ticks(0) == [0, 1]
    assert insights.nice_ticks(3) == [0, 1, 2, 3]
    assert insights.nice_ticks(7) == [0, 2, 4, 6, 8]
    assert insights.nice_ticks(130) == [0, 50, 100, 150]


def test_day_chart_stacks_each_days_statuses_to_its_total():
    buckets = {date(2024, 3, 1): Counter(merged=2, failed=1), date(2024, 3, 2): Counter()}
    chart = insights.day_chart(buckets)
    first, second = chart.groups
    assert [(bar.css, bar.value) for bar in first.segments] == [("merged", 2), ("failed", 1)]
    assert first.segments[0].y + first.segments[0].height == chart.bottom  # from the baseline
    assert first.segments[1].y + first.segments[1].height == first.segments[0].y  # stacked
    assert first.segments[1].y == chart.top  # 3 is the top tick
    assert second.segments == []
    assert chart.statuses == ["merged", "failed"]


# --- insights, end to end ----------------------------------------------------------------------

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
WAITS = {"alpha": [10, 20, 60], "beta": [5, 5, 5], "<script>alert(1)</script>": [30]}


def _job(team, repository, agent, user, *, status, at, **extra):
    return Job.objects.create(
        team=team,
        repository=repository,
        agent=agent,
        submitter=user,
        title="t",
        prompt="p",
        base_ref="main",
        base_commit="0" * 40,
        target_branch="main",
        status=status,
        created_at=at,
        **extra,
    )


def _attempt(job, *, wait, run, number=1):
    started = job.created_at + timedelta(seconds=wait)
    return Attempt.objects.create(
        job=job,
        number=number,
        status=AttemptStatus.SUCCEEDED,
        branch=f"b{job.pk}",
        base_commit="0" * 40,
        start_commit="0" * 40,
        created_at=job.created_at,
        dispatched_at=job.created_at,
        started_at=started,
        finished_at=started + timedelta(seconds=run),
    )


@pytest.fixture
def history(team, alice, bob, other_team):
    """Jobs on 6 and 7 May 2024 with known waits, run times and reviews, plus another team's."""
    repository = Repository.objects.create(team=team, name="r", source="/r", store_path="/r")
    statuses = [JobStatus.MERGED, JobStatus.REJECTED, JobStatus.NEEDS_REVIEW]
    attempts = {}
    for name, waits in WAITS.items():
        agent = Agent.objects.create(team=team, name=name, command="true")
        for index, wait in enumerate(waits):
            at = T0 + timedelta(days=index % 2, minutes=index)
            job = _job(team, repository, agent, alice, status=statuses[index], at=at)
            attempts[(name, index)] = _attempt(job, wait=wait, run=100 * (index + 1))
    # alpha's jobs: approved 60 s and 300 s after their result (the second approval of the first
    # one is later and does not count), the third rejected.
    for (name, index), after in {("alpha", 0): 60, ("alpha", 1): 300}.items():
        attempt = attempts[(name, index)]
        for delay in (after, after + 1000):
            Review.objects.create(
                attempt=attempt,
                reviewer=bob,
                decision="approve",
                diff_hash="h",
                created_at=attempt.finished_at + timedelta(seconds=delay),
            )
    # Not reviewed: failed and no_changes jobs never count towards the merge rate.
    beta = Agent.objects.get(team=team, name="beta")
    _job(team, repository, beta, alice, status=JobStatus.FAILED, at=T0)
    _job(team, repository, beta, alice, status=JobStatus.NO_CHANGES, at=T0)
    # Changes were requested on this one: its follow-up runs, and it did reach review.
    followup = _job(team, repository, beta, alice, status=JobStatus.RUNNING, at=T0)
    first = Attempt.objects.create(
        job=followup, number=1, branch="f", base_commit="0", start_commit="0", created_at=T0
    )
    Review.objects.create(attempt=first, reviewer=bob, decision="request_changes", diff_hash="h")
    # Another team's merged job, a day later.
    acme_repo = Repository.objects.create(team=other_team, name="r", source="/a", store_path="/a")
    acme_agent = Agent.objects.create(team=other_team, name="alpha", command="true")
    acme_job = _job(
        other_team, acme_repo, acme_agent, alice, status=JobStatus.MERGED, at=T0 + timedelta(1)
    )
    _attempt(acme_job, wait=1000, run=1)
    return attempts


def test_insights_numbers_match_the_jobs_made(history):
    utc = ZoneInfo("UTC")
    report = insights.build(Period(date(2024, 5, 5), date(2024, 5, 8)), utc, None)
    assert [(day, total) for day, _, total in report.per_day_rows] == [
        (date(2024, 5, 5), 0),
        (date(2024, 5, 6), 8),  # alpha, beta: 0 and 2; script 0; failed, no_changes, follow-up
        (date(2024, 5, 7), 3),  # alpha 1, beta 1, acme's
        (date(2024, 5, 8), 0),
    ]
    agents = {row.agent: row for row in report.agents}
    assert list(agents) == [
        "<script>alert(1)</script> (demo)",
        "alpha (acme)",
        "alpha (demo)",
        "beta (demo)",
    ]
    assert agents["alpha (demo)"].wait == Spread(3, 20, pytest.approx(52), pytest.approx(59.2))
    assert agents["alpha (demo)"].run == Spread(3, 200, pytest.approx(280), pytest.approx(298))
    assert agents["beta (demo)"].wait == Spread(3, 5, 5, 5)
    assert agents["alpha (acme)"].wait == Spread(1, 1000, 1000, 1000)
    assert report.approvals == Spread(2, 180, pytest.approx(276), pytest.approx(297.6))
    # Reached review: 4 merged (acme's too), 2 needing review, 2 rejected, the follow-up.
    assert report.merges.reached == 9 and report.merges.merged == 4
    assert report.merges.outcomes == [
        ("merged", 4),
        ("needs_review", 2),
        ("rejected", 2),
        ("running", 1),
    ]


def test_insights_filter_by_team(history, team):
    report = insights.build(Period(date(2024, 5, 6), date(2024, 5, 7)), ZoneInfo("UTC"), team)
    assert sum(total for _, _, total in report.per_day_rows) == 10
    assert "alpha (acme)" not in {row.agent for row in report.agents}
    assert (report.merges.merged, report.merges.reached) == (3, 8)


def test_insights_page_draws_one_bar_group_per_day_and_escapes_agent_names(client, staff, history):
    client.force_login(staff)
    response = client.get("/insights/", {"from": "2024-05-01", "to": "2024-05-10"})
    page = response.content.decode()
    assert response.status_code == 200
    svg = page[page.index('<svg class="chart day-chart"') : page.index("</svg>")]
    days = re.findall(r'<g class="day" data-day="([\d-]+)">', svg)
    assert days == [f"2024-05-{n:02d}" for n in range(1, 11)]
    assert "Mon 6 May: 8 jobs, 3 merged, 1 no changes, 2 needs review, 1 failed, 1 running" in svg
    assert 'class="st st-merged"' in svg
    timing = page[page.index('<svg class="chart timing"') :].split("</svg>")[0]
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; (demo)</title>" in timing
    assert "&lt;script&gt;alert(1)&lt;/scr…</text>" in timing  # the label, shortened
    assert "<script>alert(1)" not in page
    assert 'style="' not in page  # the CSP would block it
    assert '<span class="figure">44%</span>' in page  # 4 of 9 merged
    assert '<span class="figure">4 / 9</span>' in page


def _requests(attempt, *costs):
    for cost in costs:
        ModelRequest.objects.create(
            attempt=attempt,
            provider="openai",
            path="/v1/responses",
            input_tokens=100,
            output_tokens=10,
            cost_usd=Decimal(cost),
        )


def test_insights_show_model_spend_per_agent_and_team(client, staff, history, other_team):
    _requests(history[("alpha", 0)], "0.50", "0.25")
    _requests(history[("beta", 1)], "0.0125")
    acme = Attempt.objects.get(job__team=other_team)
    _requests(acme, "2")
    period = Period(date(2024, 5, 5), date(2024, 5, 8))
    report = insights.build(period, ZoneInfo("UTC"), None)
    assert [(s.label, s.requests, s.input_tokens, s.cost_text) for s in report.agent_spend] == [
        ("alpha (acme)", 1, 100, "$2.00"),
        ("alpha (demo)", 2, 200, "$0.7500"),
        ("beta (demo)", 1, 100, "$0.0125"),
    ]
    assert [(s.label, s.cost_usd) for s in report.team_spend] == [
        ("acme", Decimal(2)),
        ("demo", Decimal("0.7625")),
    ]
    bars = [row.bars[0].width for row in report.agent_spend_chart.rows]
    assert bars[0] > bars[1] > bars[2] > 0  # one scale, the costliest longest
    # A team's own page counts its own agents only.
    team_only = insights.build(period, ZoneInfo("UTC"), history[("alpha", 0)].job.team)
    assert [s.label for s in team_only.team_spend] == ["demo"]

    client.force_login(staff)
    page = client.get("/insights/", {"from": "2024-05-01", "to": "2024-05-10"}).content.decode()
    table = page[page.index('data-role="spend"') :].split("</table>")[0]
    assert "<td>alpha (acme)</td><td>1</td><td>100</td><td>10</td><td>$2.00</td>" in table
    assert 'aria-label="Model cost per team"' in page


def test_insights_default_to_the_last_30_days(client, staff):
    client.force_login(staff)
    page = client.get("/insights/").content.decode()
    today = timezone.localdate()
    assert f'value="{today.isoformat()}"' in page
    assert f'value="{(today - timedelta(days=29)).isoformat()}"' in page
    assert len(re.findall(r'<g class="day"', page)) == 30
    assert "No jobs were submitted in this period." in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"from": "yesterday"}, "&#x27;from&#x27; must be a date written YYYY-MM-DD."),
        ({"to": "2024-13-01"}, "&#x27;to&#x27; must be a date written YYYY-MM-DD."),
        (
            {"from": "2024-05-10", "to": "2024-05-01"},
            "&#x27;from&#x27; (2024-05-10) is after &#x27;to&#x27; (2024-05-01)",
        ),
        ({"from": "2020-01-01", "to": "2024-01-01"}, "pick at most 366 days"),
        ({"team": "nope"}, "No team of that name."),
    ],
)
def test_bad_insight_queries_say_what_was_wrong(client, staff, query, message):
    client.force_login(staff)
    response = client.get("/insights/", query)
    assert response.status_code == 400
    assert message in response.content.decode()
