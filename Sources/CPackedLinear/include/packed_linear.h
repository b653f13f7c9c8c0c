// The encoder's matrix products on oneDNN (libdnnl-dev). A linear layer's weights are packed once
// at load for oneDNN's matmul, and applied to any number of rows; OpenBLAS re-packs its operand on
// every sgemm call, which dominates short prompts.
#ifndef PACKED_LINEAR_H
#define PACKED_LINEAR_H

#include <stddef.h>

typedef struct pl_linear pl_linear;

// The arithmetic a layer's product runs in. Inputs and outputs are fp32 in every case.
typedef enum {
    PL_FP32 = 0,
    // Weights quantized per output column at load, each input row quantized on the fly with its own
    // scale; the product accumulates in int32 (oneDNN's u8·s8 kernels).
    PL_INT8 = 1,
    // Weights and inputs rounded to bfloat16, accumulated in fp32; only where the CPU has AVX512-BF16
    // or AMX.
    PL_BF16 = 2,
} pl_precision;

// 1 if this CPU runs `precision` natively; otherwise 0, with the reason in `why`.
int pl_supports(pl_precision precision, char *why, size_t why_size);

// oneDNN's best instruction set on this CPU, as its enum's name ("avx2", "avx512_core_bf16", ...).
const char *pl_cpu_isa(void);

// Packs `weight`, [inputs × outputs] row-major, for out = in · weight in `precision`. For int8,
// `input_range` (or NULL) is the largest |value| each input channel took on calibration texts, from
// which outlier channels are smoothed into the weights. Returns NULL and writes a message into
// `error` if oneDNN refuses.
pl_linear *pl_create(const float *weight, int inputs, int outputs, pl_precision precision, const float *input_range, char *error,
                     size_t error_size);

// output[rows × outputs] = input[rows × inputs] · weight. Returns 0, or oneDNN's status on failure.
// Safe to call from several threads at once.
int pl_apply(const pl_linear *linear, const float *input, int rows, float *output);

void pl_destroy(pl_linear *linear);

// oneDNN's name for the implementation it chose (for `status`).
const char *pl_implementation(const pl_linear *linear);

// Bytes the packed weights (and int8's scales) take.
size_t pl_weight_bytes(const pl_linear *linear);

// Threads each product may use (oneDNN's OpenMP team, per calling thread).
void pl_set_threads(int threads);

// Attention for one text, every head at once: scores = softmax(scale · Q·Kᵀ) by row, then
// context = scores·V. oneDNN runs the heads as one batched matmul on strided views of the QKV rows,
// where OpenBLAS took two sgemm calls per head (2.2× the time at 128 tokens, one thread).
typedef struct pl_attention pl_attention;

// For `heads` heads of `head_size`: QKV rows hold Q, K and V side by side (3 × heads × head_size
// wide), context rows are heads × head_size wide.
pl_attention *pl_attention_create(int heads, int head_size, float scale, char *error, size_t error_size);

// context[tokens rows] = attention over the `tokens` rows at `qkv`, each head into its own columns;
// `scores` is scratch of heads × tokens × tokens. Returns 0, or oneDNN's status on failure.
int pl_attention_apply(const pl_attention *attention, const float *qkv, int tokens, float *scores, float *context);

void pl_attention_destroy(pl_attention *attention);

#endif
