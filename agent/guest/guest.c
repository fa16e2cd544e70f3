/* The guest's containers and processes (see guest.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "guest.h"
#include "json-util.h"
#include "log.h"
#include "ps.h"
#include "spawn.h"
#include "streams.h"
#include "util.h"

#define MAX_EXITED_EXECS 128
/* WaitProcess calls held per process: a host that asks more often has lost track of its own. */
#define MAX_WAITERS 256
#define PAUSE_TIMEOUT_MS 10000

typedef enum container_state {
        CONTAINER_CREATING, /* the init is setting up namespaces and rootfs */
        CONTAINER_CREATED,
        CONTAINER_RUNNING,
        CONTAINER_PAUSED,
        CONTAINER_STOPPED,
} container_state_t;

static const char *const container_state_names[] = {
        [CONTAINER_CREATING] = "created", [CONTAINER_CREATED] = "created", [CONTAINER_RUNNING] = "running",
        [CONTAINER_PAUSED] = "paused",    [CONTAINER_STOPPED] = "stopped",
};

typedef enum process_state {
        PROCESS_SETUP,    /* forked; the child prepares and has not executed yet */
        PROCESS_WAITING,  /* the init is ready and waits for StartContainer */
        PROCESS_STARTING, /* the init was told to execute */
        PROCESS_RUNNING,
        PROCESS_EXITED,
} process_state_t;

typedef struct container container_t;
typedef struct process process_t;

typedef struct waiter {
        struct waiter *next;
        process_t *process;
        rpc_call_t *call;
        loop_timer_t *timer;
} waiter_t;

struct process {
        process_t *next;
        container_t *container;
        char exec_id[ID_MAX + 1];
        bool init;
        bool failed; /* the command never ran: the host was told so in the answer */
        process_state_t state;
        pid_t pid;
        int64_t start_ns;
        int exit_code;
        int control_fd;
        loop_io_t *control_io;
        rpc_call_t *pending; /* CreateContainer, StartContainer or ExecProcess waiting for the child */
        int error;           /* what the child reported, for the answer */
        char message[256];
        stdio_t *stdio;
        process_spec_t *spec; /* an exec's, owned; the init's lives in the container spec */
        waiter_t *waiters;
};

struct container {
        container_t *next;
        guest_t *guest;
        char id[ID_MAX + 1];
        container_state_t state;
        container_spec_t *spec;
        char *cgroup;
        process_t *processes; /* the init first */
        dev_t pidns_dev;
        ino_t pidns_ino;
        int memory_wd, events_wd;
        uint64_t oom_kills;
        rpc_call_t *pause_call; /* Pause/ResumeContainer waiting for cgroup.events */
        bool pause_target;
        loop_timer_t *pause_timer;
        rpc_call_t *remove_call; /* RemoveContainer waiting for a never-started init to die */
};

struct guest {
        loop_t *loop;
        session_t *session;
        stdio_hub_t *hub;
        bool cgroups;
        char *state_dir;
        container_t *containers;
        int inotify_fd;
        loop_io_t *inotify_io;
        int self_pidns_fd;
        void (*on_shutdown)(void *userdata);
        void *shutdown_userdata;
        bool shutting_down;
};

/* ---- lookups ---- */

static container_t *find_container(guest_t *g, const char *id) {
        for (container_t *c = g->containers; c; c = c->next)
                if (streq(c->id, id))
                        return c;
        return NULL;
}

static process_t *find_process(container_t *c, const char *exec_id) {
        if (!*exec_id || streq(exec_id, c->id))
                return c->processes;
        for (process_t *p = c->processes; p; p = p->next)
                if (!p->init && streq(p->exec_id, exec_id))
                        return p;
        return NULL;
}

static process_t *find_pid(guest_t *g, pid_t pid) {
        for (container_t *c = g->containers; c; c = c->next)
                for (process_t *p = c->processes; p; p = p->next)
                        if (p->pid == pid && p->state != PROCESS_EXITED)
                                return p;
        return NULL;
}

static int lookup_container(guest_t *g, rpc_call_t *call, const char *cid, container_t **ret) {
        container_t *c = find_container(g, cid);
        if (!c)
                return rpc_fail(call, -ENOENT, "container %s not found", cid);
        *ret = c;
        return 0;
}

static int lookup_process(guest_t *g, rpc_call_t *call, const char *cid, const char *exec_id, container_t **ret_c,
                          process_t **ret_p) {
        container_t *c = NULL;
        int r = lookup_container(g, call, cid, &c);
        if (r < 0)
                return r;
        process_t *p = find_process(c, exec_id);
        if (!p)
                return rpc_fail(call, -ENOENT, "process %s not found in container %s", exec_id, c->id);
        *ret_c = c;
        *ret_p = p;
        return 0;
}

static const char *process_name(const process_t *p) {
        return p->init ? p->container->id : p->exec_id;
}

/* ---- teardown ---- */

static void waiter_free(waiter_t *w) {
        loop_timer_free(w->timer);
        free(w);
}

static void process_free(process_t *p) {
        while (p->waiters) {
                waiter_t *w = p->waiters;
                p->waiters = w->next;
                rpc_fail(w->call, -ENOENT, "process %s is gone", process_name(p));
                waiter_free(w);
        }
        if (p->pending)
                rpc_fail(p->pending, -ESHUTDOWN, "process %s was removed", process_name(p));
        loop_io_free(p->control_io);
        if (p->control_fd >= 0)
                close(p->control_fd);
        stdio_free(p->stdio);
        if (p->spec) {
                process_spec_done(p->spec);
                free(p->spec);
        }
        free(p);
}

static void state_file_path(guest_t *g, const char *cid, char *buf, size_t size) {
        snprintf(buf, size, "%s/containers/%s.json", g->state_dir, cid);
}

/* Removes every trace of a container: its cgroup, its state file, its records. Its processes
 * must all have been reaped. */
static void container_destroy(container_t *c) {
        guest_t *g = c->guest;
        for (container_t **pp = &g->containers; *pp; pp = &(*pp)->next)
                if (*pp == c) {
                        *pp = c->next;
                        break;
                }
        if (c->memory_wd >= 0)
                inotify_rm_watch(g->inotify_fd, c->memory_wd);
        if (c->events_wd >= 0)
                inotify_rm_watch(g->inotify_fd, c->events_wd);
        if (c->cgroup) {
                int r = cgroup_remove(c->cgroup);
                if (r < 0)
                        log_warning_errno(r, "Cannot remove the cgroup %s: %m", c->cgroup);
        }
        char path[PATH_MAX];
        state_file_path(g, c->id, path, sizeof path);
        unlink(path);
        while (c->processes) {
                process_t *p = c->processes;
                c->processes = p->next;
                process_free(p);
        }
        if (c->pause_call)
                rpc_fail(c->pause_call, -ENOENT, "container %s was removed", c->id);
        loop_timer_free(c->pause_timer);
        if (c->remove_call)
                rpc_reply(c->remove_call, NULL);
        free(c->cgroup);
        container_spec_free(c->spec);
        free(c);
}

/* ---- events and exits ---- */

static void send_event(guest_t *g, json_t *event) {
        if (!event)
                return;
        session_send_event(g->session, event);
        json_decref(event);
}

static void trim_exited_execs(container_t *c) {
        unsigned exited = 0;
        for (process_t *p = c->processes; p; p = p->next)
                exited += !p->init && p->state == PROCESS_EXITED;
        for (process_t **pp = &c->processes; *pp && exited > MAX_EXITED_EXECS;) {
                process_t *p = *pp;
                if (!p->init && p->state == PROCESS_EXITED) {
                        *pp = p->next;
                        process_free(p);
                        exited--;
                } else
                        pp = &p->next;
        }
}

static void unlink_process(container_t *c, process_t *p) {
        for (process_t **pp = &c->processes; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        return;
                }
}

static void pause_finish(container_t *c, int r);
static void control_drain(process_t *p);

static void process_exited(process_t *p, int status) {
        container_t *c = p->container;
        guest_t *g = c->guest;
        /* The child is gone, so its control socket holds all it will ever say: a fast command may
         * have executed and exited before the agent saw the end of file that tells so. */
        control_drain(p);
        process_state_t was = p->state;
        p->state = PROCESS_EXITED;
        p->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255;
        loop_io_free(p->control_io);
        p->control_io = NULL;
        if (p->control_fd >= 0)
                close(p->control_fd);
        p->control_fd = -1;
        log_debug("Process %s of container %s (pid %d) exited with %d", process_name(p), c->id, (int) p->pid,
                  p->exit_code);

        if (p->pending) {
                /* Died before it could execute the command. */
                if (p->error)
                        rpc_fail(p->pending, -p->error, "%s", p->message);
                else
                        rpc_fail(p->pending, -EIO, "process %s exited with %d before it started", process_name(p),
                                 p->exit_code);
                p->pending = NULL;
                p->failed = true;
        }
        if (!p->init && p->failed) {
                /* An exec that never ran: the host was told, there is nothing to keep. */
                unlink_process(c, p);
                process_free(p);
                return;
        }
        if (p->init && (was == PROCESS_SETUP || c->remove_call)) {
                /* A container that failed to come up, or a created one being removed. */
                container_destroy(c);
                return;
        }
        bool ran = was == PROCESS_RUNNING || was == PROCESS_STARTING;
        if (ran || p->init)
                send_event(g, json_pack("{s:s, s:s, s:s, s:i, s:i}", "Type", "process-exit", "ContainerID", c->id,
                                        "ExecID", p->init ? "" : p->exec_id, "Pid", (int) p->pid, "ExitCode",
                                        p->exit_code));
        while (p->waiters) {
                waiter_t *w = p->waiters;
                p->waiters = w->next;
                rpc_reply(w->call, json_pack("{s:i}", "ExitCode", p->exit_code));
                waiter_free(w);
        }
        if (p->init) {
                c->state = CONTAINER_STOPPED;
                if (c->pause_call)
                        pause_finish(c, -ESRCH);
        } else
                trim_exited_execs(c);
}

void guest_reap(guest_t *g) {
        for (;;) {
                int status;
                pid_t pid = waitpid(-1, &status, WNOHANG);
                if (pid <= 0)
                        break;
                process_t *p = find_pid(g, pid);
                if (p)
                        process_exited(p, status);
        }
}

/* ---- talking to a child being set up ---- */

static void process_started(process_t *p) {
        container_t *c = p->container;
        p->state = PROCESS_RUNNING;
        p->start_ns = now_realtime_ns();
        if (p->init)
                c->state = CONTAINER_RUNNING;
        char when[64];
        format_rfc3339(p->start_ns, when, sizeof when);
        json_t *result = json_pack("{s:i, s:s}", "Pid", (int) p->pid, "StartTime", when);
        if (!p->init && result)
                json_object_set_new(result, "Streams", stdio_streams_json(p->stdio));
        rpc_call_t *call = TAKE_PTR(p->pending);
        if (call)
                rpc_reply(call, result);
        else
                json_decref(result);
        if (!p->init)
                stdio_open(p->stdio);
}

/* Handles what the child sent on its control socket, up to end of file or what is there now. */
static void control_drain(process_t *p) {
        container_t *c = p->container;
        while (p->control_fd >= 0) {
                spawn_msg_t m;
                int passed = -1;
                int r = spawn_read(p->control_fd, &m, &passed);
                if (r == -EAGAIN)
                        return;
                if (r <= 0) {
                        /* End of file: execve closed the socket, or the child died. */
                        loop_io_free(p->control_io);
                        p->control_io = NULL;
                        close(p->control_fd);
                        p->control_fd = -1;
                        if (p->error == 0 && (p->state == PROCESS_STARTING || (!p->init && p->state == PROCESS_SETUP)))
                                process_started(p);
                        return;
                }
                switch (m.type) {
                case SPAWN_MSG_PTY:
                        if (passed < 0 || !p->stdio || stdio_set_pty(p->stdio, passed) < 0)
                                log_warning("Process %s sent an unusable terminal", process_name(p));
                        passed = -1;
                        break;
                case SPAWN_MSG_READY:
                        if (p->init && p->state == PROCESS_SETUP) {
                                p->state = PROCESS_WAITING;
                                c->state = CONTAINER_CREATED;
                                rpc_call_t *call = TAKE_PTR(p->pending);
                                if (call)
                                        rpc_reply(call, json_pack("{s:i, s:o}", "Pid", (int) p->pid, "Streams",
                                                                  stdio_streams_json(p->stdio)));
                                stdio_open(p->stdio);
                        }
                        break;
                case SPAWN_MSG_ERROR:
                        p->error = m.error > 0 && m.error < 4096 ? m.error : EIO;
                        snprintf(p->message, sizeof p->message, "%s", m.text);
                        log_debug("Process %s of container %s failed to start: %s", process_name(p), c->id, m.text);
                        if (p->pending) {
                                rpc_fail(p->pending, -p->error, "%s", p->message);
                                p->pending = NULL;
                                p->failed = true;
                        }
                        break;
                default:
                        break;
                }
                if (passed >= 0)
                        close(passed);
        }
}

static void control_event(loop_io_t *io, int fd, uint32_t events, void *ud) {
        control_drain(ud);
}

/* Forks a child into the given pid namespace (-1: a new one) and runs spawn_child in it. */
static int fork_into(guest_t *g, int pidns_fd, const spawn_request_t *req, pid_t *ret_pid) {
        if (pidns_fd >= 0 ? setns(pidns_fd, CLONE_NEWPID) < 0 : unshare(CLONE_NEWPID) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid == 0)
                spawn_child(req);
        int saved = errno;
        /* Back to our own namespace for later children, whatever happened. */
        if (setns(g->self_pidns_fd, CLONE_NEWPID) < 0) {
                log_error_errno(errno, "Cannot return to the agent's pid namespace: %m");
                abort();
        }
        if (pid < 0)
                return -saved;
        *ret_pid = pid;
        return 0;
}

/* Creates the process record and its child; the answer comes from control_event or the reaper. */
static int process_spawn(guest_t *g, container_t *c, process_t *p, int pidns_fd) {
        int child_fds[3] = { -1, -1, -1 }, sv[2];
        const process_spec_t *spec = p->init ? &c->spec->process : p->spec;
        int r = stdio_new(g->hub, spec->terminal, &p->stdio, child_fds);
        if (r < 0)
                return r;
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
                r = -errno;
                stdio_close_child_fds(child_fds);
                return r;
        }
        spawn_request_t req = {
                .container = p->init ? c->spec : NULL,
                .process = spec,
                .control_fd = sv[1],
                .stdio_fds = { child_fds[0], child_fds[1], child_fds[2] },
                .join_pid = p->init ? 0 : c->processes->pid,
                .cgroup = c->cgroup,
        };
        r = fork_into(g, pidns_fd, &req, &p->pid);
        close(sv[1]);
        stdio_close_child_fds(child_fds);
        if (r < 0) {
                close(sv[0]);
                return r;
        }
        p->control_fd = sv[0];
        r = loop_add_io(g->loop, p->control_fd, EPOLLIN, control_event, p, &p->control_io);
        if (r < 0) {
                kill(p->pid, SIGKILL);
                return r;
        }
        return 0;
}

/* ---- cgroup watching (OOM and freezer) ---- */

static void pause_finish(container_t *c, int r) {
        loop_timer_free(c->pause_timer);
        c->pause_timer = NULL;
        rpc_call_t *call = TAKE_PTR(c->pause_call);
        if (r >= 0 && c->state != CONTAINER_STOPPED)
                c->state = c->pause_target ? CONTAINER_PAUSED : CONTAINER_RUNNING;
        if (!call)
                return;
        if (r < 0)
                rpc_fail(call, r, "container %s did not %s", c->id, c->pause_target ? "freeze" : "thaw");
        else
                rpc_reply(call, NULL);
}

static void pause_check(container_t *c) {
        if (!c->pause_call)
                return;
        int r = cgroup_is_frozen(c->cgroup);
        if (r < 0)
                pause_finish(c, r);
        else if ((r > 0) == c->pause_target)
                pause_finish(c, 0);
}

static void pause_timeout(loop_timer_t *t, void *ud) {
        container_t *c = ud;
        c->pause_timer = NULL;
        pause_finish(c, -ETIMEDOUT);
}

static void inotify_event(loop_io_t *io, int fd, uint32_t events, void *ud) {
        guest_t *g = ud;
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        for (;;) {
                ssize_t n = read(fd, buf, sizeof buf);
                if (n <= 0)
                        return;
                for (char *p = buf; p < buf + n;) {
                        struct inotify_event *ev = (struct inotify_event *) p;
                        p += sizeof *ev + ev->len;
                        for (container_t *c = g->containers; c; c = c->next) {
                                if (ev->wd == c->events_wd)
                                        pause_check(c);
                                if (ev->wd != c->memory_wd)
                                        continue;
                                uint64_t kills;
                                if (cgroup_oom_kills(c->cgroup, &kills) >= 0 && kills > c->oom_kills) {
                                        c->oom_kills = kills;
                                        log_debug("Container %s: the OOM killer struck", c->id);
                                        send_event(g, json_pack("{s:s, s:s}", "Type", "oom", "ContainerID", c->id));
                                }
                        }
                }
        }
}

static void watch_cgroup(guest_t *g, container_t *c) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/memory.events", c->cgroup);
        c->memory_wd = inotify_add_watch(g->inotify_fd, path, IN_MODIFY);
        snprintf(path, sizeof path, "%s/cgroup.events", c->cgroup);
        c->events_wd = inotify_add_watch(g->inotify_fd, path, IN_MODIFY);
        cgroup_oom_kills(c->cgroup, &c->oom_kills);
}

/* ---- the RPCs ---- */

static void save_config(guest_t *g, container_t *c) {
        char path[PATH_MAX];
        state_file_path(g, c->id, path, sizeof path);
        _cleanup_json_ json_t *j = json_pack("{s:s, s:s, s:s, s:O}", "ContainerID", c->id, "Rootfs", c->spec->rootfs,
                                             "Hostname", c->spec->hostname, "Config", c->spec->config);
        _cleanup_free_ char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (!text || write_file_atomic(path, text, strlen(text), 0600) < 0)
                log_debug("Cannot write %s", path);
}

static void op_create_container(void *ud, rpc_call_t *call, container_spec_t *spec) {
        guest_t *g = ud;
        if (g->shutting_down) {
                container_spec_free(spec);
                rpc_fail(call, -ESHUTDOWN, "the agent is shutting down");
                return;
        }
        if (find_container(g, spec->id)) {
                rpc_fail(call, -EEXIST, "container %s already exists", spec->id);
                container_spec_free(spec);
                return;
        }
        container_t *c = calloc(1, sizeof *c);
        process_t *p = calloc(1, sizeof *p);
        if (!c || !p) {
                free(c);
                free(p);
                container_spec_free(spec);
                rpc_fail(call, -ENOMEM, "out of memory");
                return;
        }
        snprintf(c->id, sizeof c->id, "%s", spec->id);
        c->guest = g;
        c->spec = spec;
        c->state = CONTAINER_CREATING;
        c->memory_wd = c->events_wd = -1;
        snprintf(p->exec_id, sizeof p->exec_id, "%s", spec->id);
        p->init = true;
        p->container = c;
        p->control_fd = -1;
        c->processes = p;
        c->next = g->containers;
        g->containers = c;

        int r;
        char error[SPEC_ERROR_MAX] = "";
        if (g->cgroups) {
                r = cgroup_create(c->id, &c->cgroup);
                if (r == -EEXIST) {
                        /* Left over by a container of the same name whose removal failed. */
                        char stale[PATH_MAX];
                        snprintf(stale, sizeof stale, "%s/%s", CGROUP_KATAD, c->id);
                        cgroup_remove(stale);
                        r = cgroup_create(c->id, &c->cgroup);
                }
                if (r < 0) {
                        rpc_fail(call, r, "cannot create the cgroup of container %s: %m", c->id);
                        goto fail;
                }
                if ((r = cgroup_apply(c->cgroup, &spec->resources, error)) < 0) {
                        rpc_fail(call, r, "container %s: %s", c->id, error);
                        goto fail;
                }
        }
        r = process_spawn(g, c, p, -1);
        if (r < 0) {
                rpc_fail(call, r, "cannot start the init of container %s: %m", c->id);
                goto fail;
        }
        p->pending = call;
        if (c->cgroup && (r = cgroup_add_pid(c->cgroup, p->pid)) < 0) {
                /* The reaper answers and cleans up once the child is gone. */
                p->error = -r;
                snprintf(p->message, sizeof p->message, "cannot move the init into its cgroup: %s", strerror(-r));
                kill(p->pid, SIGKILL);
                return;
        }
        char ns[64];
        struct stat st;
        snprintf(ns, sizeof ns, "/proc/%d/ns/pid", (int) p->pid);
        if (stat(ns, &st) == 0) {
                c->pidns_dev = st.st_dev;
                c->pidns_ino = st.st_ino;
        }
        if (c->cgroup)
                watch_cgroup(g, c);
        save_config(g, c);
        return;
fail:
        c->processes = NULL;
        process_free(p);
        container_destroy(c);
}

static void op_start_container(void *ud, rpc_call_t *call, const char *cid) {
        guest_t *g = ud;
        container_t *c = NULL;
        if (lookup_container(g, call, cid, &c) < 0)
                return;
        process_t *p = c->processes;
        if (c->state != CONTAINER_CREATED || p->state != PROCESS_WAITING || c->remove_call) {
                rpc_fail(call, -EBUSY, "container %s is %s, not created", c->id, container_state_names[c->state]);
                return;
        }
        int r = spawn_send_start(p->control_fd);
        if (r < 0) {
                rpc_fail(call, r, "cannot start container %s: %m", c->id);
                return;
        }
        p->state = PROCESS_STARTING;
        p->pending = call;
}

/* Forks an exec into the container's pid namespace; its other namespaces it joins itself. */
static int exec_spawn(guest_t *g, container_t *c, process_t *p) {
        char ns[64];
        snprintf(ns, sizeof ns, "/proc/%d/ns/pid", (int) c->processes->pid);
        _cleanup_close_ int pidns = open(ns, O_RDONLY | O_CLOEXEC);
        if (pidns < 0)
                return -errno;
        return process_spawn(g, c, p, pidns);
}

static void op_exec_process(void *ud, rpc_call_t *call, const char *cid, const char *exec_id, process_spec_t *spec) {
        guest_t *g = ud;
        container_t *c = NULL;
        process_t *p = NULL;
        if (lookup_container(g, call, cid, &c) < 0)
                goto done;
        if (c->state != CONTAINER_RUNNING) {
                rpc_fail(call, -EBUSY, "container %s is %s, not running", c->id, container_state_names[c->state]);
                goto done;
        }
        if (streq(exec_id, c->id) || find_process(c, exec_id)) {
                rpc_fail(call, -EEXIST, "process %s already exists", exec_id);
                goto done;
        }
        p = calloc(1, sizeof *p);
        if (!p) {
                rpc_fail(call, -ENOMEM, "out of memory");
                goto done;
        }
        snprintf(p->exec_id, sizeof p->exec_id, "%s", exec_id);
        p->container = c;
        p->control_fd = -1;
        p->spec = TAKE_PTR(spec);
        int r = exec_spawn(g, c, p);
        if (r < 0) {
                rpc_fail(call, r, "cannot start process %s in container %s: %m", exec_id, c->id);
                process_free(p);
                goto done;
        }
        p->pending = call;
        process_t **tail = &c->processes;
        while (*tail)
                tail = &(*tail)->next;
        *tail = p;
done:
        if (spec) {
                process_spec_done(spec);
                free(spec);
        }
}

static void wait_timeout(loop_timer_t *t, void *ud) {
        waiter_t *w = ud;
        process_t *p = w->process;
        for (waiter_t **pp = &p->waiters; *pp; pp = &(*pp)->next)
                if (*pp == w) {
                        *pp = w->next;
                        break;
                }
        w->timer = NULL;
        rpc_fail(w->call, -ETIMEDOUT, "process %s did not exit in time", process_name(p));
        waiter_free(w);
}

static void op_wait_process(void *ud, rpc_call_t *call, const char *cid, const char *exec_id, int64_t timeout_ms) {
        guest_t *g = ud;
        container_t *c = NULL;
        process_t *p = NULL;
        if (lookup_process(g, call, cid, exec_id, &c, &p) < 0)
                return;
        if (p->state == PROCESS_EXITED) {
                rpc_reply(call, json_pack("{s:i}", "ExitCode", p->exit_code));
                return;
        }
        if (timeout_ms == 0) {
                rpc_fail(call, -ETIMEDOUT, "process %s did not exit in time", process_name(p));
                return;
        }
        unsigned waiting = 0;
        for (waiter_t *w = p->waiters; w; w = w->next)
                waiting++;
        if (waiting >= MAX_WAITERS) {
                rpc_fail(call, -EAGAIN, "too many waits on process %s", process_name(p));
                return;
        }
        waiter_t *w = calloc(1, sizeof *w);
        if (!w) {
                rpc_fail(call, -ENOMEM, "out of memory");
                return;
        }
        w->process = p;
        w->call = call;
        if (timeout_ms > 0 && loop_add_timer(g->loop, timeout_ms, wait_timeout, w, &w->timer) < 0) {
                free(w);
                rpc_fail(call, -ENOMEM, "out of memory");
                return;
        }
        w->next = p->waiters;
        p->waiters = w;
}

/* The processes of a container, as the agent sees them: its cgroup, or (without cgroups) every
 * process in its pid namespace. */
static int container_pids(guest_t *g, container_t *c, pid_t **ret, size_t *ret_n) {
        if (c->cgroup)
                return cgroup_get_pids(c->cgroup, ret, ret_n);
        DIR *d = opendir("/proc");
        if (!d)
                return -errno;
        size_t n = 0, cap = 16;
        pid_t *pids = malloc(cap * sizeof *pids);
        struct dirent *de;
        while (pids && (de = readdir(d))) {
                uint64_t v;
                if (parse_u64(de->d_name, &v) < 0 || v == 0 || v > INT_MAX)
                        continue;
                char ns[64];
                struct stat st;
                snprintf(ns, sizeof ns, "/proc/%d/ns/pid", (int) v);
                if (stat(ns, &st) < 0 || st.st_ino != c->pidns_ino || st.st_dev != c->pidns_dev)
                        continue;
                if (n == cap) {
                        pid_t *np = realloc(pids, (cap *= 2) * sizeof *pids);
                        if (!np) {
                                free(pids);
                                pids = NULL;
                                break;
                        }
                        pids = np;
                }
                pids[n++] = (pid_t) v;
        }
        closedir(d);
        if (!pids)
                return -ENOMEM;
        *ret = pids;
        *ret_n = n;
        return 0;
}

static bool container_has_started(const container_t *c) {
        return c->state == CONTAINER_RUNNING || c->state == CONTAINER_PAUSED;
}

static void op_signal_process(void *ud, rpc_call_t *call, const char *cid, const char *exec_id, int sig, bool all) {
        guest_t *g = ud;
        container_t *c = NULL;
        process_t *p = NULL;
        if (lookup_process(g, call, cid, exec_id, &c, &p) < 0)
                return;
        if (all) {
                _cleanup_free_ pid_t *pids = NULL;
                size_t n = 0, sent = 0;
                if (container_has_started(c)) {
                        int r = container_pids(g, c, &pids, &n);
                        if (r < 0) {
                                rpc_fail(call, r, "cannot list the processes of container %s: %m", c->id);
                                return;
                        }
                }
                for (size_t i = 0; i < n; i++)
                        sent += kill(pids[i], sig) == 0;
                if (sent == 0) {
                        rpc_fail(call, -ESRCH, "no process of container %s is running", c->id);
                        return;
                }
                rpc_reply(call, NULL);
                return;
        }
        if (p->state != PROCESS_RUNNING) {
                rpc_fail(call, -ESRCH, "process %s is not running", process_name(p));
                return;
        }
        if (kill(p->pid, sig) < 0) {
                rpc_fail(call, -errno, "cannot signal process %s: %m", process_name(p));
                return;
        }
        rpc_reply(call, NULL);
}

static void op_winsize_process(void *ud, rpc_call_t *call, const char *cid, const char *exec_id, unsigned height,
                               unsigned width) {
        guest_t *g = ud;
        container_t *c = NULL;
        process_t *p = NULL;
        if (lookup_process(g, call, cid, exec_id, &c, &p) < 0)
                return;
        if (!p->stdio || !stdio_is_terminal(p->stdio)) {
                rpc_fail(call, -ENOTTY, "process %s has no terminal", process_name(p));
                return;
        }
        if (p->state == PROCESS_EXITED) {
                rpc_fail(call, -ESRCH, "process %s has exited", process_name(p));
                return;
        }
        int r = stdio_set_winsize(p->stdio, height, width);
        if (r < 0) {
                rpc_fail(call, r, "cannot resize the terminal of process %s: %m", process_name(p));
                return;
        }
        rpc_reply(call, NULL);
}

static void op_pause_container(void *ud, rpc_call_t *call, const char *cid, bool pause) {
        guest_t *g = ud;
        container_t *c = NULL;
        if (lookup_container(g, call, cid, &c) < 0)
                return;
        if (pause && c->state != CONTAINER_RUNNING) {
                rpc_fail(call, -EBUSY, "container %s is %s, not running", c->id, container_state_names[c->state]);
                return;
        }
        if (!pause && c->state != CONTAINER_PAUSED) {
                rpc_fail(call, -EBUSY, "container %s is %s, not paused", c->id, container_state_names[c->state]);
                return;
        }
        if (!c->cgroup) {
                rpc_fail(call, -EOPNOTSUPP, "pausing needs the cgroup freezer (the agent runs with --no-cgroups)");
                return;
        }
        if (c->pause_call) {
                rpc_fail(call, -EBUSY, "container %s is being %s", c->id, c->pause_target ? "paused" : "resumed");
                return;
        }
        int r = cgroup_set_frozen(c->cgroup, pause);
        if (r < 0) {
                rpc_fail(call, r, "cannot %s container %s: %m", pause ? "freeze" : "thaw", c->id);
                return;
        }
        c->pause_call = call;
        c->pause_target = pause;
        if (loop_add_timer(g->loop, PAUSE_TIMEOUT_MS, pause_timeout, c, &c->pause_timer) < 0)
                c->pause_timer = NULL;
        pause_check(c);
}

static unsigned live_processes(const container_t *c) {
        unsigned n = 0;
        for (const process_t *p = c->processes; p; p = p->next)
                n += p->state == PROCESS_RUNNING;
        return n;
}

static void op_stats_container(void *ud, rpc_call_t *call, const char *cid) {
        guest_t *g = ud;
        container_t *c = NULL;
        if (lookup_container(g, call, cid, &c) < 0)
                return;
        json_t *cgroup = cgroup_stats(c->cgroup, live_processes(c));
        json_t *result =
                cgroup ? json_pack("{s:o, s:o}", "CgroupStats", cgroup, "NetworkStats", network_stats()) : NULL;
        if (!result) {
                rpc_fail(call, -ENOMEM, "out of memory");
                return;
        }
        rpc_reply(call, result);
}

static void op_update_container(void *ud, rpc_call_t *call, const char *cid, resources_spec_t *res) {
        guest_t *g = ud;
        container_t *c = NULL;
        char error[SPEC_ERROR_MAX] = "";
        if (lookup_container(g, call, cid, &c) < 0)
                goto done;
        if (c->state == CONTAINER_STOPPED) {
                rpc_fail(call, -EBUSY, "container %s is stopped", c->id);
                goto done;
        }
        if (!c->cgroup) {
                rpc_fail(call, -EOPNOTSUPP, "updating resources needs cgroups (the agent runs with --no-cgroups)");
                goto done;
        }
        int r = cgroup_apply(c->cgroup, res, error);
        if (r < 0) {
                rpc_fail(call, r, "container %s: %s", c->id, error);
                goto done;
        }
        rpc_reply(call, NULL);
done:
        resources_spec_done(res);
        free(res);
}

static void op_list_processes(void *ud, rpc_call_t *call, const char *cid, const ps_spec_t *ps) {
        guest_t *g = ud;
        container_t *c = NULL;
        if (lookup_container(g, call, cid, &c) < 0)
                return;
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        if (container_has_started(c)) {
                int r = container_pids(g, c, &pids, &n);
                if (r < 0) {
                        rpc_fail(call, r, "cannot list the processes of container %s: %m", c->id);
                        return;
                }
        }
        json_t *result;
        int r = ps_list(ps, pids, n, c->processes->pid, &result);
        if (r < 0) {
                rpc_fail(call, r, "cannot list the processes of container %s: %m", c->id);
                return;
        }
        rpc_reply(call, result);
}

static void op_remove_container(void *ud, rpc_call_t *call, const char *cid) {
        guest_t *g = ud;
        container_t *c = NULL;
        if (lookup_container(g, call, cid, &c) < 0)
                return;
        if (c->remove_call || c->pause_call) {
                rpc_fail(call, -EBUSY, "container %s is busy", c->id);
                return;
        }
        process_t *init = c->processes;
        if (c->state == CONTAINER_CREATING) {
                rpc_fail(call, -EBUSY, "container %s is being created", c->id);
                return;
        }
        for (process_t *p = c->processes; p; p = p->next)
                if (p->state == PROCESS_RUNNING || p->state == PROCESS_STARTING ||
                    (!p->init && p->state == PROCESS_SETUP)) {
                        rpc_fail(call, -EBUSY, "container %s still has running processes", c->id);
                        return;
                }
        if (init->state == PROCESS_WAITING) {
                /* Created, never started: its init waits for a START that will not come. */
                c->remove_call = call;
                kill(init->pid, SIGKILL);
                return;
        }
        container_destroy(c);
        rpc_reply(call, NULL);
}

static json_t *container_status(const container_t *c) {
        const process_t *init = c->processes;
        return json_pack("{s:s, s:s, s:i, s:b, s:i}", "ID", c->id, "State", container_state_names[c->state], "Pid",
                         (int) init->pid, "Exited", init->state == PROCESS_EXITED, "ExitCode", init->exit_code);
}

static void op_status_container(void *ud, rpc_call_t *call, const char *cid) {
        guest_t *g = ud;
        container_t *c = NULL;
        if (lookup_container(g, call, cid, &c) < 0)
                return;
        rpc_reply(call, container_status(c));
}

static void op_list_containers(void *ud, rpc_call_t *call) {
        guest_t *g = ud;
        json_t *list = json_array();
        for (container_t *c = g->containers; list && c; c = c->next)
                json_array_append_new(list, container_status(c));
        rpc_reply(call, list ? json_pack("{s:o}", "Containers", list) : NULL);
}

static void op_shutdown(void *ud, rpc_call_t *call) {
        guest_t *g = ud;
        g->shutting_down = true;
        rpc_reply(call, NULL);
        if (g->on_shutdown)
                g->on_shutdown(g->shutdown_userdata);
}

static int op_stream_data(void *ud, uint32_t stream, const uint8_t *data, size_t len) {
        guest_t *g = ud;
        return stdio_hub_data(g->hub, stream, data, len);
}

static void op_stream_eof(void *ud, uint32_t stream) {
        guest_t *g = ud;
        stdio_hub_eof(g->hub, stream);
}

static void op_stream_credit(void *ud, uint32_t stream, uint32_t bytes) {
        guest_t *g = ud;
        stdio_hub_credit(g->hub, stream, bytes);
}

static void op_connection_reset(void *ud) {
        guest_t *g = ud;
        stdio_hub_connection_reset(g->hub);
        /* Waits asked on the old connection would answer nobody: drop them now. */
        for (container_t *c = g->containers; c; c = c->next)
                for (process_t *p = c->processes; p; p = p->next)
                        for (waiter_t **pp = &p->waiters; *pp;) {
                                waiter_t *w = *pp;
                                if (rpc_call_is_stale(w->call)) {
                                        *pp = w->next;
                                        rpc_fail(w->call, -ESHUTDOWN, "the connection is gone");
                                        waiter_free(w);
                                } else
                                        pp = &w->next;
                        }
}

static void op_connected(void *ud) {
        guest_t *g = ud;
        stdio_hub_connected(g->hub);
}

static void op_output_ready(void *ud) {
        guest_t *g = ud;
        stdio_hub_output_ready(g->hub);
}

static const guest_ops_t ops = {
        .create_container = op_create_container,
        .start_container = op_start_container,
        .exec_process = op_exec_process,
        .wait_process = op_wait_process,
        .signal_process = op_signal_process,
        .winsize_process = op_winsize_process,
        .pause_container = op_pause_container,
        .stats_container = op_stats_container,
        .update_container = op_update_container,
        .list_processes = op_list_processes,
        .remove_container = op_remove_container,
        .status_container = op_status_container,
        .list_containers = op_list_containers,
        .shutdown = op_shutdown,
        .stream_data = op_stream_data,
        .stream_eof = op_stream_eof,
        .stream_credit = op_stream_credit,
        .connection_reset = op_connection_reset,
        .connected = op_connected,
        .output_ready = op_output_ready,
};

const guest_ops_t *guest_ops(void) {
        return &ops;
}

/* ---- lifecycle ---- */

int guest_new(loop_t *loop, const guest_options_t *options, guest_t **ret) {
        guest_t *g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        g->loop = loop;
        g->cgroups = options->cgroups;
        g->inotify_fd = g->self_pidns_fd = -1;
        int r = -ENOMEM;
        g->state_dir = strdup(options->state_dir);
        if (!g->state_dir)
                goto fail;
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/containers", g->state_dir);
        if ((r = mkdir_p(dir, 0700)) < 0) {
                log_error_errno(r, "Cannot create %s: %m", dir);
                goto fail;
        }
        g->self_pidns_fd = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
        if (g->self_pidns_fd < 0) {
                r = log_error_errno(errno, "Cannot open /proc/self/ns/pid: %m");
                goto fail;
        }
        g->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (g->inotify_fd < 0) {
                r = log_error_errno(errno, "inotify_init1 failed: %m");
                goto fail;
        }
        if ((r = loop_add_io(loop, g->inotify_fd, EPOLLIN, inotify_event, g, &g->inotify_io)) < 0)
                goto fail;
        *ret = g;
        return 0;
fail:
        guest_free(g);
        return r;
}

int guest_attach(guest_t *g, session_t *s) {
        g->session = s;
        return stdio_hub_new(g->loop, s, &g->hub);
}

void guest_set_shutdown_handler(guest_t *g, void (*fn)(void *userdata), void *userdata) {
        g->on_shutdown = fn;
        g->shutdown_userdata = userdata;
}

void guest_kill_all(guest_t *g, int timeout_ms) {
        g->shutting_down = true;
        for (container_t *c = g->containers; c; c = c->next) {
                if (c->cgroup)
                        cgroup_set_frozen(c->cgroup, false);
                for (process_t *p = c->processes; p; p = p->next)
                        if (p->state != PROCESS_EXITED && p->pid > 0)
                                kill(p->pid, SIGKILL);
        }
        int64_t deadline = now_monotonic_ns() + (int64_t) timeout_ms * 1000000;
        for (;;) {
                guest_reap(g);
                bool alive = false;
                for (container_t *c = g->containers; c; c = c->next)
                        for (process_t *p = c->processes; p; p = p->next)
                                alive |= p->state != PROCESS_EXITED && p->pid > 0;
                if (!alive || now_monotonic_ns() > deadline)
                        break;
                struct timespec ts = { .tv_nsec = 10 * 1000000 };
                nanosleep(&ts, NULL);
        }
        while (g->containers)
                container_destroy(g->containers);
}

void guest_free(guest_t *g) {
        if (!g)
                return;
        while (g->containers)
                container_destroy(g->containers);
        stdio_hub_free(g->hub);
        loop_io_free(g->inotify_io);
        if (g->inotify_fd >= 0)
                close(g->inotify_fd);
        if (g->self_pidns_fd >= 0)
                close(g->self_pidns_fd);
        free(g->state_dir);
        free(g);
}
