from django.apps import AppConfig


class ScoringConfig(AppConfig):
    name = "scoring"
    verbose_name = "Scoring"

    def ready(self) -> None:
        # Register scoring's Celery tasks in every process, the web's included: the core
        # enqueues score_leads by name (it may not import scoring), and Celery sends a
        # task it does not know to the broker even in eager mode. Imported here, when
        # the models are ready, because the tasks import scoring's services.
        # The core's lead lists read the scores through this provider (it may not import scoring).
        from leadflow.leads.scores import intent_types_register, provider_register
        from scoring import tasks  # noqa: F401
        from scoring.selectors import LeadScores, intent_event_types_cached

        provider_register(LeadScores())
        intent_types_register(intent_event_types_cached)
        # The core's privacy operations (export, erase) reach the scores through this holder.
        from leadflow.leads.privacy import holder_register
        from scoring.privacy import ScoringData

        holder_register(ScoringData())
        # The core's merge of two leads reaches the scores through this holder.
        from leadflow.leads.merge import holder_register as merge_holder_register
        from scoring.merge import ScoringMerge

        merge_holder_register(ScoringMerge())
        # The scores' copy of the lead's stage follows every stage change (stages_changed).
        from scoring import receivers  # noqa: F401
