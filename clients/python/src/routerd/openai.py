"""Route, then call the chosen model with an OpenAI-SDK client (or anything with its shape)."""

from __future__ import annotations

from typing import Any, Optional, Tuple

from .results import Decision


def _last_user_text(messages) -> Optional[str]:
    for message in reversed(list(messages)):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return None


def complete(client, openai_client, *, router: str, messages, model_names: Optional[dict] = None, session: Optional[str] = None,
             **kwargs) -> Tuple[Decision, Any]:
    """Asks routerd which model should answer ``messages``, then calls
    ``openai_client.chat.completions.create`` with that model. ``model_names`` maps routerd's
    model names to the names your endpoint expects, when they differ. Returns the decision (keep
    its ``decision_id`` for feedback) and the completion.

    Prefer routerd's gateway (``gateway:`` in its config, docs/GATEWAY.md) when all your models
    speak OpenAI's API and have an ``endpoint`` in routerd's catalogue: point ``openai.OpenAI`` at
    ``http://127.0.0.1:<port>/v1`` and pass ``model="router-<name>"``. The gateway then retries,
    falls back to the next candidate when a model fails, prices each answer from its ``usage``
    into ``stats`` and the router's budget, and records failed calls as outcomes, none of which
    this function does. Use this function when your service must call the model itself: its own
    SDK or retries, keys routerd must not hold, or a provider whose API is not OpenAI's."""
    decision = client.route(router=router, messages=messages, session=session)
    name = (model_names or {}).get(decision.model, decision.model)
    return decision, openai_client.chat.completions.create(model=name, messages=messages, **kwargs)


async def acomplete(client, openai_client, *, router: str, messages, model_names: Optional[dict] = None,
                    session: Optional[str] = None, **kwargs) -> Tuple[Decision, Any]:
    """:func:`complete` for ``routerd.AsyncClient`` and ``openai.AsyncOpenAI``."""
    decision = await client.route(router=router, messages=messages, session=session)
    name = (model_names or {}).get(decision.model, decision.model)
    return decision, await openai_client.chat.completions.create(model=name, messages=messages, **kwargs)
