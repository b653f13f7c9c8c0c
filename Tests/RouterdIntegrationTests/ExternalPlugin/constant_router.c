/*
 * A router plugin written in C against router_plugin.h alone, built outside
 * the Swift package:
 *
 *   cc -shared -fPIC -I <repo>/Sources/CRouterPlugin/include \
 *      -o libconstant.so constant_router.c
 *
 * It proves the ABI is usable without this repository's build. Every prompt
 * scores the `score` parameter, or, with `embedding_component: i`, the
 * prompt embedding's component i mapped from [-1, 1] to [0, 1]. With an
 * encoder it also embeds the text "probe" through the host's embedding
 * service at create time and logs the first component. With `fail_scoring:
 * true` it is created fine but every score call fails. Test variants:
 *   -DPLUGIN_ABI_VERSION=N   claim another ABI version (the host must refuse it)
 *   -DOMIT_ENTRY             export no entry point (the host must refuse it)
 *   -DREVISION1              fill only ABI revision 1's vtable, as a plugin built before
 *                            revision 2 did (and leave a trap where score_models would be)
 *   -DSCORE_MODELS           predict each candidate's quality (revision 2): candidate j
 *                            gets score / (j + 1); a prompt starting "nan" gets NaN
 *   -DFAULTS                 misbehave on cue: a prompt starting "nan" scores NaN, "big"
 *                            scores 1.5, "mute" fails with RP_ERROR and no message, "hang"
 *                            takes 2 s to answer, "crash" writes through a NULL pointer (SIGSEGV);
 *                            and a `create_delay` parameter (seconds) makes create that slow
 */
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "router_plugin.h"

#ifndef PLUGIN_ABI_VERSION
#define PLUGIN_ABI_VERSION RP_ABI_VERSION
#endif

typedef struct {
    double score;
    long component; /* -1: use `score` */
    int fail_scoring;
    size_t candidate_count;
} constant_router;

static char *copy_string(const char *text) {
    size_t length = strlen(text) + 1;
    char *copy = malloc(length);
    if (copy) memcpy(copy, text, length);
    return copy;
}

static int create(const rp_host *host, const rp_instance_info *info, void **instance, char **error) {
    /* The host validated params against plugin.yaml, so "score" is a number here. */
    const char *found = strstr(info->params_json, "\"score\":");
    if (!found) {
        *error = copy_string("params lack 'score'");
        return RP_ERROR;
    }
#ifdef FAULTS
    const char *delay = strstr(info->params_json, "\"create_delay\":");
    if (delay) usleep((useconds_t)(strtod(delay + strlen("\"create_delay\":"), NULL) * 1e6));
#endif
    constant_router *router = malloc(sizeof *router);
    if (!router) return RP_ERROR;
    router->score = strtod(found + strlen("\"score\":"), NULL);
    const char *component = strstr(info->params_json, "\"embedding_component\":");
    router->fail_scoring = strstr(info->params_json, "\"fail_scoring\":true") != NULL;
    router->component = component ? strtol(component + strlen("\"embedding_component\":"), NULL, 10) : -1;
    /* A host of revision 1 names no candidates: then there are two, strong and weak. */
    router->candidate_count = info->struct_size >= sizeof(rp_instance_info) ? info->candidate_count : 2;
    if (router->component >= 0 && (size_t)router->component >= info->embedding_dim) {
        free(router);
        *error = copy_string("embedding_component needs an encoder with more dimensions");
        return RP_ERROR;
    }
    if (info->embedding_dim > 0 && host->struct_size >= sizeof(rp_host) && host->embed) {
        float *probe = malloc(info->embedding_dim * sizeof *probe);
        const char *embed_error = NULL;
        if (probe && host->embed(host->context, "probe", 5, probe, info->embedding_dim, &embed_error) == RP_OK) {
            char line[128];
            int n = snprintf(line, sizeof line, "probe component 0: %.9g", probe[0]);
            host->log(host->context, RP_LOG_INFO, line, (size_t)n);
        }
        free(probe);
    }
    if (router->score < 0 || router->score > 1) {
        free(router);
        *error = copy_string("score must be within [0, 1]");
        return RP_ERROR;
    }
    char message[128];
    int length = snprintf(message, sizeof message, "constant router '%s' created with score %g", info->name, router->score);
    host->log(host->context, RP_LOG_INFO, message, (size_t)length);
    *instance = router;
    return RP_OK;
}

static int score(void *instance, const rp_prompt *prompts, size_t count, double *scores, char **error) {
    const constant_router *router = instance;
    if (router->fail_scoring) {
        *error = copy_string("told to fail (fail_scoring: true)");
        return RP_ERROR;
    }
    for (size_t i = 0; i < count; i++) {
#ifdef FAULTS
        if (prompts[i].text_len >= 3 && memcmp(prompts[i].text, "nan", 3) == 0) {
            scores[i] = NAN;
            continue;
        }
        if (prompts[i].text_len >= 3 && memcmp(prompts[i].text, "big", 3) == 0) {
            scores[i] = 1.5;
            continue;
        }
        if (prompts[i].text_len >= 4 && memcmp(prompts[i].text, "mute", 4) == 0) {
            return RP_ERROR; /* and no message */
        }
        if (prompts[i].text_len >= 4 && memcmp(prompts[i].text, "hang", 4) == 0) {
            usleep(2000000);
        }
        if (prompts[i].text_len >= 5 && memcmp(prompts[i].text, "crash", 5) == 0) {
            /* A real fault, not raise(): a handler that returns would let raise() carry on. */
            volatile int *nowhere = NULL;
            *nowhere = 1;
        }
#endif
        if (router->component < 0) {
            scores[i] = router->score;
        } else if (prompts[i].embedding == NULL || (size_t)router->component >= prompts[i].embedding_dim) {
            *error = copy_string("no embedding arrived with the prompt");
            return RP_ERROR;
        } else {
            scores[i] = (prompts[i].embedding[router->component] + 1.0) / 2.0;
        }
    }
    return RP_OK;
}

#ifdef SCORE_MODELS
static int score_models(void *instance, const rp_prompt *prompts, size_t count, double *qualities, char **error) {
    const constant_router *router = instance;
    if (router->fail_scoring) {
        *error = copy_string("told to fail (fail_scoring: true)");
        return RP_ERROR;
    }
    for (size_t i = 0; i < count; i++) {
        int poisoned = prompts[i].text_len >= 3 && memcmp(prompts[i].text, "nan", 3) == 0;
        for (size_t j = 0; j < router->candidate_count; j++) {
            qualities[i * router->candidate_count + j] = poisoned ? NAN : router->score / (double)(j + 1);
        }
    }
    return RP_OK;
}
#endif

#ifdef FAMILIARITY
/* Revision 4: prompts starting "new" are unfamiliar (0), every other one familiar (1). */
static int familiarity(void *instance, const rp_prompt *prompts, size_t count, double *out, char **error) {
    (void)instance;
    (void)error;
    for (size_t i = 0; i < count; i++) {
        out[i] = prompts[i].text_len >= 3 && memcmp(prompts[i].text, "new", 3) == 0 ? 0.0 : 1.0;
    }
    return RP_OK;
}
#endif

#ifdef SAMPLE
/* Revision 5: a posterior torn between the two models: draw d says strong (P 0.9) when d + seed
 * is even, weak (P 0.1) when odd, so exactly half of an even number of draws choose each. */
static int sample(void *instance, const rp_prompt *prompt, size_t draws, uint64_t seed, double *out, char **error) {
    (void)prompt;
    (void)error;
    size_t width = 1 + ((constant_router *)instance)->candidate_count;
    for (size_t d = 0; d < draws; d++) {
        double p = (d + seed) % 2 == 0 ? 0.9 : 0.1;
        out[d * width] = p;
        out[d * width + 1] = p;
        out[d * width + 2] = 1 - p;
    }
    return RP_OK;
}
#endif

static char *describe(void *instance) {
#ifdef DESCRIBE_TEXT
    /* A test builds a plugin whose description breaks the contract. */
    (void)instance;
    return copy_string(DESCRIBE_TEXT);
#endif
    char text[64];
    snprintf(text, sizeof text, "{\"score\":%g}", ((constant_router *)instance)->score);
    return copy_string(text);
}

static void destroy(void *instance) { free(instance); }

static void free_string(char *text) { free(text); }

#ifndef OMIT_ENTRY
int routerd_plugin_entry(uint32_t host_abi_version, rp_plugin *out, size_t out_size) {
    (void)host_abi_version; /* report our version; the host decides */
#ifdef REVISION1
    if (out_size < offsetof(rp_plugin, score_models)) return RP_ERROR;
    out->struct_size = offsetof(rp_plugin, score_models);
    /* Past struct_size: a host that read it anyway would call a bad pointer. */
    out->score_models = (int (*)(void *, const rp_prompt *, size_t, double *, char **))(uintptr_t)1;
#elif defined(REVISION4)
    if (out_size < offsetof(rp_plugin, sample)) return RP_ERROR;
    out->struct_size = offsetof(rp_plugin, sample);
    /* Past struct_size: a host that read it anyway would call a bad pointer. */
    out->sample = (int (*)(void *, const rp_prompt *, size_t, uint64_t, double *, char **))(uintptr_t)1;
#elif defined(REVISION3)
    if (out_size < offsetof(rp_plugin, familiarity)) return RP_ERROR;
    out->struct_size = offsetof(rp_plugin, familiarity);
    /* Past struct_size: a host that read it anyway would call a bad pointer. */
    out->familiarity = (int (*)(void *, const rp_prompt *, size_t, double *, char **))(uintptr_t)1;
#else
    if (out_size < sizeof *out) return RP_ERROR;
    out->struct_size = sizeof *out;
#endif
#ifdef SCORE_MODELS
    out->score_models = score_models;
#endif
#ifdef FAMILIARITY
    out->familiarity = familiarity;
#endif
#ifdef SAMPLE
    out->sample = sample;
#endif
    out->abi_version = PLUGIN_ABI_VERSION;
    out->name = "constant";
    out->version = "1.0.0";
    out->create = create;
    out->score = score;
    out->describe = describe;
    out->destroy = destroy;
    out->free_string = free_string;
    return RP_OK;
}
#else
int some_other_symbol(void) { return 0; }
#endif
