"""Every change of state goes through here: one public verb per change, each owning its
transaction, its audit entries and what it schedules on commit (enqueue, publish, the
`job_settled` signal). Views, the API, consumers, the CLI's server side and the RQ tasks import
these verbs, never the modules' internals.

- audit: the chained audit trail's writers
- repositories: registering a repository, resolving refs in its store, rebuilding its
  environment
- upstream: syncing a store with its source, and an attempt's base with upstream's head
- submission: submit_job, submit_jobs (a group of submits in one transaction), write_jobs
  (the same, leaving the settling to the caller)
- dispatch: handing attempts to RQ within each team's limit
- lifecycle: an attempt's transitions and the job status they derive; cancel, re-run
- reconcile: lost attempts, redelivery, orphaned containers
- review: reviews and follow-up attempts
- reproduce: a new attempt on exactly what an earlier one ran on
- results, merge: the result a decision is about; merging and pushing it
- announce: realtime messages and the job_settled signal, on commit
"""

from jobs.services.audit import audit, audit_change
from jobs.services.dispatch import dispatch
from jobs.services.lifecycle import (
    cancel_job,
    claim_attempt,
    finish_attempt,
    heartbeat,
    mark_running,
    record_progress,
    rerun_job,
)
from jobs.services.merge import merge_job, push_job
from jobs.services.reconcile import REDELIVER_AFTER, reconcile
from jobs.services.repositories import (
    find_repository,
    rebuild_environment,
    register_repository,
)
from jobs.services.reproduce import reproduce_attempt
from jobs.services.results import approvals, result_attempt
from jobs.services.review import has_approved, review_job
from jobs.services.submission import (
    MAX_ATTEMPTS,
    Submission,
    submit_job,
    submit_jobs,
    write_jobs,
)
from jobs.services.upstream import SyncFailed, follow_upstream, sync_due, sync_repository

__all__ = [
    "MAX_ATTEMPTS",
    "REDELIVER_AFTER",
    "approvals",
    "audit",
    "audit_change",
    "cancel_job",
    "claim_attempt",
    "dispatch",
    "find_repository",
    "finish_attempt",
    "follow_upstream",
    "has_approved",
    "heartbeat",
    "mark_running",
    "rebuild_environment",
    "reproduce_attempt",
    "merge_job",
    "push_job",
    "reconcile",
    "record_progress",
    "register_repository",
    "rerun_job",
    "result_attempt",
    "review_job",
    "submit_job",
    "submit_jobs",
    "Submission",
    "sync_due",
    "sync_repository",
    "SyncFailed",
    "write_jobs",
]
