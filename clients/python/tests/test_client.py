import asyncio
import json

import pytest

import routerd
from conftest import STRONG, WEAK


def test_route_gives_a_typed_decision_with_an_id(daemon):
    with routerd.Client(daemon) as client:
        decision = client.route("Prove that the square root of 2 is irrational.", router="random")
        assert decision.model in (STRONG, WEAK)
        assert decision.tier in ("strong", "weak")
        assert len(decision.decision_id) == 32
        assert decision.policy == "threshold" and decision.threshold == 0.5
        assert [c.model for c in decision.candidates] == [STRONG, WEAK]
        # The last user turn of OpenAI-style messages is what is routed.
        same = client.route(router="random", messages=[{"role": "user", "content": "Prove that the square root of 2 is irrational."}])
        assert same.score == decision.score
        assert client.health()["routers"] == ["random"]


def test_errors_are_typed_and_the_connection_lives_on(daemon):
    client = routerd.Client(daemon, pool_size=1)
    with pytest.raises(routerd.UnknownRouter) as caught:
        client.route("hi", router="nope")
    assert caught.value.code == "unknown_router" and "nope" in caught.value.message
    with pytest.raises(routerd.BadField):
        client.route("hi", router="random", threshold=2)
    with pytest.raises(routerd.UnknownDecision):
        client.feedback("0123456789abcdef", model=STRONG, quality=1)
    with pytest.raises(routerd.UnknownModel):
        client.feedback(router="random", prompt="hi", model="gpt-5", quality=1)
    # The same pooled connection still serves.
    assert client.route("hi", router="random").model in (STRONG, WEAK)
    assert client.stats()["connections_total"] == 1
    client.close()


def test_feedback_is_recorded_in_the_training_formats(daemon, tmp_path):
    client = routerd.Client(daemon)
    decision = client.route("What is 2 + 2?", router="random")
    reply = client.feedback(decision.decision_id, model=STRONG, outcome="win", against=WEAK)
    assert reply["recorded"] == "battles" and reply["decision_id"] == decision.decision_id
    assert client.feedback(router="random", prompt="late", model=WEAK, quality=0.5)["recorded"] == "quality"
    row = json.loads((tmp_path / "feedback" / "battles.jsonl").read_text().splitlines()[0])
    assert (row["prompt"], row["model_a"], row["model_b"], row["winner"]) == ("What is 2 + 2?", STRONG, WEAK, "model_a")
    assert client.stats()["feedback"]["rows"] == 2
    assert client.learn_status() == []  # the random router does not learn online


def test_pipelined_requests_come_back_in_order_and_errors_stay_in_place(daemon):
    client = routerd.Client(daemon)
    prompts = [f"prompt {i}" for i in range(200)]
    requests = [{"op": "route", "router": "random", "prompt": p} for p in prompts]
    requests.insert(50, {"op": "route", "router": "nope", "prompt": "x"})
    results = client.pipeline(requests)
    assert isinstance(results[50], routerd.UnknownRouter)
    del results[50]
    scores = client.score(prompts, router="random")
    assert [r["score"] for r in results] == scores


def test_the_async_client_pipelines_many_requests_over_a_small_pool(daemon):
    async def main():
        async with routerd.AsyncClient(daemon, pool_size=2) as client:
            decisions = await asyncio.gather(*(client.route(f"question {i}", router="random") for i in range(300)))
            # One score request holds at most limits.max_texts (256) prompts; more get TooLarge.
            prompts = [f"question {i}" for i in range(300)]
            with pytest.raises(routerd.TooLarge):
                await client.score(prompts, router="random")
            scores = await client.score(prompts[:150], router="random") + await client.score(prompts[150:], router="random")
            assert [d.score for d in decisions] == scores
            with pytest.raises(routerd.UnknownRouter):
                await client.route("x", router="nope")
            reply = await client.feedback(decisions[0].decision_id, model=WEAK, quality=1)
            assert reply["recorded"] == "quality"
            stats = await client.stats()
            # 300 concurrent requests, two connections.
            assert stats["connections_total"] == 2
            assert stats["requests"]["route"] == 301

    asyncio.run(main())


def test_a_missing_daemon_is_a_connection_error(tmp_path):
    with pytest.raises(routerd.ConnectionFailed):
        routerd.Client(str(tmp_path / "absent.sock")).health()

    async def main():
        with pytest.raises(routerd.ConnectionFailed):
            await routerd.AsyncClient(str(tmp_path / "absent.sock")).health()

    asyncio.run(main())


class _Recorder:
    """The shape of an OpenAI-SDK client (client.chat.completions.create), recording its calls."""

    def __init__(self):
        self.calls = []
        self.chat = self
        self.completions = self

    def create(self, **kwargs):
        self.calls.append(kwargs)
        return {"choices": [{"message": {"content": "ok"}}]}


def test_complete_routes_then_calls_the_chosen_model(daemon):
    client = routerd.Client(daemon)
    sdk = _Recorder()
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Explain recursion."}]
    decision, completion = routerd.complete(client, sdk, router="random", messages=messages, model_names={WEAK: "mixtral"}, temperature=0)
    assert completion["choices"][0]["message"]["content"] == "ok"
    expected = "mixtral" if decision.model == WEAK else decision.model
    assert sdk.calls == [{"model": expected, "messages": messages, "temperature": 0}]
