/* The child side of starting a container process (see spawn.h). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "identity.h"
#include "macro.h"
#include "rootfs.h"
#include "spawn.h"

#define CONTROL_FD 3

static int send_msg(int fd, const spawn_msg_t *m, int pass_fd) {
        struct iovec iov = { .iov_base = (void *) m, .iov_len = sizeof *m };
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } control;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        if (pass_fd >= 0) {
                memset(&control, 0, sizeof control);
                mh.msg_control = control.buf;
                mh.msg_controllen = sizeof control.buf;
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
        }
        for (;;) {
                ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
                if (n >= 0)
                        return 0;
                if (errno != EINTR)
                        return -errno;
        }
}

int spawn_read(int fd, spawn_msg_t *ret, int *ret_fd) {
        spawn_msg_t m = { 0 };
        struct iovec iov = { .iov_base = &m, .iov_len = sizeof m };
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } control;
        struct msghdr mh = {
                .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf
        };
        ssize_t n;
        do
                n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        int passed = -1;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
                        memcpy(&passed, CMSG_DATA(c), sizeof(int));
        if (n == 0) {
                if (passed >= 0)
                        close(passed);
                return 0;
        }
        if ((size_t) n != sizeof m || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
                if (passed >= 0)
                        close(passed);
                return -EBADMSG;
        }
        m.text[sizeof m.text - 1] = 0;
        *ret = m;
        if (ret_fd)
                *ret_fd = passed;
        else if (passed >= 0)
                close(passed);
        return 1;
}

int spawn_send_start(int fd) {
        spawn_msg_t m = { .type = SPAWN_MSG_START };
        return send_msg(fd, &m, -1);
}

/* Reports an error to the agent and exits as a shell would for a command that cannot run. */
_Noreturn _printf_(2, 3) static void child_fail(int error, const char *fmt, ...) {
        spawn_msg_t m = { .type = SPAWN_MSG_ERROR, .error = error < 0 ? -error : error };
        va_list ap;
        va_start(ap, fmt);
        errno = m.error;
        vsnprintf(m.text, sizeof m.text, fmt, ap);
        va_end(ap);
        send_msg(CONTROL_FD, &m, -1);
        _exit(m.error == ENOENT ? 127 : m.error == EACCES ? 126 : 1);
}

static void reset_signals(void) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        signal(sig, SIG_DFL);
}

/* Puts the stdio pipes on 0-2 and the control socket on 3, and closes everything else the agent
 * had open (other processes' pipes above all: a stray copy would hold their EOF back). */
static void arrange_fds(const spawn_request_t *req, bool terminal) {
        if (terminal) {
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                for (int i = 0; i < 3; i++)
                        if (null >= 0 && dup2(null, i) < 0)
                                _exit(1);
        } else
                for (int i = 0; i < 3; i++)
                        if (dup2(req->stdio_fds[i], i) < 0)
                                _exit(1);
        if (req->control_fd != CONTROL_FD && dup3(req->control_fd, CONTROL_FD, O_CLOEXEC) < 0)
                _exit(1);
        if (syscall(SYS_close_range, CONTROL_FD + 1, ~0U, 0) < 0)
                for (int fd = CONTROL_FD + 1; fd < 65536; fd++)
                        close(fd);
}

/* Allocates a terminal from the container's own devpts and makes it the controlling terminal
 * and stdio; the master goes to the agent. */
static void setup_terminal(bool console) {
        int master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0)
                child_fail(errno, "cannot open /dev/pts/ptmx in the container: %m");
        int unlock = 0;
        if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
                child_fail(errno, "cannot unlock the terminal: %m");
        int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
        if (slave < 0)
                child_fail(errno, "cannot open the terminal: %m");
        if (ioctl(slave, TIOCSCTTY, 0) < 0)
                child_fail(errno, "cannot make the terminal controlling: %m");
        for (int i = 0; i < 3; i++)
                if (dup2(slave, i) < 0)
                        child_fail(errno, "dup2 failed: %m");
        if (slave > 2)
                close(slave);
        if (console) {
                unsigned n;
                char path[64], error[SPEC_ERROR_MAX];
                if (ioctl(master, TIOCGPTN, &n) < 0)
                        child_fail(errno, "cannot read the terminal number: %m");
                snprintf(path, sizeof path, "/dev/pts/%u", n);
                int r = rootfs_bind_console(path, error);
                if (r < 0)
                        child_fail(r, "%s", error);
        }
        spawn_msg_t m = { .type = SPAWN_MSG_PTY };
        int r = send_msg(CONTROL_FD, &m, master);
        if (r < 0)
                child_fail(r, "cannot pass the terminal to the agent: %m");
        close(master);
}

static int join_namespace(pid_t pid, const char *ns, int type) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ns/%s", (int) pid, ns);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = setns(fd, type) < 0 ? -errno : 0;
        close(fd);
        return r;
}

_Noreturn static void run(const process_spec_t *p, bool is_init) {
        char error[SPEC_ERROR_MAX] = "";
        identity_t id;
        int r = identity_resolve(p, &id, error);
        if (r < 0)
                child_fail(r, "%s", error);
        char **env = identity_environment(p, &id);
        if (!env)
                child_fail(ENOMEM, "out of memory");
        const char *cwd = p->workdir ? p->workdir : "/";
        if (chdir(cwd) < 0) {
                /* The init may create its working directory, as Docker does; an exec may not. */
                if (!(is_init && errno == ENOENT && mkdir_p(cwd, 0755) >= 0 && chdir(cwd) >= 0))
                        child_fail(errno, "cannot change to the working directory %s: %m", cwd);
        }
        char *path;
        r = identity_find_executable(p->args[0], env, &path);
        if (r < 0)
                child_fail(r, "%s: %s", p->args[0], r == -ENOENT ? "executable file not found in $PATH" : strerror(-r));
        if ((r = identity_apply(p, &id, error)) < 0)
                child_fail(r, "%s", error);
        umask(022);
        execve(path, p->args, env);
        child_fail(errno, "cannot execute %s: %m", path);
}

void spawn_child(const spawn_request_t *req) {
        const process_spec_t *p = req->process;
        char error[SPEC_ERROR_MAX] = "";
        reset_signals();
        arrange_fds(req, p->terminal);
        umask(0);
        if (setsid() < 0)
                child_fail(errno, "setsid failed: %m");

        if (!req->container) {
                char procs[4096];
                if (req->cgroup) {
                        snprintf(procs, sizeof procs, "%s/cgroup.procs", req->cgroup);
                        int fd = open(procs, O_WRONLY | O_CLOEXEC);
                        if (fd < 0 || write(fd, "0", 1) != 1)
                                child_fail(errno, "cannot join the container's cgroup: %m");
                        close(fd);
                }
                int r;
                if ((r = join_namespace(req->join_pid, "ipc", CLONE_NEWIPC)) < 0 ||
                    (r = join_namespace(req->join_pid, "uts", CLONE_NEWUTS)) < 0 ||
                    (r = join_namespace(req->join_pid, "mnt", CLONE_NEWNS)) < 0)
                        child_fail(r, "cannot join the container's namespaces: %m");
                if (chdir("/") < 0)
                        child_fail(errno, "chdir / failed: %m");
                if (p->terminal)
                        setup_terminal(false);
                run(p, false);
        }

        /* The container's init (pid 1 of the pid namespace the agent made for it): if the agent
         * goes, so does the container. */
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC) < 0)
                child_fail(errno, "cannot create the container's namespaces: %m");
        int r = rootfs_setup(req->container, p->terminal, error);
        if (r < 0)
                child_fail(r, "%s", error);
        if (sethostname(req->container->hostname, strlen(req->container->hostname)) < 0)
                child_fail(errno, "sethostname failed: %m");
        if (p->terminal)
                setup_terminal(true);
        if (req->container->readonly_rootfs && (r = rootfs_make_readonly(error)) < 0)
                child_fail(r, "%s", error);
        spawn_msg_t m = { .type = SPAWN_MSG_READY };
        if (send_msg(CONTROL_FD, &m, -1) < 0)
                _exit(1);
        for (;;) {
                ssize_t n = recv(CONTROL_FD, &m, sizeof m, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n != (ssize_t) sizeof m)
                        _exit(0); /* the agent dropped the container before starting it */
                if (m.type == SPAWN_MSG_START)
                        break;
        }
        run(p, true);
}
