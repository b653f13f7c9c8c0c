/*
 * router_plugin.h — the one ABI between routerd and its router plugins.
 *
 * A plugin is a shared library that exports one C entry point,
 * `routerd_plugin_entry`, which fills a `rp_plugin` vtable. Everything that
 * crosses the boundary is plain C: integers, doubles, floats and UTF-8 strings
 * passed as pointer + length. Swift types never cross it (a Swift protocol
 * cast across a dlopen boundary is unsound; see docs/PLUGINS.md).
 *
 * Evolution rules:
 *   - RP_ABI_VERSION changes only when an existing field changes meaning or
 *     layout. The host rejects a plugin whose version differs from its own.
 *   - New fields are only ever appended to a struct. Each struct starts with
 *     `struct_size`, so either side can tell which fields the other knows.
 *   - RP_ABI_REVISION counts those appendices. A plugin built against an older
 *     revision loads unchanged; a field past the other side's `struct_size` is
 *     treated as absent.
 *
 * Revisions:
 *   1. The first release: one P(strong wins) per prompt (`score`).
 *   2. Per-model quality ("ABI v2"): the host names the router's candidate
 *      models (rp_instance_info.candidates), and a plugin may predict each
 *      candidate's quality per prompt (rp_plugin.score_models). A plugin
 *      without `score_models` routes between exactly two models, as before.
 *   3. Online learning: the host gives an instance a folder for its state
 *      (rp_instance_info.state_dir), and a plugin whose descriptor says
 *      `learns_online: true` folds reported outcomes into its state
 *      (rp_plugin.learn) and can forget them (rp_plugin.forget).
 *   4. Familiarity: a plugin may say how familiar each prompt is to the router,
 *      given what it was trained on and has learned (rp_plugin.familiarity),
 *      so the host can flag novel prompts and route them by a rule.
 *   5. Posterior draws: a plugin may draw a prompt's predictions from what the
 *      router believes, uncertainty included (rp_plugin.sample), so the host
 *      can explore by Thompson sampling and log each choice's propensity.
 *   6. Prices: the host tells an instance what each candidate costs
 *      (rp_instance_info.candidate_costs), so a router with no data yet can
 *      start from a prior by price tier.
 *
 * Threading: `score` may be called concurrently from several threads on the
 * same instance. `create` and `destroy` are never called concurrently with
 * anything else on the same instance.
 *
 * Memory: strings a plugin hands out (errors, descriptions) are allocated by
 * the plugin and released by the host through `free_string`. Pointers the host
 * passes in are valid only for the duration of the call.
 */
#ifndef ROUTER_PLUGIN_H
#define ROUTER_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header describes. */
#define RP_ABI_VERSION 1u

/* The latest appendix this header describes (see "Revisions" above). */
#define RP_ABI_REVISION 6u

/* The symbol every plugin exports. */
#define RP_ENTRY_SYMBOL "routerd_plugin_entry"

/* Return codes of the functions below. */
#define RP_OK 0
#define RP_ERROR 1

/* Log levels for rp_host.log. */
#define RP_LOG_DEBUG 0
#define RP_LOG_INFO 1
#define RP_LOG_WARNING 2
#define RP_LOG_ERROR 3

/* Services the host offers a plugin. Passed to `create`; valid for the
 * lifetime of the instance. */
typedef struct rp_host {
    uint32_t abi_version;   /* RP_ABI_VERSION of the host */
    uint32_t struct_size;   /* sizeof(rp_host) as the host compiled it */
    void *context;          /* opaque; pass back to the functions below */

    /* Writes one log line through the daemon's logger, tagged with the
     * router instance's name. */
    void (*log)(void *context, int level, const char *message, size_t message_len);

    /* Embeds `text` with the encoder configured for this router instance.
     * On success writes `dim` floats (the encoder's dimension, see
     * rp_instance_info.embedding_dim) to `out` and returns RP_OK. Returns
     * RP_ERROR and sets *error (a host-owned string valid until the next call
     * on this thread) when the instance has no encoder or embedding fails.
     * Use it for texts other than the prompt being scored, whose embedding
     * already arrives in rp_prompt. */
    int (*embed)(void *context, const char *text, size_t text_len, float *out, size_t dim,
                 const char **error);

    /* Counts one event of this router instance, e.g. "fallback.timeout". The
     * daemon's `stats` shows the counts under the router's "events". Added
     * after the first release of ABI 1: check struct_size before calling. */
    void (*count)(void *context, const char *event, size_t event_len);
} rp_host;

/* What the host tells a plugin about the instance it creates. */
typedef struct rp_instance_info {
    uint32_t struct_size;       /* sizeof(rp_instance_info) as the host compiled it */
    const char *name;           /* router instance name, NUL-terminated */
    const char *params_json;    /* validated parameters as a JSON object, NUL-terminated;
                                   defaults from the descriptor are filled in, and
                                   parameters of type `path` are absolute */
    size_t params_json_len;
    const char *strong_model;   /* NUL-terminated */
    const char *weak_model;     /* NUL-terminated */
    size_t embedding_dim;       /* 0 when the instance has no encoder */

    /* Revision 2. The router's candidate models, NUL-terminated names, in the
     * order `score_models` writes qualities. Two or more. For a router of two
     * candidates they are {strong_model, weak_model}; for more, strong_model and
     * weak_model are the dearest and the cheapest candidate, so `score` stays
     * meaningful. Check struct_size before reading. */
    const char *const *candidates;
    size_t candidate_count;

    /* Revision 3. The folder (NUL-terminated) where the instance keeps what it
     * learns online, so a restart or a new instance of the same router starts
     * from it; the plugin creates it when it first writes. NULL when the host
     * does not offer learning (no feedback configured, or the descriptor does
     * not say `learns_online: true`). Check struct_size before reading. */
    const char *state_dir;

    /* Revision 6. Each candidate's nominal cost in USD, in the order of
     * `candidates`: the catalogue's price of a 256-token prompt and the
     * model's output_tokens, what ranks models from cheap to dear. NULL when
     * the config prices not every candidate (no `models:` catalogue). Check
     * struct_size before reading. */
    const double *candidate_costs;
} rp_instance_info;

/* One prompt to score. */
typedef struct rp_prompt {
    const char *text;           /* UTF-8, not NUL-terminated */
    size_t text_len;
    const float *embedding;     /* L2-normalised, `embedding_dim` floats;
                                   NULL when the instance has no encoder */
    size_t embedding_dim;
} rp_prompt;

/* Kinds of rp_outcome. */
#define RP_OUTCOME_PAIRWISE 0u
#define RP_OUTCOME_POINTWISE 1u

/* One outcome a service reported (revision 3): how candidate `model` did on a prompt. */
typedef struct rp_outcome {
    uint32_t kind;              /* RP_OUTCOME_PAIRWISE or RP_OUTCOME_POINTWISE */
    rp_prompt prompt;           /* the prompt, with its embedding when the instance has an encoder */
    size_t model;               /* index into rp_instance_info.candidates */
    size_t against;             /* pairwise: the other candidate's index; pointwise: unused */
    double value;               /* pairwise: 1 `model` won, 0 it lost, 0.5 a tie;
                                   pointwise: a quality in [0, 1] */
} rp_outcome;

/* The vtable a plugin fills in. */
typedef struct rp_plugin {
    uint32_t abi_version;   /* must be RP_ABI_VERSION */
    uint32_t struct_size;   /* sizeof(rp_plugin) as the plugin compiled it */
    const char *name;       /* plugin name, NUL-terminated, static storage */
    const char *version;    /* plugin version, NUL-terminated, static storage */

    /* Creates a router instance. On success stores it in *instance and
     * returns RP_OK; on failure returns RP_ERROR and may store a message in
     * *error (release it with free_string). */
    int (*create)(const rp_host *host, const rp_instance_info *info, void **instance,
                  char **error);

    /* Scores `count` prompts: writes P(strong model wins) in [0, 1] to
     * scores[0..count). Returns RP_OK, or RP_ERROR with *error set. */
    int (*score)(void *instance, const rp_prompt *prompts, size_t count, double *scores,
                 char **error);

    /* Describes the instance as a JSON object (for `routers` and `status`).
     * Returns a NUL-terminated string to release with free_string, or NULL. */
    char *(*describe)(void *instance);

    /* Destroys an instance. The library itself is never unloaded. */
    void (*destroy)(void *instance);

    /* Releases a string this plugin returned. */
    void (*free_string)(char *string);

    /* Revision 2; optional (NULL: the plugin predicts only P(strong wins) and
     * can route between exactly two candidates). Predicts each candidate's
     * quality on `count` prompts: writes qualities[i * candidate_count + j] for
     * prompt i and candidate j, in the order of rp_instance_info.candidates.
     * The scale is the one the description's "quality_scale" states ([0, 1]
     * when absent); higher is better, and values must be finite. Returns RP_OK,
     * or RP_ERROR with *error set. May be called concurrently, like `score`. */
    int (*score_models)(void *instance, const rp_prompt *prompts, size_t count, double *qualities,
                        char **error);

    /* Revision 3; required when the descriptor says `learns_online: true`,
     * else NULL. Folds `count` outcomes into the instance's learned state,
     * persists it under rp_instance_info.state_dir (crash-safely: a reader of
     * the state never sees half of it), and publishes it: every `score` that
     * starts after this returns sees it. Called by one host thread at a time,
     * concurrently with `score`. Returns RP_OK, or RP_ERROR with *error set
     * and nothing learned. */
    int (*learn)(void *instance, const rp_outcome *outcomes, size_t count, char **error);

    /* Revision 3; with `learn`. Forgets everything learned online, on disk
     * too: the instance scores as its weights alone say. Same threading and
     * return convention as `learn`. */
    int (*forget)(void *instance, char **error);

    /* Revision 4; optional (NULL: the plugin cannot tell). Writes, for each of
     * `count` prompts, how familiar it is to the router in [0, 1]: the share of
     * the router's own training prompts that are less familiar to it than this
     * one (so about 5% of prompts like the training data fall below 0.05, and a
     * prompt unlike anything the router knows scores near 0). What it has
     * learned online counts as known. Called only for routers configured with
     * `novelty:`, on the request's path; may be called concurrently, like
     * `score`. Returns RP_OK, or RP_ERROR with *error set. */
    int (*familiarity)(void *instance, const rp_prompt *prompts, size_t count, double *familiarity,
                       char **error);

    /* Revision 5; optional (NULL: the plugin knows no posterior, and a router
     * of it cannot explore by Thompson sampling). Draws `draws` samples of one
     * prompt's predictions from the router's posterior: for draw d, writes
     * samples[d * (1 + candidate_count)] = P(strong model wins) under that
     * draw, then the candidates' qualities on the scale of `score_models` (or,
     * without it, {P, 1 - P}). The mean of many draws should be near what
     * `score` and `score_models` return, and their spread shrinks as evidence
     * near the prompt grows. The same `seed` gives the same draws. Called on the
     * request's path for routers configured with `explore: {strategy:
     * thompson}`; may be called concurrently, like `score`. Returns RP_OK, or
     * RP_ERROR with *error set. */
    int (*sample)(void *instance, const rp_prompt *prompt, size_t draws, uint64_t seed, double *samples,
                  char **error);
} rp_plugin;

/* The entry point's type. The host passes its own ABI version and
 * sizeof(rp_plugin); the plugin fills `out` (at most `out_size` bytes) and
 * returns RP_OK, or RP_ERROR if it cannot serve this host. */
typedef int (*rp_entry_fn)(uint32_t host_abi_version, rp_plugin *out, size_t out_size);

#ifdef __cplusplus
}
#endif

#endif /* ROUTER_PLUGIN_H */
