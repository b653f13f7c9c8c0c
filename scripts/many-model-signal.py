#!/usr/bin/env python3
"""How much per-prompt signal MMLU-Pro holds for many-model routing, on held-out training prompts only.

Issue 15 asks for AIQ >= 0.750 on MMLU-Pro, "twice the kNN's gain over the single-model hull and
above the subject-label baseline". This script measures, by 5-fold cross-validation over the
training share (split positions >= 0.3 by prompt hash, as `routerctl eval --test-split 0.3` keeps
the rest for testing), what simple predictors reach, and what knowing each question's true subject
(MMLU-Pro's `category`, which no router sees) would add. It never reads the test share.

Needs numpy and the embedding cache that `make eval-many` or `routerctl train quality` fills
(.cache/embeddings-minilm-head.bin). Usage: scripts/many-model-signal.py [DATA_DIR]
"""
import json
import re
import struct
import sys

import numpy as np

data = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"


def fnv1a(text):
    value = 0xCBF29CE484222325
    for byte in text.encode():
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def position(prompt):  # PromptSplit.position
    return (fnv1a(prompt) % 1_000_000) / 1_000_000


def embeddings(path=".cache/embeddings-minilm-head.bin"):
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
        text = raw[offset : offset + length].decode()
        offset += length
        vectors[text] = np.frombuffer(raw, dtype="<f4", count=dimension, offset=offset)
        offset += 4 * dimension
    return vectors


prices = {}
for line in open("etc/routerd/models.yaml"):
    match = re.match(r"\s+(\S+): \{input: ([0-9.]+), output: ([0-9.]+)", line)
    if match:
        prices[match[1]] = (float(match[2]), float(match[3]))
rows = [json.loads(line) for line in open(f"{data}/train/mmlu-pro.quality.jsonl")]
counts = {}
for row in rows:
    for model in row["quality"]:
        counts[model] = counts.get(model, 0) + 1
models = sorted(m for m, n in counts.items() if n >= 0.95 * len(rows) and m in prices)
rows = [r for r in rows if all(m in r["quality"] for m in models) and position(r["prompt"]) >= 0.3]
vectors = embeddings()
X = np.stack([vectors[r["prompt"]] for r in rows])
Y = np.array([[r["quality"][m] for m in models] for r in rows], dtype=float)
P = np.array([position(r["prompt"]) for r in rows])
tokens = np.array([max(1, (len(r["prompt"]) + 3) // 4) for r in rows])
C = np.array([[(t * prices[m][0] + 256 * prices[m][1]) / 1e6 for m in models] for t in tokens])
categories = sorted({r["category"] for r in rows})
category = np.array([categories.index(r["category"]) for r in rows])
lambdas = np.array([0] + [10 ** (-2 + i / 30) for i in range(241)])  # QualityCostEvaluation.lambdas


def sweep(predicted, quality, cost):
    points = []
    for lam in lambdas:
        chosen = np.argmax(predicted - lam * cost - 1e-15 * cost, axis=1)
        index = np.arange(len(chosen))
        points.append((cost[index, chosen].mean(), quality[index, chosen].mean()))
    return points


def hull(points):
    result = []
    for point in sorted(points, key=lambda p: (p[0], -p[1])):
        if result and point[1] <= result[-1][1]:
            continue
        while len(result) >= 2:
            a, b = result[-2], result[-1]
            if (b[0] - a[0]) * (point[1] - a[1]) - (b[1] - a[1]) * (point[0] - a[0]) >= 0:
                result.pop()
            else:
                break
        result.append(point)
    return result


def quality_at(cost, curve):
    if cost <= curve[0][0]:
        return curve[0][1]
    if cost >= curve[-1][0]:
        return curve[-1][1]
    for a, b in zip(curve, curve[1:]):
        if b[0] >= cost:
            return a[1] + (b[1] - a[1]) * (cost - a[0]) / (b[0] - a[0])


def aiq(curve, low, high):
    breaks = sorted([low] + [p[0] for p in curve if low < p[0] < high] + [high])
    return sum((quality_at(a, curve) + quality_at(b, curve)) / 2 * (b - a) for a, b in zip(breaks, breaks[1:])) / (high - low)


def ridge(train_x, train_y, test_x, lam):
    a = np.hstack([train_x, np.ones((len(train_x), 1))])
    b = np.hstack([test_x, np.ones((len(test_x), 1))])
    return b @ np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ train_y)


edges = np.linspace(0.3, 1.0, 6)
results = {}
for fold in range(5):
    held = (P >= edges[fold]) & (P < edges[fold + 1])
    Xt, Yt, Xv, Yv, Cv = X[~held], Y[~held], X[held], Y[held], C[held]
    singles = [(Cv[:, j].mean(), Yv[:, j].mean()) for j in range(len(models))]
    low, high = min(s[0] for s in singles), max(s[0] for s in singles)
    order = np.argsort(-(Xv @ Xt.T), axis=1)
    means = np.stack([Yt[category[~held] == c].mean(axis=0) for c in range(len(categories))])
    subject = ridge(Xt, np.eye(len(categories))[category[~held]], Xv, 1)
    subject = np.exp(8 * subject)
    subject /= subject.sum(axis=1, keepdims=True)
    predictors = {
        "one global mean per model (no per-prompt signal)": np.tile(Yt.mean(axis=0), (len(Yv), 1)),
        "kNN, k = 100": Yt[order[:, :100]].mean(axis=1),
        "kNN, k = 200": Yt[order[:, :200]].mean(axis=1),
        "ridge regression on the embedding": ridge(Xt, Yt, Xv, 100),
        "predicted subject (ridge), its means": subject @ means,
        "kNN 100 and predicted subject, averaged": 0.5 * Yt[order[:, :100]].mean(axis=1) + 0.5 * subject @ means,
        "true subject's means (no router has it)": means[category[held]],
    }
    results.setdefault("single models (hull)", []).append(aiq(hull(singles), low, high))
    for name, predicted in predictors.items():
        results.setdefault(name, []).append(aiq(hull(sweep(predicted, Yv, Cv)), low, high))
base = np.mean(results["single models (hull)"])
print(f"{len(rows)} training-share prompts, {len(models)} models, 5 folds by prompt hash\n")
print(f"{'predictor':46s} {'AIQ':>7s} {'± s.e.':>7s} {'gain':>7s}")
for name, values in results.items():
    print(f"{name:46s} {np.mean(values):7.4f} {np.std(values) / np.sqrt(5):7.4f} {np.mean(values) - base:+7.4f}")
