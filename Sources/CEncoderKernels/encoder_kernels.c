#include "encoder_kernels.h"

#include <math.h>
#include <string.h>

/* Each hot function is compiled for several instruction sets; the dynamic
 * loader picks the best one the CPU has (GNU ifunc). Not under ThreadSanitizer:
 * the compiler instruments the ifunc resolver, which the loader runs before
 * TSan's runtime is up, and the process crashes at start (`make test-tsan`). */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ROUTERD_TSAN 1
#endif
#endif
#if defined(__x86_64__) && defined(__linux__) && !defined(ROUTERD_TSAN)
#define MULTIVERSION __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define MULTIVERSION
#endif

/* exp(x) for the softmax, accurate to about 2 ulp (Cephes' polynomial), in a form the compiler vectorises: exp(x) = 2^n * e^r with
 * n = round(x / ln 2) and |r| <= ln(2)/2, e^r by a degree-6 polynomial. */
static inline float fast_expf(float x) {
    x = fminf(fmaxf(x, -87.0f), 88.0f);
    const float n = rintf(x * 1.44269504088896341f);
    const float r = fmaf(n, -0.693359375f, x) - n * -2.12194440e-4f;
    /* Cephes expf coefficients. */
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p * r, r, r) + 1.0f;
    union {
        int32_t i;
        float f;
    } scale = {.i = ((int32_t)n + 127) << 23};
    return p * scale.f;
}

/* erf(x), max absolute error 1.2e-7 (Numerical Recipes' erfc Chebyshev fit,
 * written branch-free so it vectorises). */
static inline float fast_erff(float x) {
    const float z = fabsf(x);
    const float t = 1.0f / fmaf(0.5f, z, 1.0f);
    float p = 0.17087277f;
    p = fmaf(p, t, -0.82215223f);
    p = fmaf(p, t, 1.48851587f);
    p = fmaf(p, t, -1.13520398f);
    p = fmaf(p, t, 0.27886807f);
    p = fmaf(p, t, -0.18628806f);
    p = fmaf(p, t, 0.09678418f);
    p = fmaf(p, t, 0.37409196f);
    p = fmaf(p, t, 1.00002368f);
    p = fmaf(p, t, -1.26551223f);
    const float erfc = t * fast_expf(fmaf(-z, z, p));
    return copysignf(1.0f - erfc, x);
}

MULTIVERSION
void ek_embed(float *out, const int32_t *ids, const int32_t *positions, size_t rows, size_t dim, const float *word,
              const float *position, const float *type0) {
    for (size_t r = 0; r < rows; r++) {
        const float *w = word + (size_t)ids[r] * dim;
        const float *p = position + (size_t)positions[r] * dim;
        float *o = out + r * dim;
        for (size_t c = 0; c < dim; c++) o[c] = w[c] + p[c] + type0[c];
    }
}

MULTIVERSION
void ek_add_bias(float *x, const float *bias, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * cols;
        for (size_t c = 0; c < cols; c++) row[c] += bias[c];
    }
}

MULTIVERSION
void ek_bias_gelu(float *x, const float *bias, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * cols;
        for (size_t c = 0; c < cols; c++) {
            const float v = row[c] + bias[c];
            row[c] = 0.5f * v * (1.0f + fast_erff(v * 0.70710678118654752f));
        }
    }
}

static inline void normalize_row(float *row, const float *gamma, const float *beta, size_t cols, float eps) {
    float sum = 0.0f;
    for (size_t c = 0; c < cols; c++) sum += row[c];
    const float mean = sum / (float)cols;
    float squares = 0.0f;
    for (size_t c = 0; c < cols; c++) {
        const float d = row[c] - mean;
        squares += d * d;
    }
    const float inverse = 1.0f / sqrtf(squares / (float)cols + eps);
    for (size_t c = 0; c < cols; c++) row[c] = (row[c] - mean) * inverse * gamma[c] + beta[c];
}

MULTIVERSION
void ek_bias_residual_layernorm(float *x, const float *bias, const float *residual, const float *gamma, const float *beta,
                                size_t rows, size_t cols, float eps) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * cols;
        const float *res = residual + r * cols;
        for (size_t c = 0; c < cols; c++) row[c] += bias[c] + res[c];
        normalize_row(row, gamma, beta, cols, eps);
    }
}

MULTIVERSION
void ek_layernorm(float *x, const float *gamma, const float *beta, size_t rows, size_t cols, float eps) {
    for (size_t r = 0; r < rows; r++) normalize_row(x + r * cols, gamma, beta, cols, eps);
}

MULTIVERSION
void ek_softmax_rows(float *s, size_t rows, size_t cols, size_t ld) {
    for (size_t r = 0; r < rows; r++) {
        float *row = s + r * ld;
        float max = row[0];
        for (size_t c = 1; c < cols; c++) max = fmaxf(max, row[c]);
        float sum = 0.0f;
        for (size_t c = 0; c < cols; c++) {
            const float e = fast_expf(row[c] - max);
            row[c] = e;
            sum += e;
        }
        const float inverse = 1.0f / sum;
        for (size_t c = 0; c < cols; c++) row[c] *= inverse;
    }
}

static void normalize_vector(float *out, size_t cols) {
    double squares = 0.0;
    for (size_t c = 0; c < cols; c++) squares += (double)out[c] * out[c];
    const float inverse = squares > 0 ? (float)(1.0 / sqrt(squares)) : 0.0f;
    for (size_t c = 0; c < cols; c++) out[c] *= inverse;
}

void ek_mean_pool_normalize(const float *x, size_t rows, size_t cols, float *out) {
    memset(out, 0, cols * sizeof *out);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) out[c] += x[r * cols + c];
    for (size_t c = 0; c < cols; c++) out[c] /= (float)rows;
    normalize_vector(out, cols);
}

void ek_weighted_mean_normalize(const float *vectors, const float *weights, size_t count, size_t cols, float *out) {
    memset(out, 0, cols * sizeof *out);
    for (size_t i = 0; i < count; i++)
        for (size_t c = 0; c < cols; c++) out[c] += weights[i] * vectors[i * cols + c];
    normalize_vector(out, cols);
}

static inline void quantize_row(const float *y, size_t cols, uint8_t *out, float *scale, int32_t *zero) {
    float low = 0, high = 0;
    for (size_t c = 0; c < cols; c++) {
        low = fminf(low, y[c]);
        high = fmaxf(high, y[c]);
    }
    const float step = high > low ? (high - low) / 255.0f : 1.0f;
    const float inverse = 1.0f / step;
    const float offset = fminf(fmaxf(nearbyintf(-low * inverse), 0.0f), 255.0f);
    for (size_t c = 0; c < cols; c++) out[c] = (uint8_t)(int32_t)fminf(fmaxf(nearbyintf(y[c] * inverse) + offset, 0.0f), 255.0f);
    *scale = step;
    *zero = (int32_t)offset;
}

MULTIVERSION
void ek_quantize_rows_u8(const float *x, size_t rows, size_t cols, const float *factor, uint8_t *q, float *scale, int32_t *zero) {
    float scaled[EK_QUANTIZE_MAX_FACTOR_COLS];
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * cols;
        if (factor) {
            for (size_t c = 0; c < cols; c++) scaled[c] = row[c] * factor[c];
            row = scaled;
        }
        quantize_row(row, cols, q + r * cols, scale + r, zero + r);
    }
}

MULTIVERSION
void ek_dequantize_rows(float *x, size_t rows, size_t cols, const float *row_scale, const int32_t *zero, const float *column_scale,
                        const int32_t *column_sum) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * cols;
        const int32_t *acc = (const int32_t *)row;
        const float s = row_scale[r];
        const int32_t z = zero[r];
        for (size_t c = 0; c < cols; c++) {
            int32_t a;
            memcpy(&a, acc + c, sizeof a);
            row[c] = (float)(a - z * column_sum[c]) * (s * column_scale[c]);
        }
    }
}

MULTIVERSION
void ek_to_bf16(const float *x, size_t count, uint16_t *out) {
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, x + i, sizeof bits);
        const uint32_t rounded = bits + 0x7FFFu + ((bits >> 16) & 1u);
        out[i] = (x[i] != x[i]) ? (uint16_t)((bits >> 16) | 0x40u) : (uint16_t)(rounded >> 16);
    }
}
