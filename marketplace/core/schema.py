"""OpenAPI: every operation documents the one 4xx body the exception handler renders
(marketplace.core.exceptions), so clients and the schema fuzzer know the error shape."""

ERROR_COMPONENT = "Error"

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "detail": {"type": "object", "additionalProperties": {}},
            },
            "required": ["code", "message", "detail"],
        }
    },
    "required": ["error"],
}

ERROR_STATUSES = {
    "400": "The input is not valid.",
    "401": "Missing, invalid or revoked credentials.",
    "403": "The caller may not do this.",
    "404": "No such resource, or not one the caller may see.",
    "409": "Not allowed in the object's current state.",
    "422": "Well-formed but refused (e.g. an Idempotency-Key reused with another body).",
    "429": "Throttled.",
}


# Operations that also answer 503 (error shape) when a service they call does not answer.
UNAVAILABLE = "The chain node does not answer; nothing was changed. Retry shortly."
EXTRA_STATUSES = {"v1_orders_funding_retrieve": {"503": UNAVAILABLE}}


def document_error_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook: adds the Error component and a response for each
    4xx status to every operation that does not document that status itself."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    ref = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            extra = EXTRA_STATUSES.get(operation.get("operationId"), {})
            for status, description in {**ERROR_STATUSES, **extra}.items():
                responses.setdefault(
                    status,
                    {"description": description, "content": {"application/json": {"schema": ref}}},
                )
    return result
