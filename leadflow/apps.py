from django.apps import AppConfig


class LeadflowConfig(AppConfig):
    """The project package as an app, the top layer: pages that compose several apps and
    the project-wide commands (``seed_demo``, ``run_schedule``), and operations: health,
    readiness and metrics. Its one model is the Celery workers' heartbeat."""

    name = "leadflow"
    label = "leadflow"  # the core's label is "leads" (leadflow.leads)
    verbose_name = "LeadFlow"
