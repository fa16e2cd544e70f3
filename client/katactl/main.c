/* katactl's entry point: global options, the table of verbs, and the plumbing verbs share. */
#ifdef HAVE_CONFIG_H
#include "config.h" /* first: it defines _GNU_SOURCE */
#endif

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "katactl.h"
#include "util.h"

static int run_help(katactl_t *ctx, const command_t *cmd, int argc, char **argv);

static const command_t command_help_verb = {
        .name = "help",
        .usage = "help [COMMAND...]",
        .summary = "Show the help of katactl or of one of its commands",
        .help = "'katactl help sandbox create' is the same as 'katactl sandbox create --help'.\n",
        .run = run_help,
};

static const command_t *const top_commands[] = {
        &command_version, &command_sandbox, &command_container, &command_ps, &command_logs,
        &command_exec,    &command_wait,    &command_signal,    &command_winsize,
        &command_stats,   &command_events,  &command_device,    &command_interface,
        &command_route,   &command_factory, &command_help_verb, NULL,
};

static const command_t command_katactl = {
        .name = "katactl",
        .usage = "[OPTIONS] COMMAND [ARGS...]",
        .summary = "Command-line client of katad, the Kata Containers virtcontainers API daemon",
        .help = "Options:\n"
                "  --socket PATH           katad's socket (default: $KATAD_SOCKET, else " KATACTL_DEFAULT_SOCKET ")\n"
                "  -o, --output FORMAT     'table' (the default) or 'json', the API's answer as it is\n"
                "  -h, --help              show this help\n"
                "  --version               show katactl's version\n"
                "\n"
                "Exit status: 0 on success, 1 when katad answers with an error (or an answer katactl\n"
                "cannot read), 2 on a usage error, 125 when katad cannot be reached; 'katactl exec'\n"
                "exits with the status of the process it ran.\n",
        .subcommands = top_commands,
};

static const command_t *command_find(const command_t *family, const char *name) {
        for (const command_t *const *sub = family->subcommands; *sub; sub++)
                if (streq((*sub)->name, name) || ((*sub)->alias && streq((*sub)->alias, name)))
                        return *sub;
        return NULL;
}

static void command_print_list(const command_t *family, FILE *f) {
        int width = 0;
        for (const command_t *const *sub = family->subcommands; *sub; sub++) {
                int len = (int) strlen((*sub)->name) + ((*sub)->alias ? (int) strlen((*sub)->alias) + 2 : 0);
                if (len > width)
                        width = len;
        }
        fputs("\nCommands:\n", f);
        for (const command_t *const *sub = family->subcommands; *sub; sub++) {
                char names[128];
                snprintf(names, sizeof names, "%s%s%s", (*sub)->name, (*sub)->alias ? ", " : "",
                         (*sub)->alias ? (*sub)->alias : "");
                fprintf(f, "  %-*s   %s\n", width, names, (*sub)->summary);
        }

        /* The family's own words of its usage, minus the global options: "sandbox " or "". */
        const char *usage = family->usage;
        if (strncmp(usage, "[OPTIONS] ", 10) == 0)
                usage += 10;
        const char *end = strstr(usage, "COMMAND");
        fprintf(f, "\nRun 'katactl %.*sCOMMAND --help' for more information on a command.\n",
                end ? (int) (end - usage) : 0, usage);
}

int command_help(const command_t *cmd) {
        printf("Usage: katactl %s\n\n%s.\n", cmd->usage, cmd->summary);
        if (cmd->alias)
                printf("Alias: %s\n", cmd->alias);
        if (cmd->help)
                printf("\n%s", cmd->help);
        if (cmd->subcommands)
                command_print_list(cmd, stdout);
        return KATACTL_DONE;
}

int command_usage_error(const command_t *cmd, const char *fmt, ...) {
        if (fmt) {
                va_list ap;
                fputs("katactl: ", stderr);
                va_start(ap, fmt);
                vfprintf(stderr, fmt, ap);
                va_end(ap);
                fputc('\n', stderr);
        }
        fprintf(stderr, "Usage: katactl %s\n", cmd->usage);
        if (cmd->subcommands)
                command_print_list(cmd, stderr);
        else
                fputs("Add --help for more information.\n", stderr);
        return KATACTL_EXIT_USAGE;
}

int command_check_args(const command_t *cmd, int n_args, int min, int max) {
        if (n_args < min)
                return command_usage_error(cmd, "missing argument");
        if (max >= 0 && n_args > max)
                return command_usage_error(cmd, "too many arguments");
        return 0;
}

int command_parse_simple(const command_t *cmd, int argc, char **argv, int min, int max) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c;

        optind = 0;
        if ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                return c == 'h' ? command_help(cmd) : command_usage_error(cmd, NULL);
        return command_check_args(cmd, argc - optind, min, max);
}

int command_find_double_dash(int argc, char **argv) {
        for (int i = 1; i < argc; i++)
                if (streq(argv[i], "--"))
                        return i;
        return argc;
}

int command_check_id(const command_t *cmd, const char *what, const char *id) {
        if (!id_is_valid(id))
                return command_usage_error(cmd, "invalid %s id '%s' (expected [A-Za-z0-9][A-Za-z0-9_.-]{0,63})",
                                           what, id);
        return 0;
}

int command_check_utf8(const command_t *cmd, const char *s) {
        /* json_string() is the validator jansson offers; for an argument it fails on bad UTF-8, not memory. */
        json_t *string = json_string(s);
        if (!string)
                return command_usage_error(cmd, "'%s' is not valid UTF-8", s);
        json_decref(string);
        return 0;
}

int command_parse_signal(const command_t *cmd, const char *s, int *ret) {
        int sig = signal_from_string(s);
        if (sig < 0)
                return command_usage_error(cmd, "invalid signal '%s'", s);
        *ret = sig;
        return 0;
}

int command_parse_signal_request(const command_t *cmd, int argc, char **argv, int n_args, json_t **ret_body) {
        static const struct option options[] = {
                { "signal", required_argument, NULL, 's' },
                { "all", no_argument, NULL, 'a' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int sig = 15, c, r; /* SIGTERM */
        bool all = false;

        optind = 0;
        while ((c = getopt_long(argc, argv, "s:ah", options, NULL)) >= 0)
                switch (c) {
                case 's':
                        if ((r = command_parse_signal(cmd, optarg, &sig)) != 0)
                                return r;
                        break;
                case 'a':
                        all = true;
                        break;
                case 'h':
                        return command_help(cmd);
                default:
                        return command_usage_error(cmd, NULL);
                }
        if ((r = command_check_args(cmd, argc - optind, n_args, n_args)) != 0)
                return r;
        json_t *body = json_pack("{s:i,s:b}", "Signal", sig, "All", all);
        if (!body)
                return katactl_oom();
        *ret_body = body;
        return 0;
}

int katactl_oom(void) {
        fputs("katactl: out of memory\n", stderr);
        return KATACTL_EXIT_FAILURE;
}

int katactl_unexpected(const char *what) {
        fprintf(stderr, "katactl: unexpected answer from katad: %s\n", what);
        return KATACTL_EXIT_FAILURE;
}

char *katactl_build_url(const char *path, const char *const *query) {
        char *buffer = NULL;
        size_t size = 0;
        char separator = '?';
        bool failed = false;

        FILE *f = open_memstream(&buffer, &size);
        if (!f)
                return NULL;
        fputs(path, f);
        for (size_t i = 0; query && query[i]; i += 2) {
                if (!query[i + 1])
                        continue;
                _cleanup_free_ char *escaped = http_escape(query[i + 1]);
                if (!escaped) {
                        failed = true;
                        break;
                }
                fprintf(f, "%c%s=%s", separator, query[i], escaped);
                separator = '&';
        }
        if (fclose(f) != 0 || failed) {
                free(buffer);
                return NULL;
        }
        return buffer;
}

int katactl_transport_error(katactl_t *ctx, int error, const char *reason) {
        if (error == -ENOTCONN) {
                fprintf(stderr, "katactl: cannot reach katad at %s: %s\n", ctx->socket_path, reason);
                return KATACTL_EXIT_UNREACHABLE;
        }
        fprintf(stderr, "katactl: talking to katad at %s failed: %s\n", ctx->socket_path, reason);
        return KATACTL_EXIT_FAILURE;
}

int katactl_request(katactl_t *ctx, const char *method, const char *path, const char *const *query,
                    const json_t *body, http_response_t *ret) {
        _cleanup_free_ char *url = katactl_build_url(path, query);
        _cleanup_free_ char *text = NULL;
        http_response_t response = {};
        char reason[512] = "";
        int r;

        if (!url)
                return katactl_oom();
        if (body) {
                text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
                if (!text)
                        return katactl_oom();
        }
        r = http_request(ctx->socket_path, method, url, text, &response, reason, sizeof reason);
        if (r < 0)
                return katactl_transport_error(ctx, r, reason);
        if (response.status < 200 || response.status > 299) {
                output_api_error(&response);
                http_response_done(&response);
                return KATACTL_EXIT_FAILURE;
        }
        *ret = response;
        return 0;
}

int katactl_parse_answer(const http_response_t *response, json_t **ret_json) {
        json_error_t error;
        json_t *json;

        if (response->body_size == 0) {
                *ret_json = NULL;
                return 0;
        }
        json = json_loadb(response->body, response->body_size, JSON_DECODE_ANY, &error);
        /* Go marshals uint64 values that json_int_t cannot hold; keep them, as reals. */
        if (!json && json_error_code(&error) == json_error_numeric_overflow)
                json = json_loadb(response->body, response->body_size, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL,
                                  &error);
        if (!json) {
                fprintf(stderr, "katactl: malformed answer from katad (HTTP %ld): %s\n", response->status,
                        error.text);
                return KATACTL_EXIT_FAILURE;
        }
        *ret_json = json;
        return 0;
}

int katactl_call(katactl_t *ctx, const char *method, const char *path, const char *const *query,
                 const json_t *body, json_t **ret_json) {
        http_response_t response = {};
        int r = katactl_request(ctx, method, path, query, body, &response);
        if (r != 0)
                return r;
        r = katactl_parse_answer(&response, ret_json);
        http_response_done(&response);
        return r;
}

int katactl_load_json(const char *file, bool want_object, json_t **ret) {
        bool from_stdin = streq(file, "-");
        json_error_t error;
        json_t *json = from_stdin ? json_loadf(stdin, 0, &error) : json_load_file(file, 0, &error);

        if (!json) {
                if (error.line > 0)
                        fprintf(stderr, "katactl: %s:%d:%d: %s\n", from_stdin ? "<stdin>" : file, error.line,
                                error.column, error.text);
                else
                        fprintf(stderr, "katactl: %s: %s\n", from_stdin ? "<stdin>" : file, error.text);
                return KATACTL_EXIT_FAILURE;
        }
        if (want_object && !json_is_object(json)) {
                fprintf(stderr, "katactl: %s: expected a JSON object\n", from_stdin ? "<stdin>" : file);
                json_decref(json);
                return KATACTL_EXIT_FAILURE;
        }
        *ret = json;
        return 0;
}

int katactl_print_result(katactl_t *ctx, const json_t *json, const char *line) {
        if (ctx->output == OUTPUT_JSON) {
                if (json)
                        output_json(stdout, json);
        } else if (line) {
                output_sanitized(stdout, line, 0);
                putchar('\n');
        }
        return 0;
}

int katactl_print_table(const table_t *table) {
        if (table_print(table, stdout) < 0)
                return katactl_oom();
        return 0;
}

static int command_run(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        if (!cmd->subcommands) {
                argv[0] = (char *) "katactl"; /* the name getopt_long puts in front of its messages */
                return cmd->run(ctx, cmd, argc, argv);
        }
        if (argc < 2)
                return command_usage_error(cmd, "missing command");

        const char *name = argv[1];
        if (streq(name, "--help") || streq(name, "-h"))
                return command_help(cmd);
        if (name[0] == '-')
                return command_usage_error(cmd, "unknown option '%s'", name);
        const command_t *sub = command_find(cmd, name);
        if (!sub)
                return command_usage_error(cmd, "unknown command '%s'", name);
        return command_run(ctx, sub, argc - 1, argv + 1);
}

static int run_help(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        const command_t *target = &command_katactl;

        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--help") || streq(argv[i], "-h"))
                        return command_help(cmd);
                const command_t *sub = target->subcommands ? command_find(target, argv[i]) : NULL;
                if (!sub)
                        return command_usage_error(cmd, "unknown command '%s'", argv[i]);
                target = sub;
        }
        return command_help(target);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "output", required_argument, NULL, 'o' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        const char *socket_from_environment = getenv("KATAD_SOCKET");
        katactl_t ctx = {
                .socket_path = strempty(socket_from_environment) ? KATACTL_DEFAULT_SOCKET : socket_from_environment,
                .output = OUTPUT_TABLE,
        };
        int c, r;

        argv[0] = (char *) "katactl";
        while ((c = getopt_long(argc, argv, "+ho:", options, NULL)) >= 0)
                switch (c) {
                case 's':
                        if (strempty(optarg))
                                return command_usage_error(&command_katactl, "--socket needs a path");
                        ctx.socket_path = optarg;
                        break;
                case 'o':
                        if (streq(optarg, "table"))
                                ctx.output = OUTPUT_TABLE;
                        else if (streq(optarg, "json"))
                                ctx.output = OUTPUT_JSON;
                        else
                                return command_usage_error(&command_katactl,
                                                           "invalid output format '%s' (expected table or json)",
                                                           optarg);
                        break;
                case 'h':
                        command_help(&command_katactl);
                        return KATACTL_EXIT_SUCCESS;
                case 'V':
                        printf("katactl %s\n", KATACTL_VERSION);
                        return KATACTL_EXIT_SUCCESS;
                default:
                        return command_usage_error(&command_katactl, NULL);
                }
        if (optind >= argc)
                return command_usage_error(&command_katactl, "missing command");

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                fputs("katactl: cannot initialize libcurl\n", stderr);
                return KATACTL_EXIT_FAILURE;
        }
        /* argv[optind - 1] stands in for the family's own name, as command_run expects. */
        r = command_run(&ctx, &command_katactl, argc - optind + 1, argv + optind - 1);
        curl_global_cleanup();
        if (r == KATACTL_DONE)
                r = KATACTL_EXIT_SUCCESS;

        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "katactl: cannot write the output: %m\n");
                if (r == KATACTL_EXIT_SUCCESS)
                        r = KATACTL_EXIT_FAILURE;
        }
        return r;
}
