"""A repository's fetch and push credentials (jobs/git_auth.py), encrypted, write-only."""

import gateway.vault
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0020_environments"),
    ]

    operations = [
        migrations.AddField(
            model_name="repository",
            name="credentials",
            field=gateway.vault.SealedJSONField(blank=True, default=dict),
        ),
    ]
