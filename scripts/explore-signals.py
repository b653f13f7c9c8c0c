#!/usr/bin/env python3
"""How much routing signal the training data holds, measured on held-out training prompts only.

Issue 4's quality goals ask for MT-Bench APGR >= 0.80, GSM8K APGR >= 0.60 and MMLU APGR >= 0.70.
This script asks, before any more router is built, what simple learners on the MiniLM embedding
(k nearest neighbours, ridge regression) and a few features beyond it can reach on the three
validation proxies, and what an oracle reaches. It never reads the evaluation benchmarks.

- MMLU proxy: mmlu-gold (7,096 prompts, strong/weak correctness), 5-fold by prompt.
- MT-Bench proxy: arena-bench-v1 (293 prompts with both models judged), 10-fold by prompt.
- GSM8K proxy: MMLU-Pro's math questions (gpt-4o for the strong model, Mixtral for the weak),
  the only math-word-problem-like labels here; learners train on MMLU-Pro's other categories.

Inputs: the embedding cache that `make weights` / `make eval` fill (.cache/embeddings-minilm-head.bin),
the validation files of scripts/validation-sets.py (.cache/validation), and ../shared/data/train.
Needs numpy (`make test-llm` creates .cache/llm-venv, which has it):

    .cache/llm-venv/bin/python scripts/explore-signals.py [DATA_DIR]
"""
import json
import os
import re
import struct
import sys

try:
    import numpy as np
except ImportError:
    sys.exit("explore-signals: needs numpy; run it with .cache/llm-venv/bin/python (made by `make test-llm`)")

DATA = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
CACHE = ".cache/embeddings-minilm-head.bin"
VALIDATION = ".cache/validation"
STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
for path, hint in [(CACHE, "make weights"), (VALIDATION, "scripts/validation-sets.py"), (f"{DATA}/train", "../shared/data")]:
    if not os.path.exists(path):
        sys.exit(f"explore-signals: {path} is missing (run {hint} first)")


def load_cache(path):
    """The trainer's embedding cache (Sources/RouterTraining/EmbeddingStore.swift)."""
    raw = open(path, "rb").read()
    offset = 7
    (dimension,) = struct.unpack_from("<I", raw, offset)
    offset += 4
    vectors = {}
    while offset + 4 <= len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length + 4 * dimension > len(raw):
            break
        text = raw[offset : offset + length].decode("utf-8", "replace")
        offset += length
        vectors[text] = np.frombuffer(raw, dtype="<f4", count=dimension, offset=offset)
        offset += 4 * dimension
    return vectors


CACHED = load_cache(CACHE)


def embed(texts, source):
    missing = sum(t not in CACHED for t in texts)
    if missing:
        sys.exit(
            f"explore-signals: {missing} prompts of {source} are not in {CACHE}; embed them with\n"
            f"  .build/release/routerctl train mf {source} --alias Mixtral-8x7B-Instruct-v0.1=mistralai/Mixtral-8x7B-Instruct-v0.1 "
            "--epochs 1 -o /tmp/embed-only.safetensors"
        )
    return np.stack([CACHED[t] for t in texts])


def apgr(scores, strong, weak):
    """RouteLLM's APGR: thresholds at 10 score quantiles, strong where score >= t (> at the top edge)."""
    scores = np.asarray(scores, float)
    points = []
    for i, t in enumerate(np.quantile(scores, np.linspace(0, 1, 11))):
        routed = scores > t if i == 10 else scores >= t
        points.append((routed.mean(), np.where(routed, strong, weak).mean()))
    points.sort()
    xs, ys = zip(*points)
    return (np.trapezoid(ys, xs) - weak.mean()) / (strong.mean() - weak.mean())


def ridge(x, y, lam, weights=None):
    x = np.hstack([x, np.ones((len(x), 1))])
    weights = np.ones(len(x)) if weights is None else weights
    return np.linalg.solve(x.T @ (x * weights[:, None]) + lam * np.eye(x.shape[1]), x.T @ (y * weights))


def predict(w, x):
    return np.hstack([x, np.ones((len(x), 1))]) @ w


def knn(x_train, y_train, x_test, k):
    similarity = x_test @ x_train.T
    nearest = np.argpartition(-similarity, k, axis=1)[:, :k]
    return y_train[nearest].mean(1)


def cross_validated(folds, fit):
    """fit(train_mask, test_mask) -> scores of the test rows."""
    out = np.zeros(len(folds))
    for f in np.unique(folds):
        out[folds == f] = fit(folds != f, folds == f)
    return out


def rank(v):
    return np.argsort(np.argsort(v)) / len(v)


def random_spread(strong, weak, runs=200):
    rng = np.random.default_rng(0)
    return np.std([apgr(rng.random(len(strong)), strong, weak) for _ in range(runs)])


def log_length(prompts):
    return np.log1p([len(p) for p in prompts])


def number_count(prompts):
    return np.log1p([len(re.findall(r"\d+", p)) for p in prompts])


def report(title, strong, weak, rows):
    print(f"\n{title} (strong {strong.mean():.3f}, weak {weak.mean():.3f}, random's sd {random_spread(strong, weak):.3f})")
    for name, scores in rows:
        print(f"  {name:<66} {apgr(scores, strong, weak):.3f}")


def read_jsonl(path):
    return [json.loads(line) for line in open(path)]


# MMLU-Pro: per-question correctness of 31 models; "difficulty" = the share that got it wrong.
pro = read_jsonl(f"{DATA}/train/mmlu-pro.quality.jsonl")
pro_prompts = [r["prompt"] for r in pro]
pro_x = embed(pro_prompts, f"{DATA}/train/mmlu-pro.quality.jsonl")
pro_models = sorted({m for r in pro for m in r["quality"]})
pro_q = np.array([[r["quality"].get(m, np.nan) for m in pro_models] for r in pro], float)
pro_difficulty = 1 - np.nanmean(pro_q, 1)
pro_gap = np.nan_to_num(pro_q[:, pro_models.index("gpt-4o-2024-05-13")]) - np.nan_to_num(
    pro_q[:, pro_models.index("Mixtral-8x7B-Instruct-v0.1")]
)
pro_features = np.hstack([pro_x, np.stack([log_length(pro_prompts), number_count(pro_prompts)], 1)])

# MMLU proxy.
gold = read_jsonl(f"{VALIDATION}/mmlu-gold.quality.jsonl")
gold_prompts = [r["prompt"] for r in gold]
gold_x = embed(gold_prompts, f"{DATA}/train/mmlu-gold.battles.jsonl")
gold_s = np.array([r["quality"][STRONG] for r in gold], float)
gold_w = np.array([r["quality"][WEAK] for r in gold], float)
gold_y = gold_s - gold_w
gold_folds = np.random.default_rng(1).integers(0, 5, len(gold))
gold_knn = cross_validated(gold_folds, lambda tr, te: knn(gold_x[tr], gold_y[tr], gold_x[te], 100))
gold_ridge = cross_validated(gold_folds, lambda tr, te: predict(ridge(gold_x[tr], gold_y[tr], 30), gold_x[te]))
gold_features = np.hstack([gold_x, np.stack([log_length(gold_prompts), number_count(gold_prompts)], 1)])
gold_pro_difficulty = predict(ridge(pro_features, pro_difficulty, 1), gold_features)
report(
    "MMLU proxy: mmlu-gold, 7,096 prompts, 5-fold",
    gold_s,
    gold_w,
    [
        ("100 nearest labelled prompts, mean of strong - weak", gold_knn),
        ("ridge regression of strong - weak on the embedding", gold_ridge),
        ("difficulty (share of 31 models wrong) learned on MMLU-Pro only", gold_pro_difficulty),
        ("gpt-4o - Mixtral learned on MMLU-Pro only", predict(ridge(pro_x, pro_gap, 1), gold_x)),
        ("prompt length alone", log_length(gold_prompts)),
        ("rank average: nearest + ridge + MMLU-Pro difficulty", rank(gold_knn) + rank(gold_ridge) + rank(gold_pro_difficulty)),
    ],
)

# MT-Bench proxy.
arena = [r for r in read_jsonl(f"{VALIDATION}/arena-bench-v1.quality.jsonl") if STRONG in r["quality"] and WEAK in r["quality"]]
arena_prompts = [r["prompt"] for r in arena]
arena_x = embed(arena_prompts, f"{DATA}/train/arena-bench-v1.battles.jsonl")
arena_models = sorted({m for r in arena for m in r["quality"]})
arena_scores = np.array([[r["quality"].get(m, np.nan) for m in arena_models] for r in arena], float)
arena_s = arena_scores[:, arena_models.index(STRONG)]
arena_w = arena_scores[:, arena_models.index(WEAK)]
arena_difficulty = -np.nanmean(arena_scores, 1)  # a prompt's mean judge score over its 16 answers, negated
arena_folds = np.arange(len(arena)) % 10


def standardised(v):
    return (v - v.mean()) / v.std()


def joint_difficulty(tr, te, arena_weight):
    x = np.vstack([arena_x[tr], pro_x])
    y = np.concatenate([standardised(arena_difficulty)[tr], standardised(pro_difficulty)])
    weights = np.concatenate([np.full(tr.sum(), arena_weight), np.ones(len(pro_x))])
    return predict(ridge(x, y, 1, weights), arena_x[te])


report(
    "MT-Bench proxy: arena-bench-v1, 293 prompts, 10-fold",
    arena_s,
    arena_w,
    [
        ("oracle: the pair's own score difference", arena_s - arena_w),
        ("oracle: the prompt's difficulty (mean score of its 16 answers)", arena_difficulty),
        ("30 nearest labelled prompts, mean of strong - weak", cross_validated(arena_folds, lambda tr, te: knn(arena_x[tr], (arena_s - arena_w)[tr], arena_x[te], 30))),
        ("ridge regression of strong - weak on the embedding", cross_validated(arena_folds, lambda tr, te: predict(ridge(arena_x[tr], (arena_s - arena_w)[tr], 10), arena_x[te]))),
        ("ridge regression of the prompt's difficulty on the embedding", cross_validated(arena_folds, lambda tr, te: predict(ridge(arena_x[tr], arena_difficulty[tr], 10), arena_x[te]))),
        ("difficulty, arena (weight 20) and MMLU-Pro together", cross_validated(arena_folds, lambda tr, te: joint_difficulty(tr, te, 20))),
        ("difficulty learned on MMLU-Pro only", predict(ridge(pro_x, pro_difficulty, 1), arena_x)),
        ("prompt length alone", log_length(arena_prompts)),
    ],
)

# GSM8K proxy.
math = np.array([r["category"] == "math" for r in pro])
math_s = np.nan_to_num(pro_q[math, pro_models.index("gpt-4o-2024-05-13")])
math_w = np.nan_to_num(pro_q[math, pro_models.index("Mixtral-8x7B-Instruct-v0.1")])
math_prompts = [p for p, m in zip(pro_prompts, math) if m]
report(
    f"GSM8K proxy: MMLU-Pro math, {math.sum()} questions, gpt-4o vs Mixtral",
    math_s,
    math_w,
    [
        ("prompt length alone", log_length(math_prompts)),
        ("count of numbers in the prompt", number_count(math_prompts)),
        ("difficulty learned on MMLU-Pro's other categories", predict(ridge(pro_features[~math], pro_difficulty[~math], 1), pro_features[math])),
        ("gpt-4o - Mixtral learned on MMLU-Pro's other categories", predict(ridge(pro_x[~math], pro_gap[~math], 1), pro_x[math])),
    ],
)
