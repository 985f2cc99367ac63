from django.db import migrations


def install_builtin_agents(apps, schema_editor):
    from jobs.builtin import install

    install(apps.get_model("jobs", "Agent"))


class Migration(migrations.Migration):
    dependencies = [("jobs", "0001_initial")]

    operations = [migrations.RunPython(install_builtin_agents, migrations.RunPython.noop)]
