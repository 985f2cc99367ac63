"""Check results: the `findings` job status, and the checks' presets printing `::summary::`."""

from django.db import migrations, models

from jobs.builtin import install_presets


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0018_push_status"),
    ]

    operations = [
        migrations.AlterField(
            model_name="job",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("running", "Running"),
                    ("needs_review", "Needs Review"),
                    ("approved", "Approved"),
                    ("merged", "Merged"),
                    ("no_changes", "No Changes"),
                    ("findings", "Findings"),
                    ("failed", "Failed"),
                    ("cancelled", "Cancelled"),
                    ("rejected", "Rejected"),
                    ("changes_requested", "Changes Requested"),
                    ("conflict", "Conflict"),
                ],
                default="queued",
                max_length=20,
            ),
        ),
        migrations.RunPython(install_presets, migrations.RunPython.noop),
    ]
