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
    its ``decision_id`` for feedback) and the completion."""
    decision = client.route(router=router, messages=messages, session=session)
    name = (model_names or {}).get(decision.model, decision.model)
    return decision, openai_client.chat.completions.create(model=name, messages=messages, **kwargs)


async def acomplete(client, openai_client, *, router: str, messages, model_names: Optional[dict] = None,
                    session: Optional[str] = None, **kwargs) -> Tuple[Decision, Any]:
    """:func:`complete` for ``routerd.AsyncClient`` and ``openai.AsyncOpenAI``."""
    decision = await client.route(router=router, messages=messages, session=session)
    name = (model_names or {}).get(decision.model, decision.model)
    return decision, await openai_client.chat.completions.create(model=name, messages=messages, **kwargs)
