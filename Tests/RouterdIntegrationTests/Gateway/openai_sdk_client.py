"""The gateway driven by the official `openai` package, as GatewayLLMTests runs it.

Usage: python openai_sdk_client.py BASE_URL. Prints one JSON object of what it saw.
"""

import json
import sys

import openai

base_url = sys.argv[1]
seen = {}

# RouteLLM's README snippet, unchanged but for base_url.
client = openai.OpenAI(base_url=base_url, api_key="no_api_key")
response = client.chat.completions.create(
    model="router-pair-0.5",
    messages=[{"role": "user", "content": "Hello!"}],
    max_tokens=16,
)
seen["routellm_snippet"] = {"model": response.model, "content": response.choices[0].message.content,
                            "completion_tokens": response.usage.completion_tokens}

# The headers say what the gateway did.
raw = client.chat.completions.with_raw_response.create(
    model="router-many", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8)
parsed = raw.parse()
seen["headers"] = {name: raw.headers.get(name) for name in
                   ["x-routerd-decision-id", "x-routerd-router", "x-routerd-model", "x-routerd-attempts"]}
seen["headers"]["body_model"] = parsed.model

# Streaming, with and without usage. The test asks that content chunks are relayed, so the answer may
# not end at once: greedy, with the end-of-turn and end-of-text tokens biased away (SmolLM2's ids 2
# and 0). The streams that CI saw relay no content were cut by the server itself: llama-cpp-python
# ends a stream with [DONE] as soon as another request waits (its interrupt_requests, on by default),
# and the other LLM suites send requests at the same time; scripts/llm-server.sh turns that off.
for include_usage in (False, True):
    chunks = []
    usage = None
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = client.chat.completions.create(
        model="router-many", messages=[{"role": "user", "content": "Count to three."}], max_tokens=16, temperature=0, stream=True,
        logit_bias={"2": -100, "0": -100}, **extra)
    models = set()
    for chunk in stream:
        models.add(chunk.model)
        if chunk.choices and chunk.choices[0].delta.content:
            chunks.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
    seen["stream_usage" if include_usage else "stream"] = {"chunks": len(chunks), "models": sorted(models), "usage": usage}

# Errors are the SDK's typed exceptions.
errors = {}
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
except openai.NotFoundError as error:
    errors["unknown_model"] = error.status_code
try:
    client.chat.completions.create(model="router-pair", messages=[])
except openai.BadRequestError as error:
    errors["no_messages"] = error.status_code
seen["errors"] = errors
seen["models"] = sorted(model.id for model in client.models.list())
print(json.dumps(seen))
