"""Agent.network (a boolean) becomes an egress policy: an agent that had the network gets
`open` (any public address, through the proxy), the others `none`."""

import egress.policy
from django.db import migrations, models


def network_to_egress(apps, schema_editor):
    Agent = apps.get_model("jobs", "Agent")
    Agent.objects.filter(network=True).update(egress="open")


def egress_to_network(apps, schema_editor):
    Agent = apps.get_model("jobs", "Agent")
    Agent.objects.exclude(egress="none").update(network=True)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0008_attempt_rounds_and_instructions"),
    ]

    operations = [
        migrations.AddField(
            model_name="agent",
            name="egress",
            field=models.CharField(
                choices=[
                    ("none", "None"),
                    ("allowlist", "Allowlist"),
                    ("open", "Open (public addresses)"),
                ],
                default="none",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="agent",
            name="egress_allowlist",
            field=models.TextField(blank=True, validators=[egress.policy.validate_allowlist]),
        ),
        migrations.RunPython(network_to_egress, egress_to_network),
        migrations.RemoveField(model_name="agent", name="network"),
    ]
