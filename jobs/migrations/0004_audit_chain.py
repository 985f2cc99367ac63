"""The audit trail becomes a hash chain (seq, prev_hash, hash + the AuditHead row), its foreign
keys PROTECT instead of SET_NULL (which would have updated entries), and on PostgreSQL a trigger
refuses UPDATE and DELETE of audit entries."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

GENESIS = "0" * 64

TRIGGER = """
CREATE OR REPLACE FUNCTION agenthub_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are append-only: % refused on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER jobs_auditentry_append_only
    BEFORE UPDATE OR DELETE ON jobs_auditentry
    FOR EACH ROW EXECUTE FUNCTION agenthub_audit_append_only();
"""
DROP_TRIGGER = """
DROP TRIGGER IF EXISTS jobs_auditentry_append_only ON jobs_auditentry;
DROP FUNCTION IF EXISTS agenthub_audit_append_only();
"""


def chain_existing(apps, schema_editor):
    """Number and chain the entries written before the chain existed, in the order written."""
    from jobs.models import audit_hash

    Entry = apps.get_model("jobs", "AuditEntry")
    Head = apps.get_model("jobs", "AuditHead")
    prev, seq = GENESIS, 0
    for entry in Entry.objects.order_by("id").iterator():
        seq += 1
        entry.seq, entry.prev_hash = seq, prev
        entry.hash = audit_hash(entry, prev)
        entry.save(update_fields=["seq", "prev_hash", "hash"])
        prev = entry.hash
    Head.objects.update_or_create(pk=1, defaults={"seq": seq, "hash": prev})


def add_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGER, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_TRIGGER, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0003_docker_backend"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditHead",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("seq", models.PositiveBigIntegerField(default=0)),
                ("hash", models.CharField(default=GENESIS, max_length=64)),
            ],
        ),
        migrations.AddField(
            model_name="auditentry",
            name="seq",
            field=models.PositiveBigIntegerField(null=True),
        ),
        migrations.AddField(
            model_name="auditentry",
            name="prev_hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditentry",
            name="hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(chain_existing, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="auditentry",
            name="seq",
            field=models.PositiveBigIntegerField(unique=True),
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="team",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="jobs.team",
            ),
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="job",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="audit",
                to="jobs.job",
            ),
        ),
        migrations.AlterModelOptions(
            name="auditentry",
            options={"ordering": ["seq"], "verbose_name_plural": "audit entries"},
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(fields=["ts"], name="jobs_audite_ts_6a88ae_idx"),
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(fields=["action"], name="jobs_audite_action_21b1ed_idx"),
        ),
        migrations.RunPython(add_trigger, drop_trigger),
    ]
