"""The stage index covers the hot stages only (MQL, SQL): a full one made a day of decay on
every score 3.2x slower at 1M leads (bench/RESULTS-lists.md)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scoring", "0010_score_stage")]

    operations = [
        migrations.RemoveIndex(
            model_name="score",
            name="score_model_stage_rank",
        ),
        migrations.AddIndex(
            model_name="score",
            index=models.Index(
                condition=models.Q(("stage__in", ("mql", "sql"))),
                fields=["model", "stage", "score", "lead"],
                name="score_model_stage_rank",
            ),
        ),
    ]
