/*
 * Elementwise kernels of the MiniLM forward pass: the parts that are not
 * matrix products (those go to BLAS). Written in C so the compiler vectorises
 * them for the running CPU (function multi-versioning picks AVX-512, AVX2 or
 * baseline code at load time).
 */
#ifndef ENCODER_KERNELS_H
#define ENCODER_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* out[r, :] = word[ids[r]] + position[positions[r]] + type0, for r in [0, rows). */
void ek_embed(float *out, const int32_t *ids, const int32_t *positions, size_t rows, size_t dim, const float *word,
              const float *position, const float *type0);

/* x[r, :] += bias for every row. */
void ek_add_bias(float *x, const float *bias, size_t rows, size_t cols);

/* x[r, :] = erf-GELU(x[r, :] + bias). */
void ek_bias_gelu(float *x, const float *bias, size_t rows, size_t cols);

/* x[r, :] = LayerNorm(x[r, :] + bias + residual[r, :]) * gamma + beta; residual may equal x. */
void ek_bias_residual_layernorm(float *x, const float *bias, const float *residual, const float *gamma, const float *beta,
                                size_t rows, size_t cols, float eps);

/* x[r, :] = LayerNorm(x[r, :]) * gamma + beta. */
void ek_layernorm(float *x, const float *gamma, const float *beta, size_t rows, size_t cols, float eps);

/* Softmax of each row of s (rows × cols, row stride ld). */
void ek_softmax_rows(float *s, size_t rows, size_t cols, size_t ld);

/* out = mean of the rows of x (rows × cols), then L2-normalised. */
void ek_mean_pool_normalize(const float *x, size_t rows, size_t cols, float *out);

/* out = sum of weight[i] * vectors[i] (count × cols), then L2-normalised. */
void ek_weighted_mean_normalize(const float *vectors, const float *weights, size_t count, size_t cols, float *out);

/* Each row of y = x · diag(factor) (x is rows × cols; factor NULL means ones) quantized to unsigned bytes
 * over its own range: scale[r] = (max y[r, :] - min y[r, :]) / 255, zero[r] = round(-min / scale[r]), and
 * q[r, c] = round(y[r, c] / scale[r]) + zero[r], in [0, 255]. A row after GELU, mostly positive, keeps all
 * 256 levels where a symmetric scale would waste half of them. With a factor, cols is at most
 * EK_QUANTIZE_MAX_FACTOR_COLS. */
#define EK_QUANTIZE_MAX_FACTOR_COLS 4096
void ek_quantize_rows_u8(const float *x, size_t rows, size_t cols, const float *factor, uint8_t *q, float *scale, int32_t *zero);

/* The fp32 result of a u8·s8 product: x[r, c] = (acc[r, c] - zero[r] * column_sum[c]) * row_scale[r] * column_scale[c],
 * in place (acc and x are the same buffer, read as int32 and written as float). column_sum[c], the sum of
 * the quantized weight column, undoes the rows' zero points. */
void ek_dequantize_rows(float *x, size_t rows, size_t cols, const float *row_scale, const int32_t *zero, const float *column_scale,
                        const int32_t *column_sum);

/* bfloat16 of each value, rounded to nearest even (NaN stays NaN). */
void ek_to_bf16(const float *x, size_t count, uint16_t *out);

#endif
