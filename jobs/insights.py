"""Statistics for the insights page and the geometry of its charts.

Three layers: pure functions over plain rows (unit-tested on known inputs), the queries that feed
them (bounded `values_list` columns and aggregates that SQLite and PostgreSQL both run), and chart
geometry. Charts carry numbers and CSS class names only: every label is written by the template,
so user data such as agent and team names is autoescaped.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal

from django.db.models import Count, Min, Q, QuerySet, Sum

from gateway.models import ModelRequest
from jobs.models import Attempt, Decision, Job, JobStatus, Review, Team

# Jobs that got as far as a reviewer's eyes; merged ones count too (a silent merge passed the
# review gate by policy).
REVIEWED_STATUSES = (
    JobStatus.NEEDS_REVIEW,
    JobStatus.APPROVED,
    JobStatus.MERGED,
    JobStatus.REJECTED,
    JobStatus.CHANGES_REQUESTED,
    JobStatus.CONFLICT,
)
# Stacking order of the per-day chart: settled outcomes at the bottom, work in flight on top.
STATUS_ORDER: tuple[str, ...] = (
    JobStatus.MERGED,
    JobStatus.NO_CHANGES,
    JobStatus.FINDINGS,
    JobStatus.APPROVED,
    JobStatus.NEEDS_REVIEW,
    JobStatus.CHANGES_REQUESTED,
    JobStatus.CONFLICT,
    JobStatus.REJECTED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.RUNNING,
    JobStatus.QUEUED,
)


# --- pure statistics ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Whole days from `start` to `end`, both included, in the site's time zone."""

    start: date
    end: date

    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def bounds(self, tz: tzinfo) -> tuple[datetime, datetime]:
        """From midnight starting the first day to midnight ending the last, as aware times."""
        after = self.end + timedelta(days=1)
        return datetime.combine(self.start, time(), tz), datetime.combine(after, time(), tz)


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default, Excel's PERCENTILE.INC).

    None for no values: an empty sample has no percentile, and the page says so.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Spread:
    count: int
    p50: float | None
    p90: float | None
    p99: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(len(values), *(percentile(values, p) for p in (50, 90, 99)))

    @property
    def text(self) -> dict[str, str]:
        """The percentiles of a spread of seconds, for people."""
        return {name: human_duration(getattr(self, name)) for name in ("p50", "p90", "p99")}


def status_label(status: str) -> str:
    return status.replace("_", " ")


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    # Thresholds sit where the rounded figure would reach the next unit's range ("100 s" no).
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    if seconds < 99.5:
        return f"{seconds:.0f} s"
    if seconds < 99.5 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 47.95 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def per_day(
    rows: Iterable[tuple[datetime, str]], period: Period, tz: tzinfo
) -> dict[date, Counter[str]]:
    """Count (timestamp, status) rows per local calendar day; every day of the period is there."""
    buckets: dict[date, Counter[str]] = {day: Counter() for day in period.days()}
    for when, status in rows:
        day = when.astimezone(tz).date()
        if day in buckets:
            buckets[day][status] += 1
    return buckets


@dataclass(frozen=True)
class AgentTimes:
    agent: str
    wait: Spread
    run: Spread


def agent_times(
    rows: Iterable[tuple[str, datetime, datetime | None, datetime | None]],
) -> list[AgentTimes]:
    """(agent, created_at, started_at, finished_at) rows of attempts → queue wait (start − create)
    and run time (finish − start) per agent, in seconds. Attempts never started have neither."""
    waits: dict[str, list[float]] = defaultdict(list)
    runs: dict[str, list[float]] = defaultdict(list)
    for agent, created, started, finished in rows:
        if started is None:
            continue
        waits[agent].append((started - created).total_seconds())
        if finished is not None:
            runs[agent].append((finished - started).total_seconds())
    return [
        AgentTimes(agent, Spread.of(waits[agent]), Spread.of(runs[agent]))
        for agent in sorted(waits)
    ]


def turnaround(rows: Iterable[tuple[datetime | None, datetime]]) -> Spread:
    """(finished_at, first approval) pairs → seconds from result to approval. An attempt approved
    without having finished (not a state the services make) is left out."""
    return Spread.of(
        [(approved - finished).total_seconds() for finished, approved in rows if finished]
    )


@dataclass(frozen=True)
class MergeRate:
    # Jobs that reached review, by their status now, in STATUS_ORDER.
    outcomes: list[tuple[str, int]]
    reached: int
    merged: int

    @property
    def rate(self) -> float | None:
        return self.merged / self.reached if self.reached else None

    @property
    def legend(self) -> list[tuple[str, str, int]]:
        return [(status, status_label(status), count) for status, count in self.outcomes]


def merge_rate(statuses: Iterable[str]) -> MergeRate:
    counts = Counter(statuses)
    outcomes = [(status, counts[status]) for status in STATUS_ORDER if counts[status]]
    return MergeRate(outcomes, sum(counts.values()), counts[JobStatus.MERGED])


# --- queries -----------------------------------------------------------------------------------


def agent_label(name: str, team: str | None) -> str:
    """Team agents may share a name across teams; the presets (no team) are unique."""
    return f"{name} ({team})" if team else name


AGENT_KEYS = ("attempt__job__agent__name", "attempt__job__agent__team__name")


def _jobs(period: Period, tz: tzinfo, team: Team | None) -> QuerySet[Job]:
    start, end = period.bounds(tz)
    jobs = Job.objects.filter(created_at__gte=start, created_at__lt=end)
    return jobs.filter(team=team) if team else jobs


def _attempts(period: Period, tz: tzinfo, team: Team | None) -> QuerySet[Attempt]:
    start, end = period.bounds(tz)
    attempts = Attempt.objects.filter(created_at__gte=start, created_at__lt=end)
    return attempts.filter(job__team=team) if team else attempts


def jobs_per_day(period: Period, tz: tzinfo, team: Team | None) -> dict[date, Counter[str]]:
    rows = _jobs(period, tz, team).values_list("created_at", "status").iterator()
    return per_day(rows, period, tz)


def times_per_agent(period: Period, tz: tzinfo, team: Team | None) -> list[AgentTimes]:
    rows = (
        _attempts(period, tz, team)
        .filter(started_at__isnull=False)
        .values_list(
            "job__agent__name", "job__agent__team__name", "created_at", "started_at", "finished_at"
        )
        .iterator()
    )
    return agent_times(
        (agent_label(name, team_name), created, started, finished)
        for name, team_name, created, started, finished in rows
    )


def approval_turnaround(period: Period, tz: tzinfo, team: Team | None) -> Spread:
    """Over attempts created in the period that finished and were approved at least once."""
    rows = (
        _attempts(period, tz, team)
        .filter(finished_at__isnull=False)
        .annotate(
            approved_at=Min("reviews__created_at", filter=Q(reviews__decision=Decision.APPROVE))
        )
        .filter(approved_at__isnull=False)
        .values_list("finished_at", "approved_at")
        .iterator()
    )
    return turnaround(rows)


def merges(period: Period, tz: tzinfo, team: Team | None) -> MergeRate:
    """Jobs created in the period that reached review: a reviewed status now, or any review (a
    job whose changes were requested is queued or running again for its follow-up)."""
    reviewed = Review.objects.values("attempt__job")
    jobs = _jobs(period, tz, team).filter(Q(status__in=REVIEWED_STATUSES) | Q(pk__in=reviewed))
    return merge_rate(jobs.values_list("status", flat=True).iterator())


@dataclass(frozen=True)
class Spend:
    """What an agent's or a team's model requests cost, as the gateway counted them."""

    label: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal

    @property
    def cost_text(self) -> str:
        return money(self.cost_usd)


def money(amount: Decimal) -> str:
    return f"${amount:.4f}" if amount < 1 else f"${amount:,.2f}"


def spend(period: Period, tz: tzinfo, team: Team | None, *, by_team: bool) -> list[Spend]:
    """Per agent (or per team), over the model requests of attempts created in the period,
    the costliest first."""
    keys: tuple[str, ...] = ("attempt__job__team__name",) if by_team else AGENT_KEYS
    rows = (
        ModelRequest.objects.filter(attempt__in=_attempts(period, tz, team))
        .values(*keys)
        .annotate(
            requests=Count("id"),
            input=Sum("input_tokens"),
            output=Sum("output_tokens"),
            cost=Sum("cost_usd"),
        )
    )
    found = [
        Spend(
            row[keys[0]] if by_team else agent_label(row[keys[0]], row[keys[1]]),
            row["requests"],
            row["input"] or 0,
            row["output"] or 0,
            row["cost"] or Decimal(0),
        )
        for row in rows
    ]
    return sorted(found, key=lambda s: (-s.cost_usd, -s.requests, s.label))


# --- charts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str
    value: float
    title: str = ""


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str


@dataclass
class DayGroup:
    day: date
    # The day's whole slot (a hover target for the tooltip) and its middle (the label's anchor).
    slot_x: float
    slot_width: float
    center: float
    label: str
    total: int
    counts: list[tuple[str, int]]
    segments: list[Rect] = field(default_factory=list)


@dataclass
class DayChart:
    width: int
    height: int
    left: int
    top: int
    bottom: float
    right: int
    groups: list[DayGroup]
    ticks: list[Label]
    statuses: list[str]

    @property
    def plot_height(self) -> float:
        return self.bottom - self.top

    @property
    def legend(self) -> list[tuple[str, str]]:
        return [(status, status_label(status)) for status in self.statuses]


def nice_ticks(highest: float, most: int = 5) -> list[float]:
    """Round axis steps (1, 2 or 5 × 10^k) from 0 up to at least `highest`, at most `most`+1."""
    magnitude = 10 ** math.floor(math.log10(highest)) if highest > 0 else 1
    for factor in (0.1, 0.2, 0.5, 1, 2, 5, 10):
        step = magnitude * factor
        if step >= 1 and math.ceil(highest / step) <= most:
            break
    count = max(math.ceil(highest / step), 1)
    return [step * n for n in range(count + 1)]


def day_chart(buckets: dict[date, Counter[str]], width: int = 900, height: int = 260) -> DayChart:
    """A stacked bar per day, statuses in STATUS_ORDER from the bottom up."""
    left, top, right, below = 40, 10, 10, 28
    bottom = height - below
    days = sorted(buckets)
    totals = [sum(buckets[day].values()) for day in days]
    ticks = nice_ticks(max(totals, default=0))
    scale = (bottom - top) / ticks[-1]
    slot = (width - left - right) / max(len(days), 1)
    bar = max(slot * 0.7, 1)
    # Label every day when they fit, else every n-th so the labels never overlap.
    every = math.ceil(len(days) / ((width - left - right) / 44)) if days else 1
    groups = []
    for index, (day, total) in enumerate(zip(days, totals, strict=True)):
        x = left + index * slot + (slot - bar) / 2
        counts = [(status, buckets[day][status]) for status in STATUS_ORDER if buckets[day][status]]
        labelled = [(status_label(status), count) for status, count in counts]
        group = DayGroup(
            day,
            round(left + index * slot, 2),
            round(slot, 2),
            round(left + (index + 0.5) * slot, 2),
            f"{day:%b} {day.day}" if index % every == 0 else "",
            total,
            labelled,
        )
        y = float(bottom)
        for status, count in counts:
            y -= count * scale
            group.segments.append(
                Rect(
                    round(x, 2), round(y, 2), round(bar, 2), round(count * scale, 2), status, count
                )
            )
        groups.append(group)
    present = {status for day in days for status in buckets[day]}
    return DayChart(
        width,
        height,
        left,
        top,
        bottom,
        width - right,
        groups,
        [Label(left - 6, round(bottom - value * scale, 2), f"{value:g}") for value in ticks],
        [status for status in STATUS_ORDER if status in present],
    )


@dataclass
class TimingRow:
    label: str
    full_label: str
    y: float
    bars: list[Rect]
    values: list[Label]


@dataclass
class TimingChart:
    width: int
    height: int
    left: int
    rows: list[TimingRow]


PERCENTILES = ("p50", "p90", "p99")


def timing_chart(spreads: list[tuple[str, Spread]], width: int = 620) -> TimingChart:
    """Per agent, three horizontal bars (p50, p90, p99) on a scale shared by all agents."""
    left, right, bar, gap, row_height = 170, 70, 10, 3, 48
    highest = max((s.p99 or 0 for _, s in spreads), default=0) or 1
    scale = (width - left - right) / highest
    rows = []
    for index, (label, spread) in enumerate(spreads):
        y = 6 + index * row_height
        bars, values = [], []
        for n, name in enumerate(PERCENTILES):
            value = getattr(spread, name)
            top = y + n * (bar + gap)
            # A value too small to see still gets a sliver, so no bar reads as missing.
            length = max(round((value or 0) * scale, 2), 1 if value else 0)
            bars.append(Rect(left, top, length, bar, name, value or 0))
            values.append(Label(left + length + 4, top + bar - 1, human_duration(value)))
        short = label if len(label) <= 22 else label[:21] + "…"
        rows.append(TimingRow(short, label, y + 3 * (bar + gap) / 2, bars, values))
    return TimingChart(width, 12 + max(len(spreads), 1) * row_height, left, rows)


def spend_chart(spends: list[Spend], width: int = 620) -> TimingChart:
    """One horizontal bar per agent or team, its cost, on a shared scale."""
    left, right, bar, row_height = 170, 80, 14, 24
    highest = max((s.cost_usd for s in spends), default=Decimal(0)) or Decimal(1)
    scale = (width - left - right) / float(highest)
    rows = []
    for index, item in enumerate(spends):
        y = 6 + index * row_height
        length = max(round(float(item.cost_usd) * scale, 2), 1 if item.cost_usd else 0)
        short = item.label if len(item.label) <= 22 else item.label[:21] + "…"
        rows.append(
            TimingRow(
                short,
                item.label,
                y + bar / 2,
                [Rect(left, y, length, bar, "cost", float(item.cost_usd))],
                [Label(left + length + 4, y + bar - 2, item.cost_text)],
            )
        )
    return TimingChart(width, 12 + max(len(spends), 1) * row_height, left, rows)


def share_bar(outcomes: list[tuple[str, int]], width: int = 460, height: int = 28) -> list[Rect]:
    """One bar split in proportion to each outcome's count."""
    total = sum(count for _, count in outcomes)
    rects, x = [], 0.0
    for status, count in outcomes:
        length = width * count / total
        title = f"{count} {status_label(status)}"
        rects.append(Rect(round(x, 2), 0, round(length, 2), height, status, count, title))
        x += length
    return rects


@dataclass
class Insights:
    period: Period
    team: Team | None
    days: DayChart
    per_day_rows: list[tuple[date, list[int], int]]
    # The per-day table's last row: each status's total over the period, then all jobs.
    status_totals: list[int]
    total: int
    agents: list[AgentTimes]
    wait_chart: TimingChart
    run_chart: TimingChart
    approvals: Spread
    merges: MergeRate
    merge_bar: list[Rect]
    agent_spend: list[Spend]
    team_spend: list[Spend]
    agent_spend_chart: TimingChart
    team_spend_chart: TimingChart


def build(period: Period, tz: tzinfo, team: Team | None) -> Insights:
    buckets = jobs_per_day(period, tz, team)
    chart = day_chart(buckets)
    agents = times_per_agent(period, tz, team)
    merged = merges(period, tz, team)
    totals = sum(buckets.values(), Counter())
    agent_spend = spend(period, tz, team, by_team=False)
    team_spend = spend(period, tz, team, by_team=True)
    return Insights(
        period=period,
        team=team,
        days=chart,
        per_day_rows=[
            (day, [buckets[day][s] for s in chart.statuses], sum(buckets[day].values()))
            for day in sorted(buckets)
        ],
        status_totals=[totals[status] for status in chart.statuses],
        total=totals.total(),
        agents=agents,
        wait_chart=timing_chart([(a.agent, a.wait) for a in agents]),
        run_chart=timing_chart([(a.agent, a.run) for a in agents if a.run.count]),
        approvals=approval_turnaround(period, tz, team),
        merges=merged,
        merge_bar=share_bar(merged.outcomes),
        agent_spend=agent_spend,
        team_spend=team_spend,
        agent_spend_chart=spend_chart(agent_spend),
        team_spend_chart=spend_chart(team_spend),
    )
