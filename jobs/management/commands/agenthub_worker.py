"""An RQ worker for attempts, plus the reconciler that finds lost attempts and the retention
thread that removes old logs and left-over workspaces.

It is a SimpleWorker: the attempt runs in this process, so if the worker dies its sandbox dies
with it (bwrap --die-with-parent), and the reconciler of any surviving worker marks it lost.
RQ's own scheduler would run in a forked child that outlives a killed worker, so the reconciler
thread moves due scheduled jobs (webhook retries) onto their queues instead.

Retention runs in a thread of its own, so a long first run never delays the reconciler; a Redis
key set with NX EX makes it run once per AGENTHUB_RETENTION_INTERVAL across all workers (see
jobs.retention.apply_if_due). RQ's CronScheduler does not fit: it is one dedicated process whose
schedule lives in its memory (one per worker would each enqueue on their own clock), and an
enqueued job runs on whichever host takes it, while each worker host has its own workspaces.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import django_rq
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from redis import Redis
from rq.scheduler import RQScheduler
from rq.worker import SimpleWorker

from jobs import retention, services
from jobs.sandbox import SandboxError, check_backend

log = logging.getLogger("jobs.worker")
QUEUES = ("high", "default", "low")


class AttemptWorker(SimpleWorker):
    """RQ's SimpleWorker, which leaves at once when it stops (a burst ends, a SIGTERM)."""

    def unsubscribe(self) -> None:
        # RQ sends UNSUBSCRIBE and only then stops its pubsub thread, counting on the reply to
        # wake the thread after the stop. When the reply comes first (a loaded host), the
        # thread goes back to a 60 s read and redis-py's stop() waits for it: the worker took a
        # minute to exit. Tripping the thread's flag first lets the reply end it.
        if self.pubsub_thread is not None:
            self.pubsub_thread._running.clear()
        super().unsubscribe()


class Command(BaseCommand):
    help = "Run an AgentHub worker: executes attempts and reconciles lost ones."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--burst", action="store_true", help="Exit once the queues are empty.")
        parser.add_argument("--name", default=None, help="Worker name (default: host and pid).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            check_backend(
                settings.AGENTHUB_SANDBOX,
                settings.AGENTHUB_DATA_DIR,
                allow_local=settings.AGENTHUB_ALLOW_LOCAL_SANDBOX,
            )
        except SandboxError as exc:
            raise CommandError(f"this worker cannot run agents: {exc}") from exc
        os.nice(settings.AGENTHUB_WORKER_NICE)
        worker = django_rq.get_worker(
            *QUEUES, worker_class=f"{__name__}.AttemptWorker", name=options["name"]
        )
        scheduler = RQScheduler(
            QUEUES, connection=worker.connection, name=worker.name, logging_level="WARNING"
        )
        stop = threading.Event()
        reconciler = threading.Thread(
            target=_reconcile_forever, args=(stop, scheduler), daemon=True
        )
        reconciler.start()
        retainer = threading.Thread(
            target=_retain_forever, args=(stop, worker.connection), daemon=True
        )
        retainer.start()
        try:
            worker.work(burst=options["burst"], logging_level="WARNING")
        finally:
            stop.set()
            reconciler.join(timeout=5)
            retainer.join(timeout=5)
            scheduler.release_locks()


def _reconcile_forever(stop: threading.Event, scheduler: RQScheduler) -> None:
    while not stop.wait(settings.AGENTHUB_RECONCILE_INTERVAL):
        try:
            found = services.reconcile()
            if found["lost"]:
                log.warning("lost attempts: %s; retried as %s", found["lost"], found["retried"])
            failed = services.sync_due()
            if failed:
                log.warning("could not sync with upstream: %s", ", ".join(failed))
            # One worker at a time holds the lock of each queue's schedule.
            if scheduler.acquire_locks():
                scheduler.enqueue_scheduled_jobs()
        except Exception:
            log.exception("reconcile failed")
        finally:
            close_old_connections()


def _retain_forever(stop: threading.Event, connection: Redis) -> None:
    while not stop.wait(settings.AGENTHUB_RECONCILE_INTERVAL):
        try:
            report = retention.apply_if_due(connection)
            if report is not None and report.removed_anything:
                log.info(
                    "retention %s: jobs %s, workspaces %s",
                    report.summary(),
                    report.jobs,
                    [w.name for w in report.workspaces],
                )
            if report is not None and report.failures:
                log.warning("retention could not remove: %s", report.failures)
        except Exception:
            log.exception("retention failed")
        finally:
            close_old_connections()
