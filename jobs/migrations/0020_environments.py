"""Repository environments: setup and maintenance scripts, their secrets, rebuild."""

import gateway.vault
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0019_check_results"),
    ]

    operations = [
        migrations.AddField(
            model_name="repository",
            name="environment_generation",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="repository",
            name="maintenance_script",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="repository",
            name="secrets",
            field=gateway.vault.SealedJSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="repository",
            name="setup_script",
            field=models.TextField(blank=True),
        ),
    ]
