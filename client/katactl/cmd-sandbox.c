/* katactl sandbox ...: the sandbox verbs, one route of /v1/sandboxes each. */
#ifdef HAVE_CONFIG_H
#include "config.h" /* first: it defines _GNU_SOURCE */
#endif

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "katactl.h"
#include "util.h"

/* "nginx=running,sidecar=ready" from a SandboxStatus's ContainersStatus. */
static char *format_containers(const json_t *containers) {
        _cleanup_(json_decrefp) json_t *states = json_object();
        size_t i;
        json_t *container;

        if (!states)
                return NULL;
        json_array_foreach(containers, i, container) {
                const char *id = json_path_string(container, "ID");
                const char *state = json_path_string(container, "State.state");
                if (id && json_object_set_new(states, id, json_string(state ? state : "-")) < 0)
                        return NULL;
        }
        return format_value(states);
}

static int print_sandbox_status(katactl_t *ctx, const json_t *status) {
        if (ctx->output == OUTPUT_JSON)
                return katactl_print_result(ctx, status, NULL);
        if (!json_is_object(status))
                return katactl_unexpected("a SandboxStatus is not an object");

        _cleanup_(table_freep) table_t *table = table_new(2);
        _cleanup_free_ char *created = format_time(json_path_string(status, "CreatedAt"));
        _cleanup_free_ char *containers = format_containers(json_object_get(status, "ContainersStatus"));
        if (!table || !created || !containers)
                return katactl_oom();

        table_add_json_field(table, "ID", json_object_get(status, "ID"));
        table_add_json_field(table, "State", json_path_get(status, "State.state"));
        table_add_json_field(table, "Hypervisor", json_object_get(status, "Hypervisor"));
        table_add_json_field(table, "Agent", json_object_get(status, "Agent"));
        table_add_field(table, "Created", created);
        table_add_field(table, "Containers", containers);
        table_add_json_field(table, "Annotations", json_object_get(status, "Annotations"));
        return katactl_print_table(table);
}

/* The confirmation of an action: the sandbox's id in table mode, its SandboxStatus in JSON mode. */
static int print_sandbox_done(katactl_t *ctx, const json_t *status, const char *sid) {
        const char *id = json_path_string(status, "ID");
        return katactl_print_result(ctx, status, id ? id : sid);
}

static int sandbox_create_or_run(katactl_t *ctx, const command_t *cmd, int argc, char **argv, bool run) {
        static const struct option options[] = {
                { "file", required_argument, NULL, 'f' },
                { "id", required_argument, NULL, 'i' },
                { "start", no_argument, NULL, 's' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(json_decrefp) json_t *config = NULL;
        _cleanup_(json_decrefp) json_t *status = NULL;
        const char *file = NULL, *id = NULL;
        bool start = run;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "f:h", options, NULL)) >= 0)
                switch (c) {
                case 'f':
                        file = optarg;
                        break;
                case 'i':
                        id = optarg;
                        break;
                case 's':
                        if (run)
                                return command_usage_error(cmd, "unrecognized option '--start'");
                        start = true;
                        break;
                case 'h':
                        return command_help(cmd);
                default:
                        return command_usage_error(cmd, NULL);
                }
        if ((r = command_check_args(cmd, argc - optind, 0, 0)) != 0)
                return r;
        if (run && !file)
                return command_usage_error(cmd, "missing -f FILE");
        if (id && (r = command_check_id(cmd, "sandbox", id)) != 0)
                return r;

        if (file) {
                if ((r = katactl_load_json(file, true, &config)) != 0)
                        return r;
        } else if (!(config = json_object()))
                return katactl_oom();
        if (id && json_object_set_new(config, "ID", json_string(id)) < 0)
                return katactl_oom();

        const char *query[] = { "start", start ? "true" : NULL, NULL };
        if ((r = katactl_call(ctx, "POST", "/v1/sandboxes", query, config, &status)) != 0)
                return r;
        return print_sandbox_done(ctx, status, id);
}

static int sandbox_create(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        return sandbox_create_or_run(ctx, cmd, argc, argv, false);
}

static int sandbox_run(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        return sandbox_create_or_run(ctx, cmd, argc, argv, true);
}

static int sandbox_list(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *list = NULL;
        _cleanup_(table_freep) table_t *table = NULL;
        size_t i;
        json_t *status;
        int r;

        if ((r = command_parse_simple(cmd, argc, argv, 0, 0)) != 0)
                return r;
        if ((r = katactl_call(ctx, "GET", "/v1/sandboxes", NULL, NULL, &list)) != 0)
                return r;
        if (ctx->output == OUTPUT_JSON)
                return katactl_print_result(ctx, list, NULL);
        if (!json_is_array(list))
                return katactl_unexpected("the sandbox list is not an array");

        if (!(table = table_new(5)))
                return katactl_oom();
        table_add(table, "ID", "STATE", "HYPERVISOR", "CONTAINERS", "CREATED");
        json_array_foreach(list, i, status) {
                char containers[32];
                _cleanup_free_ char *created = format_time(json_path_string(status, "CreatedAt"));
                _cleanup_free_ char *hypervisor = format_value(json_object_get(status, "Hypervisor"));
                snprintf(containers, sizeof containers, "%zu", json_array_size(json_object_get(status, "ContainersStatus")));
                table_add(table, json_path_string(status, "ID"), json_path_string(status, "State.state"), hypervisor,
                          containers, created);
        }
        return katactl_print_table(table);
}

static int sandbox_status(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *status = NULL;
        char path[KATACTL_PATH_MAX];
        int r;

        if ((r = command_parse_simple(cmd, argc, argv, 1, 1)) != 0)
                return r;
        const char *sid = argv[optind];
        if ((r = command_check_id(cmd, "sandbox", sid)) != 0)
                return r;
        snprintf(path, sizeof path, "/v1/sandboxes/%s", sid);
        if ((r = katactl_call(ctx, "GET", path, NULL, NULL, &status)) != 0)
                return r;
        return print_sandbox_status(ctx, status);
}

/* start, pause, resume, release: the route is the verb's own name. */
static int sandbox_action(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *status = NULL;
        char path[KATACTL_PATH_MAX];
        int r;

        if ((r = command_parse_simple(cmd, argc, argv, 1, 1)) != 0)
                return r;
        const char *sid = argv[optind];
        if ((r = command_check_id(cmd, "sandbox", sid)) != 0)
                return r;
        snprintf(path, sizeof path, "/v1/sandboxes/%s/%s", sid, cmd->name);
        if ((r = katactl_call(ctx, "POST", path, NULL, NULL, &status)) != 0)
                return r;
        return print_sandbox_done(ctx, status, sid);
}

/* stop and delete share --force; stop also takes --timeout. */
static int sandbox_stop_or_delete(katactl_t *ctx, const command_t *cmd, int argc, char **argv, bool stop) {
        static const struct option options[] = {
                { "force", no_argument, NULL, 'F' },
                { "timeout", required_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(json_decrefp) json_t *status = NULL;
        const char *timeout = NULL;
        char path[KATACTL_PATH_MAX];
        bool force = false;
        uint64_t seconds;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'F':
                        force = true;
                        break;
                case 't':
                        if (!stop)
                                return command_usage_error(cmd, "unrecognized option '--timeout'");
                        if (parse_u64(optarg, &seconds) < 0)
                                return command_usage_error(cmd, "invalid timeout '%s' (expected seconds)", optarg);
                        timeout = optarg;
                        break;
                case 'h':
                        return command_help(cmd);
                default:
                        return command_usage_error(cmd, NULL);
                }
        if ((r = command_check_args(cmd, argc - optind, 1, 1)) != 0)
                return r;
        const char *sid = argv[optind];
        if ((r = command_check_id(cmd, "sandbox", sid)) != 0)
                return r;

        const char *query[] = { "force", force ? "true" : NULL, "timeout", timeout, NULL };
        if (stop) {
                snprintf(path, sizeof path, "/v1/sandboxes/%s/stop", sid);
                r = katactl_call(ctx, "POST", path, query, NULL, &status);
        } else {
                snprintf(path, sizeof path, "/v1/sandboxes/%s", sid);
                r = katactl_call(ctx, "DELETE", path, query, NULL, &status);
        }
        if (r != 0)
                return r;
        return print_sandbox_done(ctx, status, sid);
}

static int sandbox_stop(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        return sandbox_stop_or_delete(ctx, cmd, argc, argv, true);
}

static int sandbox_delete(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        return sandbox_stop_or_delete(ctx, cmd, argc, argv, false);
}

int sandbox_stats_show(katactl_t *ctx, const char *sid) {
        _cleanup_(json_decrefp) json_t *stats = NULL;
        _cleanup_(table_freep) table_t *table = NULL;
        _cleanup_(table_freep) table_t *containers = NULL;
        char path[KATACTL_PATH_MAX];
        const char *cid;
        json_t *container;
        int r;

        snprintf(path, sizeof path, "/v1/sandboxes/%s/stats", sid);
        if ((r = katactl_call(ctx, "GET", path, NULL, NULL, &stats)) != 0)
                return r;
        if (ctx->output == OUTPUT_JSON)
                return katactl_print_result(ctx, stats, NULL);
        if (!json_is_object(stats))
                return katactl_unexpected("SandboxStats is not an object");

        if (!(table = table_new(2)) || !(containers = table_new(4)))
                return katactl_oom();
        table_add_json_field(table, "CPUs", json_object_get(stats, "Cpus"));
        table_add_json_field(table, "VM PID", json_path_get(stats, "VM.Pid"));
        table_add_json_field(table, "VM vCPUs", json_path_get(stats, "VM.VCPUs"));
        table_add_json_field(table, "VM memory", json_path_get(stats, "VM.MemoryBytes"));
        table_add_cgroup_stats(table, json_object_get(stats, "CgroupStats"));
        if ((r = katactl_print_table(table)) != 0)
                return r;

        json_t *per_container = json_object_get(stats, "ContainerStats");
        if (json_object_size(per_container) == 0)
                return 0;
        table_add(containers, "CONTAINER", "CPU", "MEMORY", "PIDS");
        json_object_foreach(per_container, cid, container) {
                _cleanup_free_ char *cpu = format_value(json_path_get(container, "CgroupStats.CPUStats.CPUUsage.TotalUsage"));
                _cleanup_free_ char *memory = format_value(json_path_get(container, "CgroupStats.MemoryStats.Usage.Usage"));
                _cleanup_free_ char *pids = format_value(json_path_get(container, "CgroupStats.PidsStats.Current"));
                table_add(containers, cid, cpu, memory, pids);
        }
        putchar('\n');
        return katactl_print_table(containers);
}

static int sandbox_stats(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        int r;

        if ((r = command_parse_simple(cmd, argc, argv, 1, 1)) != 0)
                return r;
        if ((r = command_check_id(cmd, "sandbox", argv[optind])) != 0)
                return r;
        return sandbox_stats_show(ctx, argv[optind]);
}

static int print_annotations(katactl_t *ctx, const json_t *annotations) {
        if (ctx->output == OUTPUT_JSON)
                return katactl_print_result(ctx, annotations, NULL);
        if (!json_is_object(annotations))
                return katactl_unexpected("the annotations are not an object");

        /* One KEY=VALUE line each, sorted: the form they are given in on the command line. */
        _cleanup_free_ const char **keys = json_object_sorted_keys(annotations);
        if (!keys)
                return katactl_oom();
        for (size_t i = 0; keys[i]; i++) {
                json_t *value = json_object_get(annotations, keys[i]);
                _cleanup_free_ char *formatted = json_is_string(value) ? strdup(json_string_value(value))
                                                                        : format_value(value);
                if (!formatted)
                        return katactl_oom();
                output_sanitized(stdout, keys[i], 0);
                putchar('=');
                output_sanitized(stdout, formatted, 0);
                putchar('\n');
        }
        return 0;
}

static int sandbox_annotations(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        static const struct option options[] = {
                { "remove", required_argument, NULL, 'r' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(json_decrefp) json_t *patch = json_object();
        _cleanup_(json_decrefp) json_t *annotations = NULL;
        char path[KATACTL_PATH_MAX];
        int c, r;

        if (!patch)
                return katactl_oom();
        optind = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'r':
                        if (strempty(optarg))
                                return command_usage_error(cmd, "--remove needs a key");
                        if ((r = command_check_utf8(cmd, optarg)) != 0)
                                return r;
                        if (json_object_set_new(patch, optarg, json_null()) < 0)
                                return katactl_oom();
                        break;
                case 'h':
                        return command_help(cmd);
                default:
                        return command_usage_error(cmd, NULL);
                }
        if ((r = command_check_args(cmd, argc - optind, 1, -1)) != 0)
                return r;
        const char *sid = argv[optind];
        if ((r = command_check_id(cmd, "sandbox", sid)) != 0)
                return r;
        for (int i = optind + 1; i < argc; i++) {
                char *equal = strchr(argv[i], '=');
                if (!equal || equal == argv[i])
                        return command_usage_error(cmd, "expected KEY=VALUE, got '%s'", argv[i]);
                if ((r = command_check_utf8(cmd, argv[i])) != 0)
                        return r;
                _cleanup_free_ char *key = strndup(argv[i], (size_t) (equal - argv[i]));
                if (!key || json_object_set_new(patch, key, json_string(equal + 1)) < 0)
                        return katactl_oom();
        }

        snprintf(path, sizeof path, "/v1/sandboxes/%s/annotations", sid);
        if (json_object_size(patch) == 0)
                r = katactl_call(ctx, "GET", path, NULL, NULL, &annotations);
        else
                r = katactl_call(ctx, "PATCH", path, NULL, patch, &annotations);
        if (r != 0)
                return r;
        return print_annotations(ctx, annotations);
}

static const command_t sandbox_create_command = {
        .name = "create",
        .usage = "sandbox create [-f FILE] [--id ID] [--start]",
        .summary = "Create a sandbox: boot its VM and create its containers (POST /v1/sandboxes)",
        .help = "Options:\n"
                "  -f, --file FILE   a SandboxConfig as JSON ('-' reads stdin); without it, {} is sent\n"
                "  --id ID           the sandbox's id, overriding the file's ID (katad generates one if none)\n"
                "  --start           start the sandbox too (RunSandbox)\n"
                "\n"
                "Prints the new sandbox's id (its SandboxStatus with -o json).\n",
        .run = sandbox_create,
};

static const command_t sandbox_run_command = {
        .name = "run",
        .usage = "sandbox run -f FILE [--id ID]",
        .summary = "Create and start a sandbox (POST /v1/sandboxes?start=true)",
        .help = "Options:\n"
                "  -f, --file FILE   a SandboxConfig as JSON ('-' reads stdin)\n"
                "  --id ID           the sandbox's id, overriding the file's ID\n",
        .run = sandbox_run,
};

static const command_t sandbox_list_command = {
        .name = "list",
        .alias = "ls",
        .usage = "sandbox list",
        .summary = "List the sandboxes (GET /v1/sandboxes)",
        .help = "Columns: ID, STATE, HYPERVISOR, CONTAINERS (how many), CREATED (UTC).\n",
        .run = sandbox_list,
};

static const command_t sandbox_status_command = {
        .name = "status",
        .alias = "inspect",
        .usage = "sandbox status SID",
        .summary = "Show a sandbox's status (GET /v1/sandboxes/SID)",
        .run = sandbox_status,
};

static const command_t sandbox_start_command = {
        .name = "start",
        .usage = "sandbox start SID",
        .summary = "Start a sandbox and its containers (POST /v1/sandboxes/SID/start)",
        .run = sandbox_action,
};

static const command_t sandbox_pause_command = {
        .name = "pause",
        .usage = "sandbox pause SID",
        .summary = "Pause a sandbox's VM (POST /v1/sandboxes/SID/pause)",
        .run = sandbox_action,
};

static const command_t sandbox_resume_command = {
        .name = "resume",
        .usage = "sandbox resume SID",
        .summary = "Resume a paused sandbox (POST /v1/sandboxes/SID/resume)",
        .run = sandbox_action,
};

static const command_t sandbox_release_command = {
        .name = "release",
        .usage = "sandbox release SID",
        .summary = "Drop katad's handles on a sandbox; its VM keeps running (POST .../SID/release)",
        .run = sandbox_action,
};

static const command_t sandbox_stop_command = {
        .name = "stop",
        .usage = "sandbox stop [--force] [--timeout SECONDS] SID",
        .summary = "Stop a sandbox (POST /v1/sandboxes/SID/stop)",
        .help = "Options:\n"
                "  --force             kill the containers at once\n"
                "  --timeout SECONDS   how long containers get between SIGTERM and SIGKILL\n",
        .run = sandbox_stop,
};

static const command_t sandbox_delete_command = {
        .name = "delete",
        .alias = "rm",
        .usage = "sandbox delete [--force] SID",
        .summary = "Delete a ready or stopped sandbox (DELETE /v1/sandboxes/SID)",
        .help = "Options:\n"
                "  --force   stop the sandbox first if it is running or paused\n",
        .run = sandbox_delete,
};

static const command_t sandbox_stats_command = {
        .name = "stats",
        .usage = "sandbox stats SID",
        .summary = "Show a sandbox's VM and container statistics (GET /v1/sandboxes/SID/stats)",
        .help = "CPU times are in nanoseconds, memory in bytes.\n",
        .run = sandbox_stats,
};

static const command_t sandbox_annotations_command = {
        .name = "annotations",
        .usage = "sandbox annotations SID [KEY=VALUE...] [--remove KEY]...",
        .summary = "Show or change a sandbox's annotations (GET or PATCH .../SID/annotations)",
        .help = "Without KEY=VALUE pairs or --remove, shows the annotations; otherwise merges the pairs in,\n"
                "removes the --remove keys, and shows the result. Prints KEY=VALUE lines, sorted.\n"
                "\n"
                "Options:\n"
                "  --remove KEY   remove an annotation (repeatable)\n",
        .run = sandbox_annotations,
};

static const command_t *const sandbox_commands[] = {
        &sandbox_create_command, &sandbox_run_command,    &sandbox_list_command,    &sandbox_status_command,
        &sandbox_start_command,  &sandbox_stop_command,   &sandbox_pause_command,   &sandbox_resume_command,
        &sandbox_release_command, &sandbox_delete_command, &sandbox_stats_command, &sandbox_annotations_command,
        NULL,
};

const command_t command_sandbox = {
        .name = "sandbox",
        .usage = "sandbox COMMAND [ARGS...]",
        .summary = "Manage sandboxes: a VM and the containers in it",
        .subcommands = sandbox_commands,
};
