/* katad's configuration: defaults, the INI file (parsed by libinih) and flags. */
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "store/store.h"
#include "util.h"

static int set_string(char **field, const char *value) {
        char *s = strdup(value);
        if (!s)
                return -ENOMEM;
        free(*field);
        *field = s;
        return 0;
}

static int set_uint(unsigned *field, const char *value, unsigned max) {
        uint64_t v;
        int r = parse_u64(value, &v);
        if (r < 0 || v > max)
                return -EINVAL;
        *field = (unsigned) v;
        return 0;
}

int config_init(katad_config_t *c) {
        *c = (katad_config_t) {
                .socket_mode = 0660,
                .log_level = LOG_INFO,
                .max_connections = 512,
                .max_body_bytes = 1024 * 1024,
                .default_vcpus = 1,
                .default_memory_mib = 128,
                .stop_timeout_sec = 10,
                .mock_boot_delay_ms = 0,
                .event_history = 1024,
                .root_ports = 4,
                .boot_timeout_sec = 60,
        };
        c->socket_path = strdup("/run/katad/katad.sock");
        c->socket_group = strdup("");
        c->state_dir = strdup("/var/lib/katad");
        c->run_dir = strdup("/run/katad");
        c->hypervisor = strdup("qemu");
        c->store = strdup("sqlite");
        c->qemu_path = strdup("/usr/bin/qemu-system-x86_64");
        c->accelerator = strdup("auto");
        c->guest_kernel = strdup(DATADIR "/katad/guest/vmlinux");
        c->guest_initrd = strdup(DATADIR "/katad/guest/initrd.img");
        c->kernel_params = strdup("");
        if (!c->socket_path || !c->socket_group || !c->state_dir || !c->run_dir || !c->hypervisor || !c->store ||
            !c->qemu_path || !c->accelerator || !c->guest_kernel || !c->guest_initrd || !c->kernel_params) {
                config_done(c);
                return -ENOMEM;
        }
        return 0;
}

void config_done(katad_config_t *c) {
        free(c->socket_path);
        free(c->socket_group);
        free(c->state_dir);
        free(c->run_dir);
        free(c->hypervisor);
        free(c->store);
        free(c->qemu_path);
        free(c->accelerator);
        free(c->guest_kernel);
        free(c->guest_initrd);
        free(c->kernel_params);
        *c = (katad_config_t) { 0 };
}

int config_set(katad_config_t *c, const char *section, const char *key, const char *value) {
#define IS(s, k) (streq(section, s) && streq(key, k))
        if (IS("daemon", "socket"))
                return set_string(&c->socket_path, value);
        if (IS("daemon", "socket_group"))
                return set_string(&c->socket_group, value);
        if (IS("daemon", "socket_mode")) {
                char *end;
                unsigned long mode = strtoul(value, &end, 8);
                if (!*value || *end || mode > 0777)
                        return -EINVAL;
                c->socket_mode = (unsigned) mode;
                return 0;
        }
        if (IS("daemon", "state_dir"))
                return set_string(&c->state_dir, value);
        if (IS("daemon", "run_dir"))
                return set_string(&c->run_dir, value);
        if (IS("daemon", "log_level")) {
                int level = log_level_from_string(value);
                if (level < 0)
                        return -EINVAL;
                c->log_level = level;
                return 0;
        }
        if (IS("daemon", "max_connections"))
                return set_uint(&c->max_connections, value, 65536);
        if (IS("daemon", "max_body_bytes")) {
                unsigned v;
                int r = set_uint(&v, value, 64u * 1024 * 1024);
                if (r >= 0)
                        c->max_body_bytes = v;
                return r;
        }
        if (IS("daemon", "event_history"))
                return set_uint(&c->event_history, value, 1000000);
        if (IS("store", "backend"))
                return set_string(&c->store, value);
        if (IS("hypervisor", "default"))
                return set_string(&c->hypervisor, value);
        if (IS("hypervisor", "vcpus"))
                return set_uint(&c->default_vcpus, value, 256);
        if (IS("hypervisor", "memory_mib"))
                return set_uint(&c->default_memory_mib, value, 1024 * 1024);
        if (IS("hypervisor", "qemu"))
                return set_string(&c->qemu_path, value);
        if (IS("hypervisor", "accelerator")) {
                if (!streq(value, "auto") && !streq(value, "kvm") && !streq(value, "tcg"))
                        return -EINVAL;
                return set_string(&c->accelerator, value);
        }
        if (IS("hypervisor", "root_ports"))
                return set_uint(&c->root_ports, value, 32);
        if (IS("hypervisor", "boot_timeout_sec"))
                return set_uint(&c->boot_timeout_sec, value, 3600);
        if (IS("guest", "kernel"))
                return set_string(&c->guest_kernel, value);
        if (IS("guest", "initrd"))
                return set_string(&c->guest_initrd, value);
        if (IS("guest", "kernel_params"))
                return set_string(&c->kernel_params, value);
        if (IS("containers", "stop_timeout_sec"))
                return set_uint(&c->stop_timeout_sec, value, 3600);
        if (IS("mock", "boot_delay_ms"))
                return set_uint(&c->mock_boot_delay_ms, value, 600000);
#undef IS
        return -ENOKEY;
}

typedef struct parse_state {
        katad_config_t *c;
        const char *path;
        int error;
} parse_state_t;

static int on_ini_entry(void *userdata, const char *section, const char *name, const char *value) {
        parse_state_t *st = userdata;
        int r = config_set(st->c, section, name, value);
        if (r == -ENOKEY) {
                log_error("%s: unknown setting [%s] %s", st->path, section, name);
                st->error = -EINVAL;
                return 0;
        }
        if (r < 0) {
                log_error("%s: invalid value \"%s\" for [%s] %s", st->path, value, section, name);
                st->error = r == -ENOMEM ? r : -EINVAL;
                return 0;
        }
        return 1;
}

int config_load_file(katad_config_t *c, const char *path) {
        FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        parse_state_t st = { .c = c, .path = path };
        int line = ini_parse_file(f, on_ini_entry, &st);
        fclose(f);
        if (st.error < 0)
                return st.error;
        if (line != 0)
                return log_error_errno(EINVAL, "%s:%d: syntax error", path, line);
        return 0;
}

int config_validate(const katad_config_t *c) {
        store_backend_t b;
        if (store_backend_from_string(c->store, &b) < 0)
                return log_error_errno(EINVAL, "Unknown store backend \"%s\" (sqlite, fs or leveldb)", c->store);
        if (!streq(c->hypervisor, "mock") && !streq(c->hypervisor, "qemu"))
                return log_error_errno(EINVAL, "Unknown hypervisor \"%s\" (qemu or mock)", c->hypervisor);
        if (c->socket_path[0] != '/' || c->state_dir[0] != '/' || c->run_dir[0] != '/')
                return log_error_errno(EINVAL, "The socket, state and run paths must be absolute");
        if (strlen(c->socket_path) >= 108)
                return log_error_errno(ENAMETOOLONG, "Socket path %s is too long", c->socket_path);
        return 0;
}

void config_print(const katad_config_t *c, FILE *f) {
        fprintf(f,
                "[daemon]\nsocket = %s\nsocket_group = %s\nsocket_mode = %04o\nstate_dir = %s\nrun_dir = %s\n"
                "log_level = %s\nmax_connections = %u\nmax_body_bytes = %zu\nevent_history = %u\n\n"
                "[store]\nbackend = %s\n\n"
                "[hypervisor]\ndefault = %s\nvcpus = %u\nmemory_mib = %u\nqemu = %s\naccelerator = %s\n"
                "root_ports = %u\nboot_timeout_sec = %u\n\n"
                "[guest]\nkernel = %s\ninitrd = %s\nkernel_params = %s\n\n"
                "[containers]\nstop_timeout_sec = %u\n\n"
                "[mock]\nboot_delay_ms = %u\n",
                c->socket_path, c->socket_group, c->socket_mode, c->state_dir, c->run_dir,
                log_level_to_string(c->log_level), c->max_connections, c->max_body_bytes, c->event_history, c->store,
                c->hypervisor, c->default_vcpus, c->default_memory_mib, c->qemu_path, c->accelerator, c->root_ports,
                c->boot_timeout_sec, c->guest_kernel, c->guest_initrd, c->kernel_params, c->stop_timeout_sec,
                c->mock_boot_delay_ms);
}
