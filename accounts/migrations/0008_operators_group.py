"""The operators group (accounts.permissions.OPERATOR_GROUP): staff in it reach /ops/."""

from django.db import migrations


def create(apps, schema_editor):
    apps.get_model("auth", "Group").objects.get_or_create(name="operators")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0007_invitation"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
