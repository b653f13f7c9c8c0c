"""Request building and reply checking, shared by the sync and asyncio clients."""

from __future__ import annotations

import json
import os
from typing import Optional

from .errors import error_from_reply

DEFAULT_SOCKET = "/run/routerd/routerd.sock"


def default_socket() -> str:
    """$ROUTERD_SOCKET, else the shipped config's socket path."""
    return os.environ.get("ROUTERD_SOCKET") or DEFAULT_SOCKET


def encode(request: dict) -> bytes:
    """One request line. Compact JSON never contains a raw newline, so a line is one request."""
    return json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def decode(line: bytes, request_id) -> dict:
    """The result of a reply line, or the typed error it carries."""
    reply = json.loads(line)
    if reply.get("id") != request_id:
        raise ValueError(f"reply id {reply.get('id')!r} does not match request id {request_id!r}")
    if not reply.get("ok"):
        raise error_from_reply(reply)
    return reply.get("result", {})


def route_request(prompt: Optional[str], router: Optional[str], messages, threshold, lambda_, cheapest_within, session, model) -> dict:
    request = {"op": "route"}
    if prompt is not None:
        request["prompt"] = prompt
    if messages is not None:
        request["messages"] = list(messages)
    for key, value in (("router", router), ("threshold", threshold), ("lambda", lambda_), ("cheapest_within", cheapest_within),
                       ("session", session), ("model", model)):
        if value is not None:
            request[key] = value
    return request


def feedback_request(decision_id, model, outcome, against, quality, router, prompt) -> dict:
    request = {"op": "feedback", "model": model}
    for key, value in (("decision_id", decision_id), ("router", router), ("prompt", prompt), ("outcome", outcome),
                       ("against", against), ("quality", quality)):
        if value is not None:
            request[key] = value
    return request
