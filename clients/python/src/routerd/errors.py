"""Typed errors: one class per protocol error code (docs/PROTOCOL.md, "Errors")."""

from __future__ import annotations


class RouterdError(Exception):
    """An error reply from routerd. ``code`` is the protocol's stable code; ``message`` is for people."""

    code = "unknown"

    def __init__(self, message: str, code: str | None = None, request_id=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class BadJSON(RouterdError):
    code = "bad_json"


class LineTooLong(RouterdError):
    code = "line_too_long"


class TooLarge(RouterdError):
    """Over a limit that bounds a request's cost (limits.max_texts, limits.max_windows); the message names it."""

    code = "too_large"


class UnknownOp(RouterdError):
    code = "unknown_op"


class MissingField(RouterdError):
    code = "missing_field"


class BadField(RouterdError):
    code = "bad_field"


class UnknownRouter(RouterdError):
    code = "unknown_router"


class PluginFailed(RouterdError):
    code = "plugin_error"


class Overloaded(RouterdError):
    code = "overloaded"


class Forbidden(RouterdError):
    code = "forbidden"


class ReloadFailed(RouterdError):
    code = "reload_failed"


class UnknownDecision(RouterdError):
    code = "unknown_decision"


class UnknownModel(RouterdError):
    code = "unknown_model"


class FeedbackUnavailable(RouterdError):
    code = "feedback_unavailable"


class ShuttingDown(RouterdError):
    code = "shutting_down"


class InternalError(RouterdError):
    code = "internal"


class ConnectionFailed(RouterdError, OSError):
    """routerd could not be reached, or closed the connection before replying."""

    code = "connection"


ERRORS = {
    cls.code: cls
    for cls in (
        BadJSON, LineTooLong, TooLarge, UnknownOp, MissingField, BadField, UnknownRouter, PluginFailed, Overloaded, Forbidden,
        ReloadFailed, UnknownDecision, UnknownModel, FeedbackUnavailable, ShuttingDown, InternalError,
    )
}


def error_from_reply(reply: dict) -> RouterdError:
    """The typed error for an error reply; an unknown code (a newer daemon) gives RouterdError itself."""
    error = reply.get("error") or {}
    code = error.get("code", "unknown")
    return ERRORS.get(code, RouterdError)(error.get("message", ""), code=code, request_id=reply.get("id"))
