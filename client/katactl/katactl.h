/*
 * katactl, the command-line client of katad's REST API (docs/api.md): the context every verb
 * gets, the command tables, and the helpers the verbs share. Verbs and their helpers return a
 * process exit status rather than an errno, since that is what a command line reports: helpers
 * return 0 when the verb should go on, and anything else is returned from the verb as it is.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "http.h"
#include "macro.h"
#include "output.h"

#ifdef PACKAGE_VERSION
#define KATACTL_VERSION PACKAGE_VERSION
#else
#define KATACTL_VERSION "0.1.0"
#endif

#define KATACTL_DEFAULT_SOCKET "/run/katad/katad.sock"

enum {
        KATACTL_EXIT_SUCCESS = 0,
        KATACTL_EXIT_FAILURE = 1, /* an API error, a malformed answer, an unreadable input file */
        KATACTL_EXIT_USAGE = 2,
        KATACTL_EXIT_UNREACHABLE = 125, /* katad's socket could not be connected to */
};
/* "Stop here, successfully" (after --help): what a helper returns so the verb stops; exits 0. */
#define KATACTL_DONE (-1)

/* Room for any route built from validated ids (at most ID_MAX characters each). */
#define KATACTL_PATH_MAX 512

typedef enum output_format {
        OUTPUT_TABLE,
        OUTPUT_JSON,
} output_format_t;

/* What the global options decided; passed to every verb. */
typedef struct katactl {
        const char *socket_path;
        output_format_t output;
} katactl_t;

typedef struct command command_t;

/* Runs a verb; argv[0] is the verb's name and getopt_long may permute the rest. */
typedef int (*command_run_fn)(katactl_t *ctx, const command_t *cmd, int argc, char **argv);

/* One verb, or a family of verbs ("sandbox") when subcommands is set. */
struct command {
        const char *name;
        const char *alias; /* a second name, or NULL */
        const char *usage; /* the synopsis after "katactl " */
        const char *summary;
        const char *help; /* what --help prints under the synopsis: description, options */
        command_run_fn run;
        const command_t *const *subcommands; /* NULL-terminated */
};

/* The top-level verbs and families, defined next to their code. */
extern const command_t command_version;
extern const command_t command_sandbox;
extern const command_t command_container;
extern const command_t command_ps;
extern const command_t command_logs;
extern const command_t command_exec;
extern const command_t command_wait;
extern const command_t command_signal;
extern const command_t command_winsize;
extern const command_t command_stats;
extern const command_t command_events;
extern const command_t command_device;
extern const command_t command_interface;
extern const command_t command_route;
extern const command_t command_factory;

/* Shows a sandbox's or a container's statistics (the "stats" verbs share them). */
int sandbox_stats_show(katactl_t *ctx, const char *sid);
int container_stats_show(katactl_t *ctx, const char *sid, const char *cid);
/* Adds the CPU, memory and pids lines of a virtcontainers CgroupStats to a "key: value" table. */
void table_add_cgroup_stats(table_t *table, const json_t *cgroup_stats);

/* Prints cmd's help to stdout and returns KATACTL_DONE. */
int command_help(const command_t *cmd);
/* Prints "katactl: <message>" (when fmt is set) and cmd's usage to stderr; returns KATACTL_EXIT_USAGE. */
int command_usage_error(const command_t *cmd, const char *fmt, ...) _printf_(2, 3);
/* Checks that between min and max positional arguments remain (max < 0: no limit). */
int command_check_args(const command_t *cmd, int n_args, int min, int max);
/* Parses a verb that has no option but --help; its positional arguments start at argv[optind]. */
int command_parse_simple(const command_t *cmd, int argc, char **argv, int min, int max);
/* Index of the first "--" in argv, or argc: what follows it is never parsed as options. */
int command_find_double_dash(int argc, char **argv);
/* Checks an id (what: "sandbox", "container", "process") before it goes into a URL. */
int command_check_id(const command_t *cmd, const char *what, const char *id);
/* Parses a signal name or number into *ret. */
int command_parse_signal(const command_t *cmd, const char *s, int *ret);
/* Parses [--signal SIG] [--all] and n_args positional arguments (from argv[optind]) into the body
 * {"Signal":N,"All":bool} of a kill or signal request; returns like the other command_ helpers. */
int command_parse_signal_request(const command_t *cmd, int argc, char **argv, int n_args, json_t **ret_body);
/* Checks that an argument bound for a JSON string is UTF-8, as JSON demands. */
int command_check_utf8(const command_t *cmd, const char *s);

/* Prints "katactl: out of memory" and returns KATACTL_EXIT_FAILURE. */
int katactl_oom(void);
/* Prints "katactl: unexpected answer from katad: <what>" and returns KATACTL_EXIT_FAILURE. */
int katactl_unexpected(const char *what);

/*
 * Sends a request to katad. query is NULL or key/value pairs ended by a NULL key; a pair with a
 * NULL value is left out, values are URL-encoded. On a 2xx answer stores it in *ret and returns 0;
 * otherwise reports the error on stderr and returns the exit status.
 */
int katactl_request(katactl_t *ctx, const char *method, const char *path, const char *const *query,
                    const json_t *body, http_response_t *ret);
/* Reports a failed http_request: 125 when katad could not be reached, else 1. */
int katactl_transport_error(katactl_t *ctx, int error, const char *reason);
/* Parses a 2xx answer's JSON body into *ret_json (NULL for an empty body); reports malformed ones. */
int katactl_parse_answer(const http_response_t *response, json_t **ret_json);
/* Like katactl_request, and parses the answer: *ret_json is NULL for an empty body (204). */
int katactl_call(katactl_t *ctx, const char *method, const char *path, const char *const *query,
                 const json_t *body, json_t **ret_json);
/* Builds the URL path plus query that katactl_request sends (exposed for the event stream). */
char *katactl_build_url(const char *path, const char *const *query);
/* Reads JSON from a file ('-' is stdin) into *ret: an object, or also an array unless want_object. */
int katactl_load_json(const char *file, bool want_object, json_t **ret);

/* Prints json (when set) in JSON mode, or line in table mode; returns KATACTL_EXIT_SUCCESS. */
int katactl_print_result(katactl_t *ctx, const json_t *json, const char *line);
/* Prints a table, reporting an OOM; returns an exit status. */
int katactl_print_table(const table_t *table);
