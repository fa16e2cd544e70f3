/* katactl version, stats, events, and the hotplug and factory verbs. */
#ifdef HAVE_CONFIG_H
#include "config.h" /* first: it defines _GNU_SOURCE */
#endif

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "katactl.h"
#include "util.h"

/* Every top-level key of an object as "Key: value", sorted: for answers without a fixed table. */
static int print_object_fields(katactl_t *ctx, const json_t *object) {
        if (ctx->output == OUTPUT_JSON)
                return katactl_print_result(ctx, object, NULL);
        if (!object)
                return 0;
        if (!json_is_object(object)) {
                output_json(stdout, object);
                return 0;
        }

        _cleanup_(table_freep) table_t *table = table_new(2);
        _cleanup_free_ const char **keys = json_object_sorted_keys(object);
        if (!table || !keys)
                return katactl_oom();
        for (size_t i = 0; keys[i]; i++)
                table_add_json_field(table, keys[i], json_object_get(object, keys[i]));
        return katactl_print_table(table);
}

static int run_version(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *info = NULL;
        _cleanup_(table_freep) table_t *table = NULL;
        int r;

        if ((r = command_parse_simple(cmd, argc, argv, 0, 0)) != 0)
                return r;
        r = katactl_call(ctx, "GET", "/v1", NULL, NULL, &info);
        if (r != 0) {
                /* The client's half is still worth showing when katad cannot answer. */
                if (ctx->output == OUTPUT_TABLE)
                        printf("Client version:   %s\n", KATACTL_VERSION);
                return r;
        }

        if (ctx->output == OUTPUT_JSON) {
                _cleanup_(json_decrefp) json_t *both =
                        json_pack("{s:{s:s,s:s},s:O}", "Client", "Name", "katactl", "Version", KATACTL_VERSION,
                                  "Server", info);
                if (!both)
                        return katactl_oom();
                output_json(stdout, both);
                return 0;
        }
        if (!json_is_object(info))
                return katactl_unexpected("DaemonInfo is not an object");
        if (!(table = table_new(2)))
                return katactl_oom();
        table_add_field(table, "Client version", KATACTL_VERSION);
        table_add_json_field(table, "Server", json_object_get(info, "Name"));
        table_add_json_field(table, "Server version", json_object_get(info, "Version"));
        table_add_json_field(table, "API version", json_object_get(info, "APIVersion"));
        table_add_json_field(table, "Hypervisors", json_object_get(info, "Hypervisors"));
        table_add_json_field(table, "Default hypervisor", json_object_get(info, "DefaultHypervisor"));
        table_add_json_field(table, "Store", json_object_get(info, "Store"));
        table_add_json_field(table, "Capabilities", json_object_get(info, "Capabilities"));
        return katactl_print_table(table);
}

static int run_stats(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        int r;

        if ((r = command_parse_simple(cmd, argc, argv, 1, 2)) != 0)
                return r;
        const char *sid = argv[optind], *cid = optind + 1 < argc ? argv[optind + 1] : NULL;
        if ((r = command_check_id(cmd, "sandbox", sid)) != 0)
                return r;
        if (!cid)
                return sandbox_stats_show(ctx, sid);
        if ((r = command_check_id(cmd, "container", cid)) != 0)
                return r;
        return container_stats_show(ctx, sid, cid);
}

/* Prints one event line: as it is in JSON mode, else "TIME TYPE SANDBOX CONTAINER [extras]". */
static int print_event(const char *line, size_t size, void *userdata) {
        katactl_t *ctx = userdata;
        json_error_t error;

        if (size == 0)
                return 0; /* a keep-alive */
        if (ctx->output == OUTPUT_JSON) {
                fwrite(line, 1, size, stdout);
                putchar('\n');
        } else {
                _cleanup_(json_decrefp) json_t *event = json_loadb(line, size, 0, &error);
                if (!json_is_object(event)) {
                        fputs("katactl: malformed event from katad: ", stderr);
                        output_sanitized(stderr, line, 200);
                        fputc('\n', stderr);
                        return 0;
                }
                _cleanup_free_ char *type = format_value(json_object_get(event, "Type"));
                _cleanup_free_ char *time = format_value(json_object_get(event, "Time"));
                _cleanup_free_ char *sandbox = format_value(json_object_get(event, "SandboxID"));
                _cleanup_free_ char *container = format_value(json_object_get(event, "ContainerID"));
                if (!type || !time || !sandbox || !container)
                        return -1;
                output_sanitized(stdout, time, 0);
                printf(" %-19s ", type);
                output_sanitized(stdout, sandbox, 0);
                putchar(' ');
                output_sanitized(stdout, container, 0);

                static const struct {
                        const char *key, *label;
                } extras[] = {
                        { "ProcessID", "process" },
                        { "ExitCode", "exit" },
                        { "Signal", "signal" },
                        { "UID", "uid" },
                };
                for (size_t i = 0; i < ELEMENTSOF(extras); i++) {
                        json_t *value = json_object_get(event, extras[i].key);
                        if (!value || json_is_null(value))
                                continue;
                        _cleanup_free_ char *formatted = format_value(value);
                        printf(" %s=", extras[i].label);
                        output_sanitized(stdout, formatted ? formatted : "?", 0);
                }
                putchar('\n');
        }
        /* Whoever reads a pipe wants each event when it happens. */
        if (fflush(stdout) != 0)
                return -1;
        return 0;
}

static int run_events(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        static const struct option options[] = {
                { "sandbox", required_argument, NULL, 's' },
                { "container", required_argument, NULL, 'c' },
                { "since", required_argument, NULL, 'S' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(http_response_done) http_response_t response = {};
        _cleanup_free_ char *url = NULL;
        const char *sid = NULL, *cid = NULL, *since = NULL;
        char reason[512] = "";
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 's':
                        if ((r = command_check_id(cmd, "sandbox", optarg)) != 0)
                                return r;
                        sid = optarg;
                        break;
                case 'c':
                        if ((r = command_check_id(cmd, "container", optarg)) != 0)
                                return r;
                        cid = optarg;
                        break;
                case 'S':
                        since = optarg;
                        break;
                case 'h':
                        return command_help(cmd);
                default:
                        return command_usage_error(cmd, NULL);
                }
        if ((r = command_check_args(cmd, argc - optind, 0, 0)) != 0)
                return r;

        const char *query[] = { "sandbox", sid, "container", cid, "since", since, NULL };
        if (!(url = katactl_build_url("/v1/events", query)))
                return katactl_oom();
        r = http_stream_lines(ctx->socket_path, url, print_event, ctx, &response, reason, sizeof reason);
        if (r < 0)
                return katactl_transport_error(ctx, r, reason);
        if (response.status < 200 || response.status > 299) {
                output_api_error(&response);
                return KATACTL_EXIT_FAILURE;
        }
        return 0;
}

/* Verbs whose only argument is SID and whose answer has no fixed shape yet: GET and show. */
static int sandbox_get(katactl_t *ctx, const command_t *cmd, int argc, char **argv, const char *route,
                       const char *const *columns, const char *const *keys, size_t n_columns) {
        _cleanup_(json_decrefp) json_t *answer = NULL;
        _cleanup_(table_freep) table_t *table = NULL;
        char path[KATACTL_PATH_MAX];
        size_t i;
        json_t *item;
        int r;

        if ((r = command_parse_simple(cmd, argc, argv, 1, 1)) != 0)
                return r;
        const char *sid = argv[optind];
        if ((r = command_check_id(cmd, "sandbox", sid)) != 0)
                return r;
        snprintf(path, sizeof path, "/v1/sandboxes/%s/%s", sid, route);
        if ((r = katactl_call(ctx, "GET", path, NULL, NULL, &answer)) != 0)
                return r;
        if (ctx->output == OUTPUT_JSON)
                return katactl_print_result(ctx, answer, NULL);
        if (!json_is_array(answer))
                return katactl_unexpected("the list is not an array");

        if (!(table = table_new(n_columns)))
                return katactl_oom();
        table_add_row(table, columns);
        json_array_foreach(answer, i, item) {
                char *cells[TABLE_COLUMNS_MAX] = {};
                for (size_t j = 0; j < n_columns; j++)
                        cells[j] = format_value(json_object_get(item, keys[j]));
                table_add_row(table, (const char *const *) cells);
                for (size_t j = 0; j < n_columns; j++)
                        free(cells[j]);
        }
        return katactl_print_table(table);
}

/* Verbs that send a JSON file (-f) to a sandbox route and print a confirmation. */
static int sandbox_send_file(katactl_t *ctx, const command_t *cmd, int argc, char **argv, const char *method,
                             const char *route, bool want_object) {
        static const struct option options[] = {
                { "file", required_argument, NULL, 'f' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(json_decrefp) json_t *body = NULL;
        _cleanup_(json_decrefp) json_t *answer = NULL;
        char path[KATACTL_PATH_MAX];
        const char *file = NULL;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "f:h", options, NULL)) >= 0)
                switch (c) {
                case 'f':
                        file = optarg;
                        break;
                case 'h':
                        return command_help(cmd);
                default:
                        return command_usage_error(cmd, NULL);
                }
        if ((r = command_check_args(cmd, argc - optind, 1, 1)) != 0)
                return r;
        if (!file)
                return command_usage_error(cmd, "missing -f FILE");
        const char *sid = argv[optind];
        if ((r = command_check_id(cmd, "sandbox", sid)) != 0)
                return r;
        if ((r = katactl_load_json(file, want_object, &body)) != 0)
                return r;

        snprintf(path, sizeof path, "/v1/sandboxes/%s/%s", sid, route);
        if ((r = katactl_call(ctx, method, path, NULL, body, &answer)) != 0)
                return r;
        return katactl_print_result(ctx, answer, sid);
}

static int device_add(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        return sandbox_send_file(ctx, cmd, argc, argv, "POST", "devices", true);
}

static int interface_list(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        static const char *const columns[] = { "NAME", "DEVICE", "MTU", "HWADDR" };
        static const char *const keys[] = { "Name", "Device", "Mtu", "HwAddr" };
        return sandbox_get(ctx, cmd, argc, argv, "interfaces", columns, keys, ELEMENTSOF(columns));
}

static int interface_add(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        return sandbox_send_file(ctx, cmd, argc, argv, "POST", "interfaces", true);
}

static int interface_remove(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *answer = NULL;
        _cleanup_free_ char *name = NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        if ((r = command_parse_simple(cmd, argc, argv, 2, 2)) != 0)
                return r;
        const char *sid = argv[optind];
        if ((r = command_check_id(cmd, "sandbox", sid)) != 0)
                return r;
        /* An interface name is not an id: it is escaped rather than checked. */
        if (!(name = http_escape(argv[optind + 1])))
                return katactl_oom();
        if (asprintf(&path, "/v1/sandboxes/%s/interfaces/%s", sid, name) < 0) {
                path = NULL;
                return katactl_oom();
        }
        if ((r = katactl_call(ctx, "DELETE", path, NULL, NULL, &answer)) != 0)
                return r;
        return katactl_print_result(ctx, answer, argv[optind + 1]);
}

static int route_list(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        static const char *const columns[] = { "DEST", "GATEWAY", "DEVICE", "SOURCE", "SCOPE" };
        static const char *const keys[] = { "Dest", "Gateway", "Device", "Source", "Scope" };
        return sandbox_get(ctx, cmd, argc, argv, "routes", columns, keys, ELEMENTSOF(columns));
}

static int route_update(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        return sandbox_send_file(ctx, cmd, argc, argv, "PUT", "routes", false);
}

static int factory_status(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *status = NULL;
        int r;

        if ((r = command_parse_simple(cmd, argc, argv, 0, 0)) != 0)
                return r;
        if ((r = katactl_call(ctx, "GET", "/v1/factory", NULL, NULL, &status)) != 0)
                return r;
        return print_object_fields(ctx, status);
}

static int factory_init(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        static const struct option options[] = {
                { "file", required_argument, NULL, 'f' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(json_decrefp) json_t *config = NULL;
        _cleanup_(json_decrefp) json_t *status = NULL;
        const char *file = NULL;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "f:h", options, NULL)) >= 0)
                switch (c) {
                case 'f':
                        file = optarg;
                        break;
                case 'h':
                        return command_help(cmd);
                default:
                        return command_usage_error(cmd, NULL);
                }
        if ((r = command_check_args(cmd, argc - optind, 0, 0)) != 0)
                return r;
        if (file && (r = katactl_load_json(file, true, &config)) != 0)
                return r;
        if ((r = katactl_call(ctx, "POST", "/v1/factory", NULL, config, &status)) != 0)
                return r;
        return print_object_fields(ctx, status);
}

static int factory_destroy(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *answer = NULL;
        int r;

        if ((r = command_parse_simple(cmd, argc, argv, 0, 0)) != 0)
                return r;
        if ((r = katactl_call(ctx, "DELETE", "/v1/factory", NULL, NULL, &answer)) != 0)
                return r;
        return katactl_print_result(ctx, answer, "factory destroyed");
}

const command_t command_version = {
        .name = "version",
        .alias = "info",
        .usage = "version",
        .summary = "Show katactl's version and katad's (GET /v1)",
        .help = "With -o json prints {\"Client\": {...}, \"Server\": DaemonInfo}.\n",
        .run = run_version,
};

const command_t command_stats = {
        .name = "stats",
        .usage = "stats SID [CID]",
        .summary = "Show a sandbox's or a container's statistics",
        .help = "The same as 'katactl sandbox stats SID' or 'katactl container stats SID CID'.\n",
        .run = run_stats,
};

const command_t command_events = {
        .name = "events",
        .usage = "events [--sandbox SID] [--container CID] [--since TIME]",
        .summary = "Print katad's events as they happen, until interrupted (GET /v1/events)",
        .help = "Prints one line per event: TIME TYPE SANDBOX CONTAINER, then process=, exit=, signal=\n"
                "and uid= where the event has them; with -o json, katad's JSON lines as they are.\n"
                "\n"
                "Options:\n"
                "  --sandbox SID     only the events of this sandbox\n"
                "  --container CID   only the events of this container\n"
                "  --since TIME      first replay the kept events newer than TIME (RFC 3339, UTC)\n",
        .run = run_events,
};

static const command_t device_add_command = {
        .name = "add",
        .usage = "device add SID -f DEVICEINFO",
        .summary = "Hot-plug a device into a sandbox (POST /v1/sandboxes/SID/devices)",
        .help = "Options:\n"
                "  -f, --file FILE   a DeviceInfo as JSON ('-' reads stdin)\n",
        .run = device_add,
};

static const command_t *const device_commands[] = { &device_add_command, NULL };

const command_t command_device = {
        .name = "device",
        .usage = "device COMMAND [ARGS...]",
        .summary = "Hot-plug devices into a sandbox",
        .subcommands = device_commands,
};

static const command_t interface_list_command = {
        .name = "list",
        .alias = "ls",
        .usage = "interface list SID",
        .summary = "List a sandbox's network interfaces (GET /v1/sandboxes/SID/interfaces)",
        .run = interface_list,
};

static const command_t interface_add_command = {
        .name = "add",
        .usage = "interface add SID -f INTERFACE",
        .summary = "Add a network interface to a sandbox (POST /v1/sandboxes/SID/interfaces)",
        .help = "Options:\n"
                "  -f, --file FILE   an Interface as JSON ('-' reads stdin)\n",
        .run = interface_add,
};

static const command_t interface_remove_command = {
        .name = "remove",
        .alias = "rm",
        .usage = "interface remove SID NAME",
        .summary = "Remove a network interface from a sandbox (DELETE .../SID/interfaces/NAME)",
        .run = interface_remove,
};

static const command_t *const interface_commands[] = {
        &interface_list_command,
        &interface_add_command,
        &interface_remove_command,
        NULL,
};

const command_t command_interface = {
        .name = "interface",
        .usage = "interface COMMAND [ARGS...]",
        .summary = "Manage a sandbox's network interfaces",
        .subcommands = interface_commands,
};

static const command_t route_list_command = {
        .name = "list",
        .alias = "ls",
        .usage = "route list SID",
        .summary = "List a sandbox's routes (GET /v1/sandboxes/SID/routes)",
        .run = route_list,
};

static const command_t route_update_command = {
        .name = "update",
        .usage = "route update SID -f ROUTES",
        .summary = "Replace a sandbox's routes (PUT /v1/sandboxes/SID/routes)",
        .help = "Options:\n"
                "  -f, --file FILE   the routes as a JSON array ('-' reads stdin)\n",
        .run = route_update,
};

static const command_t *const route_commands[] = { &route_list_command, &route_update_command, NULL };

const command_t command_route = {
        .name = "route",
        .usage = "route COMMAND [ARGS...]",
        .summary = "Manage a sandbox's routes",
        .subcommands = route_commands,
};

static const command_t factory_status_command = {
        .name = "status",
        .usage = "factory status",
        .summary = "Show the VM factory's status (GET /v1/factory)",
        .run = factory_status,
};

static const command_t factory_init_command = {
        .name = "init",
        .usage = "factory init [-f CONFIG]",
        .summary = "Build the factory's template or fill its cache (POST /v1/factory)",
        .help = "Options:\n"
                "  -f, --file FILE   the factory's configuration as JSON ('-' reads stdin)\n",
        .run = factory_init,
};

static const command_t factory_destroy_command = {
        .name = "destroy",
        .usage = "factory destroy",
        .summary = "Destroy the factory's template and cached VMs (DELETE /v1/factory)",
        .run = factory_destroy,
};

static const command_t *const factory_commands[] = {
        &factory_status_command,
        &factory_init_command,
        &factory_destroy_command,
        NULL,
};

const command_t command_factory = {
        .name = "factory",
        .usage = "factory COMMAND [ARGS...]",
        .summary = "Manage the VM factory",
        .subcommands = factory_commands,
};
