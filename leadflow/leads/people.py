"""People (Django users) as the pages and messages name them."""

from typing import Any


def person_name(user: Any) -> str:
    """Someone's full name, or their username when they have none; "" for nobody."""
    if user is None:
        return ""
    return str(user.get_full_name() or user.get_username())
