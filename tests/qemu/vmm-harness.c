/* Drives the QEMU backend through the generic vmm interface for tests/qemu/test_qemu.py: each
 * command-line word after the options is one operation, run in order; each prints one JSON line
 * {"op":..,"r":<0 or -errno>,...} on stdout. A later run (a "restarted katad") attaches from the
 * handle an earlier one saved.
 *
 *   vmm-harness [--kernel K] [--initrd I] [--accel auto|kvm|tcg] [--qemu PATH] [--debug]
 *               [--stop-timeout-ms N] [--boot-timeout-ms N] [--root-ports N] OP...
 *   OP: boot:ID:RUN_DIR  attach:ID:HANDLE_FILE  save:HANDLE_FILE  ping  probe9p  pause  resume
 *       stats  hotplug  template  stop  stop-force  release  wait-exit:SECONDS */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json-util.h"
#include "log.h"
#include "util.h"
#include "vmm/qemu.h"

static pthread_mutex_t exit_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t exit_cond = PTHREAD_COND_INITIALIZER;
static int exits;
static int64_t exit_ns;
static char exit_id[128];

static void on_exit_cb(const char *vm_id, void *userdata) {
        pthread_mutex_lock(&exit_lock);
        exits++;
        exit_ns = now_monotonic_ns();
        snprintf(exit_id, sizeof exit_id, "%s", vm_id);
        pthread_cond_broadcast(&exit_cond);
        pthread_mutex_unlock(&exit_lock);
}

static void emit(const char *op, int r, json_t *extra) {
        json_t *j = extra ? extra : json_object();
        json_object_set_new(j, "op", json_string(op));
        json_object_set_new(j, "r", json_integer(r));
        if (r < 0)
                json_object_set_new(j, "error", json_string(strerror(-r)));
        char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        printf("%s\n", s);
        fflush(stdout);
        free(s);
        json_decref(j);
}

static int agent_rpc(vm_t *vm, const char *method, json_t **ret) {
        agent_t *a;
        int r = vm_connect_agent(vm, &a);
        if (r < 0)
                return r;
        char *msg = NULL;
        r = agent_call(a, method, NULL, ret, &msg);
        if (r < 0 && msg)
                fprintf(stderr, "%s: %s\n", method, msg);
        free(msg);
        agent_close(a);
        return r;
}

int main(int argc, char **argv) {
        signal(SIGPIPE, SIG_IGN);
        vmm_qemu_options_t o;
        vmm_qemu_options_init(&o);
        o.accel = VMM_QEMU_ACCEL_TCG;
        int i = 1;
        for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
                const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
                if (streq(opt, "--debug")) {
                        log_set_level(LOG_DEBUG);
                        continue;
                }
                if (!val)
                        return 2;
                i++;
                if (streq(opt, "--kernel"))
                        o.kernel_path = val;
                else if (streq(opt, "--initrd"))
                        o.initrd_path = val;
                else if (streq(opt, "--qemu"))
                        o.qemu_path = val;
                else if (streq(opt, "--params"))
                        o.kernel_params = val;
                else if (streq(opt, "--accel")) {
                        if (vmm_qemu_accel_from_string(val, &o.accel) < 0)
                                return 2;
                } else if (streq(opt, "--stop-timeout-ms"))
                        o.stop_timeout_ms = (unsigned) atoi(val);
                else if (streq(opt, "--boot-timeout-ms"))
                        o.boot_timeout_ms = (unsigned) atoi(val);
                else if (streq(opt, "--root-ports"))
                        o.hotplug_root_ports = (unsigned) atoi(val);
                else
                        return 2;
        }
        vmm_t *vmm = NULL;
        int r = vmm_new_qemu(&o, &vmm);
        emit("new", r, NULL);
        if (r < 0)
                return 1;
        vmm_set_exit_handler(vmm, on_exit_cb, NULL);
        vm_t *vm = NULL;
        int status = 0;

        for (; i < argc; i++) {
                char op[4096];
                snprintf(op, sizeof op, "%s", argv[i]);
                char *arg1 = strchr(op, ':'), *arg2 = NULL;
                if (arg1) {
                        *arg1++ = 0;
                        arg2 = strchr(arg1, ':');
                        if (arg2)
                                *arg2++ = 0;
                }
                int64_t start = now_monotonic_ns();
                json_t *extra = json_object();
                if (streq(op, "boot") && arg2) {
                        vm_config_t c = {.id = arg1, .run_dir = arg2, .vcpus = 1, .memory_mib = 256};
                        r = vmm_boot(vmm, &c, &vm);
                        if (r >= 0)
                                json_object_set_new(extra, "handle", vm_get_handle(vm));
                } else if (streq(op, "attach") && arg2) {
                        json_error_t err;
                        json_t *h = json_load_file(arg2, 0, &err);
                        r = h ? vmm_attach(vmm, arg1, h, &vm) : -EINVAL;
                        json_decref(h);
                } else if (streq(op, "save") && arg1) {
                        json_t *h = vm ? vm_get_handle(vm) : NULL;
                        r = h && json_dump_file(h, arg1, 0) == 0 ? 0 : -EIO;
                        json_decref(h);
                } else if (streq(op, "ping") || streq(op, "probe9p")) {
                        json_t *res = NULL;
                        r = vm ? agent_rpc(vm, streq(op, "ping") ? "Ping" : "Probe9p", &res) : -ENOENT;
                        if (res)
                                json_object_set_new(extra, "result", res);
                } else if (streq(op, "pause")) {
                        r = vm ? vm_pause(vm) : -ENOENT;
                } else if (streq(op, "resume")) {
                        r = vm ? vm_resume(vm) : -ENOENT;
                } else if (streq(op, "stats")) {
                        json_t *s = NULL;
                        r = vm ? vm_stats(vm, &s) : -ENOENT;
                        if (s)
                                json_object_set_new(extra, "stats", s);
                } else if (streq(op, "hotplug")) {
                        json_t *res = NULL;
                        r = vm ? vm_hotplug(vm, NULL, &res) : -ENOENT;
                        json_decref(res);
                } else if (streq(op, "template")) {
                        r = vm ? vm_save_template(vm, "/nonexistent") : -ENOENT;
                        vm_t *other = NULL;
                        vm_config_t c = {.id = "tpl", .run_dir = "/nonexistent"};
                        int r2 = vmm_boot_from_template(vmm, "/nonexistent", &c, &other);
                        json_object_set_new(extra, "boot_from_template", json_integer(r2));
                } else if (streq(op, "stop") || streq(op, "stop-force")) {
                        r = vm ? vm_stop(vm, streq(op, "stop-force")) : -ENOENT;
                        vm = NULL;
                } else if (streq(op, "release")) {
                        vm_release(vm);
                        vm = NULL;
                        r = 0;
                } else if (streq(op, "wait-exit") && arg1) {
                        /* Prints "waiting" first, so the test knows when to strike. */
                        emit("waiting", 0, NULL);
                        struct timespec deadline;
                        clock_gettime(CLOCK_REALTIME, &deadline);
                        deadline.tv_sec += atoi(arg1);
                        pthread_mutex_lock(&exit_lock);
                        while (exits == 0 && pthread_cond_timedwait(&exit_cond, &exit_lock, &deadline) == 0)
                                ;
                        r = exits > 0 ? 0 : -ETIMEDOUT;
                        json_object_set_new(extra, "exits", json_integer(exits));
                        json_object_set_new(extra, "exit_ns", json_integer(exit_ns));
                        json_object_set_new(extra, "vm_id", json_string(exit_id));
                        pthread_mutex_unlock(&exit_lock);
                } else if (streq(op, "sleep") && arg1) {
                        usleep((useconds_t) atoi(arg1) * 1000);
                        r = 0;
                } else {
                        r = -EINVAL;
                }
                json_object_set_new(extra, "ms", json_integer((now_monotonic_ns() - start) / 1000000));
                emit(op, r, extra);
        }
        /* An exit report after the operations, e.g. for a VM killed during "sleep". */
        pthread_mutex_lock(&exit_lock);
        json_t *summary = json_pack("{s:i}", "exits", exits);
        pthread_mutex_unlock(&exit_lock);
        emit("done", 0, summary);
        vm_release(vm);
        vmm_free(vmm);
        return status;
}
