from django.apps import AppConfig


class HandoffConfig(AppConfig):
    name = "handoff"
    verbose_name = "Sales handoff"

    def ready(self) -> None:
        # Connects the receiver of the lifecycle's stages_changed (entering SQL opens a
        # handoff, leaving it by hand closes the open one). Imported here, once the
        # models are ready, because the receivers use them.
        from handoff import receivers  # noqa: F401
        from handoff.privacy import HandoffData
        from handoff.rollups import HOLDER
        from leadflow.leads import rollups
        from leadflow.leads.privacy import holder_register

        # The core's privacy operations reach handoff's records through this holder.
        holder_register(HandoffData())
        # The core's merge of two leads moves the handoffs through this holder.
        from handoff.merge import HandoffMerge
        from leadflow.leads.merge import holder_register as merge_holder_register

        merge_holder_register(HandoffMerge())
        # The core's lead writers and rollups_rebuild keep handoff's rollups through this one.
        rollups.holder_register(HOLDER)
