"""The lead's stage on its score rows, and the index that orders the MQLs' and the SQLs'
scores (the hot-MQL list).

The column is added NULL without a default, filled from the leads, then made NOT NULL:
added with a default, PostgreSQL keeps the default as the column's "missing" value
(``atthasmissing``), and then an UPDATE of any other column of a row is never HOT while
an index covers ``stage`` (measured: 11 HOT updates of 10,000 against 10,000 without the
default; bench/RESULTS-lists.md), which would make every rescore's rewrite of the scores
touch every index."""

from django.db import migrations, models

STAGES = [
    ("new", "New"),
    ("mql", "MQL"),
    ("sql", "SQL"),
    ("accepted", "Accepted"),
    ("recycled", "Recycled"),
    ("disqualified", "Disqualified"),
]

# Every row: from its lead; a score whose lead is gone (no foreign key, see 0008) is new.
FILL = """
UPDATE scoring_score AS s SET stage = COALESCE((SELECT l.stage FROM leads_lead AS l WHERE l.id = s.lead_id), 'new')
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
            field=models.CharField(choices=STAGES, max_length=16, null=True),
        ),
        migrations.RunSQL(FILL, migrations.RunSQL.noop, elidable=True),
        migrations.AlterField(
            model_name="score",
            name="stage",
            field=models.CharField(choices=STAGES, max_length=16),
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
