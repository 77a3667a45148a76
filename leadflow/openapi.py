"""What every operation of the API shares, declared once for the OpenAPI schema.

Views declare what is particular to them (a 409 and what it means, a 202); a
drf-spectacular postprocessing hook, ``complete_schema``, adds what they all
share to each operation it applies to: the error answers, and what a decimal
input takes. A response a view declares itself is left as it is.
"""

import re
from typing import Any

HTTP_METHODS = {"get", "put", "post", "patch", "delete"}

ERROR = {
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "What went wrong and what to do."},
        "code": {"type": "string", "description": "A stable code, where one helps (e.g. `already_claimed`)."},
    },
    "required": ["detail"],
}
VALIDATION_ERROR = {
    "type": "object",
    "description": (
        "`detail` for a body that is not JSON; otherwise each invalid field (or query parameter) "
        "with a list of what is wrong with it, and `non_field_errors` for the rest."
    ),
    "additionalProperties": True,
}


def _response(description: str, component: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}},
    }


BAD_REQUEST = _response("Invalid input: see the fields named in the body.", "ValidationError")
UNAUTHENTICATED = _response(
    "No credentials, or invalid ones: send `Authorization: Bearer <token>` (a personal token, or an ingest key "
    "for ingestion).",
    "Error",
)
FORBIDDEN = _response("Your role may not do this, or the wrong kind of key: see `detail`.", "Error")
NOT_FOUND = _response("No such object, or not one you may see; or a page past the last.", "Error")
TOO_LARGE = _response("The body is over the size limit, which `detail` states: send a smaller one.", "Error")
UNSUPPORTED_MEDIA_TYPE = _response("A body that is not `application/json`.", "Error")
TOO_MANY_REQUESTS = {
    **_response(
        "Rate limited: the ingest key's quota, or too many failed authentications from your address. "
        "Wait the seconds `Retry-After` gives, then retry.",
        "Error",
    ),
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
}


def _common_responses(path: str, operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The shared answers that apply to this operation, by status code."""
    has_body = "requestBody" in operation
    query = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
    responses: dict[str, dict[str, Any]] = {}
    if has_body or query:
        responses["400"] = BAD_REQUEST
    if operation.get("security"):
        responses["401"] = UNAUTHENTICATED
        responses["403"] = FORBIDDEN
        responses["429"] = TOO_MANY_REQUESTS  # leadflow.leads.throttles: a Bearer key may be refused
    if "{" in path or query & {"page", "cursor"}:
        responses["404"] = NOT_FOUND
    responses["413"] = TOO_LARGE  # leadflow.middleware.ApiBodyLimitMiddleware, on every /api/ request
    if has_body:
        responses["415"] = UNSUPPORTED_MEDIA_TYPE
    return responses


# drf-spectacular's pattern for a DRF DecimalField, e.g. ^-?\d{0,8}(?:\.\d{0,2})?$
_SPECTACULAR_DECIMAL = re.compile(r"^\^-\?\\d\{0,(\d+)\}(?:\(\?:\\\.\\d\{0,(\d+)\}\)\?)?\$$")


def _decimal_input(field: dict[str, Any]) -> dict[str, Any]:
    """What DRF's DecimalField takes: a JSON number, or a string holding one. (drf-spectacular
    states only the string, with a pattern that also admits "" and "-".)"""
    match = _SPECTACULAR_DECIMAL.match(field.get("pattern", ""))
    if match is None:
        return field
    whole, places = match.groups()
    digits = rf"\d{{1,{whole}}}"
    if places:
        digits = rf"(?:\d{{1,{whole}}}(?:\.\d{{0,{places}}})?|\.\d{{1,{places}}})"
    text = {"type": "string", "format": "decimal", "pattern": f"^-?{digits}$"}
    number = {"anyOf": [{"type": "number"}, text]}
    return {**{k: v for k, v in field.items() if k not in ("type", "format", "pattern")}, **number}


def complete_schema(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: what every operation shares (see the module)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR)
    schemas.setdefault("ValidationError", VALIDATION_ERROR)
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status, response in _common_responses(path, operation).items():
                responses.setdefault(status, response)
    for name, component in schemas.items():
        if name.endswith("Request"):
            for field_name, field in component.get("properties", {}).items():
                if field.get("format") == "decimal":
                    component["properties"][field_name] = _decimal_input(field)
    return result
