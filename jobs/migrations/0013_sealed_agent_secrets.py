"""Agents' secrets, plaintext JSON until now, are encrypted at rest (gateway.vault): copied
into a sealed column, then the plaintext one is dropped."""

from django.db import migrations

import gateway.vault


def seal(apps, schema_editor):
    Agent = apps.get_model("jobs", "Agent")
    for agent in Agent.objects.exclude(plain_secrets={}):
        agent.secrets = agent.plain_secrets
        agent.save(update_fields=["secrets"])


def unseal(apps, schema_editor):
    Agent = apps.get_model("jobs", "Agent")
    for agent in Agent.objects.all():
        agent.plain_secrets = agent.secrets
        agent.save(update_fields=["plain_secrets"])


class Migration(migrations.Migration):
    dependencies = [("jobs", "0012_budgets")]

    operations = [
        migrations.RenameField(model_name="agent", old_name="secrets", new_name="plain_secrets"),
        migrations.AddField(
            model_name="agent",
            name="secrets",
            field=gateway.vault.SealedJSONField(blank=True, default=dict),
        ),
        migrations.RunPython(seal, unseal),
        migrations.RemoveField(model_name="agent", name="plain_secrets"),
    ]
