"""routerd's Python client: route prompts, report outcomes, read stats (docs/CLIENTS.md)."""

from .aio import AsyncClient
from .client import Client
from .errors import (
    BadField, BadJSON, ConnectionFailed, FeedbackUnavailable, Forbidden, InternalError, LineTooLong, MissingField, Overloaded,
    PluginFailed, ReloadFailed, RouterdError, ShuttingDown, TooLarge, UnknownDecision, UnknownModel, UnknownOp, UnknownRouter,
)
from .openai import acomplete, complete
from .results import Candidate, Decision

__all__ = [
    "AsyncClient", "Client", "Candidate", "Decision", "complete", "acomplete", "RouterdError", "BadField", "BadJSON",
    "ConnectionFailed", "FeedbackUnavailable", "Forbidden", "InternalError", "LineTooLong", "MissingField", "Overloaded", "TooLarge",
    "PluginFailed", "ReloadFailed", "ShuttingDown", "UnknownDecision", "UnknownModel", "UnknownOp", "UnknownRouter",
]
__version__ = "0.1.0"
