#!/usr/bin/env python3
"""The encoder side by side with ONNX Runtime, cell by cell, in one run (`make bench-encoder`).

ONNX Runtime runs a graph this script builds from the same model.safetensors the daemon loads, in
the form ORT's transformer optimizer gives a BERT model (EmbedLayerNormalization, Attention,
SkipLayerNormalization and BiasGelu from its com.microsoft domain), and that graph quantized with
ORT's own `quantize_dynamic` (int8 weights, activations quantized per call) as the anchor for an
int8 path. Before timing, the fp32 graph's embeddings are checked against the repo's golden
vectors, so both sides compute the same thing.

Ours is `routerctl bench-encoder`, one cell per call, between ORT's runs of the same cell, so a
noisy neighbour hits both sides alike. Each figure is the median time of one call over about
--seconds; the ratio is ours / ORT (below 1: ours is faster). Ours in int8 (--precision, or bf16
where the CPU has it) is timed beside ORT's int8 and compared with both ORT graphs. --openblas adds
ours with the linear layers on OpenBLAS (the encoder's `kernel: openblas`).
"""

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from safetensors.numpy import load_file

HIDDEN, HEADS, LAYERS, EPSILON = 384, 12, 6, 1e-12


def build_graph(weights_file: str) -> onnx.ModelProto:
    w = load_file(weights_file)
    inits = []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    nodes = [
        helper.make_node(
            "EmbedLayerNormalization",
            [
                "input_ids", "segment_ids",
                const("word", w["embeddings.word_embeddings.weight"]),
                const("position", w["embeddings.position_embeddings.weight"]),
                const("segment", w["embeddings.token_type_embeddings.weight"]),
                const("embed_gamma", w["embeddings.LayerNorm.weight"]),
                const("embed_beta", w["embeddings.LayerNorm.bias"]),
                "attention_mask",
            ],
            ["x0", "mask_index"], domain="com.microsoft", epsilon=EPSILON),
    ]
    x = "x0"
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        # Linear layers store [out, in]; the graph multiplies activations by [in, out].
        qkv = np.concatenate([w[p + f"attention.self.{n}.weight"].T for n in ("query", "key", "value")], axis=1)
        qkv_bias = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
        nodes += [
            helper.make_node(
                "Attention", [x, const(f"qkv{i}", qkv), const(f"qkv_bias{i}", qkv_bias), "mask_index"], [f"att{i}"],
                domain="com.microsoft", num_heads=HEADS),
            helper.make_node("MatMul", [f"att{i}", const(f"out{i}", w[p + "attention.output.dense.weight"].T)], [f"att_out{i}"]),
            helper.make_node(
                "SkipLayerNormalization",
                [f"att_out{i}", x, const(f"ln1_gamma{i}", w[p + "attention.output.LayerNorm.weight"]),
                 const(f"ln1_beta{i}", w[p + "attention.output.LayerNorm.bias"]), const(f"out_bias{i}", w[p + "attention.output.dense.bias"])],
                [f"h{i}"], domain="com.microsoft", epsilon=EPSILON),
            helper.make_node("MatMul", [f"h{i}", const(f"inner{i}", w[p + "intermediate.dense.weight"].T)], [f"inner_out{i}"]),
            helper.make_node("BiasGelu", [f"inner_out{i}", const(f"inner_bias{i}", w[p + "intermediate.dense.bias"])], [f"gelu{i}"], domain="com.microsoft"),
            helper.make_node("MatMul", [f"gelu{i}", const(f"down{i}", w[p + "output.dense.weight"].T)], [f"down_out{i}"]),
            helper.make_node(
                "SkipLayerNormalization",
                [f"down_out{i}", f"h{i}", const(f"ln2_gamma{i}", w[p + "output.LayerNorm.weight"]),
                 const(f"ln2_beta{i}", w[p + "output.LayerNorm.bias"]), const(f"down_bias{i}", w[p + "output.dense.bias"])],
                [f"x{i + 1}"], domain="com.microsoft", epsilon=EPSILON),
        ]
        x = f"x{i + 1}"
    # Mean over the real tokens, then L2 normalisation, as sentence-transformers does.
    nodes += [
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis_last"], ["mask_3d"]),
        helper.make_node("Mul", [x, "mask_3d"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis_tokens"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask_3d", "axis_tokens"], ["counts"], keepdims=0),
        helper.make_node("Div", ["summed", "counts"], ["mean"]),
        helper.make_node("LpNormalization", ["mean"], ["embedding"], axis=-1, p=2),
    ]
    inits += [numpy_helper.from_array(np.array([-1], dtype=np.int64), "axis_last"),
              numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_tokens")]
    ids = [helper.make_tensor_value_info(n, TensorProto.INT32, ["batch", "tokens"]) for n in ("input_ids", "segment_ids", "attention_mask")]
    graph = helper.make_graph(nodes, "all-MiniLM-L6-v2", ids, [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", HIDDEN])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model


def session(path: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def feeds(ids):
    ids = np.asarray(ids, dtype=np.int32)
    return {"input_ids": ids, "segment_ids": np.zeros_like(ids), "attention_mask": np.ones_like(ids)}


def median_ms(run, seconds):
    run()  # warm up
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def ours_ms(routerctl, model, tokens, batch, threads, seconds, kernel, precision="fp32"):
    out = subprocess.run(
        [routerctl, "bench-encoder", "--model", model, "--tokens", str(tokens), "--batches", str(batch), "--threads", str(threads),
         "--seconds", str(seconds), "--kernel", kernel, "--precision", precision], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        cells = line.split()
        if len(cells) >= 4 and cells[:3] == [str(tokens), str(batch), str(threads)]:
            return float(cells[3])
    sys.exit(f"bench-encoder printed no row for {tokens}/{batch}/{threads}:\n{out}")


def lowest_cosine(path, golden_file):
    sess = session(path, 1)
    worst = 1.0
    for line in open(golden_file):
        golden = json.loads(line)
        out = sess.run(["embedding"], feeds([golden["ids"]]))[0][0]
        worst = min(worst, float(np.dot(out, np.asarray(golden["embedding"], dtype=np.float32))))
    return worst


def check_against_golden(fp32, int8, golden_file):
    if not os.path.exists(golden_file):
        print(f"(no golden file at {golden_file}: the graph's output is not checked)")
        return
    worst = lowest_cosine(fp32, golden_file)
    print(f"ORT fp32 graph against the golden embeddings: lowest cosine {worst:.6f}")
    if worst < 0.9999:
        sys.exit("the ORT graph does not compute the model's embeddings; the comparison would mean nothing")
    print(f"ORT int8 graph against the golden embeddings: lowest cosine {lowest_cosine(int8, golden_file):.6f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/all-MiniLM-L6-v2")
    parser.add_argument("--routerctl", default=".build/release/routerctl")
    parser.add_argument("--golden", default="../shared/data/encoder/minilm-golden.jsonl")
    parser.add_argument("--tokens", default="16,32,64,128")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--work", default=".cache/bench-encoder")
    parser.add_argument("--openblas", action="store_true", help="also time ours with the linear layers on OpenBLAS")
    parser.add_argument("--precision", default="int8", help="ours' reduced precision to time beside ORT's int8 (int8 or bf16)")
    args = parser.parse_args()

    os.makedirs(args.work, exist_ok=True)
    fp32 = os.path.join(args.work, "minilm-fp32.onnx")
    int8 = os.path.join(args.work, "minilm-int8.onnx")
    onnx.save(build_graph(os.path.join(args.model, "model.safetensors")), fp32)
    logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process applies to static quantization
    # Shape inference cannot type the outputs of com.microsoft ops; they are all float.
    quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": TensorProto.FLOAT})
    check_against_golden(fp32, int8, args.golden)
    print(f"onnxruntime {ort.__version__}; CPU: {cpu_model()}; flags: {cpu_flags()}")
    print("median ms per call; a ratio is ours / ORT's (below 1: ours is faster)")
    low = args.precision.upper()
    header = (f"{'TOKENS':>6} {'BATCH':>5} {'THREADS':>7} {'OURS FP32':>9} {'ORT FP32':>9} {'RATIO':>6}"
              f" {'OURS ' + low:>9} {'ORT INT8':>9} {low + '/FP32':>10} {low + '/INT8':>10}")
    if args.openblas:
        header += f" {'OPENBLAS':>9} {'RATIO':>6}"
    print(header)
    for threads in [int(t) for t in args.threads.split(",")]:
        sessions = {"fp32": session(fp32, threads), "int8": session(int8, threads)}
        for tokens in [int(t) for t in args.tokens.split(",")]:
            for batch in [int(b) for b in args.batches.split(",")]:
                ids = [[101] + [1996 + (i * 7 + j) % 20000 for j in range(tokens - 2)] + [102] for i in range(batch)]
                ort_fp32 = median_ms(lambda: sessions["fp32"].run(["embedding"], feeds(ids)), args.seconds)
                ours = ours_ms(args.routerctl, args.model, tokens, batch, threads, args.seconds, "onednn")
                ort_int8 = median_ms(lambda: sessions["int8"].run(["embedding"], feeds(ids)), args.seconds)
                ours_low = ours_ms(args.routerctl, args.model, tokens, batch, threads, args.seconds, "onednn", args.precision)
                row = (f"{tokens:>6} {batch:>5} {threads:>7} {ours:>9.2f} {ort_fp32:>9.2f} {ours / ort_fp32:>6.2f}"
                       f" {ours_low:>9.2f} {ort_int8:>9.2f} {ours_low / ort_fp32:>10.2f} {ours_low / ort_int8:>10.2f}")
                if args.openblas:
                    openblas = ours_ms(args.routerctl, args.model, tokens, batch, threads, args.seconds, "openblas")
                    row += f" {openblas:>9.2f} {openblas / ort_fp32:>6.2f}"
                print(row, flush=True)


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def cpu_flags():
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni") if f in flags) or "-"
    return "-"


if __name__ == "__main__":
    main()
