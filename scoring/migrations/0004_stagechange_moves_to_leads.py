"""StageChange moves to the core (``leads``), with the lifecycle that writes it.

State only: the table stays ``scoring_stagechange`` with its indexes and rows;
``leads.0004_stagechange_from_scoring`` takes the model into its state.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0003_resumable_rescore_runs"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[migrations.DeleteModel(name="StageChange")],
        ),
    ]
