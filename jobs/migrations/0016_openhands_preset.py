from django.db import migrations

from jobs.builtin import install_presets


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0015_job_model"),
    ]

    operations = [
        migrations.RunPython(install_presets, migrations.RunPython.noop),
    ]
