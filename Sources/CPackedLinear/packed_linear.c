#include "packed_linear.h"

#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pl_linear {
    dnnl_primitive_t matmul;
    dnnl_memory_t weights;  // in the layout the primitive chose, filled once
    int inputs, outputs;
    const char *implementation;
};

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static dnnl_status_t engine_status;
// Set when a generation is swapped in, read by every product: atomic.
static int thread_count = 1;
// libgomp comes in with libdnnl; looked up rather than linked, as no omp.h is guaranteed.
static void (*set_omp_threads)(int);

// Streams are not thread-safe: each calling thread keeps one, destroyed when the thread exits
// (an encoder's batching workers end when a reload replaces the encoder).
static pthread_key_t stream_key;

static void destroy_stream(void *stream) { dnnl_stream_destroy((dnnl_stream_t)stream); }

static void make_engine(void) {
    engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0);
    if (engine_status == dnnl_success && pthread_key_create(&stream_key, destroy_stream) != 0) engine_status = dnnl_out_of_memory;
    set_omp_threads = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
}

void pl_set_threads(int threads) { __atomic_store_n(&thread_count, threads < 1 ? 1 : threads, __ATOMIC_RELAXED); }

static pl_linear *fail(char *error, size_t size, const char *what, dnnl_status_t status) {
    snprintf(error, size, "oneDNN: %s failed (status %d)", what, (int)status);
    return NULL;
}

#define TRY(call, what)                                                                                                                   \
    do {                                                                                                                                  \
        dnnl_status_t status_ = (call);                                                                                                   \
        if (status_ != dnnl_success) {                                                                                                    \
            pl_destroy(linear);                                                                                                           \
            return fail(error, error_size, what, status_);                                                                                \
        }                                                                                                                                 \
    } while (0)

pl_linear *pl_create(const float *weight, int inputs, int outputs, char *error, size_t error_size) {
    pthread_once(&engine_once, make_engine);
    if (engine_status != dnnl_success) return fail(error, error_size, "creating the CPU engine", engine_status);
    pl_linear *linear = calloc(1, sizeof *linear);
    if (!linear) return fail(error, error_size, "allocating", dnnl_out_of_memory);
    linear->inputs = inputs;
    linear->outputs = outputs;
    // Rows vary per call, so the primitive takes them at run time; the weights' layout is left to
    // oneDNN (`any`), which packs them for its kernel.
    dnnl_memory_desc_t source, packed, plain, destination;
    dnnl_dims_t source_dims = {DNNL_RUNTIME_DIM_VAL, inputs}, weight_dims = {inputs, outputs},
                destination_dims = {DNNL_RUNTIME_DIM_VAL, outputs};
    TRY(dnnl_memory_desc_init_by_tag(&source, 2, source_dims, dnnl_f32, dnnl_ab), "describing the input");
    TRY(dnnl_memory_desc_init_by_tag(&packed, 2, weight_dims, dnnl_f32, dnnl_format_tag_any), "describing the weights");
    TRY(dnnl_memory_desc_init_by_tag(&plain, 2, weight_dims, dnnl_f32, dnnl_ab), "describing the weights");
    TRY(dnnl_memory_desc_init_by_tag(&destination, 2, destination_dims, dnnl_f32, dnnl_ab), "describing the output");
    dnnl_matmul_desc_t description;
    TRY(dnnl_matmul_desc_init(&description, &source, &packed, NULL, &destination), "describing the matmul");
    dnnl_primitive_desc_t primitive_description;
    TRY(dnnl_primitive_desc_create(&primitive_description, &description, NULL, engine, NULL), "choosing a matmul kernel");
    const char *implementation = NULL;
    dnnl_primitive_desc_query(primitive_description, dnnl_query_impl_info_str, 0, &implementation);
    const dnnl_memory_desc_t *chosen = dnnl_primitive_desc_query_md(primitive_description, dnnl_query_weights_md, 0);
    dnnl_status_t status = dnnl_memory_create(&linear->weights, chosen, engine, DNNL_MEMORY_ALLOCATE);
    dnnl_memory_t user = NULL;
    dnnl_primitive_desc_t reorder_description = NULL;
    dnnl_primitive_t reorder = NULL;
    dnnl_stream_t stream = NULL;
    if (status == dnnl_success) status = dnnl_memory_create(&user, &plain, engine, (void *)weight);
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
    return linear;
}

int pl_apply(const pl_linear *linear, const float *input, int rows, float *output) {
    if (rows == 0) return 0;
    dnnl_stream_t thread_stream = pthread_getspecific(stream_key);
    if (!thread_stream) {
        dnnl_status_t status = dnnl_stream_create(&thread_stream, engine, dnnl_stream_default_flags);
        if (status != dnnl_success) return (int)status;
        pthread_setspecific(stream_key, thread_stream);
    }
    if (set_omp_threads) set_omp_threads(__atomic_load_n(&thread_count, __ATOMIC_RELAXED));
    dnnl_memory_desc_t source, destination;
    dnnl_dims_t source_dims = {rows, linear->inputs}, destination_dims = {rows, linear->outputs};
    dnnl_memory_desc_init_by_tag(&source, 2, source_dims, dnnl_f32, dnnl_ab);
    dnnl_memory_desc_init_by_tag(&destination, 2, destination_dims, dnnl_f32, dnnl_ab);
    dnnl_memory_t source_memory = NULL, destination_memory = NULL;
    dnnl_status_t status = dnnl_memory_create(&source_memory, &source, engine, (void *)input);
    if (status == dnnl_success) status = dnnl_memory_create(&destination_memory, &destination, engine, output);
    if (status == dnnl_success) {
        dnnl_exec_arg_t arguments[3] = {
            {DNNL_ARG_SRC, source_memory}, {DNNL_ARG_WEIGHTS, linear->weights}, {DNNL_ARG_DST, destination_memory}};
        status = dnnl_primitive_execute(linear->matmul, thread_stream, 3, arguments);
    }
    if (status == dnnl_success) status = dnnl_stream_wait(thread_stream);
    if (source_memory) dnnl_memory_destroy(source_memory);
    if (destination_memory) dnnl_memory_destroy(destination_memory);
    return (int)status;
}

void pl_destroy(pl_linear *linear) {
    if (!linear) return;
    if (linear->matmul) dnnl_primitive_destroy(linear->matmul);
    if (linear->weights) dnnl_memory_destroy(linear->weights);
    free((void *)linear->implementation);
    free(linear);
}

const char *pl_implementation(const pl_linear *linear) { return linear->implementation ? linear->implementation : "unknown"; }
