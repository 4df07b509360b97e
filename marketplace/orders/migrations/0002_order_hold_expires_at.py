from datetime import timedelta

from django.db import migrations, models

# What an unfunded order was promised before holds: beat cancelled it an hour after creation.
PREVIOUS_FUNDING_TIMEOUT = timedelta(seconds=3600)


def keep_the_old_deadline(apps, schema_editor):
    """Unfunded orders made before holds keep the deadline they were given, rather than being
    cancelled under a renter who is signing the deposit right now."""
    Order = apps.get_model("orders", "Order")
    for order in Order.objects.filter(state="created").only("pk", "created_at").iterator():
        Order.objects.filter(pk=order.pk).update(
            hold_expires_at=order.created_at + PREVIOUS_FUNDING_TIMEOUT
        )


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="hold_expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(keep_the_old_deadline, migrations.RunPython.noop),
    ]
