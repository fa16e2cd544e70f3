/* The mock hypervisor: VMs that boot after a configurable delay and run an emulated guest. */
#include <errno.h>
#include <event2/thread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json-util.h"
#include "log.h"
#include "mock-internal.h"

typedef struct mock_vm {
        vm_t base;
        char id[ID_MAX + 1];
        mock_guest_t *guest;
        unsigned vcpus, memory_mib;
} mock_vm_t;

static void *loop_main(void *userdata) {
        mock_vmm_t *m = userdata;
        event_base_loop(m->loop, EVLOOP_NO_EXIT_ON_EMPTY);
        return NULL;
}

static unsigned boot_delay_ms(mock_vmm_t *m, const vm_config_t *config) {
        const char *s = json_get_string(config->annotations, "io.katad.mock.boot_delay_ms");
        uint64_t v;
        if (s && parse_u64(s, &v) == 0 && v <= 600000)
                return (unsigned) v;
        return m->options.boot_delay_ms;
}

static int mock_vm_new(mock_vmm_t *m, const char *id, mock_guest_t *guest, unsigned vcpus, unsigned memory_mib,
                       vm_t **ret) {
        mock_vm_t *vm = calloc(1, sizeof *vm);
        if (!vm)
                return -ENOMEM;
        vm->base.vmm = &m->base;
        snprintf(vm->id, sizeof vm->id, "%s", id);
        vm->guest = guest;
        vm->vcpus = vcpus;
        vm->memory_mib = memory_mib;
        *ret = &vm->base;
        return 0;
}

static int mock_boot(vmm_t *vmm, const vm_config_t *config, vm_t **ret) {
        mock_vmm_t *m = (mock_vmm_t *) vmm;
        unsigned delay = boot_delay_ms(m, config);
        if (delay > 0) {
                struct timespec ts = { .tv_sec = delay / 1000, .tv_nsec = (long) (delay % 1000) * 1000000L };
                while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                        ;
        }
        mock_guest_t *g;
        int r = mock_guest_open(m, config->id, true, &g);
        if (r < 0)
                return log_error_errno(r, "Failed to boot mock VM %s: %m", config->id);
        r = mock_vm_new(m, config->id, g, config->vcpus, config->memory_mib, ret);
        if (r < 0) {
                mock_guest_destroy(g);
                mock_guest_unref(g);
        }
        return r;
}

static int mock_attach(vmm_t *vmm, const char *id, json_t *handle, vm_t **ret) {
        mock_vmm_t *m = (mock_vmm_t *) vmm;
        mock_guest_t *g;
        int r = mock_guest_open(m, id, false, &g);
        if (r < 0)
                return r;
        r = mock_vm_new(m, id, g, (unsigned) json_get_int(handle, "VCPUs", 1),
                        (unsigned) json_get_int(handle, "MemoryMiB", 128), ret);
        if (r < 0)
                mock_guest_unref(g);
        return r;
}

static int mock_boot_from_template(vmm_t *vmm, const char *template_dir, const vm_config_t *config, vm_t **ret) {
        mock_vmm_t *m = (mock_vmm_t *) vmm;
        char path[4096];
        snprintf(path, sizeof path, "%s/mock-guest.json", template_dir);
        mock_guest_t *g;
        int r = mock_guest_clone(m, config->id, path, &g);
        if (r < 0)
                return r;
        /* A template is saved paused; the clone runs. */
        r = mock_guest_set_vm_paused(g, false);
        if (r >= 0)
                r = mock_vm_new(m, config->id, g, config->vcpus, config->memory_mib, ret);
        if (r < 0) {
                mock_guest_destroy(g);
                mock_guest_unref(g);
        }
        return r;
}

static int mock_save_template(vm_t *base, const char *template_dir) {
        mock_vm_t *vm = (mock_vm_t *) base;
        char path[4096];
        snprintf(path, sizeof path, "%s/mock-guest.json", template_dir);
        return mock_guest_save_to(vm->guest, path);
}

static json_t *mock_get_handle(vm_t *base) {
        mock_vm_t *vm = (mock_vm_t *) base;
        return json_pack("{s:s, s:s, s:i, s:i}", "Hypervisor", "mock", "StateFile", mock_guest_state_path(vm->guest),
                         "VCPUs", (int) vm->vcpus, "MemoryMiB", (int) vm->memory_mib);
}

static int mock_connect_agent(vm_t *base, agent_t **ret) {
        return mock_guest_connect(((mock_vm_t *) base)->guest, ret);
}

static int mock_pause(vm_t *base) {
        return mock_guest_set_vm_paused(((mock_vm_t *) base)->guest, true);
}

static int mock_resume(vm_t *base) {
        return mock_guest_set_vm_paused(((mock_vm_t *) base)->guest, false);
}

static int mock_stats(vm_t *base, json_t **ret) {
        mock_vm_t *vm = (mock_vm_t *) base;
        json_t *guest = NULL;
        int r = mock_guest_stats(vm->guest, &guest);
        if (r < 0)
                return r;
        json_t *j = json_pack("{s:I, s:i, s:i, s:o}", "MemoryBytes", (json_int_t) vm->memory_mib * 1024 * 1024, "VCPUs",
                              (int) vm->vcpus, "Pid", 0, "Guest", guest);
        if (!j)
                return -ENOMEM;
        *ret = j;
        return 0;
}

static int mock_stop(vm_t *base, bool force) {
        mock_vm_t *vm = (mock_vm_t *) base;
        mock_guest_destroy(vm->guest);
        mock_guest_unref(vm->guest);
        free(vm);
        return 0;
}

static void mock_release(vm_t *base) {
        mock_vm_t *vm = (mock_vm_t *) base;
        mock_guest_unref(vm->guest);
        free(vm);
}

static void mock_free(vmm_t *vmm) {
        mock_vmm_t *m = (mock_vmm_t *) vmm;
        if (m->loop_running) {
                /* loopexit queues its request as an event, so it works even before the thread has
                 * entered the loop (a loopbreak issued then would be forgotten). */
                event_base_loopexit(m->loop, NULL);
                pthread_join(m->loop_thread, NULL);
        }
        if (m->loop)
                event_base_free(m->loop);
        pthread_mutex_destroy(&m->lock);
        free(m->state_dir);
        free(m);
}

static const vmm_ops_t mock_ops = {
        .name = "mock",
        .boot = mock_boot,
        .attach = mock_attach,
        .boot_from_template = mock_boot_from_template,
        .save_template = mock_save_template,
        .get_handle = mock_get_handle,
        .connect_agent = mock_connect_agent,
        .pause = mock_pause,
        .resume = mock_resume,
        .stats = mock_stats,
        .stop = mock_stop,
        .release = mock_release,
        .free = mock_free,
};

static void use_pthreads_once(void) {
        (void) evthread_use_pthreads();
}

int vmm_new_mock(const char *state_dir, const vmm_mock_options_t *options, vmm_t **ret) {
        static pthread_once_t evthread_once = PTHREAD_ONCE_INIT;
        pthread_once(&evthread_once, use_pthreads_once);

        mock_vmm_t *m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->base.ops = &mock_ops;
        pthread_mutex_init(&m->lock, NULL);
        if (options)
                m->options = *options;
        char path[4096];
        snprintf(path, sizeof path, "%s/mock", state_dir);
        int r = mkdir_p(path, 0700);
        if (r < 0) {
                mock_free(&m->base);
                return log_error_errno(r, "Failed to create %s: %m", path);
        }
        m->state_dir = strdup(path);
        m->loop = event_base_new();
        if (!m->state_dir || !m->loop) {
                mock_free(&m->base);
                return -ENOMEM;
        }
        r = -pthread_create(&m->loop_thread, NULL, loop_main, m);
        if (r < 0) {
                mock_free(&m->base);
                return r;
        }
        m->loop_running = true;
        *ret = &m->base;
        return 0;
}
