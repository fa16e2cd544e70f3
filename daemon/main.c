/* katad: the daemon's entry point — configuration, the socket, start-up order, signals, shutdown. */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "json-util.h"
#include "katad.h"
#include "log.h"
#include "router.h"
#include "server.h"
#include "util.h"
#include "vmm/qemu.h"

#define DEFAULT_CONFIG_FILE SYSCONFDIR "/katad/katad.conf"
#define STREAMS_DRAIN_SECONDS 5

static void help(void) {
        printf("katad %s: runs containers in lightweight VMs behind a REST API on a Unix socket.\n\n"
               "Usage: katad [OPTIONS]\n\n"
               "  --socket PATH          Unix socket to listen on (default /run/katad/katad.sock)\n"
               "  --socket-group GROUP   group owning the socket (mode 0660)\n"
               "  --state-dir DIR        persistent state: the store (default /var/lib/katad)\n"
               "  --run-dir DIR          runtime files: VM sockets, logs (default /run/katad)\n"
               "  --config FILE          INI configuration file (default " DEFAULT_CONFIG_FILE ", if present)\n"
               "  --hypervisor NAME      default hypervisor: qemu (the default) or mock\n"
               "  --store NAME           metadata store: sqlite, fs or leveldb\n"
               "  --log-level LEVEL      error, warning, notice, info or debug\n"
               "  --mock-boot-delay-ms N how long a mock VM takes to boot\n"
               "  --print-config         print the effective configuration and exit\n"
               "  --list-routes          print every route as \"METHOD /path\" and exit\n"
               "  --version              print the version and exit\n"
               "  -h, --help             show this help\n\n"
               "A socket passed by systemd socket activation is used instead of --socket.\n",
               PACKAGE_VERSION);
}

enum {
        ARG_SOCKET = 0x100,
        ARG_SOCKET_GROUP,
        ARG_STATE_DIR,
        ARG_RUN_DIR,
        ARG_CONFIG,
        ARG_HYPERVISOR,
        ARG_STORE,
        ARG_LOG_LEVEL,
        ARG_MOCK_BOOT_DELAY,
        ARG_PRINT_CONFIG,
        ARG_LIST_ROUTES,
        ARG_VERSION,
};

static const struct option options[] = {
        { "socket", required_argument, NULL, ARG_SOCKET },
        { "socket-group", required_argument, NULL, ARG_SOCKET_GROUP },
        { "state-dir", required_argument, NULL, ARG_STATE_DIR },
        { "run-dir", required_argument, NULL, ARG_RUN_DIR },
        { "config", required_argument, NULL, ARG_CONFIG },
        { "hypervisor", required_argument, NULL, ARG_HYPERVISOR },
        { "store", required_argument, NULL, ARG_STORE },
        { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
        { "mock-boot-delay-ms", required_argument, NULL, ARG_MOCK_BOOT_DELAY },
        { "print-config", no_argument, NULL, ARG_PRINT_CONFIG },
        { "list-routes", no_argument, NULL, ARG_LIST_ROUTES },
        { "version", no_argument, NULL, ARG_VERSION },
        { "help", no_argument, NULL, 'h' },
        {},
};

/* Maps a flag to the config key it overrides. */
static const struct {
        int flag;
        const char *section, *key;
} flag_keys[] = {
        { ARG_SOCKET, "daemon", "socket" },          { ARG_SOCKET_GROUP, "daemon", "socket_group" },
        { ARG_STATE_DIR, "daemon", "state_dir" },    { ARG_RUN_DIR, "daemon", "run_dir" },
        { ARG_HYPERVISOR, "hypervisor", "default" }, { ARG_STORE, "store", "backend" },
        { ARG_LOG_LEVEL, "daemon", "log_level" },    { ARG_MOCK_BOOT_DELAY, "mock", "boot_delay_ms" },
};

/* Parses the command line: the config file first, then every flag over it. Returns 1 to exit 0. */
static int parse_args(int argc, char **argv, katad_config_t *c) {
        const char *config_file = NULL;
        bool print_config = false;
        int opt;
        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case 'h':
                        help();
                        return 1;
                case ARG_VERSION:
                        printf("katad %s\n", PACKAGE_VERSION);
                        return 1;
                case ARG_LIST_ROUTES:
                        router_print_routes(stdout);
                        return 1;
                case ARG_CONFIG:
                        config_file = optarg;
                        break;
                case ARG_PRINT_CONFIG:
                        print_config = true;
                        break;
                case '?':
                        return -EINVAL;
                default:
                        break;
                }
        if (optind < argc)
                return log_error_errno(EINVAL, "Unexpected argument: %s", argv[optind]);

        int r = config_load_file(c, config_file ? config_file : DEFAULT_CONFIG_FILE);
        if (r == -ENOENT && !config_file)
                r = 0;
        if (r < 0)
                return log_error_errno(r, "Failed to read configuration %s: %m",
                                       config_file ? config_file : DEFAULT_CONFIG_FILE);

        optind = 0;
        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                for (size_t i = 0; i < ELEMENTSOF(flag_keys); i++)
                        if (flag_keys[i].flag == opt) {
                                r = config_set(c, flag_keys[i].section, flag_keys[i].key, optarg);
                                if (r < 0)
                                        return log_error_errno(EINVAL, "Invalid value for [%s] %s: %s",
                                                               flag_keys[i].section, flag_keys[i].key, optarg);
                        }
        r = config_validate(c);
        if (r < 0)
                return r;
        if (print_config) {
                config_print(c, stdout);
                return 1;
        }
        return 0;
}

/* Binds the socket with the configured owner group and mode before it accepts anyone. */
static int make_socket(const katad_config_t *c) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", c->socket_path);

        _cleanup_free_ char *dir = strdup(c->socket_path);
        if (!dir)
                return -ENOMEM;
        *strrchr(dir, '/') = 0;
        if (*dir) {
                int r = mkdir_p(dir, 0755);
                if (r < 0)
                        return log_error_errno(r, "Failed to create %s: %m", dir);
        }

        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(errno, "Failed to create a socket: %m");
        struct stat st;
        if (lstat(c->socket_path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                        return log_error_errno(EEXIST, "%s exists and is not a socket", c->socket_path);
                /* A socket nobody answers on is left over from a previous run. */
                _cleanup_close_ int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (probe >= 0 && connect(probe, (struct sockaddr *) &sa, sizeof sa) == 0)
                        return log_error_errno(EADDRINUSE, "Another katad is listening on %s", c->socket_path);
                unlink(c->socket_path);
        }
        mode_t old = umask(0177);
        int r = bind(fd, (struct sockaddr *) &sa, sizeof sa);
        umask(old);
        if (r < 0)
                return log_error_errno(errno, "Failed to bind %s: %m", c->socket_path);
        if (!strempty(c->socket_group)) {
                struct group *g = getgrnam(c->socket_group);
                if (!g)
                        r = log_error_errno(ENOENT, "Unknown group %s for the socket", c->socket_group);
                else if (chown(c->socket_path, (uid_t) -1, g->gr_gid) < 0)
                        r = log_error_errno(errno, "Failed to give %s to group %s: %m", c->socket_path,
                                            c->socket_group);
        }
        if (r >= 0 && chmod(c->socket_path, c->socket_mode) < 0)
                r = log_error_errno(errno, "Failed to set the mode of %s: %m", c->socket_path);
        if (r >= 0 && listen(fd, SOMAXCONN) < 0)
                r = log_error_errno(errno, "Failed to listen on %s: %m", c->socket_path);
        if (r < 0) {
                unlink(c->socket_path);
                return r;
        }
        return TAKE_FD(fd);
}

/* Takes the state directory for this process: two katads on one store would corrupt each other. */
static int lock_state_dir(const char *state_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/katad.lock", state_dir);
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
                return log_error_errno(errno, "Failed to open %s: %m", path);
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                int r = errno == EWOULDBLOCK ? log_error_errno(EBUSY, "Another katad uses the state directory %s",
                                                               state_dir)
                                             : log_error_errno(errno, "Failed to lock %s: %m", path);
                close(fd);
                return r;
        }
        return fd; /* held until exit */
}

/* A socket from systemd socket activation, or -ENOENT when there is none. */
static int activated_socket(void) {
        int n = sd_listen_fds(1);
        if (n < 0)
                return log_error_errno(n, "Failed to read the sockets passed by systemd: %m");
        if (n == 0)
                return -ENOENT;
        if (n > 1)
                return log_error_errno(EINVAL, "Expected one socket from systemd, got %d", n);
        int fd = SD_LISTEN_FDS_START;
        if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0)
                return log_error_errno(EINVAL, "The socket passed by systemd is not a listening Unix stream socket");
        return fd;
}

static void on_event(json_t *event, void *userdata) {
        katad_t *k = userdata;
        event_bus_publish(k->events, event);
}

static void on_vm_exit(const char *vm_id, void *userdata) {
        manager_vm_exited(userdata, vm_id);
}

/* The QEMU hypervisor from the configuration; a missing binary or guest image is a warning unless
 * qemu is the default hypervisor. */
static int make_qemu(const katad_config_t *c, vmm_t **ret) {
        vmm_qemu_options_t o;
        vmm_qemu_options_init(&o);
        o.qemu_path = c->qemu_path;
        o.kernel_path = c->guest_kernel;
        o.initrd_path = c->guest_initrd;
        o.kernel_params = c->kernel_params;
        o.default_vcpus = c->default_vcpus;
        o.default_memory_mib = c->default_memory_mib;
        o.hotplug_root_ports = c->root_ports;
        o.boot_timeout_ms = c->boot_timeout_sec * 1000;
        o.debug = c->log_level >= LOG_DEBUG;
        int r = vmm_qemu_accel_from_string(c->accelerator, &o.accel);
        if (r < 0)
                return log_error_errno(r, "Unknown accelerator %s", c->accelerator);
        r = vmm_new_qemu(&o, ret);
        if (r < 0) {
                int level = streq(c->hypervisor, "qemu") ? LOG_ERR : LOG_NOTICE;
                log_full_errno(level, r, "The qemu hypervisor is unavailable (%s, kernel %s, initrd %s): %m; "
                                         "build the guest with `make guest`",
                               c->qemu_path, c->guest_kernel, c->guest_initrd);
        }
        return r;
}

static void on_signal(evutil_socket_t sig, short what, void *userdata) {
        struct event_base *base = userdata;
        log_info("Received %s, shutting down; sandboxes keep running", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        event_base_loopbreak(base);
}

/* Waits until every event stream has ended after the bus shut down. */
static void drain_streams(katad_t *k) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += STREAMS_DRAIN_SECONDS;
        pthread_mutex_lock(&k->streams_lock);
        while (k->streams > 0)
                if (pthread_cond_timedwait(&k->streams_cond, &k->streams_lock, &deadline) != 0)
                        break;
        if (k->streams > 0)
                log_warning("%u event streams did not end in time", k->streams);
        pthread_mutex_unlock(&k->streams_lock);
}

static int run(katad_t *k) {
        const katad_config_t *c = &k->config;
        int r = mkdir_p(c->state_dir, 0700);
        if (r >= 0)
                r = mkdir_p(c->run_dir, 0755);
        if (r < 0)
                return log_error_errno(r, "Failed to create the state or run directory: %m");
        _cleanup_close_ int lock_fd = lock_state_dir(c->state_dir);
        if (lock_fd < 0)
                return lock_fd;

        sd_notify(0, "STATUS=Opening the store");
        store_backend_t backend;
        store_backend_from_string(c->store, &backend);
        r = store_open(backend, c->state_dir, &k->store);
        if (r < 0)
                return log_error_errno(r, "Failed to open the %s store in %s: %m", c->store, c->state_dir);

        vmm_mock_options_t mock_options = { .boot_delay_ms = c->mock_boot_delay_ms };
        r = vmm_new_mock(c->state_dir, &mock_options, &k->mock);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the mock hypervisor: %m");
        r = make_qemu(c, &k->qemu);
        if (r < 0 && streq(c->hypervisor, "qemu"))
                return r;
        vmm_t *vmms[] = { k->qemu, k->mock };
        r = factory_new(vmms, ELEMENTSOF(vmms), &k->factory);
        if (r < 0)
                return r;
        r = event_bus_new(c->event_history, &k->events);
        if (r < 0)
                return r;

        manager_config_t mc = {
                .run_dir = c->run_dir,
                .default_hypervisor = c->hypervisor,
                .default_vcpus = c->default_vcpus,
                .default_memory_mib = c->default_memory_mib,
                .stop_timeout_sec = c->stop_timeout_sec,
        };
        r = manager_new(&mc, k->store, k->factory, &k->manager);
        if (r < 0)
                return log_error_errno(r, "Failed to create the sandbox manager: %m");
        manager_set_event_handler(k->manager, on_event, k);
        if (k->qemu)
                vmm_set_exit_handler(k->qemu, on_vm_exit, k->manager);
        sd_notify(0, "STATUS=Loading sandboxes");
        r = manager_load(k->manager);
        if (r < 0)
                return r;

        int fd = activated_socket();
        bool own_socket = fd == -ENOENT;
        if (own_socket)
                fd = make_socket(c);
        if (fd < 0)
                return fd;
        r = server_start(k, fd, &k->server);
        if (r < 0) {
                close(fd);
                return r;
        }

        struct event_base *base = event_base_new();
        if (!base)
                return -ENOMEM;
        struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
        struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
        if (!sigterm || !sigint || evsignal_add(sigterm, NULL) < 0 || evsignal_add(sigint, NULL) < 0) {
                r = log_error_errno(EIO, "Failed to watch signals");
        } else {
                log_info("katad %s ready on %s (hypervisor %s, store %s)", PACKAGE_VERSION, c->socket_path,
                         c->hypervisor, c->store);
                sd_notifyf(0, "READY=1\nSTATUS=Serving on %s", c->socket_path);
                event_base_dispatch(base);
                sd_notify(0, "STOPPING=1\nSTATUS=Shutting down");
        }
        if (sigterm)
                event_free(sigterm);
        if (sigint)
                event_free(sigint);
        event_base_free(base);

        /* Stop taking requests, end blocking ones, then wait for what is in flight. */
        server_quiesce(k->server);
        manager_shutdown(k->manager);
        event_bus_shutdown(k->events);
        drain_streams(k);
        server_stop(TAKE_PTR(k->server));
        if (own_socket)
                unlink(c->socket_path);
        return r;
}

int main(int argc, char **argv) {
        katad_t k = { 0 };
        pthread_mutex_init(&k.streams_lock, NULL);
        pthread_cond_init(&k.streams_cond, NULL);
        signal(SIGPIPE, SIG_IGN);
        int r = config_init(&k.config);
        if (r < 0)
                return EXIT_FAILURE;
        r = parse_args(argc, argv, &k.config);
        if (r != 0) {
                config_done(&k.config);
                return r > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
        log_set_level(k.config.log_level);

        r = run(&k);

        manager_free(k.manager);
        event_bus_free(k.events);
        factory_free(k.factory);
        vmm_free(k.qemu);
        vmm_free(k.mock);
        store_close(k.store);
        config_done(&k.config);
        pthread_cond_destroy(&k.streams_cond);
        pthread_mutex_destroy(&k.streams_lock);
        if (r < 0) {
                sd_notifyf(0, "ERRNO=%d", -r);
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}
