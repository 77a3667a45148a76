"""The lead's stage on its score rows, and the index that orders a stage's leads by score
(the hot-MQL list). The column is added with a default (no table rewrite), filled from the
leads in one statement, then indexed."""

from django.db import migrations, models

FILL = """
UPDATE scoring_score AS s SET stage = l.stage
FROM leads_lead AS l
WHERE l.id = s.lead_id AND s.stage <> l.stage
"""


class Migration(migrations.Migration):
    dependencies = [
        ("leads", "0007_free_mail_domains_and_existing_accounts"),
        ("scoring", "0009_score_model_rank"),
    ]

    operations = [
        migrations.AddField(
            model_name="score",
            name="stage",
            field=models.CharField(
                choices=[
                    ("new", "New"),
                    ("mql", "MQL"),
                    ("sql", "SQL"),
                    ("accepted", "Accepted"),
                    ("recycled", "Recycled"),
                    ("disqualified", "Disqualified"),
                ],
                default="new",
                max_length=16,
            ),
            preserve_default=False,
        ),
        migrations.RunSQL(FILL, migrations.RunSQL.noop, elidable=True),
        migrations.AddIndex(
            model_name="score",
            index=models.Index(fields=["model", "stage", "score", "lead"], name="score_model_stage_rank"),
        ),
    ]
