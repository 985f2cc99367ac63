from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import filesizeformat, pluralize

from jobs import retention


class Command(BaseCommand):
    help = (
        "Delete the logs of attempts that finished long ago and attempt workspaces left on disk."
        " Jobs, results, reviews and the audit trail are kept."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would be removed; remove nothing."
        )
        parser.add_argument(
            "--events-days",
            type=int,
            help="Remove logs of attempts finished more than N days ago "
            "(default: AGENTHUB_EVENT_RETENTION_DAYS).",
        )
        parser.add_argument(
            "--workspaces-days",
            type=int,
            help="Remove workspaces of attempts finished more than N days ago "
            "(default: AGENTHUB_WORKSPACE_RETENTION_DAYS).",
        )
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        for option, minimum in (("events_days", 1), ("workspaces_days", 0)):
            value = options[option]
            if value is not None and value < minimum:
                name = "--" + option.replace("_", "-")
                raise CommandError(f"{name} must be at least {minimum} (got {value}).")
        report = retention.apply(
            dry_run=options["dry_run"],
            event_days=options["events_days"],
            workspace_days=options["workspaces_days"],
        )
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write(_describe(report))
        if report.failures:
            count = len(report.failures)
            raise CommandError(f"{count} workspace{pluralize(count)} could not be removed.")


def _describe(report: retention.Report) -> str:
    verb = "Would remove" if report.dry_run else "Removed"
    lines = ["Dry run: nothing was removed."] if report.dry_run else []
    lines.append(
        f"{verb} {report.events} log event{pluralize(report.events)}"
        f" of {len(report.logs)} attempt{pluralize(len(report.logs))}"
        f" finished more than {report.event_days} days ago."
    )
    lines += [f"  job {log.job} attempt {log.attempt}: {log.events} events" for log in report.logs]
    lines.append(
        f"{verb} {len(report.workspaces)} workspace{pluralize(len(report.workspaces))}"
        f" ({filesizeformat(report.bytes_freed)})"
        f" of attempts finished more than {report.workspace_days} days ago or gone."
    )
    lines += [f"  {w.name}: {w.reason}, {filesizeformat(w.bytes)}" for w in report.workspaces]
    if report.checkouts:
        lines.append(f"{verb} {len(report.checkouts)} cached checkouts no attempt used since.")
        lines += [f"  {name}" for name in report.checkouts]
    if report.failures:
        lines.append(f"Could not remove {len(report.failures)}:")
        lines += [f"  {failure}" for failure in report.failures]
    return "\n".join(lines)
