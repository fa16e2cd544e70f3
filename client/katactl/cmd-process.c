/* katactl exec, wait, signal, winsize: the process verbs, under .../containers/CID/processes. */
#ifdef HAVE_CONFIG_H
#include "config.h" /* first: it defines _GNU_SOURCE */
#endif

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "katactl.h"
#include "util.h"

/* Checks SID, CID and (when set) PID, the ids every process verb starts with. */
static int check_ids(const command_t *cmd, const char *sid, const char *cid, const char *pid) {
        int r = command_check_id(cmd, "sandbox", sid);
        if (r == 0)
                r = command_check_id(cmd, "container", cid);
        if (r == 0 && pid)
                r = command_check_id(cmd, "process", pid);
        return r;
}

/* .../containers/CID/processes, then /PID/suffix when pid is set. */
static void process_path(char *path, size_t size, const char *sid, const char *cid, const char *pid,
                         const char *suffix) {
        snprintf(path, size, "/v1/sandboxes/%s/containers/%s/processes%s%s%s", sid, cid, pid ? "/" : "",
                 pid ? pid : "", suffix);
}

/* Waits for a process and stores its exit code; *ret_answer gets katad's answer. */
static int process_wait(katactl_t *ctx, const char *sid, const char *cid, const char *pid, json_t **ret_answer,
                        int *ret_exit_code) {
        _cleanup_(json_decrefp) json_t *answer = NULL;
        char path[KATACTL_PATH_MAX];
        int r;

        process_path(path, sizeof path, sid, cid, pid, "/wait");
        if ((r = katactl_call(ctx, "POST", path, NULL, NULL, &answer)) != 0)
                return r;
        json_t *exit_code = json_object_get(answer, "ExitCode");
        if (!json_is_integer(exit_code))
                return katactl_unexpected("no integer ExitCode in the answer to wait");
        json_int_t code = json_integer_value(exit_code);
        *ret_exit_code = code >= 0 && code <= 255 ? (int) code : 255;
        *ret_answer = TAKE_PTR(answer);
        return 0;
}

static int run_exec(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        static const struct option options[] = {
                { "env", required_argument, NULL, 'e' },
                { "user", required_argument, NULL, 'u' },
                { "workdir", required_argument, NULL, 'w' },
                { "detach", no_argument, NULL, 'd' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(json_decrefp) json_t *command = json_object();
        _cleanup_(json_decrefp) json_t *envs = json_array();
        _cleanup_(json_decrefp) json_t *args = json_array();
        _cleanup_(json_decrefp) json_t *process = NULL;
        _cleanup_(json_decrefp) json_t *waited = NULL;
        const char *user = NULL, *workdir = NULL;
        char path[KATACTL_PATH_MAX];
        bool detach = false;
        int c, r, exit_code;

        if (!command || !envs || !args)
                return katactl_oom();
        /* '+': the first positional argument ends our options, so CMD keeps its own. */
        optind = 0;
        while ((c = getopt_long(argc, argv, "+e:u:w:dh", options, NULL)) >= 0)
                switch (c) {
                case 'e': {
                        if ((r = command_check_utf8(cmd, optarg)) != 0)
                                return r;
                        char *equal = strchr(optarg, '=');
                        if (!equal || equal == optarg)
                                return command_usage_error(cmd, "expected KEY=VALUE for -e, got '%s'", optarg);
                        json_t *env = json_pack("{s:s%,s:s}", "Var", optarg, (size_t) (equal - optarg), "Value",
                                                equal + 1);
                        if (json_array_append_new(envs, env) < 0)
                                return katactl_oom();
                        break;
                }
                case 'u':
                        if ((r = command_check_utf8(cmd, optarg)) != 0)
                                return r;
                        user = optarg;
                        break;
                case 'w':
                        if ((r = command_check_utf8(cmd, optarg)) != 0)
                                return r;
                        workdir = optarg;
                        break;
                case 'd':
                        detach = true;
                        break;
                case 'h':
                        return command_help(cmd);
                default:
                        return command_usage_error(cmd, NULL);
                }
        if ((r = command_check_args(cmd, argc - optind, 2, -1)) != 0)
                return r;
        const char *sid = argv[optind], *cid = argv[optind + 1];
        if ((r = check_ids(cmd, sid, cid, NULL)) != 0)
                return r;
        int first = optind + 2;
        if (first < argc && streq(argv[first], "--"))
                first++;
        if (first >= argc)
                return command_usage_error(cmd, "missing CMD");
        for (int i = first; i < argc; i++) {
                if ((r = command_check_utf8(cmd, argv[i])) != 0)
                        return r;
                if (json_array_append_new(args, json_string(argv[i])) < 0)
                        return katactl_oom();
        }

        if (json_object_set(command, "Args", args) < 0 ||
            (json_array_size(envs) > 0 && json_object_set(command, "Envs", envs) < 0) ||
            (user && json_object_set_new(command, "User", json_string(user)) < 0) ||
            (workdir && json_object_set_new(command, "WorkDir", json_string(workdir)) < 0))
                return katactl_oom();

        process_path(path, sizeof path, sid, cid, NULL, "");
        if ((r = katactl_call(ctx, "POST", path, NULL, command, &process)) != 0)
                return r;
        const char *token = json_path_string(process, "Token");
        if (!id_is_valid(token))
                return katactl_unexpected("the new process has no valid Token");
        if (detach)
                return katactl_print_result(ctx, process, token);

        if ((r = process_wait(ctx, sid, cid, token, &waited, &exit_code)) != 0)
                return r;
        if (ctx->output == OUTPUT_JSON) {
                /* One object that tells both what was started and how it ended. */
                if (json_object_update(process, waited) < 0)
                        return katactl_oom();
                output_json(stdout, process);
        }
        return exit_code;
}

static int run_wait(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *answer = NULL;
        char line[32];
        int r, exit_code;

        if ((r = command_parse_simple(cmd, argc, argv, 2, 3)) != 0)
                return r;
        const char *sid = argv[optind], *cid = argv[optind + 1];
        const char *pid = optind + 2 < argc ? argv[optind + 2] : cid;
        if ((r = check_ids(cmd, sid, cid, pid)) != 0)
                return r;
        if ((r = process_wait(ctx, sid, cid, pid, &answer, &exit_code)) != 0)
                return r;
        snprintf(line, sizeof line, "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(answer, "ExitCode")));
        return katactl_print_result(ctx, answer, line);
}

static int run_signal(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *body = NULL;
        _cleanup_(json_decrefp) json_t *answer = NULL;
        char path[KATACTL_PATH_MAX];
        int r;

        if ((r = command_parse_signal_request(cmd, argc, argv, 3, &body)) != 0)
                return r;
        const char *sid = argv[optind], *cid = argv[optind + 1], *pid = argv[optind + 2];
        if ((r = check_ids(cmd, sid, cid, pid)) != 0)
                return r;

        process_path(path, sizeof path, sid, cid, pid, "/signal");
        if ((r = katactl_call(ctx, "POST", path, NULL, body, &answer)) != 0)
                return r;
        return katactl_print_result(ctx, answer, pid);
}

static int run_winsize(katactl_t *ctx, const command_t *cmd, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *body = NULL;
        _cleanup_(json_decrefp) json_t *answer = NULL;
        char path[KATACTL_PATH_MAX];
        uint64_t height, width;
        int r;

        if ((r = command_parse_simple(cmd, argc, argv, 5, 5)) != 0)
                return r;
        const char *sid = argv[optind], *cid = argv[optind + 1], *pid = argv[optind + 2];
        if ((r = check_ids(cmd, sid, cid, pid)) != 0)
                return r;
        if (parse_u64(argv[optind + 3], &height) < 0 || height > UINT16_MAX)
                return command_usage_error(cmd, "invalid height '%s'", argv[optind + 3]);
        if (parse_u64(argv[optind + 4], &width) < 0 || width > UINT16_MAX)
                return command_usage_error(cmd, "invalid width '%s'", argv[optind + 4]);

        if (!(body = json_pack("{s:I,s:I}", "Height", (json_int_t) height, "Width", (json_int_t) width)))
                return katactl_oom();
        process_path(path, sizeof path, sid, cid, pid, "/winsize");
        if ((r = katactl_call(ctx, "POST", path, NULL, body, &answer)) != 0)
                return r;
        return katactl_print_result(ctx, answer, pid);
}

const command_t command_exec = {
        .name = "exec",
        .usage = "exec [-e KEY=VALUE]... [-u USER] [-w DIR] [-d] SID CID CMD [ARGS...]",
        .summary = "Run a command in a running container and wait for it (POST .../CID/processes)",
        .help = "Exits with the process's exit status (128+N when signal N ended it). The process's\n"
                "output stays in the guest until katad streams IO.\n"
                "\n"
                "Options (before SID; everything after CID belongs to CMD):\n"
                "  -e, --env KEY=VALUE   set an environment variable (repeatable)\n"
                "  -u, --user USER       run as this user\n"
                "  -w, --workdir DIR     run in this directory\n"
                "  -d, --detach          do not wait: print the process's id (its Token) and exit 0\n",
        .run = run_exec,
};

const command_t command_wait = {
        .name = "wait",
        .usage = "wait SID CID [PID]",
        .summary = "Wait for a process and print its exit code (POST .../processes/PID/wait)",
        .help = "PID defaults to CID, the container's own process. Exits 0 whatever the exit code.\n",
        .run = run_wait,
};

const command_t command_signal = {
        .name = "signal",
        .usage = "signal [--signal SIGNAL] [--all] SID CID PID",
        .summary = "Send a signal to a process (POST .../processes/PID/signal)",
        .help = "Options:\n"
                "  -s, --signal SIGNAL   a name (TERM, SIGKILL) or a number; default SIGTERM\n"
                "  -a, --all             signal every process of the container\n",
        .run = run_signal,
};

const command_t command_winsize = {
        .name = "winsize",
        .usage = "winsize SID CID PID HEIGHT WIDTH",
        .summary = "Set the terminal size of a process (POST .../processes/PID/winsize)",
        .run = run_winsize,
};
