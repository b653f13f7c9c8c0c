// A linear layer's weights packed once at load for oneDNN's matmul (libdnnl-dev), and applied to any
// number of rows. The encoder's four products per layer go through here; OpenBLAS re-packs its
// operand on every sgemm call, which dominates short prompts.
#ifndef PACKED_LINEAR_H
#define PACKED_LINEAR_H

#include <stddef.h>

typedef struct pl_linear pl_linear;

// Packs `weight`, [inputs × outputs] row-major, for out = in · weight. Returns NULL and writes a
// message into `error` if oneDNN refuses.
pl_linear *pl_create(const float *weight, int inputs, int outputs, char *error, size_t error_size);

// output[rows × outputs] = input[rows × inputs] · weight. Returns 0, or oneDNN's status on failure.
// Safe to call from several threads at once.
int pl_apply(const pl_linear *linear, const float *input, int rows, float *output);

void pl_destroy(pl_linear *linear);

// oneDNN's name for the implementation it chose (for `status`).
const char *pl_implementation(const pl_linear *linear);

// Threads each product may use (oneDNN's OpenMP team, per calling thread).
void pl_set_threads(int threads);

#endif
