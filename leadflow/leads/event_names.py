"""Event types in words: what a person did, for every page that shows an event
("Requested a demo" for ``demo_request``). Event types are free slugs: one this module
does not know reads humanised ("trial_started" → "Trial started")."""

EVENT_TYPE_LABELS = {
    "page_view": "Viewed a page",
    "pricing_view": "Viewed pricing",
    "content_download": "Downloaded content",
    "form_submit": "Submitted a form",
    "webinar_registered": "Registered for a webinar",
    "webinar_attended": "Attended a webinar",
    "email_open": "Opened an e-mail",
    "email_click": "Clicked a link in an e-mail",
    "unsubscribe": "Unsubscribed",
    "demo_request": "Requested a demo",
    "contact_request": "Asked to be contacted",
    "trial_started": "Started a trial",
    "signup": "Signed up",
}


def event_type_label(event_type: str) -> str:
    """The words for ``event_type``; an unknown slug humanised (underscores and dashes as
    spaces, the first letter capitalised), a blank one as "Event"."""
    if event_type in EVENT_TYPE_LABELS:
        return EVENT_TYPE_LABELS[event_type]
    words = " ".join(event_type.replace("_", " ").replace("-", " ").split())
    return words[:1].upper() + words[1:] if words else "Event"
