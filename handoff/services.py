"""Writes of the sales handoff. Filled by the handoff issue; scoring calls these hooks."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from leadflow.leads.models import Lead


def handoffs_open_for_leads(*, leads: Sequence[Lead], at: datetime) -> None:
    """Open a queued handoff for each lead that entered SQL (same transaction)."""


def handoff_close_for_lead(*, lead: Lead, reason: str, actor: Any) -> None:
    """Close the lead's open handoff when a person moves it out of SQL by hand."""
