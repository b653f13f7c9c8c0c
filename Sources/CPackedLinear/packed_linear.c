#include "packed_linear.h"

#include <dlfcn.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder_kernels.h"

struct pl_linear {
    dnnl_primitive_t matmul;
    dnnl_memory_t weights;  // in the layout the primitive chose, filled once
    int inputs, outputs;
    pl_precision precision;
    const char *implementation;
    size_t weight_bytes;
    // int8 only: each weight column's scale and sum of quantized weights, and the factor each
    // input channel is multiplied by before the row is quantized (NULL: none).
    float *column_scale;
    int32_t *column_sum;
    float *input_factor;
};

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static dnnl_status_t engine_status;
// Set when a generation is swapped in, read by every product: atomic.
static int thread_count = 1;
// libgomp comes in with libdnnl; looked up rather than linked, as no omp.h is guaranteed.
static void (*set_omp_threads)(int);

// Streams are not thread-safe: each calling thread keeps one, destroyed when the thread exits
// (an encoder's batching workers end when a reload replaces the encoder). So is the scratch that
// int8 and bf16 convert their inputs into: routerd has malloc map every block over 128 KiB afresh
// (mallopt, for a bounded RSS), and a fresh block per product cost a batch of 8 prompts hundreds of
// page faults. Scratch up to `scratch_kept` bytes stays with the thread; a larger one is freed.
typedef struct {
    dnnl_stream_t stream;
    void *scratch;
    size_t capacity;
} thread_state;

static const size_t scratch_kept = (size_t)4 << 20;
static pthread_key_t state_key;

static void destroy_state(void *pointer) {
    thread_state *state = pointer;
    if (state->stream) dnnl_stream_destroy(state->stream);
    free(state->scratch);
    free(state);
}

static thread_state *current_state(void) {
    thread_state *state = pthread_getspecific(state_key);
    if (state) return state;
    state = calloc(1, sizeof *state);
    if (!state) return NULL;
    if (dnnl_stream_create(&state->stream, engine, dnnl_stream_default_flags) != dnnl_success) {
        free(state);
        return NULL;
    }
    pthread_setspecific(state_key, state);
    return state;
}

// `bytes` of scratch for this call; release_scratch after.
static void *take_scratch(thread_state *state, size_t bytes) {
    if (bytes > scratch_kept) return malloc(bytes);
    if (state->capacity < bytes) {
        free(state->scratch);
        state->scratch = malloc(bytes);
        state->capacity = state->scratch ? bytes : 0;
    }
    return state->scratch;
}

static void release_scratch(thread_state *state, void *scratch) {
    if (scratch != state->scratch) free(scratch);
}

static void make_engine(void) {
    engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0);
    if (engine_status == dnnl_success && pthread_key_create(&state_key, destroy_state) != 0) engine_status = dnnl_out_of_memory;
    set_omp_threads = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
}

void pl_set_threads(int threads) { __atomic_store_n(&thread_count, threads < 1 ? 1 : threads, __ATOMIC_RELAXED); }

// dnnl_cpu_isa_t is a bit set: each instruction-set extension adds bits to the ones it builds on.
static int has_vnni(dnnl_cpu_isa_t isa) { return (isa & 0x40) || (isa & 0x400); }
static int has_bf16(dnnl_cpu_isa_t isa) { return (isa & 0x80) != 0; }

const char *pl_cpu_isa(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

int pl_supports(pl_precision precision, char *why, size_t why_size) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    switch (precision) {
    case PL_FP32: return 1;
    case PL_INT8:
        if (isa >= dnnl_cpu_isa_avx2 && isa != dnnl_cpu_isa_avx512_mic && isa != dnnl_cpu_isa_avx512_mic_4ops) return 1;
        snprintf(why, why_size, "int8 needs AVX2; oneDNN's best instruction set on this CPU is %s", pl_cpu_isa());
        return 0;
    case PL_BF16:
        if (has_bf16(isa)) return 1;
        snprintf(why, why_size, "bf16 needs AVX512-BF16 or AMX; oneDNN's best instruction set on this CPU is %s", pl_cpu_isa());
        return 0;
    }
    snprintf(why, why_size, "unknown precision %d", (int)precision);
    return 0;
}

static pl_linear *fail(char *error, size_t size, const char *what, dnnl_status_t status) {
    snprintf(error, size, "oneDNN: %s failed (status %d)", what, (int)status);
    return NULL;
}

#define TRY(call, what)                                                                                                                   \
    do {                                                                                                                                  \
        dnnl_status_t status_ = (call);                                                                                                   \
        if (status_ != dnnl_success) {                                                                                                    \
            pl_destroy(linear);                                                                                                           \
            free(converted);                                                                                                              \
            return fail(error, error_size, what, status_);                                                                                \
        }                                                                                                                                 \
    } while (0)

// int8: SmoothQuant's per-channel migration (Xiao et al., 2023). A channel whose inputs reach far
// past the others' (BERT has a few) would take the whole row's quantization range; dividing it by
// s_k = sqrt(max|x_k| / max_n |w_kn|) and multiplying the weight row by s_k leaves the product
// unchanged and balances the two operands' ranges. Then a scale per output column, so that the
// column's largest weight maps to `limit`.
static int8_t *quantize_weights(pl_linear *linear, const float *weight, const float *input_range, int limit) {
    const int inputs = linear->inputs, outputs = linear->outputs;
    int8_t *quantized = malloc((size_t)inputs * outputs);
    float *smoothed = malloc(sizeof(float) * (size_t)inputs * outputs);
    linear->column_scale = malloc(sizeof(float) * outputs);
    linear->column_sum = malloc(sizeof(int32_t) * outputs);
    if (input_range) linear->input_factor = malloc(sizeof(float) * inputs);
    if (!quantized || !smoothed || !linear->column_scale || !linear->column_sum || (input_range && !linear->input_factor)) {
        free(quantized);
        free(smoothed);
        return NULL;
    }
    for (int i = 0; i < inputs; i++) {
        float factor = 1;
        if (input_range) {
            float largest = 0;
            for (int o = 0; o < outputs; o++) largest = fmaxf(largest, fabsf(weight[(size_t)i * outputs + o]));
            if (input_range[i] > 0 && largest > 0) factor = fminf(fmaxf(sqrtf(input_range[i] / largest), 1e-2f), 1e2f);
            linear->input_factor[i] = 1 / factor;
        }
        for (int o = 0; o < outputs; o++) smoothed[(size_t)i * outputs + o] = weight[(size_t)i * outputs + o] * factor;
    }
    for (int o = 0; o < outputs; o++) {
        float largest = 0;
        for (int i = 0; i < inputs; i++) largest = fmaxf(largest, fabsf(smoothed[(size_t)i * outputs + o]));
        const float step = largest > 0 ? largest / (float)limit : 1.0f;
        int32_t sum = 0;
        for (int i = 0; i < inputs; i++) {
            const int32_t q = (int32_t)lrintf(smoothed[(size_t)i * outputs + o] / step);
            const int32_t clamped = q > limit ? limit : (q < -limit ? -limit : q);
            quantized[(size_t)i * outputs + o] = (int8_t)clamped;
            sum += clamped;
        }
        linear->column_scale[o] = step;
        linear->column_sum[o] = sum;
    }
    free(smoothed);
    return quantized;
}

pl_linear *pl_create(const float *weight, int inputs, int outputs, pl_precision precision, const float *input_range, char *error,
                     size_t error_size) {
    pthread_once(&engine_once, make_engine);
    if (engine_status != dnnl_success) return fail(error, error_size, "creating the CPU engine", engine_status);
    if (!pl_supports(precision, error, error_size)) return NULL;
    if (precision == PL_INT8 && input_range && inputs > EK_QUANTIZE_MAX_FACTOR_COLS) {
        snprintf(error, error_size, "int8 calibration takes layers of at most %d inputs, not %d", EK_QUANTIZE_MAX_FACTOR_COLS, inputs);
        return NULL;
    }
    void *converted = NULL;
    pl_linear *linear = calloc(1, sizeof *linear);
    if (!linear) return fail(error, error_size, "allocating", dnnl_out_of_memory);
    linear->inputs = inputs;
    linear->outputs = outputs;
    linear->precision = precision;
    // The weights as the primitive takes them before packing, and the three operands' types.
    const void *plain_weights = weight;
    dnnl_data_type_t source_type = dnnl_f32, weight_type = dnnl_f32, destination_type = dnnl_f32;
    if (precision == PL_INT8) {
        // Without VNNI, oneDNN's u8·s8 kernels add pairs of products in 16 bits, which saturate
        // unless the weights keep to 7 bits (oneDNN's guide, "Nuances of int8 computations").
        converted = quantize_weights(linear, weight, input_range, has_vnni(dnnl_get_effective_cpu_isa()) ? 127 : 63);
        if (!converted) TRY(dnnl_out_of_memory, "quantizing the weights");
        plain_weights = converted;
        source_type = dnnl_u8;
        weight_type = dnnl_s8;
        destination_type = dnnl_s32;
    } else if (precision == PL_BF16) {
        converted = malloc(sizeof(uint16_t) * (size_t)inputs * outputs);
        if (!converted) TRY(dnnl_out_of_memory, "converting the weights");
        ek_to_bf16(weight, (size_t)inputs * outputs, converted);
        plain_weights = converted;
        source_type = dnnl_bf16;
        weight_type = dnnl_bf16;
    }
    // Rows vary per call, so the primitive takes them at run time; the weights' layout is left to
    // oneDNN (`any`), which packs them for its kernel.
    dnnl_memory_desc_t source, packed, plain, destination;
    dnnl_dims_t source_dims = {DNNL_RUNTIME_DIM_VAL, inputs}, weight_dims = {inputs, outputs},
                destination_dims = {DNNL_RUNTIME_DIM_VAL, outputs};
    TRY(dnnl_memory_desc_init_by_tag(&source, 2, source_dims, source_type, dnnl_ab), "describing the input");
    TRY(dnnl_memory_desc_init_by_tag(&packed, 2, weight_dims, weight_type, dnnl_format_tag_any), "describing the weights");
    TRY(dnnl_memory_desc_init_by_tag(&plain, 2, weight_dims, weight_type, dnnl_ab), "describing the weights");
    TRY(dnnl_memory_desc_init_by_tag(&destination, 2, destination_dims, destination_type, dnnl_ab), "describing the output");
    dnnl_matmul_desc_t description;
    TRY(dnnl_matmul_desc_init(&description, &source, &packed, NULL, &destination), "describing the matmul");
    dnnl_primitive_desc_t primitive_description;
    TRY(dnnl_primitive_desc_create(&primitive_description, &description, NULL, engine, NULL), "choosing a matmul kernel");
    const char *implementation = NULL;
    dnnl_primitive_desc_query(primitive_description, dnnl_query_impl_info_str, 0, &implementation);
    const dnnl_memory_desc_t *chosen = dnnl_primitive_desc_query_md(primitive_description, dnnl_query_weights_md, 0);
    linear->weight_bytes = dnnl_memory_desc_get_size(chosen) +
                           (precision == PL_INT8 ? (sizeof(float) + sizeof(int32_t)) * outputs + (input_range ? sizeof(float) * inputs : 0) : 0);
    dnnl_status_t status = dnnl_memory_create(&linear->weights, chosen, engine, DNNL_MEMORY_ALLOCATE);
    dnnl_memory_t user = NULL;
    dnnl_primitive_desc_t reorder_description = NULL;
    dnnl_primitive_t reorder = NULL;
    dnnl_stream_t stream = NULL;
    if (status == dnnl_success) status = dnnl_memory_create(&user, &plain, engine, (void *)plain_weights);
    if (status == dnnl_success) status = dnnl_reorder_primitive_desc_create(&reorder_description, &plain, engine, chosen, engine, NULL);
    if (status == dnnl_success) status = dnnl_primitive_create(&reorder, reorder_description);
    if (status == dnnl_success) status = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
    if (status == dnnl_success) {
        dnnl_exec_arg_t arguments[2] = {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, linear->weights}};
        status = dnnl_primitive_execute(reorder, stream, 2, arguments);
    }
    if (status == dnnl_success) status = dnnl_stream_wait(stream);
    if (status == dnnl_success) status = dnnl_primitive_create(&linear->matmul, primitive_description);
    if (stream) dnnl_stream_destroy(stream);
    if (reorder) dnnl_primitive_destroy(reorder);
    if (reorder_description) dnnl_primitive_desc_destroy(reorder_description);
    if (user) dnnl_memory_destroy(user);
    if (status == dnnl_success && implementation) linear->implementation = strdup(implementation);
    dnnl_primitive_desc_destroy(primitive_description);
    TRY(status, "packing the weights");
    free(converted);
    return linear;
}

// Runs a matmul on this thread's stream, on the caller's buffers described by `source`, `weights`
// (unless `packed`, the layer's own memory, is given) and `destination`.
static dnnl_status_t run_matmul(dnnl_primitive_t matmul, dnnl_stream_t stream, const dnnl_memory_desc_t *source, const void *input,
                                dnnl_memory_t packed, const dnnl_memory_desc_t *weights, const void *weight_data,
                                const dnnl_memory_desc_t *destination, void *output) {
    if (set_omp_threads) set_omp_threads(__atomic_load_n(&thread_count, __ATOMIC_RELAXED));
    dnnl_memory_t memories[3] = {NULL, packed, NULL};
    dnnl_status_t status = dnnl_memory_create(&memories[0], source, engine, (void *)input);
    if (status == dnnl_success && !packed) status = dnnl_memory_create(&memories[1], weights, engine, (void *)weight_data);
    if (status == dnnl_success) status = dnnl_memory_create(&memories[2], destination, engine, output);
    if (status == dnnl_success) {
        dnnl_exec_arg_t arguments[3] = {{DNNL_ARG_SRC, memories[0]}, {DNNL_ARG_WEIGHTS, memories[1]}, {DNNL_ARG_DST, memories[2]}};
        status = dnnl_primitive_execute(matmul, stream, 3, arguments);
    }
    if (status == dnnl_success) status = dnnl_stream_wait(stream);
    if (memories[0]) dnnl_memory_destroy(memories[0]);
    if (memories[1] && !packed) dnnl_memory_destroy(memories[1]);
    if (memories[2]) dnnl_memory_destroy(memories[2]);
    return status;
}

static dnnl_status_t execute(const pl_linear *linear, dnnl_stream_t thread_stream, const void *input, dnnl_data_type_t input_type, int rows,
                             void *output, dnnl_data_type_t output_type) {
    dnnl_memory_desc_t source, destination;
    dnnl_dims_t source_dims = {rows, linear->inputs}, destination_dims = {rows, linear->outputs};
    dnnl_memory_desc_init_by_tag(&source, 2, source_dims, input_type, dnnl_ab);
    dnnl_memory_desc_init_by_tag(&destination, 2, destination_dims, output_type, dnnl_ab);
    return run_matmul(linear->matmul, thread_stream, &source, input, linear->weights, NULL, NULL, &destination, output);
}

int pl_apply(const pl_linear *linear, const float *input, int rows, float *output) {
    if (rows == 0) return 0;
    const size_t values = (size_t)rows * linear->inputs;
    thread_state *state = current_state();
    if (!state) return (int)dnnl_out_of_memory;
    switch (linear->precision) {
    case PL_FP32: return (int)execute(linear, state->stream, input, dnnl_f32, rows, output, dnnl_f32);
    case PL_INT8: {
        // The int32 accumulators land in `output` (same size as its floats) and are scaled there.
        // Per row a scale and a zero point, then the row's bytes.
        float *scales = take_scratch(state, (sizeof(float) + sizeof(int32_t)) * rows + values);
        if (!scales) return (int)dnnl_out_of_memory;
        int32_t *zeros = (int32_t *)(scales + rows);
        uint8_t *quantized = (uint8_t *)(zeros + rows);
        ek_quantize_rows_u8(input, rows, linear->inputs, linear->input_factor, quantized, scales, zeros);
        dnnl_status_t status = execute(linear, state->stream, quantized, dnnl_u8, rows, output, dnnl_s32);
        if (status == dnnl_success)
            ek_dequantize_rows(output, rows, linear->outputs, scales, zeros, linear->column_scale, linear->column_sum);
        release_scratch(state, scales);
        return (int)status;
    }
    case PL_BF16: {
        uint16_t *rounded = take_scratch(state, sizeof(uint16_t) * values);
        if (!rounded) return (int)dnnl_out_of_memory;
        ek_to_bf16(input, values, rounded);
        dnnl_status_t status = execute(linear, state->stream, rounded, dnnl_bf16, rows, output, dnnl_f32);
        release_scratch(state, rounded);
        return (int)status;
    }
    }
    return (int)dnnl_invalid_arguments;
}

void pl_destroy(pl_linear *linear) {
    if (!linear) return;
    if (linear->matmul) dnnl_primitive_destroy(linear->matmul);
    if (linear->weights) dnnl_memory_destroy(linear->weights);
    free((void *)linear->implementation);
    free(linear->column_scale);
    free(linear->column_sum);
    free(linear->input_factor);
    free(linear);
}

const char *pl_implementation(const pl_linear *linear) { return linear->implementation ? linear->implementation : "unknown"; }

size_t pl_weight_bytes(const pl_linear *linear) { return linear->weight_bytes; }

struct pl_attention {
    dnnl_primitive_t scores, context;
    int heads, head_size;
};

void pl_attention_destroy(pl_attention *attention) {
    if (!attention) return;
    if (attention->scores) dnnl_primitive_destroy(attention->scores);
    if (attention->context) dnnl_primitive_destroy(attention->context);
    free(attention);
}

// The three strided views, by head, row and column: Q (or V) in the QKV rows, Kᵀ, the scores, and
// the context rows. `tokens` may be DNNL_RUNTIME_DIM_VAL, when the primitive is made for any length.
typedef struct {
    dnnl_memory_desc_t query, key, value, scores, context;
} attention_views;

static dnnl_status_t describe(attention_views *views, int heads, int head_size, dnnl_dim_t tokens) {
    const dnnl_dim_t width = (dnnl_dim_t)heads * head_size, row = 3 * width;
    const dnnl_dim_t square = tokens == DNNL_RUNTIME_DIM_VAL ? DNNL_RUNTIME_DIM_VAL : tokens * tokens;
    dnnl_dims_t by_row = {heads, tokens, head_size}, by_column = {heads, head_size, tokens}, scores = {heads, tokens, tokens};
    dnnl_dims_t row_strides = {head_size, row, 1}, column_strides = {head_size, 1, row}, score_strides = {square, tokens, 1},
                context_strides = {head_size, width, 1};
    dnnl_status_t status = dnnl_memory_desc_init_by_strides(&views->query, 3, by_row, dnnl_f32, row_strides);
    if (status == dnnl_success) status = dnnl_memory_desc_init_by_strides(&views->key, 3, by_column, dnnl_f32, column_strides);
    if (status == dnnl_success) status = dnnl_memory_desc_init_by_strides(&views->value, 3, by_row, dnnl_f32, row_strides);
    if (status == dnnl_success) status = dnnl_memory_desc_init_by_strides(&views->scores, 3, scores, dnnl_f32, score_strides);
    if (status == dnnl_success) status = dnnl_memory_desc_init_by_strides(&views->context, 3, by_row, dnnl_f32, context_strides);
    return status;
}

static dnnl_status_t make_matmul(dnnl_primitive_t *primitive, const dnnl_memory_desc_t *source, const dnnl_memory_desc_t *weights,
                                 const dnnl_memory_desc_t *destination, const_dnnl_primitive_attr_t attributes) {
    dnnl_matmul_desc_t description;
    dnnl_primitive_desc_t primitive_description;
    dnnl_status_t status = dnnl_matmul_desc_init(&description, source, weights, NULL, destination);
    if (status == dnnl_success) status = dnnl_primitive_desc_create(&primitive_description, &description, attributes, engine, NULL);
    if (status != dnnl_success) return status;
    status = dnnl_primitive_create(primitive, primitive_description);
    dnnl_primitive_desc_destroy(primitive_description);
    return status;
}

pl_attention *pl_attention_create(int heads, int head_size, float scale, char *error, size_t error_size) {
    pthread_once(&engine_once, make_engine);
    if (engine_status != dnnl_success) return (pl_attention *)fail(error, error_size, "creating the CPU engine", engine_status);
    pl_attention *attention = calloc(1, sizeof *attention);
    if (!attention) return (pl_attention *)fail(error, error_size, "allocating", dnnl_out_of_memory);
    attention->heads = heads;
    attention->head_size = head_size;
    attention_views views;
    dnnl_primitive_attr_t attributes = NULL;
    dnnl_status_t status = describe(&views, heads, head_size, DNNL_RUNTIME_DIM_VAL);
    if (status == dnnl_success) status = dnnl_primitive_attr_create(&attributes);
    if (status == dnnl_success) status = dnnl_primitive_attr_set_output_scales(attributes, 1, 0, &scale);
    if (status == dnnl_success) status = make_matmul(&attention->scores, &views.query, &views.key, &views.scores, attributes);
    if (status == dnnl_success) status = make_matmul(&attention->context, &views.scores, &views.value, &views.context, NULL);
    if (attributes) dnnl_primitive_attr_destroy(attributes);
    if (status != dnnl_success) {
        pl_attention_destroy(attention);
        return (pl_attention *)fail(error, error_size, "making attention's matmuls", status);
    }
    return attention;
}

int pl_attention_apply(const pl_attention *attention, const float *qkv, int tokens, float *scores, float *context) {
    if (tokens == 0) return 0;
    thread_state *state = current_state();
    if (!state) return (int)dnnl_out_of_memory;
    attention_views views;
    dnnl_status_t status = describe(&views, attention->heads, attention->head_size, tokens);
    const size_t width = (size_t)attention->heads * attention->head_size;
    if (status == dnnl_success)
        status = run_matmul(attention->scores, state->stream, &views.query, qkv, NULL, &views.key, qkv + width, &views.scores, scores);
    if (status != dnnl_success) return (int)status;
    ek_softmax_rows(scores, (size_t)attention->heads * tokens, tokens, tokens);
    return (int)run_matmul(
        attention->context, state->stream, &views.scores, scores, NULL, &views.value, qkv + 2 * width, &views.context, context);
}
