"""An RQ worker for attempts, plus the reconciler that finds lost attempts.

It is a SimpleWorker: the attempt runs in this process, so if the worker dies its sandbox dies
with it (bwrap --die-with-parent), and the reconciler of any surviving worker marks it lost.
RQ's own scheduler would run in a forked child that outlives a killed worker, so the reconciler
thread moves due scheduled jobs (webhook retries) onto their queues instead.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import django_rq
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from rq.scheduler import RQScheduler

from jobs import services

log = logging.getLogger("jobs.worker")
QUEUES = ("high", "default", "low")


class Command(BaseCommand):
    help = "Run an AgentHub worker: executes attempts and reconciles lost ones."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--burst", action="store_true", help="Exit once the queues are empty.")
        parser.add_argument("--name", default=None, help="Worker name (default: host and pid).")

    def handle(self, *args: Any, **options: Any) -> None:
        worker = django_rq.get_worker(
            *QUEUES, worker_class="rq.worker.SimpleWorker", name=options["name"]
        )
        scheduler = RQScheduler(
            QUEUES, connection=worker.connection, name=worker.name, logging_level="WARNING"
        )
        stop = threading.Event()
        reconciler = threading.Thread(
            target=_reconcile_forever, args=(stop, scheduler), daemon=True
        )
        reconciler.start()
        try:
            worker.work(burst=options["burst"], logging_level="WARNING")
        finally:
            stop.set()
            reconciler.join(timeout=5)
            scheduler.release_locks()


def _reconcile_forever(stop: threading.Event, scheduler: RQScheduler) -> None:
    while not stop.wait(settings.AGENTHUB_RECONCILE_INTERVAL):
        try:
            found = services.reconcile()
            if found["lost"]:
                log.warning("lost attempts: %s; retried as %s", found["lost"], found["retried"])
            # One worker at a time holds the lock of each queue's schedule.
            if scheduler.acquire_locks():
                scheduler.enqueue_scheduled_jobs()
        except Exception:
            log.exception("reconcile failed")
        finally:
            close_old_connections()
