/* katad's configuration: built-in defaults, then the config file, then command-line flags. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct katad_config {
        char *socket_path;
        char *socket_group;   /* empty: keep the process's group */
        unsigned socket_mode;
        char *state_dir;
        char *run_dir;
        char *hypervisor;     /* the default for sandboxes that do not name one */
        char *store;          /* sqlite | fs | leveldb */
        int log_level;
        unsigned max_connections;
        size_t max_body_bytes;
        unsigned default_vcpus;
        unsigned default_memory_mib;
        unsigned stop_timeout_sec;
        unsigned mock_boot_delay_ms;
        char *qemu_path;      /* the QEMU binary */
        char *accelerator;    /* auto | kvm | tcg */
        char *guest_kernel;   /* PVH vmlinux */
        char *guest_initrd;   /* initrd whose /init is katad-agent */
        char *kernel_params;  /* appended to the guest command line */
        unsigned root_ports;  /* PCIe root ports reserved for hotplug */
        unsigned boot_timeout_sec;
        unsigned event_history;
} katad_config_t;

/* Fills c with the built-in defaults. */
int config_init(katad_config_t *c);
void config_done(katad_config_t *c);
/* Reads an INI file over c; every key is optional. -ENOENT when missing, -EINVAL (with a log line
 * naming file, line and key) for a bad value or an unknown key. */
int config_load_file(katad_config_t *c, const char *path);
/* Sets one setting by its INI section and key (used by the file parser and by flags). */
int config_set(katad_config_t *c, const char *section, const char *key, const char *value);
/* Checks cross-field rules (known hypervisor and store, absolute paths). */
int config_validate(const katad_config_t *c);
/* Writes the effective configuration in the INI format. */
void config_print(const katad_config_t *c, FILE *f);
