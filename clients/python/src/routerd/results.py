"""What routerd replies, as small typed values; ``raw`` keeps the whole result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Candidate:
    model: str
    quality: float
    cost: Optional[float] = None


@dataclass(frozen=True)
class Decision:
    """A ``route`` result: the model to call, and why."""

    model: str
    decision_id: str
    policy: str
    router: str
    generation: int
    candidates: list = field(default_factory=list)
    tier: Optional[str] = None
    score: Optional[float] = None
    threshold: Optional[float] = None
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_result(cls, result: dict) -> "Decision":
        return cls(
            model=result["model"],
            decision_id=result["decision_id"],
            policy=result["policy"],
            router=result["router"],
            generation=result["generation"],
            candidates=[Candidate(c["model"], c["quality"], c.get("cost")) for c in result.get("candidates", [])],
            tier=result.get("tier"),
            score=result.get("score"),
            threshold=result.get("threshold"),
            raw=result,
        )


Result = Any
