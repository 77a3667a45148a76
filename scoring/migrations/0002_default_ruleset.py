"""Install a sensible default ruleset (v1, published) matching a typical B2B journey."""

from decimal import Decimal

from django.db import migrations

FIT = [
    ("Senior title: VP", "job_title", "contains", "vp", 15),
    ("Senior title: Chief", "job_title", "contains", "chief", 15),
    ("Senior title: Director", "job_title", "contains", "director", 10),
    ("Senior title: Head of", "job_title", "contains", "head of", 10),
    ("Company of 50+ employees", "company_size", "gte", 50, 10),
    ("Company of 500+ employees", "company_size", "gte", 500, 5),
    ("Target industry", "industry", "in", ["software", "saas", "technology", "financial services", "fintech"], 10),
    (
        "Personal email domain",
        "email_domain",
        "in",
        ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "aol.com", "gmx.com"],
        -20,
    ),
]
# name, event type, points, cap, window days
BEHAVIOUR = [
    ("Page views", "page_view", 1, 15, 30),
    ("Pricing page views", "pricing_view", 10, 20, 30),
    ("Content downloads", "content_download", 8, 24, 60),
    ("Webinar registration", "webinar_registered", 5, 10, 60),
    ("Webinar attendance", "webinar_attended", 15, 30, 90),
    ("Email opens", "email_open", 1, 5, 30),
    ("Email clicks", "email_click", 3, 12, 30),
    ("Form submissions", "form_submit", 10, 20, 90),
    ("Unsubscribed", "unsubscribe", -25, -25, None),
    ("Demo request", "demo_request", 30, 30, 90),
    ("Contact request", "contact_request", 25, 25, 90),
]


def install(apps, schema_editor):
    ruleset_model = apps.get_model("scoring", "RuleSet")
    rule_model = apps.get_model("scoring", "Rule")
    if ruleset_model.objects.exists():
        return
    # Called with today's models (tests reinstall it after a flush), a ruleset belongs to
    # a scoring model: the default one, as migration 0005 makes it.
    owner = {}
    if any(field.name == "model" for field in ruleset_model._meta.get_fields()):
        defaults = {"name": "Default", "description": "The scoring LeadFlow had before models."}
        owner["model"] = apps.get_model("scoring", "ScoringModel").objects.get_or_create(
            slug="default", defaults=defaults
        )[0]
    ruleset = ruleset_model.objects.create(
        **owner,
        version=1,
        name="Default B2B",
        description="Installed with LeadFlow: fit by seniority, company size and industry; behaviour by "
        "engagement with content, webinars, email and pricing; demo and contact requests show intent.",
        status="published",
        mql_threshold=Decimal("40"),
        sql_threshold=Decimal("60"),
        intent_event_types=["demo_request", "contact_request"],
        decay_half_life_days=Decimal("30"),
    )
    ruleset.published_at = ruleset.created_at
    ruleset.save()
    position = 0
    for name, attribute, operator, value, points in FIT:
        position += 1
        rule_model.objects.create(
            ruleset=ruleset,
            kind="fit",
            name=name,
            attribute=attribute,
            operator=operator,
            value=value,
            points=Decimal(points),
            position=position,
        )
    for name, event_type, points, cap, window in BEHAVIOUR:
        position += 1
        rule_model.objects.create(
            ruleset=ruleset,
            kind="behaviour",
            name=name,
            event_type=event_type,
            points=Decimal(points),
            max_points=Decimal(cap),
            window_days=window,
            position=position,
        )


class Migration(migrations.Migration):
    dependencies = [("scoring", "0001_initial")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
