/* katactl container ...: the container verbs, one route of /v1/sandboxes/SID/containers each. */
#ifdef HAVE_CONFIG_H
#include "config.h" /* first: it defines _GNU_SOURCE */
#endif

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "katactl.h"
#include "util.h"

static int check_ids(const command_t *cmd, const char *sid, const char *cid) {
        int r = command_check_id(cmd, "sandbox", sid);
        return r != 0 ? r : command_check_id(cmd, "container", cid);
}

/* /v1/sandboxes/SID/containers/CID followed by suffix ("", "/start", ...). */
static void container_path(char *path, size_t size, const char *sid, const char *cid, const char *suffix) {
        snprintf(path, size, "/v1/sandboxes/%s/containers/%s%s", sid, cid, suffix);
}

/* The confirmation of an action: the container's id in table mode, the answer in JSON mode. */
static int print_container_done(katactl_t *ctx, const json_t *answer, const char *cid) {
        const char *id = json_path_string(answer, "ID");
        return katactl_print_result(ctx, answer, id ? id : cid);
}

static int print_container_status(katactl_t *ctx, const json_t *status) {
        if (ctx->output == OUTPUT_JSON)
                return katactl_print_result(ctx, status, NULL);
        if (!json_is_object(status))
                return katactl_unexpected("a ContainerStatus is not an object");

        _cleanup_(table_freep) table_t *table = table_new(2);
        _cleanup_free_ char *started = format_time(json_path_string(status, "StartTime"));
        if (!table || !started)
                return katactl_oom();
        table_add_json_field(table, "ID", json_object_get(status, "ID"));
        table_add_json_field(table, "State", json_path_get(status, "State.state"));
        table_add_json_field(table, "PID", json_object_get(status, "PID"));
        table_add_field(table, "Started", started);
        if (json_object_get(status, "ExitCode"))
                table_add_json_field(table, "Exit code", json_object_get(status, "ExitCode"));
        table_add_json_field(table, "RootFs", json_object_get(status, "RootFs"));
        table_add_json_field(table, "Annotations", json_object_get(status, "Annotations"));
        return katactl_print_table(table);
}

static int container_create(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        static const struct option options[] = {
                { "file", required_argument, NULL, 'f' },
                { "id", required_argument, NULL, 'i' },
                { "rootfs", required_argument, NULL, 'r' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(json_decrefp) json_t *config = NULL;
        _cleanup_(json_decrefp) json_t *status = NULL;
        const char *file = NULL, *id = NULL, *rootfs = NULL;
        char path[KATACTL_PATH_MAX];
        int c, r;

        /* What follows "--" is the command, never options of ours. */
        int n_options = command_find_double_dash(argc, argv);
        optind = 0;
        while ((c = getopt_long(n_options, argv, "f:h", options, NULL)) >= 0)
                switch (c) {
                case 'f':
                        file = optarg;
                        break;
                case 'i':
                        id = optarg;
                        break;
                case 'r':
                        if ((r = command_check_utf8(cmd, optarg)) != 0)
                                return r;
                        rootfs = optarg;
                        break;
                case 'h':
                        return command_help(cmd);
                default:
                        return command_usage_error(cmd, NULL);
                }
        if ((r = command_check_args(cmd, n_options - optind, 1, 1)) != 0)
                return r;
        const char *sid = argv[optind];
        if ((r = command_check_id(cmd, "sandbox", sid)) != 0)
                return r;
        if (id && (r = command_check_id(cmd, "container", id)) != 0)
                return r;

        if (file) {
                if ((r = katactl_load_json(file, true, &config)) != 0)
                        return r;
        } else if (!(config = json_object()))
                return katactl_oom();
        if (id && json_object_set_new(config, "ID", json_string(id)) < 0)
                return katactl_oom();
        if (rootfs && json_object_set_new(config, "RootFs", json_string(rootfs)) < 0)
                return katactl_oom();
        if (n_options + 1 < argc) {
                json_t *command = json_object_get(config, "Cmd");
                if (!json_is_object(command) && json_object_set_new(config, "Cmd", command = json_object()) < 0)
                        return katactl_oom();
                json_t *args = json_array();
                if (json_object_set_new(command, "Args", args) < 0)
                        return katactl_oom();
                for (int i = n_options + 1; i < argc; i++) {
                        if ((r = command_check_utf8(cmd, argv[i])) != 0)
                                return r;
                        if (json_array_append_new(args, json_string(argv[i])) < 0)
                                return katactl_oom();
                }
        }

        snprintf(path, sizeof path, "/v1/sandboxes/%s/containers", sid);
        if ((r = katactl_call(ctx, "POST", path, NULL, config, &status)) != 0)
                return r;
        return print_container_done(ctx, status, id);
}

static int container_list(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *list = NULL;
        _cleanup_(table_freep) table_t *table = NULL;
        char path[KATACTL_PATH_MAX];
        size_t i;
        json_t *status;
        int r;

        if ((r = command_parse_simple(cmd, argc, argv, 1, 1)) != 0)
                return r;
        const char *sid = argv[optind];
        if ((r = command_check_id(cmd, "sandbox", sid)) != 0)
                return r;
        snprintf(path, sizeof path, "/v1/sandboxes/%s/containers", sid);
        if ((r = katactl_call(ctx, "GET", path, NULL, NULL, &list)) != 0)
                return r;
        if (ctx->output == OUTPUT_JSON)
                return katactl_print_result(ctx, list, NULL);
        if (!json_is_array(list))
                return katactl_unexpected("the container list is not an array");

        if (!(table = table_new(4)))
                return katactl_oom();
        table_add(table, "ID", "STATE", "PID", "STARTED");
        json_array_foreach(list, i, status) {
                _cleanup_free_ char *pid = format_value(json_object_get(status, "PID"));
                _cleanup_free_ char *started = format_time(json_path_string(status, "StartTime"));
                table_add(table, json_path_string(status, "ID"), json_path_string(status, "State.state"), pid, started);
        }
        return katactl_print_table(table);
}

static int container_status(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *status = NULL;
        char path[KATACTL_PATH_MAX];
        int r;

        if ((r = command_parse_simple(cmd, argc, argv, 2, 2)) != 0)
                return r;
        const char *sid = argv[optind], *cid = argv[optind + 1];
        if ((r = check_ids(cmd, sid, cid)) != 0)
                return r;
        container_path(path, sizeof path, sid, cid, "");
        if ((r = katactl_call(ctx, "GET", path, NULL, NULL, &status)) != 0)
                return r;
        return print_container_status(ctx, status);
}

/* start, pause, resume: the route is the verb's own name. */
static int container_action(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *status = NULL;
        char path[KATACTL_PATH_MAX], suffix[32];
        int r;

        if ((r = command_parse_simple(cmd, argc, argv, 2, 2)) != 0)
                return r;
        const char *sid = argv[optind], *cid = argv[optind + 1];
        if ((r = check_ids(cmd, sid, cid)) != 0)
                return r;
        snprintf(suffix, sizeof suffix, "/%s", cmd->name);
        container_path(path, sizeof path, sid, cid, suffix);
        if ((r = katactl_call(ctx, "POST", path, NULL, NULL, &status)) != 0)
                return r;
        return print_container_done(ctx, status, cid);
}

/* stop and delete share --force; stop also takes --timeout. */
static int container_stop_or_delete(katactl_t *ctx, const command_t *cmd, int argc, char **argv, bool stop) {
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
        if ((r = command_check_args(cmd, argc - optind, 2, 2)) != 0)
                return r;
        const char *sid = argv[optind], *cid = argv[optind + 1];
        if ((r = check_ids(cmd, sid, cid)) != 0)
                return r;

        const char *query[] = { "force", force ? "true" : NULL, "timeout", timeout, NULL };
        container_path(path, sizeof path, sid, cid, stop ? "/stop" : "");
        if ((r = katactl_call(ctx, stop ? "POST" : "DELETE", path, query, NULL, &status)) != 0)
                return r;
        return print_container_done(ctx, status, cid);
}

static int container_stop(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        return container_stop_or_delete(ctx, cmd, argc, argv, true);
}

static int container_delete(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        return container_stop_or_delete(ctx, cmd, argc, argv, false);
}

static int container_kill(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *body = NULL;
        _cleanup_(json_decrefp) json_t *answer = NULL;
        char path[KATACTL_PATH_MAX];
        int r;

        if ((r = command_parse_signal_request(cmd, argc, argv, 2, &body)) != 0)
                return r;
        const char *sid = argv[optind], *cid = argv[optind + 1];
        if ((r = check_ids(cmd, sid, cid)) != 0)
                return r;

        container_path(path, sizeof path, sid, cid, "/kill");
        if ((r = katactl_call(ctx, "POST", path, NULL, body, &answer)) != 0)
                return r;
        return katactl_print_result(ctx, answer, cid);
}

void table_add_cgroup_stats(table_t *table, const json_t *cgroup_stats) {
        table_add_json_field(table, "CPU time (ns)", json_path_get(cgroup_stats, "CPUStats.CPUUsage.TotalUsage"));
        table_add_json_field(table, "Memory usage", json_path_get(cgroup_stats, "MemoryStats.Usage.Usage"));
        table_add_json_field(table, "Memory limit", json_path_get(cgroup_stats, "MemoryStats.Usage.Limit"));
        table_add_json_field(table, "PIDs", json_path_get(cgroup_stats, "PidsStats.Current"));
        table_add_json_field(table, "PIDs limit", json_path_get(cgroup_stats, "PidsStats.Limit"));
}

int container_stats_show(katactl_t *ctx, const char *sid, const char *cid) {
        _cleanup_(json_decrefp) json_t *stats = NULL;
        _cleanup_(table_freep) table_t *table = NULL;
        _cleanup_(table_freep) table_t *network = NULL;
        char path[KATACTL_PATH_MAX];
        size_t i;
        json_t *interface;
        int r;

        container_path(path, sizeof path, sid, cid, "/stats");
        if ((r = katactl_call(ctx, "GET", path, NULL, NULL, &stats)) != 0)
                return r;
        if (ctx->output == OUTPUT_JSON)
                return katactl_print_result(ctx, stats, NULL);
        if (!json_is_object(stats))
                return katactl_unexpected("ContainerStats is not an object");

        if (!(table = table_new(2)) || !(network = table_new(3)))
                return katactl_oom();
        table_add_cgroup_stats(table, json_object_get(stats, "CgroupStats"));
        if ((r = katactl_print_table(table)) != 0)
                return r;

        json_t *interfaces = json_object_get(stats, "NetworkStats");
        if (json_array_size(interfaces) == 0)
                return 0;
        table_add(network, "INTERFACE", "RX BYTES", "TX BYTES");
        json_array_foreach(interfaces, i, interface) {
                _cleanup_free_ char *rx = format_value(json_object_get(interface, "RxBytes"));
                _cleanup_free_ char *tx = format_value(json_object_get(interface, "TxBytes"));
                table_add(network, json_path_string(interface, "Name"), rx, tx);
        }
        putchar('\n');
        return katactl_print_table(network);
}

static int container_stats(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        int r;

        if ((r = command_parse_simple(cmd, argc, argv, 2, 2)) != 0)
                return r;
        if ((r = check_ids(cmd, argv[optind], argv[optind + 1])) != 0)
                return r;
        return container_stats_show(ctx, argv[optind], argv[optind + 1]);
}

/* A signed decimal integer; with_suffix also takes a binary K, M, G or T suffix ("512M"). */
static int parse_integer(const char *s, bool with_suffix, long long *ret) {
        char *end;
        errno = 0;
        long long value = strtoll(s, &end, 10);
        if (errno != 0 || end == s)
                return -EINVAL;
        if (with_suffix && *end) {
                const char *suffixes = "KMGT";
                const char *found = strchr(suffixes, *end & ~0x20);
                if (!found || (end[1] && strcasecmp(end + 1, "B") != 0 && strcasecmp(end + 1, "iB") != 0))
                        return -EINVAL;
                for (const char *p = suffixes; p <= found; p++) {
                        if (value > LLONG_MAX / 1024 || value < LLONG_MIN / 1024)
                                return -ERANGE;
                        value *= 1024;
                }
        } else if (*end)
                return -EINVAL;
        *ret = value;
        return 0;
}

/* Sets object.section.key (section is created when missing). */
static int set_resource(json_t *resources, const char *section, const char *key, json_t *value) {
        json_t *child = json_object_get(resources, section);
        if (!value)
                return -ENOMEM;
        if (!json_is_object(child)) {
                child = json_object();
                if (json_object_set_new(resources, section, child) < 0) {
                        json_decref(value);
                        return -ENOMEM;
                }
        }
        return json_object_set_new(child, key, value) < 0 ? -ENOMEM : 0;
}

/* The numeric flags of "container update": where each goes in LinuxResources. */
static const struct resource_flag {
        const char *name, *section, *key;
        bool is_unsigned; /* periods and shares; the others take -1 for "no limit" */
        bool with_suffix;
} resource_flags[] = {
        { .name = "memory", .section = "memory", .key = "limit", .with_suffix = true },
        { .name = "cpu-quota", .section = "cpu", .key = "quota" },
        { .name = "cpu-period", .section = "cpu", .key = "period", .is_unsigned = true },
        { .name = "cpu-shares", .section = "cpu", .key = "shares", .is_unsigned = true },
        { .name = "pids", .section = "pids", .key = "limit" },
};

static int container_update(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        /* A resource flag's getopt value is RESOURCE_FLAG plus its index in resource_flags. */
        enum { CPUS = 0x100, RESOURCE_FLAG };
        static const struct option options[] = {
                { "file", required_argument, NULL, 'f' },
                { "memory", required_argument, NULL, RESOURCE_FLAG + 0 },
                { "cpu-quota", required_argument, NULL, RESOURCE_FLAG + 1 },
                { "cpu-period", required_argument, NULL, RESOURCE_FLAG + 2 },
                { "cpu-shares", required_argument, NULL, RESOURCE_FLAG + 3 },
                { "pids", required_argument, NULL, RESOURCE_FLAG + 4 },
                { "cpus", required_argument, NULL, CPUS },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        /* The flags' values, applied on top of the file's once both are known. */
        long long values[ELEMENTSOF(resource_flags)];
        bool set[ELEMENTSOF(resource_flags)] = {};
        _cleanup_(json_decrefp) json_t *resources = NULL;
        _cleanup_(json_decrefp) json_t *answer = NULL;
        const char *file = NULL, *cpus = NULL;
        char path[KATACTL_PATH_MAX];
        uint64_t unsigned_value = 0;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "f:h", options, NULL)) >= 0) {
                if (c >= RESOURCE_FLAG && c < RESOURCE_FLAG + (int) ELEMENTSOF(resource_flags)) {
                        const struct resource_flag *flag = &resource_flags[c - RESOURCE_FLAG];
                        if (flag->is_unsigned) {
                                r = parse_u64(optarg, &unsigned_value);
                                if (r == 0 && unsigned_value > LLONG_MAX)
                                        r = -ERANGE;
                                values[c - RESOURCE_FLAG] = (long long) unsigned_value;
                        } else
                                r = parse_integer(optarg, flag->with_suffix, &values[c - RESOURCE_FLAG]);
                        if (r < 0)
                                return command_usage_error(cmd, "invalid value '%s' for --%s", optarg, flag->name);
                        set[c - RESOURCE_FLAG] = true;
                        continue;
                }
                switch (c) {
                case 'f':
                        file = optarg;
                        break;
                case CPUS:
                        if ((r = command_check_utf8(cmd, optarg)) != 0)
                                return r;
                        cpus = optarg;
                        break;
                case 'h':
                        return command_help(cmd);
                default:
                        return command_usage_error(cmd, NULL);
                }
        }
        if ((r = command_check_args(cmd, argc - optind, 2, 2)) != 0)
                return r;
        const char *sid = argv[optind], *cid = argv[optind + 1];
        if ((r = check_ids(cmd, sid, cid)) != 0)
                return r;

        bool any = file || cpus;
        for (size_t i = 0; i < ELEMENTSOF(resource_flags); i++)
                any = any || set[i];
        if (!any)
                return command_usage_error(cmd, "nothing to update: give -f FILE or a resource option");

        if (file) {
                if ((r = katactl_load_json(file, true, &resources)) != 0)
                        return r;
        } else if (!(resources = json_object()))
                return katactl_oom();
        for (size_t i = 0; i < ELEMENTSOF(resource_flags); i++)
                if (set[i] && set_resource(resources, resource_flags[i].section, resource_flags[i].key,
                                           json_integer(values[i])) < 0)
                        return katactl_oom();
        if (cpus && set_resource(resources, "cpu", "cpus", json_string(cpus)) < 0)
                return katactl_oom();

        container_path(path, sizeof path, sid, cid, "/resources");
        if ((r = katactl_call(ctx, "PUT", path, NULL, resources, &answer)) != 0)
                return r;
        return print_container_done(ctx, answer, cid);
}

/* Shows ps' JSON answer ({"Titles":[...],"Processes":[[...]...]}) as an aligned table. */
static int print_process_table(const json_t *list) {
        const json_t *titles = json_object_get(list, "Titles");
        const json_t *processes = json_object_get(list, "Processes");
        size_t n_columns = json_array_size(titles), i, j;
        const json_t *process;

        if (!json_is_array(titles) || !json_is_array(processes))
                return katactl_unexpected("the process list lacks Titles or Processes");
        if (n_columns == 0 || n_columns > TABLE_COLUMNS_MAX) {
                output_json(stdout, list);
                return 0;
        }

        _cleanup_(table_freep) table_t *table = table_new(n_columns);
        if (!table)
                return katactl_oom();
        const char *row[TABLE_COLUMNS_MAX];
        for (j = 0; j < n_columns; j++)
                row[j] = json_string_value(json_array_get(titles, j));
        table_add_row(table, row);
        json_array_foreach(processes, i, process) {
                char *cells[TABLE_COLUMNS_MAX] = {};
                for (j = 0; j < n_columns; j++)
                        row[j] = cells[j] = format_value(json_array_get(process, j));
                table_add_row(table, row);
                for (j = 0; j < n_columns; j++)
                        free(cells[j]);
        }
        return katactl_print_table(table);
}

static int container_ps(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        static const struct option options[] = {
                { "format", required_argument, NULL, 'F' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(http_response_done) http_response_t response = {};
        _cleanup_(json_decrefp) json_t *list = NULL;
        _cleanup_free_ const char **query = NULL;
        const char *format = ctx->output == OUTPUT_JSON ? "json" : "table";
        char path[KATACTL_PATH_MAX];
        int c, r;

        /* What follows "--" goes to ps in the guest. */
        int n_options = command_find_double_dash(argc, argv);
        optind = 0;
        while ((c = getopt_long(n_options, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'F':
                        if (!streq(optarg, "json") && !streq(optarg, "table"))
                                return command_usage_error(cmd, "invalid format '%s' (expected json or table)", optarg);
                        format = optarg;
                        break;
                case 'h':
                        return command_help(cmd);
                default:
                        return command_usage_error(cmd, NULL);
                }
        if ((r = command_check_args(cmd, n_options - optind, 2, 2)) != 0)
                return r;
        const char *sid = argv[optind], *cid = argv[optind + 1];
        if ((r = check_ids(cmd, sid, cid)) != 0)
                return r;

        /* Each ps argument is one "args" query parameter, in order. */
        size_t n = 0, n_args = n_options + 1 < argc ? (size_t) (argc - n_options - 1) : 0;
        if (!(query = calloc(2 * n_args + 3, sizeof *query)))
                return katactl_oom();
        query[n++] = "format";
        query[n++] = format;
        for (int i = n_options + 1; i < argc; i++) {
                query[n++] = "args";
                query[n++] = argv[i];
        }

        container_path(path, sizeof path, sid, cid, "/ps");
        if ((r = katactl_request(ctx, "GET", path, query, NULL, &response)) != 0)
                return r;
        if (streq(format, "table")) {
                /* ps' own text, byte for byte. */
                fwrite(response.body, 1, response.body_size, stdout);
                return 0;
        }
        if ((r = katactl_parse_answer(&response, &list)) != 0)
                return r;
        if (ctx->output == OUTPUT_JSON)
                return katactl_print_result(ctx, list, NULL);
        return print_process_table(list);
}

static int container_logs(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        _cleanup_(http_response_done) http_response_t response = {};
        char path[KATACTL_PATH_MAX];
        int r;

        if ((r = command_parse_simple(cmd, argc, argv, 2, 2)) != 0)
                return r;
        const char *sid = argv[optind], *cid = argv[optind + 1];
        if ((r = check_ids(cmd, sid, cid)) != 0)
                return r;
        container_path(path, sizeof path, sid, cid, "/logs");
        if ((r = katactl_request(ctx, "GET", path, NULL, NULL, &response)) != 0)
                return r;
        /* The container's output, byte for byte. */
        fwrite(response.body, 1, response.body_size, stdout);
        return 0;
}

static const command_t container_create_command = {
        .name = "create",
        .usage = "container create SID [-f FILE] [--id ID] [--rootfs PATH] [-- CMD [ARGS...]]",
        .summary = "Create a container in a sandbox (POST /v1/sandboxes/SID/containers)",
        .help = "Options:\n"
                "  -f, --file FILE   a ContainerConfig as JSON ('-' reads stdin); without it, {} is the base\n"
                "  --id ID           the container's id, overriding the file's ID (katad generates one if none)\n"
                "  --rootfs PATH     the container's RootFs, a host path\n"
                "  -- CMD [ARGS...]  the container's command line, as Cmd.Args\n"
                "\n"
                "Prints the new container's id (its ContainerStatus with -o json).\n",
        .run = container_create,
};

static const command_t container_list_command = {
        .name = "list",
        .alias = "ls",
        .usage = "container list SID",
        .summary = "List a sandbox's containers (GET /v1/sandboxes/SID/containers)",
        .help = "Columns: ID, STATE, PID, STARTED (UTC).\n",
        .run = container_list,
};

static const command_t container_status_command = {
        .name = "status",
        .alias = "inspect",
        .usage = "container status SID CID",
        .summary = "Show a container's status (GET /v1/sandboxes/SID/containers/CID)",
        .run = container_status,
};

static const command_t container_start_command = {
        .name = "start",
        .usage = "container start SID CID",
        .summary = "Start a container (POST .../containers/CID/start)",
        .run = container_action,
};

static const command_t container_pause_command = {
        .name = "pause",
        .usage = "container pause SID CID",
        .summary = "Pause a container (POST .../containers/CID/pause)",
        .run = container_action,
};

static const command_t container_resume_command = {
        .name = "resume",
        .usage = "container resume SID CID",
        .summary = "Resume a paused container (POST .../containers/CID/resume)",
        .run = container_action,
};

static const command_t container_stop_command = {
        .name = "stop",
        .usage = "container stop [--force] [--timeout SECONDS] SID CID",
        .summary = "Stop a container (POST .../containers/CID/stop)",
        .help = "Options:\n"
                "  --force             send SIGKILL at once\n"
                "  --timeout SECONDS   time between SIGTERM and SIGKILL (katad's default: 10)\n",
        .run = container_stop,
};

static const command_t container_delete_command = {
        .name = "delete",
        .alias = "rm",
        .usage = "container delete [--force] SID CID",
        .summary = "Delete a ready or stopped container (DELETE .../containers/CID)",
        .help = "Options:\n"
                "  --force   stop the container first if it is running or paused\n",
        .run = container_delete,
};

static const command_t container_kill_command = {
        .name = "kill",
        .usage = "container kill [--signal SIGNAL] [--all] SID CID",
        .summary = "Send a signal to a container's process (POST .../containers/CID/kill)",
        .help = "Options:\n"
                "  -s, --signal SIGNAL   a name (TERM, SIGKILL) or a number; default SIGTERM\n"
                "  -a, --all             signal every process of the container\n",
        .run = container_kill,
};

static const command_t container_stats_command = {
        .name = "stats",
        .usage = "container stats SID CID",
        .summary = "Show a container's statistics (GET .../containers/CID/stats)",
        .help = "CPU time is in nanoseconds, memory in bytes.\n",
        .run = container_stats,
};

static const command_t container_update_command = {
        .name = "update",
        .usage = "container update SID CID [-f RESOURCES] [--memory BYTES] [--cpu-quota N] [--cpu-period N]\n"
                 "                [--cpu-shares N] [--cpus LIST] [--pids N]",
        .summary = "Change a container's cgroup resources (PUT .../containers/CID/resources)",
        .help = "Options:\n"
                "  -f, --file FILE     an OCI LinuxResources as JSON ('-' reads stdin), the base of the update\n"
                "  --memory BYTES      memory.limit; takes a K, M, G or T suffix; -1 for no limit\n"
                "  --cpu-quota N       cpu.quota in microseconds per period; -1 for no limit\n"
                "  --cpu-period N      cpu.period in microseconds\n"
                "  --cpu-shares N      cpu.shares\n"
                "  --cpus LIST         cpu.cpus, e.g. 0-1,3\n"
                "  --pids N            pids.limit; -1 for no limit\n",
        .run = container_update,
};

static const command_t container_ps_command = {
        .name = "ps",
        .usage = "container ps SID CID [--format json|table] [-- PS_ARGS...]",
        .summary = "List the processes in a container (GET .../containers/CID/ps)",
        .help = "Options:\n"
                "  --format FORMAT   what katad asks of ps: 'table' (ps' own text, printed as it is) or\n"
                "                    'json' (shown as an aligned table, or as JSON with -o json);\n"
                "                    default: 'json' with -o json, else 'table'\n"
                "  -- PS_ARGS...     arguments for ps in the guest (e.g. -- -ef), one 'args' parameter each\n",
        .run = container_ps,
};

static const command_t container_logs_command = {
        .name = "logs",
        .usage = "container logs SID CID",
        .summary = "Print what a container's own process wrote (GET .../containers/CID/logs)",
        .help = "katad captures stdout and stderr of the container's own process (at most 8 MiB).\n",
        .run = container_logs,
};

/* "katactl logs" is "katactl container logs". */
const command_t command_logs = {
        .name = "logs",
        .usage = "logs SID CID",
        .summary = "Print what a container's own process wrote (same as 'container logs')",
        .help = "See 'katactl container logs --help'.\n",
        .run = container_logs,
};

/* "katactl ps" is "katactl container ps". */
const command_t command_ps = {
        .name = "ps",
        .usage = "ps SID CID [--format json|table] [-- PS_ARGS...]",
        .summary = "List the processes in a container (same as 'container ps')",
        .help = "See 'katactl container ps --help'.\n",
        .run = container_ps,
};

static const command_t *const container_commands[] = {
        &container_create_command, &container_list_command, &container_status_command, &container_start_command,
        &container_stop_command,   &container_pause_command, &container_resume_command, &container_kill_command,
        &container_logs_command,
        &container_delete_command, &container_stats_command, &container_update_command, &container_ps_command,
        NULL,
};

const command_t command_container = {
        .name = "container",
        .usage = "container COMMAND [ARGS...]",
        .summary = "Manage the containers of a sandbox",
        .subcommands = container_commands,
};
