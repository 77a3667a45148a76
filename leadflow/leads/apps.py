from django.apps import AppConfig


class LeadsConfig(AppConfig):
    name = "leadflow.leads"
    label = "leads"
    verbose_name = "Leads and events"

    def ready(self) -> None:
        # Saved or deleted ingest keys and sources renew the generation of verified keys.
        from leadflow.leads import receivers  # noqa: F401
