/* The QEMU hypervisor backend: launches QEMU detached from katad, drives it over QMP (qmp.c),
 * reaches the guest agent over the virtio-serial chardev socket (agent/client.h), notices VMs that
 * die on their own through a pidfd, and finds running VMs again from the handle stored by katad.
 *
 * One libevent loop thread per vmm carries every QMP connection and every pidfd watch; vmm_exit_cb
 * runs there. The operations themselves run on the caller's thread and block it. docs/qemu.md has
 * the command line, the run directory layout and the handle. */
#include <errno.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/client.h"
#include "agent/protocol.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "qemu.h"
#include "qmp.h"
#include "util.h"
#include "vmm-internal.h"

#ifndef DATADIR
#define DATADIR "/usr/share"
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define QEMU_DEFAULT_BINARY "/usr/bin/qemu-system-x86_64"
#define QEMU_DEFAULT_ROOT_PORTS 4
#define QEMU_MAX_ROOT_PORTS 32
#define QMP_CONNECT_TIMEOUT_MS 10000
#define QMP_CALL_TIMEOUT_MS 5000
#define QMP_QUIT_WAIT_MS 5000
#define AGENT_RECONNECT_TIMEOUT_MS 10000
#define KILL_WAIT_MS 5000
#define REAP_WAIT_MS 2000
#define KVM_PROBE_TIMEOUT_MS 3000
#define KVM_PROBE_EXIT_STATUS 33  /* isa-debug-exit turns the probe's 0x10 into (0x10 << 1) | 1 */
#define EXIT_POLL_INTERVAL_MS 250 /* only without pidfds */

typedef struct qemu_vmm {
        vmm_t base;
        char *qemu_path, *kernel_path, *initrd_path, *kernel_params;
        vmm_qemu_options_t options; /* the path members point at the copies above */

        struct event_base *loop;
        pthread_t loop_thread;
        bool loop_running;

        pthread_mutex_t accel_lock;
        bool accel_probed;
        vmm_qemu_accel_t accel; /* what auto resolved to */
} qemu_vmm_t;

typedef struct qemu_vm {
        vm_t base;
        qemu_vmm_t *vmm;
        char id[ID_MAX + 1];
        char *run_dir, *qmp_path, *agent_path, *pid_path, *console_path;
        pid_t pid;
        uint64_t start_time; /* /proc/PID/stat field 22: tells our QEMU from a recycled pid */
        unsigned vcpus, memory_mib, root_ports;
        vmm_qemu_accel_t accel;

        int pidfd;                /* -1 where pidfd_open is missing; then exit_timer polls */
        struct event *exit_watch; /* on the vmm loop */

        pthread_mutex_t lock; /* exit_expected, exit_reported */
        bool exit_expected;   /* stop or release is under way: an exit is not news */
        bool exit_reported;

        pthread_mutex_t qmp_lock; /* qmp; never taken by callbacks */
        qmp_client_t *qmp;
        pthread_mutex_t agent_lock; /* agent */
        agent_conn_t *agent;
} qemu_vm_t;

static const char *const accel_names[_VMM_QEMU_ACCEL_MAX] = {
        [VMM_QEMU_ACCEL_AUTO] = "auto",
        [VMM_QEMU_ACCEL_KVM] = "kvm",
        [VMM_QEMU_ACCEL_TCG] = "tcg",
};

const char *vmm_qemu_accel_to_string(vmm_qemu_accel_t accel) {
        if (accel < 0 || accel >= _VMM_QEMU_ACCEL_MAX)
                return NULL;
        return accel_names[accel];
}

int vmm_qemu_accel_from_string(const char *s, vmm_qemu_accel_t *ret) {
        for (int i = 0; s && i < _VMM_QEMU_ACCEL_MAX; i++)
                if (streq(s, accel_names[i])) {
                        *ret = (vmm_qemu_accel_t) i;
                        return 0;
                }
        return -EINVAL;
}

void vmm_qemu_options_init(vmm_qemu_options_t *o) {
        *o = (vmm_qemu_options_t){
                .accel = VMM_QEMU_ACCEL_AUTO,
                .hotplug_root_ports = QEMU_DEFAULT_ROOT_PORTS,
        };
}

/* ---- small helpers: strings, files, /proc ---- */

static char *strdup_printf(const char *fmt, ...) _printf_(1, 2);
static char *strdup_printf(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char *s = NULL;
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}

typedef struct strv {
        char **v;
        size_t n, cap;
        bool oom;
} strv_t;

static void strv_add(strv_t *s, const char *fmt, ...) _printf_(2, 3);
static void strv_add(strv_t *s, const char *fmt, ...) {
        if (s->oom)
                return;
        if (s->n + 2 > s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 64;
                char **v = realloc(s->v, cap * sizeof *v);
                if (!v) {
                        s->oom = true;
                        return;
                }
                s->v = v;
                s->cap = cap;
        }
        va_list ap;
        va_start(ap, fmt);
        char *str = NULL;
        if (vasprintf(&str, fmt, ap) < 0)
                str = NULL;
        va_end(ap);
        if (!str) {
                s->oom = true;
                return;
        }
        s->v[s->n++] = str;
        s->v[s->n] = NULL;
}

static void strv_done(strv_t *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->v[i]);
        free(s->v);
        *s = (strv_t){0};
}

/* QEMU option lists split at commas; a literal comma is written twice. */
static char *escape_commas(const char *s) {
        size_t n = 0;
        for (const char *p = s; *p; p++)
                n += *p == ',' ? 2 : 1;
        char *out = malloc(n + 1), *o = out;
        if (!out)
                return NULL;
        for (const char *p = s; *p; p++) {
                *o++ = *p;
                if (*p == ',')
                        *o++ = ',';
        }
        *o = 0;
        return out;
}

static bool file_exists(const char *path) {
        return path && access(path, R_OK) == 0;
}

typedef struct proc_stat {
        char state;
        uint64_t utime, stime, start_time;
} proc_stat_t;

/* Reads /proc/PID/stat; -ESRCH when the process is gone. */
static int proc_read_stat(pid_t pid, proc_stat_t *ret) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
        _cleanup_free_ char *data = NULL;
        int r = read_file(path, 4096, &data, NULL);
        if (r < 0)
                return r == -ENOENT ? -ESRCH : r;
        /* The command name may hold spaces and parentheses: fields resume after the last ')'. */
        char *p = strrchr(data, ')');
        if (!p)
                return -EIO;
        p++;
        proc_stat_t st = {0};
        unsigned long long v[20] = {0};
        char state = 0;
        /* Fields 3 (state) to 22 (starttime). */
        int n = sscanf(
                p, " %c %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
                &state, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11], &v[12],
                &v[13], &v[14], &v[15], &v[16], &v[17], &v[18]);
        if (n < 20)
                return -EIO;
        st.state = state;
        st.utime = v[10];
        st.stime = v[11];
        st.start_time = v[18];
        *ret = st;
        return 0;
}

/* True while pid is the very process that started at start_time and has not exited. */
static bool proc_is_running(pid_t pid, uint64_t start_time) {
        proc_stat_t st;
        if (pid <= 0 || proc_read_stat(pid, &st) < 0)
                return false;
        return st.start_time == start_time && st.state != 'Z' && st.state != 'X';
}

/* Checks that pid runs QEMU for VM id (argv[0] names qemu, "-name katad-ID,..." is on the line). */
static bool proc_is_qemu_of(pid_t pid, const char *id) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/cmdline", (int) pid);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        if (read_file(path, 1 << 20, &data, &len) < 0 || len == 0)
                return false;
        const char *base = strrchr(data, '/');
        if (!strstr(base ? base + 1 : data, "qemu"))
                return false;
        char want[ID_MAX + 16];
        int wn = snprintf(want, sizeof want, "katad-%s,", id);
        for (size_t off = 0; off < len; off += strlen(data + off) + 1)
                if (strncmp(data + off, want, (size_t) wn) == 0)
                        return true;
        return false;
}

static int64_t elapsed_ms(int64_t since_ns) {
        return (now_monotonic_ns() - since_ns) / 1000000;
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static int pidfd_open_pid(pid_t pid) {
#ifdef SYS_pidfd_open
        int fd = (int) syscall(SYS_pidfd_open, pid, 0);
        return fd < 0 ? -errno : fd;
#else
        return -ENOSYS;
#endif
}

/* Logs the last lines of a file (QEMU's stderr, the guest console) to explain a failure. */
static void log_file_tail(const char *what, const char *path) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        if (!path || read_file(path, 16u << 20, &data, &len) < 0 || len == 0)
                return;
        size_t start = len > 2000 ? len - 2000 : 0;
        log_warning("%s (%s), last %zu bytes:\n%s", what, path, len - start, data + start);
}

/* Unix socket paths are limited to 107 bytes; a longer one is reached through /proc/self/fd of its
 * directory, which stays open in *dir_fd until the caller closes it. */
static int socket_path_usable(const char *path, char *buf, size_t size, int *dir_fd) {
        *dir_fd = -1;
        if (strlen(path) < 108) {
                snprintf(buf, size, "%s", path);
                return 0;
        }
        const char *slash = strrchr(path, '/');
        if (!slash || slash == path)
                return -ENAMETOOLONG;
        _cleanup_free_ char *dir = strndup(path, (size_t) (slash - path));
        if (!dir)
                return -ENOMEM;
        int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int n = snprintf(buf, size, "/proc/self/fd/%d/%s", fd, slash + 1);
        if (n < 0 || (size_t) n >= size || n >= 108) {
                close(fd);
                return -ENAMETOOLONG;
        }
        *dir_fd = fd;
        return 0;
}

/* ---- launching processes ---- */

typedef struct spawn_msg {
        int kind; /* 1: the grandchild's pid; 2: exec failed, value is errno; 3: fork failed */
        int value;
} spawn_msg_t;

/* Between fork and exec only async-signal-safe calls. */
static void child_exec(char **argv, int dir_fd, int null_fd, int log_fd, int report_fd) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        signal(sig, SIG_DFL);
        if ((dir_fd >= 0 && fchdir(dir_fd) < 0) || dup2(null_fd, STDIN_FILENO) < 0 ||
            dup2(null_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0) {
                spawn_msg_t m = {2, errno};
                (void) !write(report_fd, &m, sizeof m);
                _exit(127);
        }
        /* katad's sockets, the store and other VMs' descriptors must not leak into QEMU. */
        if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
                long max = sysconf(_SC_OPEN_MAX);
                for (int fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
                        (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
        execv(argv[0], argv);
        spawn_msg_t m = {2, errno};
        (void) !write(report_fd, &m, sizeof m);
        _exit(127);
}

/* Starts argv in its own session, as a grandchild that init adopts, so that QEMU lives on when
 * katad exits or is killed. Its working directory is dir, stdin/stdout /dev/null, stderr log_path. */
static int spawn_detached(char **argv, const char *dir, const char *log_path, pid_t *ret_pid) {
        _cleanup_close_ int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0)
                return log_error_errno(errno, "Failed to open %s: %m", dir);
        _cleanup_close_ int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null_fd < 0)
                return -errno;
        _cleanup_close_ int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
        if (log_fd < 0)
                return log_error_errno(errno, "Failed to open %s: %m", log_path);
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        _cleanup_close_ int report_read = p[0];
        _cleanup_close_ int report_write = p[1];

        pid_t child = fork();
        if (child < 0)
                return -errno;
        if (child == 0) {
                (void) setsid();
                pid_t grandchild = fork();
                if (grandchild != 0) {
                        spawn_msg_t m = grandchild > 0 ? (spawn_msg_t){1, grandchild} : (spawn_msg_t){3, errno};
                        (void) !write(report_write, &m, sizeof m);
                        _exit(grandchild > 0 ? 0 : 1);
                }
                child_exec(argv, dir_fd, null_fd, log_fd, report_write);
        }
        close(TAKE_FD(report_write));
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
                ;
        /* EOF comes when the grandchild's exec closed its copy of the pipe. */
        pid_t pid = -1;
        int error = 0;
        spawn_msg_t m;
        for (;;) {
                ssize_t n = read(report_read, &m, sizeof m);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n != (ssize_t) sizeof m)
                        break;
                if (m.kind == 1)
                        pid = m.value;
                else
                        error = m.value > 0 ? m.value : EIO;
        }
        if (error)
                return log_error_errno(error, "Failed to start %s: %m", argv[0]);
        if (pid <= 0)
                return log_error_errno(EIO, "Failed to start %s: no process", argv[0]);
        *ret_pid = pid;
        return 0;
}

/* Waits up to timeout_ms for the process to exit; true when it has. */
static bool wait_exit(pid_t pid, uint64_t start_time, int pidfd, int timeout_ms) {
        int64_t start = now_monotonic_ns();
        for (;;) {
                if (pidfd >= 0) {
                        struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
                        int left = timeout_ms - (int) elapsed_ms(start);
                        int k = poll(&pfd, 1, left > 0 ? left : 0);
                        if (k > 0)
                                return true;
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k == 0)
                                return false;
                }
                if (!proc_is_running(pid, start_time))
                        return true;
                if (elapsed_ms(start) >= timeout_ms)
                        return false;
                sleep_ms(20);
        }
}

/* ---- the KVM probe ---- */

/* A multiboot image (flat, "a.out kludge" header) loaded at 1 MiB: it touches 32 MiB of memory one
 * page at a time, counts down a million, then writes to isa-debug-exit so that QEMU exits with
 * status 33. A working KVM does that in well under a second; nested KVM on some hosts takes many
 * seconds (DESIGN §5), which makes TCG the better choice there. */
static const uint8_t kvm_probe_image[] = {
        0x02, 0xb0, 0xad, 0x1b,             /* magic 0x1BADB002 */
        0x00, 0x00, 0x01, 0x00,             /* flags: address fields valid */
        0xfe, 0x4f, 0x51, 0xe4,             /* checksum */
        0x00, 0x00, 0x10, 0x00,             /* header_addr 0x100000 */
        0x00, 0x00, 0x10, 0x00,             /* load_addr */
        0x00, 0x00, 0x00, 0x00,             /* load_end_addr: the whole file */
        0x00, 0x00, 0x00, 0x00,             /* bss_end_addr: none */
        0x20, 0x00, 0x10, 0x00,             /* entry 0x100020 */
        0xbf, 0x00, 0x00, 0x20, 0x00,       /* mov edi, 0x200000 */
        0x89, 0x3f,                         /* 1: mov [edi], edi */
        0x81, 0xc7, 0x00, 0x10, 0x00, 0x00, /* add edi, 0x1000 */
        0x81, 0xff, 0x00, 0x00, 0x20, 0x02, /* cmp edi, 0x2200000 */
        0x72, 0xf0,                         /* jb 1b */
        0xb9, 0x00, 0x00, 0x10, 0x00,       /* mov ecx, 0x100000 */
        0x49,                               /* 2: dec ecx */
        0x75, 0xfd,                         /* jnz 2b */
        0xb0, 0x10,                         /* mov al, 0x10 */
        0xe6, 0xf4,                         /* out 0xf4, al */
        0xf4,                               /* 3: hlt */
        0xeb, 0xfd,                         /* jmp 3b */
};

static bool kvm_probe(const char *qemu_path) {
        _cleanup_close_ int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (kvm < 0) {
                log_info("KVM is not available (/dev/kvm: %s); using TCG", strerror(errno));
                return false;
        }
        _cleanup_close_ int image = memfd_create("katad-kvm-probe", MFD_CLOEXEC);
        if (image < 0 || write(image, kvm_probe_image, sizeof kvm_probe_image) != (ssize_t) sizeof kvm_probe_image) {
                log_warning_errno(errno, "Cannot write the KVM probe image: %m; using TCG");
                return false;
        }
        _cleanup_close_ int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null_fd < 0)
                return false;
        char kernel[64];
        snprintf(kernel, sizeof kernel, "/proc/self/fd/%d", image);
        char *argv[] = {
                (char *) qemu_path,
                "-M",
                "q35,accel=kvm",
                "-cpu",
                "host",
                "-m",
                "64",
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-kernel",
                kernel,
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
                NULL,
        };
        int64_t start = now_monotonic_ns();
        pid_t pid = fork();
        if (pid < 0)
                return false;
        if (pid == 0) {
                (void) fcntl(image, F_SETFD, 0);
                child_exec(argv, -1, null_fd, null_fd, null_fd);
        }
        int pidfd = pidfd_open_pid(pid);
        int status = 0;
        bool done = false;
        if (pidfd >= 0) {
                struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
                while (poll(&pfd, 1, KVM_PROBE_TIMEOUT_MS) < 0 && errno == EINTR)
                        ;
                done = pfd.revents & POLLIN;
                close(pidfd);
        } else {
                for (int i = 0; i < KVM_PROBE_TIMEOUT_MS / 20 && !done; i++) {
                        pid_t w = waitpid(pid, &status, WNOHANG);
                        if (w == pid || (w < 0 && errno != EINTR)) {
                                done = true;
                                break;
                        }
                        sleep_ms(20);
                }
        }
        if (!done)
                kill(pid, SIGKILL);
        pid_t w;
        while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
                ;
        bool ok = done && w == pid && WIFEXITED(status) && WEXITSTATUS(status) == KVM_PROBE_EXIT_STATUS;
        if (ok)
                log_info("KVM runs a guest (probe took %lld ms); using KVM", (long long) elapsed_ms(start));
        else if (!done)
                log_warning("KVM did not run the probe guest within %d ms; using TCG", KVM_PROBE_TIMEOUT_MS);
        else if (WIFSIGNALED(status))
                log_warning("KVM probe guest failed (QEMU killed by signal %d); using TCG", WTERMSIG(status));
        else
                log_warning("KVM probe guest failed (QEMU exit status %d); using TCG",
                            WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return ok;
}

static vmm_qemu_accel_t resolve_accel(qemu_vmm_t *m) {
        if (m->options.accel != VMM_QEMU_ACCEL_AUTO)
                return m->options.accel;
        pthread_mutex_lock(&m->accel_lock);
        if (!m->accel_probed) {
                m->accel = kvm_probe(m->qemu_path) ? VMM_QEMU_ACCEL_KVM : VMM_QEMU_ACCEL_TCG;
                m->accel_probed = true;
        }
        vmm_qemu_accel_t a = m->accel;
        pthread_mutex_unlock(&m->accel_lock);
        return a;
}

/* ---- the VM object ---- */

static void vm_free(qemu_vm_t *vm) {
        if (!vm)
                return;
        if (vm->exit_watch)
                event_free(vm->exit_watch);
        if (vm->pidfd >= 0)
                close(vm->pidfd);
        qmp_client_close(vm->qmp);
        agent_conn_unref(vm->agent);
        free(vm->run_dir);
        free(vm->qmp_path);
        free(vm->agent_path);
        free(vm->pid_path);
        free(vm->console_path);
        pthread_mutex_destroy(&vm->agent_lock);
        pthread_mutex_destroy(&vm->qmp_lock);
        pthread_mutex_destroy(&vm->lock);
        free(vm);
}

static int vm_new(qemu_vmm_t *m, const char *id, const char *run_dir, qemu_vm_t **ret) {
        if (!id_is_valid(id) || strempty(run_dir) || run_dir[0] != '/')
                return -EINVAL;
        qemu_vm_t *vm = calloc(1, sizeof *vm);
        if (!vm)
                return -ENOMEM;
        vm->base.vmm = &m->base;
        vm->vmm = m;
        vm->pidfd = -1;
        pthread_mutex_init(&vm->lock, NULL);
        pthread_mutex_init(&vm->qmp_lock, NULL);
        pthread_mutex_init(&vm->agent_lock, NULL);
        snprintf(vm->id, sizeof vm->id, "%s", id);
        vm->run_dir = strdup(run_dir);
        vm->qmp_path = strdup_printf("%s/qmp.sock", run_dir);
        vm->agent_path = strdup_printf("%s/agent.sock", run_dir);
        vm->pid_path = strdup_printf("%s/qemu.pid", run_dir);
        vm->console_path = strdup_printf("%s/console.log", run_dir);
        if (!vm->run_dir || !vm->qmp_path || !vm->agent_path || !vm->pid_path || !vm->console_path) {
                vm_free(vm);
                return -ENOMEM;
        }
        *ret = vm;
        return 0;
}

static bool vm_is_running(qemu_vm_t *vm) {
        return proc_is_running(vm->pid, vm->start_time);
}

/* Tells katad once that the VM ended by itself; not after stop or release began. Runs on the loop
 * thread and does not touch vm after the handler, which may release it. */
static void vm_report_exit(qemu_vm_t *vm) {
        pthread_mutex_lock(&vm->lock);
        bool report = !vm->exit_expected && !vm->exit_reported;
        if (report)
                vm->exit_reported = true;
        pthread_mutex_unlock(&vm->lock);
        if (!report)
                return;
        log_info("QEMU of VM %s (pid %d) exited", vm->id, (int) vm->pid);
        vmm_t *vmm = &vm->vmm->base;
        char id[ID_MAX + 1];
        snprintf(id, sizeof id, "%s", vm->id);
        if (vmm->on_exit)
                vmm->on_exit(id, vmm->exit_userdata);
}

static void on_pidfd(evutil_socket_t fd, short what, void *userdata) {
        vm_report_exit(userdata);
}

static void on_exit_poll(evutil_socket_t fd, short what, void *userdata) {
        qemu_vm_t *vm = userdata;
        if (vm_is_running(vm))
                return;
        event_del(vm->exit_watch);
        vm_report_exit(vm);
}

static int vm_watch_exit(qemu_vm_t *vm) {
        struct event_base *loop = vm->vmm->loop;
        if (vm->pidfd >= 0)
                vm->exit_watch = event_new(loop, vm->pidfd, EV_READ, on_pidfd, vm);
        else
                vm->exit_watch = event_new(loop, -1, EV_PERSIST, on_exit_poll, vm);
        if (!vm->exit_watch)
                return -ENOMEM;
        struct timeval interval = {0, EXIT_POLL_INTERVAL_MS * 1000};
        if (event_add(vm->exit_watch, vm->pidfd >= 0 ? NULL : &interval) < 0)
                return -ENOMEM;
        return 0;
}

/* Stops exit reports: afterwards the loop thread no longer runs vm's watch (waits for a running
 * one, except on the loop thread itself). */
static void vm_unwatch_exit(qemu_vm_t *vm) {
        pthread_mutex_lock(&vm->lock);
        vm->exit_expected = true;
        pthread_mutex_unlock(&vm->lock);
        if (vm->exit_watch)
                event_del(vm->exit_watch);
}

static void on_qmp_event(qmp_client_t *q, const char *event, json_t *data, void *userdata) {
        qemu_vm_t *vm = userdata;
        if (streq(event, "GUEST_PANICKED")) {
                log_warning("The guest of VM %s panicked", vm->id);
        } else if (streq(event, "SHUTDOWN")) {
                log_debug("QMP of VM %s: SHUTDOWN %s", vm->id,
                          json_get_bool(data, "synthetic", false) ? "(monitor connection lost)" : "");
                /* Without a pidfd the poll timer notices the exit; with one, the pidfd does. */
        } else {
                log_debug("QMP of VM %s: event %s", vm->id, event);
        }
}

/* Returns a reference to a ready QMP client, reconnecting when the previous connection dropped
 * while QEMU still runs. -ESRCH when QEMU is gone. */
static int vm_get_qmp(qemu_vm_t *vm, qmp_client_t **ret) {
        pthread_mutex_lock(&vm->qmp_lock);
        if (vm->qmp && qmp_client_get_state(vm->qmp) == QMP_STATE_READY) {
                *ret = qmp_client_ref(vm->qmp);
                pthread_mutex_unlock(&vm->qmp_lock);
                return 0;
        }
        qmp_client_close(TAKE_PTR(vm->qmp));
        int r = -ESRCH;
        if (vm_is_running(vm)) {
                r = qmp_client_connect(vm->vmm->loop, vm->qmp_path, QMP_CONNECT_TIMEOUT_MS, on_qmp_event, vm, &vm->qmp);
                if (r < 0)
                        log_warning_errno(r, "Cannot reconnect to the QMP socket of VM %s: %m", vm->id);
                else
                        *ret = qmp_client_ref(vm->qmp);
        }
        pthread_mutex_unlock(&vm->qmp_lock);
        return r;
}

static int vm_qmp_call(qemu_vm_t *vm, const char *command, json_t *args, json_t **ret, int timeout_ms) {
        qmp_client_t *q;
        int r = vm_get_qmp(vm, &q);
        if (r < 0) {
                json_decref(args);
                return r;
        }
        qmp_error_t error;
        r = qmp_call_full(q, command, args, timeout_ms, ret, &error);
        qmp_client_unref(q);
        if (r == -EREMOTEIO)
                log_warning("QMP %s on VM %s failed: %s: %s", command, vm->id, error.class_name, error.desc);
        else if (r < 0)
                log_debug_errno(r, "QMP %s on VM %s failed: %m", command, vm->id);
        return r;
}

static int vm_query_status(qemu_vm_t *vm, char *buf, size_t size) {
        _cleanup_json_ json_t *status = NULL;
        int r = vm_qmp_call(vm, "query-status", NULL, &status, QMP_CALL_TIMEOUT_MS);
        if (r < 0)
                return r;
        const char *s = json_get_string(status, "status");
        if (!s)
                return -EPROTO;
        snprintf(buf, size, "%s", s);
        return 0;
}

/* Connects to the agent's socket (a long path through /proc/self/fd). */
static int agent_connect_path(const char *path, int timeout_ms, agent_conn_t **ret) {
        char buf[128];
        _cleanup_close_ int dir_fd = -1;
        int r = socket_path_usable(path, buf, sizeof buf, &dir_fd);
        if (r < 0)
                return r;
        return agent_conn_connect(buf, timeout_ms, ret);
}

/* Opens an agent handle on the VM's connection, connecting (again) when there is none or it died. */
static int vm_open_agent(qemu_vm_t *vm, int connect_timeout_ms, agent_t **ret) {
        pthread_mutex_lock(&vm->agent_lock);
        int r = 0;
        for (int attempt = 0; attempt < 2; attempt++) {
                if (vm->agent && !agent_conn_is_alive(vm->agent)) {
                        agent_conn_unref(vm->agent);
                        vm->agent = NULL;
                }
                if (!vm->agent) {
                        if (!vm_is_running(vm)) {
                                r = -ESRCH;
                                break;
                        }
                        r = agent_connect_path(vm->agent_path, connect_timeout_ms, &vm->agent);
                        if (r < 0) {
                                vm->agent = NULL;
                                log_warning_errno(r, "Cannot reach the agent of VM %s: %m", vm->id);
                                break;
                        }
                }
                r = agent_conn_open(vm->agent, ret);
                if (r != -ECONNRESET)
                        break;
        }
        pthread_mutex_unlock(&vm->agent_lock);
        return r;
}

static void vm_remove_files(qemu_vm_t *vm) {
        /* The console log and QEMU's stderr log stay for post-mortems; the caller removes the run
         * directory. */
        (void) unlink(vm->qmp_path);
        (void) unlink(vm->agent_path);
        (void) unlink(vm->pid_path);
}

static int vm_signal(qemu_vm_t *vm, int sig) {
#ifdef SYS_pidfd_send_signal
        if (vm->pidfd >= 0) {
                if (syscall(SYS_pidfd_send_signal, vm->pidfd, sig, NULL, 0) == 0)
                        return 0;
                return errno == ESRCH ? 0 : -errno;
        }
#endif
        /* Without a pidfd the start time is what keeps a recycled pid safe. */
        if (!vm_is_running(vm))
                return 0;
        return kill(vm->pid, sig) < 0 && errno != ESRCH ? -errno : 0;
}

/* Ends QEMU: QMP quit, then SIGKILL; then waits until init has reaped it. 0 when it is gone. */
static int vm_kill(qemu_vm_t *vm) {
        if (!wait_exit(vm->pid, vm->start_time, vm->pidfd, 0)) {
                pthread_mutex_lock(&vm->qmp_lock);
                bool have_qmp = vm->qmp && qmp_client_get_state(vm->qmp) == QMP_STATE_READY;
                pthread_mutex_unlock(&vm->qmp_lock);
                if (have_qmp) {
                        /* QEMU may close the monitor before it answers quit: that counts as asked. */
                        int q = vm_qmp_call(vm, "quit", NULL, NULL, QMP_CALL_TIMEOUT_MS);
                        if ((q >= 0 || q == -ECONNRESET) &&
                            wait_exit(vm->pid, vm->start_time, vm->pidfd, QMP_QUIT_WAIT_MS))
                                log_debug("QEMU of VM %s quit", vm->id);
                }
        }
        if (!wait_exit(vm->pid, vm->start_time, vm->pidfd, 0)) {
                log_info("Killing QEMU of VM %s (pid %d)", vm->id, (int) vm->pid);
                int r = vm_signal(vm, SIGKILL);
                if (r < 0)
                        return log_error_errno(r, "Failed to kill QEMU of VM %s: %m", vm->id);
                if (!wait_exit(vm->pid, vm->start_time, vm->pidfd, KILL_WAIT_MS))
                        return log_error_errno(EBUSY, "QEMU of VM %s (pid %d) survives SIGKILL", vm->id, (int) vm->pid);
        }
        /* Exited is not yet gone: wait (briefly) for the zombie to be reaped by its parent, init. */
        for (int i = 0; i < REAP_WAIT_MS / 10; i++) {
                proc_stat_t st;
                if (proc_read_stat(vm->pid, &st) < 0 || st.start_time != vm->start_time)
                        break;
                sleep_ms(10);
        }
        return 0;
}

/* ---- operations ---- */

static int build_command_line(qemu_vm_t *vm, const char *shared_dir, strv_t *argv) {
        qemu_vmm_t *m = vm->vmm;
        bool kvm = vm->accel == VMM_QEMU_ACCEL_KVM;
        _cleanup_free_ char *shared = escape_commas(shared_dir);
        if (!shared)
                return -ENOMEM;
        strv_add(argv, "%s", m->qemu_path);
        /* The name marks the process as this VM's: attach checks it, people grep for it. */
        strv_add(argv, "-name");
        strv_add(argv, "katad-%s,debug-threads=on", vm->id);
        strv_add(argv, "-machine");
        strv_add(argv, "q35,accel=%s", kvm ? "kvm" : "tcg");
        strv_add(argv, "-cpu");
        strv_add(argv, "%s", kvm ? "host" : "max");
        strv_add(argv, "-m");
        strv_add(argv, "%u", vm->memory_mib);
        strv_add(argv, "-smp");
        strv_add(argv, "%u", vm->vcpus);
        strv_add(argv, "-nodefaults");
        strv_add(argv, "-no-user-config");
        strv_add(argv, "-nographic");
        strv_add(argv, "-no-reboot");
        strv_add(argv, "-kernel");
        strv_add(argv, "%s", m->kernel_path);
        if (m->initrd_path) {
                strv_add(argv, "-initrd");
                strv_add(argv, "%s", m->initrd_path);
        }
        strv_add(argv, "-append");
        strv_add(argv, "console=ttyS0%s panic=-1%s%s", m->options.debug ? "" : " quiet", m->kernel_params ? " " : "",
                 m->kernel_params ? m->kernel_params : "");
        /* QEMU runs in the run directory, so these relative paths stay short for sun_path. */
        strv_add(argv, "-serial");
        strv_add(argv, "file:console.log");
        strv_add(argv, "-qmp");
        strv_add(argv, "unix:qmp.sock,server=on,wait=off");
        strv_add(argv, "-pidfile");
        strv_add(argv, "qemu.pid");
        strv_add(argv, "-device");
        strv_add(argv, "virtio-serial-pci,id=virtio-serial0");
        strv_add(argv, "-chardev");
        strv_add(argv, "socket,id=agent,path=agent.sock,server=on,wait=off");
        strv_add(argv, "-device");
        strv_add(argv, "virtserialport,chardev=agent,id=agent0,name=%s", AGENT_PORT_NAME);
        strv_add(argv, "-fsdev");
        strv_add(argv, "local,id=shared,path=%s,security_model=none", shared);
        strv_add(argv, "-device");
        strv_add(argv, "virtio-9p-pci,id=shared0,fsdev=shared,mount_tag=katad");
        for (unsigned i = 1; i <= vm->root_ports; i++) {
                strv_add(argv, "-device");
                strv_add(argv, "pcie-root-port,id=rp%u,chassis=%u,slot=%u,bus=pcie.0", i, i, i);
        }
        if (m->options.debug) {
                strv_add(argv, "-d");
                strv_add(argv, "guest_errors");
        }
        return argv->oom ? -ENOMEM : 0;
}

static json_t *root_ports_json(unsigned n) {
        json_t *a = json_array();
        for (unsigned i = 1; a && i <= n; i++) {
                char id[16];
                snprintf(id, sizeof id, "rp%u", i);
                if (json_array_append_new(a, json_string(id)) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

/* Ends a VM whose boot failed and leaves nothing behind. */
static int boot_fail(qemu_vm_t *vm, int r, const char *log_path) {
        if (vm->pid > 0) {
                vm_unwatch_exit(vm);
                log_file_tail("QEMU's messages", log_path);
                log_file_tail("The guest console", vm->console_path);
                (void) vm_kill(vm);
        }
        vm_remove_files(vm);
        vm_free(vm);
        return r;
}

static int qemu_boot(vmm_t *vmm, const vm_config_t *config, vm_t **ret) {
        qemu_vmm_t *m = (qemu_vmm_t *) vmm;
        int64_t start = now_monotonic_ns();
        qemu_vm_t *vm;
        int r = vm_new(m, config->id, config->run_dir, &vm);
        if (r < 0)
                return log_error_errno(r, "Cannot boot VM %s in %s: %m", strempty(config->id) ? "?" : config->id,
                                       strempty(config->run_dir) ? "?" : config->run_dir);
        vm->vcpus = config->vcpus ? config->vcpus : m->options.default_vcpus;
        vm->memory_mib = config->memory_mib ? config->memory_mib : m->options.default_memory_mib;
        vm->root_ports = m->options.hotplug_root_ports;
        vm->accel = resolve_accel(m);

        _cleanup_free_ char *shared = strdup_printf("%s/shared", vm->run_dir);
        _cleanup_free_ char *log_path = strdup_printf("%s/qemu.log", vm->run_dir);
        if (!shared || !log_path)
                return boot_fail(vm, -ENOMEM, NULL);
        r = mkdir_p(shared, 0755);
        if (r < 0)
                return boot_fail(vm, log_error_errno(r, "Failed to create %s: %m", shared), log_path);
        /* Leftovers of an earlier attempt would answer (or refuse) in the new QEMU's stead. */
        vm_remove_files(vm);
        (void) unlink(vm->console_path);

        _cleanup_(strv_done) strv_t argv = {0};
        r = build_command_line(vm, shared, &argv);
        if (r < 0)
                return boot_fail(vm, r, log_path);
        if (log_get_level() >= LOG_DEBUG)
                for (size_t i = 0; i < argv.n; i++)
                        log_debug("QEMU argument %zu of VM %s: %s", i, vm->id, argv.v[i]);

        r = spawn_detached(argv.v, vm->run_dir, log_path, &vm->pid);
        if (r < 0)
                return boot_fail(vm, r, log_path);
        r = pidfd_open_pid(vm->pid);
        if (r >= 0)
                vm->pidfd = r;
        else
                log_debug_errno(r, "pidfd_open is not available (%m); polling for QEMU's exit");
        proc_stat_t st;
        r = proc_read_stat(vm->pid, &st);
        if (r < 0)
                return boot_fail(vm, log_error_errno(r, "QEMU of VM %s ended at once", vm->id), log_path);
        vm->start_time = st.start_time;
        /* Until the watch is in place, boot itself notices an early exit. */
        vm->exit_expected = true;

        /* QEMU creates the QMP socket during its start-up; wait for it as long as QEMU lives. */
        for (;;) {
                if (!vm_is_running(vm))
                        return boot_fail(vm, log_error_errno(ECHILD, "QEMU of VM %s exited during start-up", vm->id),
                                         log_path);
                r = qmp_client_connect(m->loop, vm->qmp_path, QMP_CONNECT_TIMEOUT_MS, on_qmp_event, vm, &vm->qmp);
                if (r >= 0)
                        break;
                vm->qmp = NULL;
                if ((r != -ENOENT && r != -ECONNREFUSED) || elapsed_ms(start) > QMP_CONNECT_TIMEOUT_MS)
                        return boot_fail(vm, log_error_errno(r, "Cannot connect to QMP of VM %s: %m", vm->id),
                                         log_path);
                sleep_ms(10);
        }

        log_debug("QMP of VM %s ready %lld ms after the start", vm->id, (long long) elapsed_ms(start));
        unsigned boot_timeout = m->options.boot_timeout_ms;
        if (boot_timeout == 0)
                boot_timeout = vm->accel == VMM_QEMU_ACCEL_KVM ? 10000 : 30000;
        r = agent_connect_path(vm->agent_path, (int) boot_timeout, &vm->agent);
        if (r < 0) {
                vm->agent = NULL;
                return boot_fail(
                        vm,
                        log_error_errno(r, "The agent of VM %s did not answer within %u ms: %m", vm->id, boot_timeout),
                        log_path);
        }

        vm->exit_expected = false;
        r = vm_watch_exit(vm);
        if (r < 0)
                return boot_fail(vm, r, log_path);
        if (!vm_is_running(vm))
                return boot_fail(vm, log_error_errno(ECHILD, "QEMU of VM %s exited during boot", vm->id), log_path);
        log_info("VM %s booted in %lld ms (QEMU pid %d, %s, %u vCPUs, %u MiB)", vm->id, (long long) elapsed_ms(start),
                 (int) vm->pid, vmm_qemu_accel_to_string(vm->accel), vm->vcpus, vm->memory_mib);
        *ret = &vm->base;
        return 0;
}

static int qemu_attach(vmm_t *vmm, const char *id, json_t *handle, vm_t **ret) {
        qemu_vmm_t *m = (qemu_vmm_t *) vmm;
        const char *hv = json_get_string(handle, "Hypervisor");
        const char *run_dir = json_get_string(handle, "RunDir");
        json_int_t pid = json_get_int(handle, "Pid", 0);
        json_t *start_time = json_object_get(handle, "PidStartTime");
        if (!hv || !streq(hv, "qemu") || !run_dir || pid <= 0 || pid > INT_MAX || !json_is_integer(start_time))
                return log_error_errno(EINVAL, "The stored handle of VM %s is not a QEMU handle", id);
        qemu_vm_t *vm;
        int r = vm_new(m, id, run_dir, &vm);
        if (r < 0)
                return r;
        const char *qmp_path = json_get_string(handle, "QMPSocket"),
                   *agent_path = json_get_string(handle, "AgentSocket");
        if (qmp_path && !streq(qmp_path, vm->qmp_path)) {
                free(vm->qmp_path);
                vm->qmp_path = strdup(qmp_path);
        }
        if (agent_path && !streq(agent_path, vm->agent_path)) {
                free(vm->agent_path);
                vm->agent_path = strdup(agent_path);
        }
        if (!vm->qmp_path || !vm->agent_path) {
                vm_free(vm);
                return -ENOMEM;
        }
        vm->pid = (pid_t) pid;
        vm->start_time = (uint64_t) json_integer_value(start_time);
        vm->vcpus = (unsigned) json_get_int(handle, "VCPUs", 1);
        vm->memory_mib = (unsigned) json_get_int(handle, "MemoryMiB", 0);
        json_t *ports = json_get_array(handle, "RootPorts");
        vm->root_ports = ports ? (unsigned) json_array_size(ports) : 0;
        const char *accel = json_get_string(handle, "Accelerator");
        if (!accel || vmm_qemu_accel_from_string(accel, &vm->accel) < 0)
                vm->accel = VMM_QEMU_ACCEL_TCG;

        if (!vm_is_running(vm) || !proc_is_qemu_of(vm->pid, id)) {
                log_info("QEMU of VM %s (pid %d) is gone", id, (int) vm->pid);
                vm_free(vm);
                return -ESRCH;
        }
        r = pidfd_open_pid(vm->pid);
        if (r >= 0)
                vm->pidfd = r;
        /* The pidfd may name a process that replaced ours between the check and the open. */
        if (!vm_is_running(vm)) {
                vm_free(vm);
                return -ESRCH;
        }
        r = qmp_client_connect(m->loop, vm->qmp_path, QMP_CONNECT_TIMEOUT_MS, on_qmp_event, vm, &vm->qmp);
        if (r < 0) {
                vm->qmp = NULL;
                bool gone = !vm_is_running(vm);
                vm_free(vm);
                if (gone)
                        return -ESRCH;
                return log_error_errno(r, "Cannot connect to QMP of VM %s: %m", id);
        }
        /* A paused guest cannot answer the agent's handshake: connect lazily in vm_connect_agent. */
        char status[32] = "";
        if (vm_query_status(vm, status, sizeof status) >= 0 && streq(status, "running")) {
                r = agent_connect_path(vm->agent_path, AGENT_RECONNECT_TIMEOUT_MS, &vm->agent);
                if (r < 0) {
                        vm->agent = NULL;
                        log_warning_errno(r, "Cannot reach the agent of VM %s yet: %m", id);
                }
        }
        r = vm_watch_exit(vm);
        if (r < 0) {
                vm_free(vm);
                return r;
        }
        log_info("Attached to VM %s (QEMU pid %d, %s)", id, (int) vm->pid, status[0] ? status : "status unknown");
        *ret = &vm->base;
        return 0;
}

static json_t *qemu_get_handle(vm_t *base) {
        qemu_vm_t *vm = (qemu_vm_t *) base;
        return json_pack("{s:s, s:i, s:I, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:s, s:o*}", "Hypervisor", "qemu", "Pid",
                         (int) vm->pid, "PidStartTime", (json_int_t) vm->start_time, "QMPSocket", vm->qmp_path,
                         "AgentSocket", vm->agent_path, "RunDir", vm->run_dir, "PidFile", vm->pid_path, "ConsoleLog",
                         vm->console_path, "VCPUs", (int) vm->vcpus, "MemoryMiB", (int) vm->memory_mib, "Accelerator",
                         vmm_qemu_accel_to_string(vm->accel), "RootPorts", root_ports_json(vm->root_ports));
}

static int qemu_connect_agent(vm_t *base, agent_t **ret) {
        return vm_open_agent((qemu_vm_t *) base, AGENT_RECONNECT_TIMEOUT_MS, ret);
}

static int set_run_state(qemu_vm_t *vm, const char *command, const char *want) {
        int r = vm_qmp_call(vm, command, NULL, NULL, QMP_CALL_TIMEOUT_MS);
        if (r < 0)
                return r;
        char status[32];
        r = vm_query_status(vm, status, sizeof status);
        if (r < 0)
                return r;
        if (!streq(status, want))
                return log_error_errno(EIO, "VM %s is %s after %s", vm->id, status, command);
        return 0;
}

static int qemu_pause(vm_t *base) {
        return set_run_state((qemu_vm_t *) base, "stop", "paused");
}

static int qemu_resume(vm_t *base) {
        return set_run_state((qemu_vm_t *) base, "cont", "running");
}

/* Rss and Pss of the QEMU process from /proc/PID/smaps_rollup, in bytes. */
static void read_memory_rollup(pid_t pid, json_int_t *rss, json_int_t *pss) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int) pid);
        _cleanup_free_ char *data = NULL;
        *rss = *pss = -1;
        if (read_file(path, 65536, &data, NULL) < 0)
                return;
        for (char *line = data; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
                unsigned long long kib;
                if (sscanf(line, "Rss: %llu kB", &kib) == 1)
                        *rss = (json_int_t) kib * 1024;
                else if (sscanf(line, "Pss: %llu kB", &kib) == 1)
                        *pss = (json_int_t) kib * 1024;
        }
}

static int qemu_stats(vm_t *base, json_t **ret) {
        qemu_vm_t *vm = (qemu_vm_t *) base;
        char status[32];
        int r = vm_query_status(vm, status, sizeof status);
        if (r < 0)
                return r;
        json_int_t memory = (json_int_t) vm->memory_mib * 1024 * 1024;
        _cleanup_json_ json_t *summary = NULL;
        if (vm_qmp_call(vm, "query-memory-size-summary", NULL, &summary, QMP_CALL_TIMEOUT_MS) >= 0 &&
            json_get_int(summary, "base-memory", 0) > 0)
                memory = json_get_int(summary, "base-memory", 0);
        json_int_t vcpus = vm->vcpus;
        _cleanup_json_ json_t *cpus = NULL;
        if (vm_qmp_call(vm, "query-cpus-fast", NULL, &cpus, QMP_CALL_TIMEOUT_MS) >= 0 && json_is_array(cpus))
                vcpus = (json_int_t) json_array_size(cpus);

        json_int_t rss, pss;
        read_memory_rollup(vm->pid, &rss, &pss);
        proc_stat_t st = {0};
        long ticks = sysconf(_SC_CLK_TCK);
        json_int_t cpu_ns = -1;
        if (proc_read_stat(vm->pid, &st) >= 0 && ticks > 0)
                cpu_ns = (json_int_t) ((st.utime + st.stime) * (1000000000ULL / (unsigned long long) ticks));
        json_t *j = json_pack("{s:I, s:I, s:i, s:s, s:{s:I, s:I, s:I}}", "MemoryBytes", memory, "VCPUs", vcpus, "Pid",
                              (int) vm->pid, "Status", status, "Host", "RssBytes", rss, "PssBytes", pss, "CpuTimeNs",
                              cpu_ns);
        if (!j)
                return -ENOMEM;
        *ret = j;
        return 0;
}

static int qemu_hotplug(vm_t *base, json_t *device, json_t **ret) {
        /* The root ports rp1..rpN are reserved at boot and listed in the handle for this. */
        return -EOPNOTSUPP;
}

typedef struct cancel_timer {
        agent_t *agent;
} cancel_timer_t;

static void on_shutdown_timeout(evutil_socket_t fd, short what, void *userdata) {
        cancel_timer_t *t = userdata;
        agent_cancel(t->agent);
}

/* Asks the guest to shut down (the agent syncs and reboots; -no-reboot turns that into QEMU's
 * exit) and waits for QEMU to end. True when it did within the stop timeout. */
static bool vm_shutdown_guest(qemu_vm_t *vm) {
        char status[32];
        if (vm_query_status(vm, status, sizeof status) < 0 || !streq(status, "running")) {
                log_debug("VM %s is %s: no guest shutdown", vm->id, status);
                return false;
        }
        unsigned timeout = vm->vmm->options.stop_timeout_ms;
        int64_t start = now_monotonic_ns();
        agent_t *a;
        int r = vm_open_agent(vm, (int) (timeout < 2000 ? timeout : 2000), &a);
        if (r < 0)
                return false;
        /* The agent call has no deadline of its own: a timer on the loop cancels it. */
        cancel_timer_t t = {.agent = a};
        struct event *timer = evtimer_new(vm->vmm->loop, on_shutdown_timeout, &t);
        struct timeval tv = {.tv_sec = timeout / 1000, .tv_usec = (timeout % 1000) * 1000};
        if (timer)
                evtimer_add(timer, &tv);
        char *message = NULL;
        r = agent_call(a, "Shutdown", NULL, NULL, &message);
        if (timer)
                event_free(timer);
        if (r < 0 && r != -ECONNRESET && r != -ESHUTDOWN)
                log_warning("The agent of VM %s refused to shut down: %s", vm->id, message ? message : strerror(-r));
        free(message);
        agent_close(a);
        int left = (int) timeout - (int) elapsed_ms(start);
        return wait_exit(vm->pid, vm->start_time, vm->pidfd, left > 0 ? left : 0);
}

static int qemu_stop(vm_t *base, bool force) {
        qemu_vm_t *vm = (qemu_vm_t *) base;
        vm_unwatch_exit(vm);
        if (!force && vm_is_running(vm) && vm_shutdown_guest(vm))
                log_debug("The guest of VM %s shut down", vm->id);
        int r = vm_kill(vm);
        pthread_mutex_lock(&vm->qmp_lock);
        qmp_client_close(TAKE_PTR(vm->qmp));
        pthread_mutex_unlock(&vm->qmp_lock);
        pthread_mutex_lock(&vm->agent_lock);
        agent_conn_unref(TAKE_PTR(vm->agent));
        pthread_mutex_unlock(&vm->agent_lock);
        vm_remove_files(vm);
        if (r >= 0)
                log_info("VM %s stopped", vm->id);
        vm_free(vm);
        return r;
}

static void qemu_release(vm_t *base) {
        qemu_vm_t *vm = (qemu_vm_t *) base;
        vm_unwatch_exit(vm);
        log_debug("Released VM %s (QEMU pid %d keeps running)", vm->id, (int) vm->pid);
        vm_free(vm);
}

static void on_stop_loop(evutil_socket_t fd, short what, void *userdata) {
        event_base_loopbreak(userdata);
}

static void qemu_free(vmm_t *vmm) {
        qemu_vmm_t *m = (qemu_vmm_t *) vmm;
        if (m->loop_running) {
                /* An activated event, unlike a bare loopbreak, also stops a loop that has not started. */
                struct event *stop = event_new(m->loop, -1, 0, on_stop_loop, m->loop);
                if (stop)
                        event_active(stop, 0, 0);
                else
                        event_base_loopbreak(m->loop);
                pthread_join(m->loop_thread, NULL);
                event_free(stop);
        }
        if (m->loop)
                event_base_free(m->loop);
        pthread_mutex_destroy(&m->accel_lock);
        free(m->qemu_path);
        free(m->kernel_path);
        free(m->initrd_path);
        free(m->kernel_params);
        free(m);
}

static const vmm_ops_t qemu_ops = {
        .name = "qemu",
        .shares_files = true,
        .boot = qemu_boot,
        .attach = qemu_attach,
        .boot_from_template = NULL, /* later: -incoming from a saved migration stream */
        .save_template = NULL,
        .get_handle = qemu_get_handle,
        .connect_agent = qemu_connect_agent,
        .pause = qemu_pause,
        .resume = qemu_resume,
        .stats = qemu_stats,
        .hotplug = qemu_hotplug,
        .stop = qemu_stop,
        .release = qemu_release,
        .free = qemu_free,
};

static void *loop_main(void *userdata) {
        event_base_loop(userdata, EVLOOP_NO_EXIT_ON_EMPTY);
        return NULL;
}

static void use_pthreads_once(void) {
        (void) evthread_use_pthreads();
}

/* The guest kernel (or initrd) named name: $KATAD_GUEST_DIR, the installed one, then guest/ beside
 * the executable, as in a build tree where katad and guest/ are siblings. */
static char *find_guest_file(const char *name) {
        const char *env = getenv("KATAD_GUEST_DIR");
        char *path;
        if (!strempty(env)) {
                path = strdup_printf("%s/%s", env, name);
                if (file_exists(path))
                        return path;
                free(path);
        }
        path = strdup_printf("%s/katad/guest/%s", DATADIR, name);
        if (file_exists(path))
                return path;
        free(path);
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
                exe[n] = 0;
                char *slash = strrchr(exe, '/');
                if (slash) {
                        *slash = 0;
                        path = strdup_printf("%s/guest/%s", exe, name);
                        if (file_exists(path))
                                return path;
                        free(path);
                        /* Test programs sit one or two directories below the build tree's top. */
                        for (int up = 0; up < 2 && (slash = strrchr(exe, '/')); up++) {
                                *slash = 0;
                                path = strdup_printf("%s/guest/%s", exe, name);
                                if (file_exists(path))
                                        return path;
                                free(path);
                        }
                }
        }
        return NULL;
}

static char *dirname_join(const char *file, const char *name) {
        const char *slash = strrchr(file, '/');
        if (!slash)
                return strdup(name);
        return strdup_printf("%.*s/%s", (int) (slash - file), file, name);
}

int vmm_new_qemu(const vmm_qemu_options_t *options, vmm_t **ret) {
        static pthread_once_t evthread_once = PTHREAD_ONCE_INIT;
        pthread_once(&evthread_once, use_pthreads_once);

        qemu_vmm_t *m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->base.ops = &qemu_ops;
        pthread_mutex_init(&m->accel_lock, NULL);
        if (options)
                m->options = *options;
        else
                vmm_qemu_options_init(&m->options);
        vmm_qemu_options_t *o = &m->options;
        if (o->accel < 0 || o->accel >= _VMM_QEMU_ACCEL_MAX || o->hotplug_root_ports > QEMU_MAX_ROOT_PORTS) {
                qemu_free(&m->base);
                return -EINVAL;
        }
        if (o->default_vcpus == 0)
                o->default_vcpus = 1;
        if (o->default_memory_mib == 0)
                o->default_memory_mib = 256;
        if (o->stop_timeout_ms == 0)
                o->stop_timeout_ms = 10000;

        m->qemu_path = strdup(o->qemu_path ? o->qemu_path : QEMU_DEFAULT_BINARY);
        m->kernel_path = o->kernel_path ? strdup(o->kernel_path) : find_guest_file("vmlinux");
        if (o->initrd_path)
                m->initrd_path = strdup(o->initrd_path);
        else if (m->kernel_path)
                m->initrd_path = dirname_join(m->kernel_path, "initrd.img");
        m->kernel_params = o->kernel_params ? strdup(o->kernel_params) : NULL;
        o->qemu_path = m->qemu_path;
        o->kernel_path = m->kernel_path;
        o->initrd_path = m->initrd_path;
        o->kernel_params = m->kernel_params;
        if (!m->qemu_path || (o->kernel_params && !m->kernel_params)) {
                qemu_free(&m->base);
                return -ENOMEM;
        }
        if (access(m->qemu_path, X_OK) < 0) {
                int r = log_error_errno(errno, "QEMU binary %s: %m", m->qemu_path);
                qemu_free(&m->base);
                return r;
        }
        if (!file_exists(m->kernel_path)) {
                int r = log_error_errno(ENOENT, "Guest kernel %s not found (build it with scripts/build-guest.sh)",
                                        m->kernel_path ? m->kernel_path : "vmlinux");
                qemu_free(&m->base);
                return r;
        }
        if (!file_exists(m->initrd_path)) {
                int r = log_error_errno(ENOENT, "Guest initrd %s not found (build it with scripts/build-guest.sh)",
                                        m->initrd_path ? m->initrd_path : "initrd.img");
                qemu_free(&m->base);
                return r;
        }
        /* QEMU runs in the VM's run directory: relative paths would point elsewhere. */
        char **paths[] = {&m->qemu_path, &m->kernel_path, &m->initrd_path};
        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                char *abs = realpath(*paths[i], NULL);
                if (!abs) {
                        int r = log_error_errno(errno, "Cannot resolve %s: %m", *paths[i]);
                        qemu_free(&m->base);
                        return r;
                }
                free(*paths[i]);
                *paths[i] = abs;
        }
        o->qemu_path = m->qemu_path;
        o->kernel_path = m->kernel_path;
        o->initrd_path = m->initrd_path;
        m->loop = event_base_new();
        if (!m->loop) {
                qemu_free(&m->base);
                return -ENOMEM;
        }
        int r = -pthread_create(&m->loop_thread, NULL, loop_main, m->loop);
        if (r < 0) {
                qemu_free(&m->base);
                return r;
        }
        m->loop_running = true;
        log_debug("QEMU hypervisor: %s, kernel %s, initrd %s, accelerator %s", m->qemu_path, m->kernel_path,
                  m->initrd_path, vmm_qemu_accel_to_string(o->accel));
        *ret = &m->base;
        return 0;
}
