from django.apps import AppConfig


class LeadsConfig(AppConfig):
    name = "leadflow.leads"
    label = "leads"
    verbose_name = "Leads and events"
