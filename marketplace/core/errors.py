"""The one business error type. Services raise it; the API's exception handler renders it as
`{"error": {"code", "message", "detail"}}` with its 4xx status."""

from typing import Any


class ApplicationError(Exception):
    status_code = 400

    def __init__(
        self,
        message: str,
        *,
        code: str,
        extra: dict[str, Any] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.extra = extra or {}
        if status_code is not None:
            self.status_code = status_code


class NotFoundError(ApplicationError):
    status_code = 404


class PermissionDeniedError(ApplicationError):
    status_code = 403


class ConflictError(ApplicationError):
    """A request that is well-formed but not allowed in the object's current state."""

    status_code = 409


class InvalidTransition(ConflictError):
    def __init__(self, *, entity: str, entity_id: Any, current: str, target: str) -> None:
        super().__init__(
            f"{entity} {entity_id} cannot go from '{current}' to '{target}'.",
            code=f"{entity.lower()}_invalid_transition",
            extra={"current_state": current, "requested_state": target},
        )
