"""The audit trail: a keyed hash chain that `verify_audit` checks, append-only through the ORM and
(on PostgreSQL) the database itself, and exactly one entry, with the right actor, per action."""

from __future__ import annotations

import hashlib
import threading
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.utils import timezone

from jobs import services
from jobs.audit_chain import verify
from jobs.errors import Forbidden
from jobs.models import Agent, AuditEntry, AuditHead, Membership
from tests.conftest import shell_agent
from tests.test_review import finished_job

pytestmark = pytest.mark.django_db

ON_POSTGRESQL = connection.vendor == "postgresql"


def trail(n: int = 5) -> list[AuditEntry]:
    return [services.audit("system", "test.step", target=f"step {i}", i=i) for i in range(n)]


def tamper(sql: str, params: list[object]) -> None:
    """Change the table behind the application's back, as someone with database access would;
    on PostgreSQL that means getting past the trigger first (as a superuser can)."""
    with connection.cursor() as cursor:
        if ON_POSTGRESQL:
            cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)
        if ON_POSTGRESQL:
            cursor.execute("SET session_replication_role = DEFAULT")


def verify_audit() -> str:
    out = StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


@pytest.mark.database  # the chain's head is a locked row
class TestChain:
    def test_entries_are_numbered_and_linked(self):
        entries = trail(3)
        assert [e.seq for e in entries] == [1, 2, 3]
        assert entries[0].prev_hash == "0" * 64
        assert entries[1].prev_hash == entries[0].hash
        assert entries[2].prev_hash == entries[1].hash
        head = AuditHead.objects.get()
        assert (head.seq, head.hash) == (3, entries[2].hash)
        assert "Audit trail intact: 3 entries" in verify_audit()

    def test_an_edited_entry_is_named(self):
        entries = trail()
        tamper("UPDATE jobs_auditentry SET target = %s WHERE id = %s", ["rewritten", entries[2].pk])
        verdict = verify()
        assert verdict.entry_id == entries[2].pk
        assert "entry #3" in verdict.problem and "altered" in verdict.problem
        with pytest.raises(CommandError, match=r"after 2 good entries: entry #3 .* was altered"):
            verify_audit()

    def test_an_edited_entry_with_a_recomputed_plain_hash_is_still_caught(self):
        """Without the key, whoever edits a row cannot make its hash fit again."""
        entries = trail()
        forged = hashlib.sha256(b"anything").hexdigest()
        tamper(
            "UPDATE jobs_auditentry SET actor_name = %s, hash = %s WHERE id = %s",
            ["mallory", forged, entries[1].pk],
        )
        assert verify().entry_id == entries[1].pk

    def test_a_deleted_entry_is_named(self):
        entries = trail()
        tamper("DELETE FROM jobs_auditentry WHERE id = %s", [entries[2].pk])
        verdict = verify()
        assert "Entry #3 was removed" in verdict.problem
        assert verdict.entry_id == entries[3].pk
        with pytest.raises(CommandError, match="Entry #3 was removed"):
            verify_audit()

    def test_entries_removed_from_the_end_are_noticed(self):
        entries = trail()
        tamper("DELETE FROM jobs_auditentry WHERE id IN (%s, %s)", [entries[3].pk, entries[4].pk])
        assert "Entry #4-#5 was removed from the end" in verify().problem

    def test_an_inserted_entry_is_named(self):
        entries = trail()
        # A well-formed row claiming the place after entry 2, linked to it by its hash.
        tamper(
            "INSERT INTO jobs_auditentry (seq, ts, actor_name, action, target, before, after, "
            "data, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, '', '', %s, %s, %s)",
            [
                1000,
                timezone.now(),
                "mallory",
                "review.approve",
                "job",
                "{}",
                entries[-1].hash,
                hashlib.sha256(b"x").hexdigest(),
            ],
        )
        inserted = AuditEntry.objects.get(seq=1000)
        verdict = verify()
        assert verdict.entry_id == inserted.pk
        assert "entry #1000" in verdict.problem and "inserted" in verdict.problem

    def test_a_copied_entry_is_named(self):
        """A genuine row copied elsewhere in the chain has a valid hash but does not link."""
        entries = trail()
        tamper(
            "INSERT INTO jobs_auditentry (seq, ts, actor_name, action, target, before, after, "
            "data, prev_hash, hash) SELECT 1000, ts, actor_name, action, target, before, "
            "after, data, prev_hash, hash FROM jobs_auditentry WHERE id = %s",
            [entries[1].pk],
        )
        assert verify().entry_id == AuditEntry.objects.get(seq=1000).pk

    def test_the_orm_refuses_updates_and_deletes(self):
        entry = trail(1)[0]
        entry.target = "changed"
        with pytest.raises(ValidationError, match="append-only"):
            entry.save()
        with pytest.raises(ValidationError, match="append-only"):
            entry.delete()


@pytest.mark.skipif(
    not ON_POSTGRESQL, reason="the trigger is PostgreSQL's; .ci/run runs this file there too"
)
@pytest.mark.database
class TestPostgresTrigger:
    @pytest.mark.parametrize(
        "sql",
        [
            "UPDATE jobs_auditentry SET target = 'rewritten' WHERE id = %s",
            "DELETE FROM jobs_auditentry WHERE id = %s",
        ],
    )
    def test_update_and_delete_are_refused_by_the_database(self, sql):
        entry = trail(1)[0]
        with pytest.raises(DatabaseError, match="append-only"):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql, [entry.pk])
        assert AuditEntry.objects.get(pk=entry.pk).target == entry.target

    def test_queryset_update_is_refused_too(self):
        trail(2)
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            AuditEntry.objects.update(actor_name="nobody")


@pytest.mark.database
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_do_not_fork_the_chain():
    per_thread, threads = 15, 4
    failures: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(per_thread):
                with transaction.atomic():
                    services.audit("system", "test.concurrent", writer=n, i=i)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=write, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert failures == []
    seqs = list(AuditEntry.objects.values_list("seq", flat=True))
    assert seqs == list(range(1, per_thread * threads + 1))
    assert verify().ok


@pytest.mark.database
class TestOneEntryPerAction:
    """Each audited action writes exactly one entry of its kind, naming who did it."""

    def entries(self, action: str) -> list[tuple[str, str | None]]:
        return [
            (e.actor_name, e.actor_id and e.actor.get_username())
            for e in AuditEntry.objects.filter(action=action)
        ]

    def test_job_lifecycle_and_people(self, alice, bob, repo):
        job = services.submit_job(alice, repo="demo", agent="shell", prompt="true")
        assert self.entries("job.submit") == [("alice", "alice")]
        services.cancel_job(alice, job)
        assert self.entries("job.cancel") == [("alice", "alice")]
        assert self.entries("attempt.cancelled") == [("system", None)]
        job.refresh_from_db()
        services.rerun_job(bob, job)
        assert self.entries("job.rerun") == [("bob", "bob")]

    def test_reviews_refusals_and_merge(self, alice, bob, repo):
        job = finished_job(alice)
        with pytest.raises(Forbidden):
            services.review_job(alice, job, "approve")
        assert self.entries("review.refused") == [("alice", "alice")]
        services.review_job(bob, job, "approve")
        assert self.entries("review.approve") == [("bob", "bob")]
        services.merge_job(bob, job)
        assert self.entries("job.merge") == [("bob", "bob")]
        statuses = [
            (e.before, e.after) for e in AuditEntry.objects.filter(job=job, action="job.status")
        ]
        assert statuses == [("queued", "running"), ("running", "needs_review")]

    def test_a_change_to_an_agent_names_fields_and_hides_secrets(self, bob, team):
        agent = shell_agent(team, name="deploy", secrets={"TOKEN": "s3cret"})
        services.audit_change(
            bob,
            "update",
            agent,
            changes={"timeout_seconds": (60, 120), "secrets": ({"TOKEN": "s3cret"}, {"KEY": "x"})},
        )
        entry = AuditEntry.objects.get(action="agent.update")
        assert (entry.actor, entry.team, entry.target) == (bob, team, "deploy")
        assert entry.data["changes"] == {
            "secrets": [["TOKEN"], ["KEY"]],
            "timeout_seconds": [60, 120],
        }
        assert "s3cret" not in str(entry.data)

    def test_sign_in_failed_sign_in_and_sign_out(self, alice):
        client = Client()
        client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
        client.post("/accounts/login/", {"username": "alice", "password": "pw"})
        client.post("/accounts/logout/")
        assert self.entries("auth.sign_in_failed") == [("anonymous", None)]
        failed = AuditEntry.objects.get(action="auth.sign_in_failed")
        assert failed.target == "alice" and "wrong" not in str(failed.data)
        assert self.entries("auth.sign_in") == [("alice", "alice")]
        assert self.entries("auth.sign_out") == [("alice", "alice")]

    def test_token_issued_from_the_command(self, alice):
        call_command("issue_token", "alice", "--name", "ci", stdout=StringIO())
        assert [e.target for e in AuditEntry.objects.filter(action="token.issue")] == ["alice:ci"]


class TestProtect:
    def test_people_and_teams_with_history_cannot_be_deleted(self, alice, team):
        from django.db.models import ProtectedError

        services.audit(alice, "test.step", team=team)
        Membership.objects.filter(user=alice).delete()
        with pytest.raises(ProtectedError):
            alice.delete()
        with pytest.raises(ProtectedError):
            team.delete()


class TestAgentValidation:
    def agent(self, **fields: object) -> Agent:
        return Agent(name="x", command=fields.pop("command", "echo hi"), **fields)

    def test_a_good_agent_passes(self):
        self.agent(image="registry.example.com:5000/team/tool:1.2").full_clean()
        self.agent(image="agenthub-sandbox@sha256:" + "a" * 64).full_clean()

    @pytest.mark.parametrize("image", ["Not An Image!!", "UPPER/case", "tool:", "a//b"])
    def test_an_image_name_that_is_not_one(self, image):
        with pytest.raises(ValidationError) as caught:
            self.agent(image=image).full_clean()
        assert "is not an image name" in caught.value.message_dict["image"][0]

    def test_a_command_bash_cannot_parse(self):
        with pytest.raises(ValidationError) as caught:
            self.agent(command="if then fi (").full_clean()
        assert "not a valid bash script" in caught.value.message_dict["command"][0]

    def test_an_unknown_agenthub_variable(self):
        with pytest.raises(ValidationError) as caught:
            self.agent(command='cat "$AGENTHUB_PROMT_FILE"').full_clean()
        assert "$AGENTHUB_PROMT_FILE" in caught.value.message_dict["command"][0]

    def test_limits_out_of_range(self):
        with pytest.raises(ValidationError) as caught:
            self.agent(timeout_seconds=0, memory_mb=10).full_clean()
        assert set(caught.value.message_dict) >= {"timeout_seconds", "memory_mb"}

    def test_the_command_is_parsed_not_run(self, tmp_path):
        marker = tmp_path / "ran"
        self.agent(command=f"touch {marker}").full_clean()
        assert not marker.exists()
