#!/usr/bin/env python3
"""Writes per-prompt quality files from the training data, for `routerctl train mf --validate-with`.

The trainer reports routing quality (APGR) on the prompts of these files that it did not train on,
so hyper-parameters are tuned on held-out training prompts, never on the evaluation benchmarks.

- arena-bench-v1.quality.jsonl: GPT-4 judge scores (1-10) of all 16 models per prompt, from
  arena-bench-v1.questions/scores.jsonl. The MT-Bench-like proxy.
- mmlu-gold.quality.jsonl: strong/weak correctness from mmlu-gold.battles.jsonl. A strong win is
  (1, 0), a weak win (0, 1), a tie (0, 0): APGR depends only on each prompt's difference.

Usage: scripts/validation-sets.py [DATA_DIR] [OUT_DIR]
"""
import collections
import json
import sys

data = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
out = sys.argv[2] if len(sys.argv) > 2 else ".cache/validation"
aliases = {"Mixtral-8x7B-Instruct-v0.1": "mistralai/Mixtral-8x7B-Instruct-v0.1"}

import os

os.makedirs(out, exist_ok=True)
prompts = {}
for line in open(f"{data}/train/arena-bench-v1.questions.jsonl"):
    row = json.loads(line)
    prompts[row["question_id"]] = row["prompt"]
scores = collections.defaultdict(dict)
for line in open(f"{data}/train/arena-bench-v1.scores.jsonl"):
    row = json.loads(line)
    scores[row["question_id"]][aliases.get(row["model"], row["model"])] = row["score"]
with open(f"{out}/arena-bench-v1.quality.jsonl", "w") as f:
    for qid, prompt in prompts.items():
        f.write(json.dumps({"prompt": prompt, "quality": scores[qid]}) + "\n")

with open(f"{out}/mmlu-gold.quality.jsonl", "w") as f:
    for line in open(f"{data}/train/mmlu-gold.battles.jsonl"):
        row = json.loads(line)
        strong, weak = row["model_a"], row["model_b"]
        quality = {"model_a": (1, 0), "model_b": (0, 1)}.get(row["winner"], (0, 0))
        f.write(json.dumps({"prompt": row["prompt"], "quality": {strong: quality[0], weak: quality[1]}}) + "\n")
print(f"wrote {out}/arena-bench-v1.quality.jsonl and {out}/mmlu-gold.quality.jsonl")
