/* The mock hypervisor's guest: containers and processes emulated in-process, behind the same
 * agent RPCs the real guest agent serves (docs/agent-protocol.md), persisted to a state file. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "json-util.h"
#include "log.h"
#include "mock-internal.h"

#define MAX_EXITED_EXECS 128
#define NSEC_PER_SEC 1000000000LL

typedef enum { C_CREATED, C_RUNNING, C_PAUSED, C_STOPPED } cstate_t;
static const char *const cstate_names[] = { "created", "running", "paused", "stopped" };

typedef struct mock_process {
        struct mock_process *next;
        char exec_id[ID_MAX + 1];
        bool init, started, exited, frozen, tty, busy;
        int pid, exit_code, planned_exit, height, width;
        int64_t start_ns, end_ns, deadline_ns; /* deadline -1: runs until signalled */
        int64_t frozen_since_ns, frozen_total_ns, frozen_remaining_ns;
        uint64_t ignored, pending; /* signal bitmasks, bit n for signal n */
        json_t *args;
        char *output;
} mock_process_t;

typedef struct mock_container {
        struct mock_container *next;
        char id[ID_MAX + 1];
        cstate_t state;
        bool vm_frozen; /* paused by a VM pause rather than a container pause */
        json_t *config, *resources;
        mock_process_t *processes; /* the init process first */
} mock_container_t;

typedef struct mock_agent {
        agent_t base;
        struct mock_agent *next;
        mock_guest_t *guest;
        bool closed;
        unsigned calls;
} mock_agent_t;

struct mock_guest {
        mock_guest_t *next;
        mock_vmm_t *vmm;
        unsigned refs; /* protected by vmm->lock */
        char id[ID_MAX + 1];
        char *path;
        pthread_mutex_t lock;
        pthread_cond_t changed;
        bool dead, vm_paused;
        int next_pid;
        mock_container_t *containers;
        struct event *timer;
        json_t *events; /* queued for delivery on the loop thread */
        mock_agent_t *agents;
        unsigned dispatching;
};

/* ---- the Cmd.Args interpreter ---- */

typedef struct program {
        int64_t duration_ns; /* -1: forever */
        int exit_code;
        bool busy;
        uint64_t ignored;
        char *output;
} program_t;

static void append_output(char **out, const char *text) {
        size_t old = *out ? strlen(*out) : 0, add = strlen(text);
        if (old + add > 65536)
                return;
        char *n = realloc(*out, old + add + 1);
        if (!n)
                return;
        memcpy(n + old, text, add + 1);
        *out = n;
}

/* Splits a shell word list on blanks, honouring single and double quotes. */
static int split_words(const char *s, char ***ret, size_t *ret_n) {
        char **words = NULL;
        size_t n = 0;
        while (*s) {
                while (*s == ' ' || *s == '\t' || *s == '\n')
                        s++;
                if (!*s)
                        break;
                char *w = malloc(strlen(s) + 1), *o = w;
                if (!w)
                        goto oom;
                char quote = 0;
                for (; *s && (quote || (*s != ' ' && *s != '\t' && *s != '\n')); s++) {
                        if (quote && *s == quote)
                                quote = 0;
                        else if (!quote && (*s == '\'' || *s == '"'))
                                quote = *s;
                        else
                                *o++ = *s;
                }
                *o = 0;
                char **nw = realloc(words, (n + 2) * sizeof *words);
                if (!nw) {
                        free(w);
                        goto oom;
                }
                words = nw;
                words[n++] = w;
                words[n] = NULL;
        }
        *ret = words;
        *ret_n = n;
        return 0;
oom:
        for (size_t i = 0; i < n; i++)
                free(words[i]);
        free(words);
        return -ENOMEM;
}

/* Runs one simple command; returns true when the program ends here (exit). */
static bool program_step(program_t *p, char **argv, size_t argc, int *status) {
        if (argc == 0)
                return false;
        const char *cmd = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
        if (streq(cmd, "true") || streq(cmd, ":"))
                *status = 0;
        else if (streq(cmd, "false"))
                *status = 1;
        else if (streq(cmd, "exit")) {
                uint64_t code;
                if (argc > 1 && parse_u64(argv[1], &code) == 0)
                        *status = (int) (code & 0xff);
                return true;
        } else if (streq(cmd, "sleep")) {
                if (argc > 1 && streq(argv[1], "infinity"))
                        p->duration_ns = -1;
                else if (argc > 1 && p->duration_ns >= 0) {
                        char *end;
                        double secs = strtod(argv[1], &end);
                        if (*end || secs < 0 || secs > 1e9) {
                                *status = 1;
                                return false;
                        }
                        p->duration_ns += (int64_t) (secs * 1e9);
                }
                *status = 0;
        } else if (streq(cmd, "echo")) {
                for (size_t i = 1; i < argc; i++) {
                        append_output(&p->output, argv[i]);
                        append_output(&p->output, i + 1 < argc ? " " : "");
                }
                append_output(&p->output, "\n");
                *status = 0;
        } else if (streq(cmd, "trap")) {
                /* trap '' SIG...: ignore those signals; any other action is treated the same */
                for (size_t i = 2; i < argc; i++) {
                        int sig = signal_from_string(argv[i]);
                        if (sig > 0 && sig != SIGKILL && sig != SIGSTOP)
                                p->ignored |= UINT64_C(1) << sig;
                }
                *status = 0;
        } else {
                /* Anything else stands for a long-running workload that uses CPU. */
                p->duration_ns = -1;
                p->busy = true;
        }
        return false;
}

static int program_parse(json_t *args, program_t *ret) {
        program_t p = { 0 };
        int status = 0;
        size_t n = json_array_size(args);
        if (n == 0)
                return -EINVAL;
        const char *a0 = json_string_value(json_array_get(args, 0));
        const char *base = strrchr(a0, '/') ? strrchr(a0, '/') + 1 : a0;
        bool shell = (streq(base, "sh") || streq(base, "bash") || streq(base, "ash")) && n >= 3 &&
                     streq(json_string_value(json_array_get(args, 1)), "-c");
        if (shell) {
                /* Statements separated by ';' or newlines run in sequence; after '&&' a statement
                 * runs only if the previous one succeeded. */
                _cleanup_free_ char *script = strdup(json_string_value(json_array_get(args, 2)));
                if (!script)
                        return -ENOMEM;
                char *stmt = script;
                bool skip = false;
                for (bool last = false; !last;) {
                        char *end = stmt + strcspn(stmt, ";\n&");
                        while (*end == '&' && end[1] != '&')
                                end += 1 + strcspn(end + 1, ";\n&");
                        bool and_next = end[0] == '&';
                        last = *end == 0;
                        *end = 0;
                        if (!skip) {
                                char **words;
                                size_t wc;
                                if (split_words(stmt, &words, &wc) < 0) {
                                        free(p.output);
                                        return -ENOMEM;
                                }
                                bool done = program_step(&p, words, wc, &status);
                                for (size_t i = 0; i < wc; i++)
                                        free(words[i]);
                                free(words);
                                if (done || p.duration_ns < 0)
                                        break;
                        }
                        /* a skipped statement leaves the status as it was, so "false && x; y" runs y */
                        skip = and_next && status != 0;
                        stmt = end + (and_next ? 2 : 1);
                }
        } else {
                const char **argv = calloc(n + 1, sizeof *argv);
                if (!argv)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++)
                        argv[i] = json_string_value(json_array_get(args, i));
                program_step(&p, (char **) argv, n, &status);
                free(argv);
        }
        p.exit_code = status;
        *ret = p;
        return 0;
}

/* ---- guest state ---- */

static int64_t process_cpu_ns(const mock_process_t *p, int64_t now) {
        if (!p->started)
                return 0;
        int64_t end = p->exited ? p->end_ns : now;
        int64_t ran = end - p->start_ns - p->frozen_total_ns - (p->frozen && !p->exited ? now - p->frozen_since_ns : 0);
        if (ran < 0)
                ran = 0;
        return p->busy ? ran / 2 : ran / 100;
}

static mock_container_t *find_container(mock_guest_t *g, const char *id) {
        for (mock_container_t *c = g->containers; c; c = c->next)
                if (id && streq(c->id, id))
                        return c;
        return NULL;
}

static mock_process_t *find_process(mock_container_t *c, const char *exec_id) {
        if (strempty(exec_id) || streq(exec_id, c->id))
                return c->processes;
        for (mock_process_t *p = c->processes; p; p = p->next)
                if (!p->init && streq(p->exec_id, exec_id))
                        return p;
        return NULL;
}

static void queue_event(mock_guest_t *g, json_t *event) {
        if (event)
                json_array_append_new(g->events, event);
}

static void process_exit(mock_guest_t *g, mock_container_t *c, mock_process_t *p, int code, int64_t now);

static void process_freeze(mock_process_t *p, int64_t now) {
        if (!p->started || p->exited || p->frozen)
                return;
        p->frozen = true;
        p->frozen_since_ns = now;
        p->frozen_remaining_ns = p->deadline_ns < 0 ? -1 : (p->deadline_ns > now ? p->deadline_ns - now : 0);
}

static void process_thaw(mock_guest_t *g, mock_container_t *c, mock_process_t *p, int64_t now) {
        if (!p->frozen || p->exited)
                return;
        p->frozen = false;
        p->frozen_total_ns += now - p->frozen_since_ns;
        p->deadline_ns = p->frozen_remaining_ns < 0 ? -1 : now + p->frozen_remaining_ns;
}

/* Delivers sig to p as the kernel would with default dispositions, unless the program ignores it. */
static void process_signal(mock_guest_t *g, mock_container_t *c, mock_process_t *p, int sig, int64_t now) {
        if (!p->started || p->exited || sig <= 0 || sig >= 64)
                return;
        if (sig == SIGCHLD || sig == SIGCONT || sig == SIGURG || sig == SIGWINCH || sig == SIGSTOP ||
            sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
                return;
        if (sig != SIGKILL && (p->ignored & (UINT64_C(1) << sig)))
                return;
        if (p->frozen && sig != SIGKILL) {
                p->pending |= UINT64_C(1) << sig;
                return;
        }
        process_exit(g, c, p, 128 + sig, now);
}

static void process_exit(mock_guest_t *g, mock_container_t *c, mock_process_t *p, int code, int64_t now) {
        if (p->exited)
                return;
        if (p->frozen) {
                p->frozen_total_ns += now - p->frozen_since_ns;
                p->frozen = false;
        }
        p->exited = true;
        p->exit_code = code;
        p->end_ns = now;
        queue_event(g, json_pack("{s:s, s:s, s:s, s:i, s:i}", "Type", "process-exit", "ContainerID", c->id, "ExecID",
                                 p->init ? "" : p->exec_id, "Pid", p->pid, "ExitCode", code));
        if (p->init) {
                /* The init of a pid namespace took the namespace with it. */
                c->state = C_STOPPED;
                c->vm_frozen = false;
                for (mock_process_t *q = c->processes; q; q = q->next)
                        if (q != p && q->started && !q->exited)
                                process_exit(g, c, q, 128 + SIGKILL, now);
        }
        pthread_cond_broadcast(&g->changed);
}

static void process_free(mock_process_t *p) {
        json_decref(p->args);
        free(p->output);
        free(p);
}

static void container_free(mock_container_t *c) {
        while (c->processes) {
                mock_process_t *p = c->processes;
                c->processes = p->next;
                process_free(p);
        }
        json_decref(c->config);
        json_decref(c->resources);
        free(c);
}

static void process_start(mock_guest_t *g, mock_process_t *p, const program_t *prog, int64_t now) {
        p->started = true;
        p->pid = g->next_pid++;
        p->start_ns = now;
        p->deadline_ns = prog->duration_ns < 0 ? -1 : now + prog->duration_ns;
        p->planned_exit = prog->exit_code;
        p->busy = prog->busy;
        p->ignored = prog->ignored;
        free(p->output);
        p->output = prog->output ? strdup(prog->output) : NULL;
}

/* ---- persistence ---- */

static json_t *process_to_json(const mock_process_t *p) {
        return json_pack("{s:s, s:b, s:b, s:b, s:b, s:b, s:b, s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I, "
                         "s:I, s:I, s:O, s:s?}",
                         "ExecID", p->exec_id, "Init", p->init, "Started", p->started, "Exited", p->exited, "Frozen",
                         p->frozen, "Tty", p->tty, "Busy", p->busy, "Pid", p->pid, "ExitCode", p->exit_code,
                         "PlannedExit", p->planned_exit, "Height", p->height, "Width", p->width, "StartNs",
                         (json_int_t) p->start_ns, "EndNs", (json_int_t) p->end_ns, "DeadlineNs",
                         (json_int_t) p->deadline_ns, "FrozenSinceNs", (json_int_t) p->frozen_since_ns,
                         "FrozenTotalNs", (json_int_t) p->frozen_total_ns, "FrozenRemainingNs",
                         (json_int_t) p->frozen_remaining_ns, "Ignored", (json_int_t) p->ignored, "Pending",
                         (json_int_t) p->pending, "Args", p->args, "Output", p->output);
}

static int guest_save_to(mock_guest_t *g, const char *path) {
        _cleanup_json_ json_t *containers = json_array();
        if (!containers)
                return -ENOMEM;
        for (mock_container_t *c = g->containers; c; c = c->next) {
                json_t *procs = json_array();
                for (mock_process_t *p = c->processes; p; p = p->next)
                        json_array_append_new(procs, process_to_json(p));
                json_array_append_new(containers,
                                      json_pack("{s:s, s:s, s:b, s:O, s:O?, s:o}", "ID", c->id, "State",
                                                cstate_names[c->state], "VMFrozen", c->vm_frozen, "Config", c->config,
                                                "Resources", c->resources, "Processes", procs));
        }
        _cleanup_json_ json_t *root = json_pack("{s:i, s:s, s:i, s:b, s:O}", "Version", 1, "ID", g->id, "NextPid",
                                                g->next_pid, "VMPaused", g->vm_paused, "Containers", containers);
        _cleanup_free_ char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
        if (!text)
                return -ENOMEM;
        int r = write_file_atomic(path, text, strlen(text), 0600);
        if (r < 0)
                log_error_errno(r, "Failed to save mock VM state %s: %m", path);
        return r;
}

static int guest_save(mock_guest_t *g) {
        return g->dead ? 0 : guest_save_to(g, g->path);
}

static int process_from_json(json_t *j, mock_process_t **ret) {
        mock_process_t *p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        const char *exec_id = json_get_string(j, "ExecID");
        json_t *args = json_get_array(j, "Args");
        if (!exec_id || !args) {
                free(p);
                return -EBADMSG;
        }
        snprintf(p->exec_id, sizeof p->exec_id, "%s", exec_id);
        p->init = json_get_bool(j, "Init", false);
        p->started = json_get_bool(j, "Started", false);
        p->exited = json_get_bool(j, "Exited", false);
        p->frozen = json_get_bool(j, "Frozen", false);
        p->tty = json_get_bool(j, "Tty", false);
        p->busy = json_get_bool(j, "Busy", false);
        p->pid = (int) json_get_int(j, "Pid", 0);
        p->exit_code = (int) json_get_int(j, "ExitCode", 0);
        p->planned_exit = (int) json_get_int(j, "PlannedExit", 0);
        p->height = (int) json_get_int(j, "Height", 0);
        p->width = (int) json_get_int(j, "Width", 0);
        p->start_ns = json_get_int(j, "StartNs", 0);
        p->end_ns = json_get_int(j, "EndNs", 0);
        p->deadline_ns = json_get_int(j, "DeadlineNs", -1);
        p->frozen_since_ns = json_get_int(j, "FrozenSinceNs", 0);
        p->frozen_total_ns = json_get_int(j, "FrozenTotalNs", 0);
        p->frozen_remaining_ns = json_get_int(j, "FrozenRemainingNs", -1);
        p->ignored = (uint64_t) json_get_int(j, "Ignored", 0);
        p->pending = (uint64_t) json_get_int(j, "Pending", 0);
        p->args = json_incref(args);
        const char *out = json_get_string(j, "Output");
        p->output = out ? strdup(out) : NULL;
        *ret = p;
        return 0;
}

static int guest_load_from(mock_guest_t *g, const char *path) {
        _cleanup_free_ char *text = NULL;
        int r = read_file(path, 64u * 1024 * 1024, &text, NULL);
        if (r == -ENOENT)
                return -ESRCH;
        if (r < 0)
                return r;
        _cleanup_json_ json_t *root = json_loads(text, 0, NULL);
        if (!root || json_get_int(root, "Version", 0) != 1)
                return -EBADMSG;
        g->next_pid = (int) json_get_int(root, "NextPid", 2);
        g->vm_paused = json_get_bool(root, "VMPaused", false);
        mock_container_t **tail = &g->containers;
        size_t i;
        json_t *jc;
        json_array_foreach(json_get_array(root, "Containers"), i, jc) {
                const char *id = json_get_string(jc, "ID"), *state = json_get_string(jc, "State");
                if (!id || !state)
                        return -EBADMSG;
                mock_container_t *c = calloc(1, sizeof *c);
                if (!c)
                        return -ENOMEM;
                snprintf(c->id, sizeof c->id, "%s", id);
                for (int s = 0; s < 4; s++)
                        if (streq(state, cstate_names[s]))
                                c->state = (cstate_t) s;
                c->vm_frozen = json_get_bool(jc, "VMFrozen", false);
                c->config = json_incref(json_get_object(jc, "Config"));
                c->resources = json_incref(json_get_object(jc, "Resources"));
                *tail = c;
                tail = &c->next;
                mock_process_t **ptail = &c->processes;
                size_t k;
                json_t *jp;
                json_array_foreach(json_get_array(jc, "Processes"), k, jp) {
                        r = process_from_json(jp, ptail);
                        if (r < 0)
                                return r;
                        ptail = &(*ptail)->next;
                }
                if (!c->processes)
                        return -EBADMSG;
        }
        return 0;
}

static int guest_load(mock_guest_t *g) {
        return guest_load_from(g, g->path);
}

/* ---- timers and event delivery (on the loop thread) ---- */

/* Arms the guest's timer for the next process deadline, or now when events wait. Lock held. */
static void guest_rearm(mock_guest_t *g) {
        if (g->dead)
                return;
        int64_t now = now_realtime_ns(), next = -1;
        for (mock_container_t *c = g->containers; c; c = c->next)
                for (mock_process_t *p = c->processes; p; p = p->next)
                        if (p->started && !p->exited && !p->frozen && p->deadline_ns >= 0 &&
                            (next < 0 || p->deadline_ns < next))
                                next = p->deadline_ns;
        if (json_array_size(g->events) > 0)
                next = now;
        if (next < 0) {
                /* Never the blocking event_del with the lock held: it would wait for a running
                 * guest_tick, which waits for the lock. A tick already running re-arms itself. */
                event_del_noblock(g->timer);
                return;
        }
        int64_t delta = next > now ? next - now : 0;
        struct timeval tv = { .tv_sec = delta / NSEC_PER_SEC, .tv_usec = (delta % NSEC_PER_SEC) / 1000 };
        evtimer_add(g->timer, &tv);
}

/* Ends the processes whose time is up, as the guest would have; lock held. */
static bool guest_expire(mock_guest_t *g) {
        int64_t now = now_realtime_ns();
        bool changed = false;
        for (mock_container_t *c = g->containers; c; c = c->next)
                for (mock_process_t *p = c->processes; p; p = p->next)
                        if (p->started && !p->exited && !p->frozen && p->deadline_ns >= 0 && p->deadline_ns <= now) {
                                process_exit(g, c, p, p->planned_exit, now);
                                changed = true;
                        }
        if (changed)
                guest_save(g);
        return changed;
}

static void guest_tick(evutil_socket_t fd, short what, void *userdata) {
        mock_guest_t *g = userdata;
        pthread_mutex_lock(&g->lock);
        guest_expire(g);
        json_t *events = g->events;
        g->events = json_array();
        size_t n = 0;
        for (mock_agent_t *a = g->agents; a; a = a->next)
                n++;
        struct {
                agent_t *agent;
                agent_event_cb cb;
                void *userdata;
        } targets[n ? n : 1];
        n = 0;
        for (mock_agent_t *a = g->agents; a; a = a->next)
                if (a->base.on_event)
                        targets[n++] = (typeof(targets[0])) { &a->base, a->base.on_event, a->base.userdata };
        g->dispatching++;
        guest_rearm(g);
        pthread_mutex_unlock(&g->lock);

        size_t i;
        json_t *ev;
        json_array_foreach(events, i, ev)
                for (size_t k = 0; k < n; k++)
                        targets[k].cb(targets[k].agent, ev, targets[k].userdata);
        json_decref(events);

        pthread_mutex_lock(&g->lock);
        g->dispatching--;
        pthread_cond_broadcast(&g->changed);
        pthread_mutex_unlock(&g->lock);
}

/* ---- lifecycle ---- */

static int guest_open(mock_vmm_t *vmm, const char *id, bool create, const char *template_path, mock_guest_t **ret) {
        pthread_mutex_lock(&vmm->lock);
        for (mock_guest_t *g = vmm->guests; g; g = g->next)
                if (streq(g->id, id) && !g->dead) {
                        g->refs++;
                        pthread_mutex_unlock(&vmm->lock);
                        if (create)
                                return -EEXIST;
                        *ret = g;
                        return 0;
                }
        pthread_mutex_unlock(&vmm->lock);

        mock_guest_t *g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        g->vmm = vmm;
        g->refs = 1;
        g->next_pid = 2;
        snprintf(g->id, sizeof g->id, "%s", id);
        pthread_mutex_init(&g->lock, NULL);
        pthread_cond_init(&g->changed, NULL);
        g->events = json_array();
        if (asprintf(&g->path, "%s/%s.json", vmm->state_dir, id) < 0)
                g->path = NULL;
        g->timer = evtimer_new(vmm->loop, guest_tick, g);
        int r = (!g->events || !g->path || !g->timer) ? -ENOMEM : 0;
        if (r == 0 && template_path) {
                r = guest_load_from(g, template_path);
                if (r == -ESRCH)
                        r = -ENOENT;
                if (r >= 0)
                        r = guest_save(g);
        } else if (r == 0)
                r = create ? guest_save(g) : guest_load(g);
        if (r < 0) {
                g->dead = true;
                mock_guest_unref(g);
                return r;
        }
        pthread_mutex_lock(&vmm->lock);
        g->next = vmm->guests;
        vmm->guests = g;
        pthread_mutex_unlock(&vmm->lock);
        pthread_mutex_lock(&g->lock);
        guest_rearm(g); /* deadlines that passed while nobody watched fire now */
        pthread_mutex_unlock(&g->lock);
        *ret = g;
        return 0;
}

int mock_guest_open(mock_vmm_t *vmm, const char *id, bool create, mock_guest_t **ret) {
        return guest_open(vmm, id, create, NULL, ret);
}

int mock_guest_clone(mock_vmm_t *vmm, const char *id, const char *template_path, mock_guest_t **ret) {
        return guest_open(vmm, id, true, template_path, ret);
}

int mock_guest_save_to(mock_guest_t *g, const char *path) {
        pthread_mutex_lock(&g->lock);
        int r = g->dead ? -ESHUTDOWN : !g->vm_paused ? -EBUSY : guest_save_to(g, path);
        pthread_mutex_unlock(&g->lock);
        return r;
}

mock_guest_t *mock_guest_ref(mock_guest_t *g) {
        pthread_mutex_lock(&g->vmm->lock);
        g->refs++;
        pthread_mutex_unlock(&g->vmm->lock);
        return g;
}

void mock_guest_unref(mock_guest_t *g) {
        if (!g)
                return;
        mock_vmm_t *vmm = g->vmm;
        pthread_mutex_lock(&vmm->lock);
        if (--g->refs > 0) {
                pthread_mutex_unlock(&vmm->lock);
                return;
        }
        for (mock_guest_t **p = &vmm->guests; *p; p = &(*p)->next)
                if (*p == g) {
                        *p = g->next;
                        break;
                }
        pthread_mutex_unlock(&vmm->lock);
        if (g->timer)
                event_free(g->timer); /* waits for a running tick */
        while (g->containers) {
                mock_container_t *c = g->containers;
                g->containers = c->next;
                container_free(c);
        }
        json_decref(g->events);
        pthread_cond_destroy(&g->changed);
        pthread_mutex_destroy(&g->lock);
        free(g->path);
        free(g);
}

void mock_guest_destroy(mock_guest_t *g) {
        pthread_mutex_lock(&g->lock);
        int64_t now = now_realtime_ns();
        for (mock_container_t *c = g->containers; c; c = c->next)
                for (mock_process_t *p = c->processes; p; p = p->next)
                        if (p->started && !p->exited)
                                process_exit(g, c, p, 128 + SIGKILL, now);
        g->dead = true;
        unlink(g->path);
        event_del_noblock(g->timer);
        pthread_cond_broadcast(&g->changed);
        pthread_mutex_unlock(&g->lock);
}

const char *mock_guest_state_path(mock_guest_t *g) {
        return g->path;
}

int mock_guest_set_vm_paused(mock_guest_t *g, bool paused) {
        pthread_mutex_lock(&g->lock);
        int64_t now = now_realtime_ns();
        if (g->dead) {
                pthread_mutex_unlock(&g->lock);
                return -ESHUTDOWN;
        }
        if (g->vm_paused != paused) {
                g->vm_paused = paused;
                for (mock_container_t *c = g->containers; c; c = c->next) {
                        if (paused && c->state == C_RUNNING) {
                                c->vm_frozen = true;
                                for (mock_process_t *p = c->processes; p; p = p->next)
                                        process_freeze(p, now);
                        } else if (!paused && c->vm_frozen) {
                                c->vm_frozen = false;
                                for (mock_process_t *p = c->processes; p; p = p->next)
                                        process_thaw(g, c, p, now);
                        }
                }
                guest_save(g);
                guest_rearm(g);
        }
        pthread_mutex_unlock(&g->lock);
        return 0;
}

int mock_guest_stats(mock_guest_t *g, json_t **ret) {
        pthread_mutex_lock(&g->lock);
        unsigned containers = 0, processes = 0;
        for (mock_container_t *c = g->containers; c; c = c->next) {
                containers++;
                for (mock_process_t *p = c->processes; p; p = p->next)
                        processes += p->started && !p->exited;
        }
        json_t *j = json_pack("{s:i, s:i, s:b}", "Containers", containers, "Processes", processes, "Paused",
                              g->vm_paused);
        pthread_mutex_unlock(&g->lock);
        if (!j)
                return -ENOMEM;
        *ret = j;
        return 0;
}

/* ---- RPCs ---- */

typedef struct call {
        mock_guest_t *g;
        mock_agent_t *agent;
        json_t *params;
        json_t *result;
        char *message;
} call_t;

_printf_(3, 4) static int fail(call_t *call, int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        free(call->message);
        if (vasprintf(&call->message, fmt, ap) < 0)
                call->message = NULL;
        va_end(ap);
        return r;
}

static int lookup_container(call_t *call, mock_container_t **ret) {
        const char *id = json_get_string(call->params, "ContainerID");
        if (!id)
                return fail(call, -EINVAL, "ContainerID is required");
        mock_container_t *c = find_container(call->g, id);
        if (!c)
                return fail(call, -ENOENT, "container %s not found", id);
        *ret = c;
        return 0;
}

static int lookup_process(call_t *call, mock_container_t **ret_c, mock_process_t **ret_p) {
        mock_container_t *c;
        int r = lookup_container(call, &c);
        if (r < 0)
                return r;
        const char *exec_id = json_get_string(call->params, "ExecID");
        mock_process_t *p = find_process(c, exec_id);
        if (!p)
                return fail(call, -ENOENT, "process %s not found in container %s", exec_id, c->id);
        *ret_c = c;
        *ret_p = p;
        return 0;
}

static int call_ping(call_t *call) {
        call->result = json_pack("{s:i, s:s}", "Version", 1, "Agent", "katad-mock");
        return 0;
}

static int call_create_container(call_t *call) {
        const char *id = json_get_string(call->params, "ContainerID");
        json_t *config = json_get_object(call->params, "Config");
        json_t *args = json_get_array(json_get_object(config, "Cmd"), "Args");
        if (!id || !id_is_valid(id) || !config)
                return fail(call, -EINVAL, "ContainerID and Config are required");
        if (json_array_size(args) == 0)
                return fail(call, -EINVAL, "Config.Cmd.Args must not be empty");
        if (find_container(call->g, id))
                return fail(call, -EEXIST, "container %s already exists", id);
        mock_container_t *c = calloc(1, sizeof *c);
        mock_process_t *p = calloc(1, sizeof *p);
        if (!c || !p) {
                free(c);
                free(p);
                return -ENOMEM;
        }
        snprintf(c->id, sizeof c->id, "%s", id);
        snprintf(p->exec_id, sizeof p->exec_id, "%s", id);
        c->state = C_CREATED;
        c->config = json_incref(config);
        c->resources = json_incref(json_get_object(config, "Resources"));
        p->init = true;
        p->deadline_ns = -1;
        p->args = json_incref(args);
        p->tty = json_get_bool(json_get_object(config, "Cmd"), "Interactive", false);
        c->processes = p;
        mock_container_t **tail = &call->g->containers;
        while (*tail)
                tail = &(*tail)->next;
        *tail = c;
        call->result = json_pack("{s:i}", "Pid", 0);
        return 0;
}

static int call_start_container(call_t *call) {
        mock_container_t *c;
        int r = lookup_container(call, &c);
        if (r < 0)
                return r;
        if (c->state != C_CREATED)
                return fail(call, -EBUSY, "container %s is %s, not created", c->id, cstate_names[c->state]);
        program_t prog;
        r = program_parse(c->processes->args, &prog);
        if (r < 0)
                return fail(call, r, "container %s has no command", c->id);
        int64_t now = now_realtime_ns();
        process_start(call->g, c->processes, &prog, now);
        free(prog.output);
        c->state = C_RUNNING;
        char when[64];
        format_rfc3339(now, when, sizeof when);
        call->result = json_pack("{s:i, s:s}", "Pid", c->processes->pid, "StartTime", when);
        return 0;
}

static void trim_exited_execs(mock_container_t *c) {
        unsigned exited = 0;
        for (mock_process_t *p = c->processes; p; p = p->next)
                exited += !p->init && p->exited;
        for (mock_process_t **pp = &c->processes; *pp && exited > MAX_EXITED_EXECS;) {
                mock_process_t *p = *pp;
                if (!p->init && p->exited) {
                        *pp = p->next;
                        process_free(p);
                        exited--;
                } else
                        pp = &p->next;
        }
}

static int call_exec_process(call_t *call) {
        mock_container_t *c;
        int r = lookup_container(call, &c);
        if (r < 0)
                return r;
        const char *exec_id = json_get_string(call->params, "ExecID");
        json_t *cmd = json_get_object(call->params, "Cmd");
        json_t *args = json_get_array(cmd, "Args");
        if (!exec_id || !id_is_valid(exec_id) || json_array_size(args) == 0)
                return fail(call, -EINVAL, "ExecID and Cmd.Args are required");
        if (c->state != C_RUNNING)
                return fail(call, -EBUSY, "container %s is %s, not running", c->id, cstate_names[c->state]);
        if (streq(exec_id, c->id) || find_process(c, exec_id))
                return fail(call, -EEXIST, "process %s already exists", exec_id);
        program_t prog;
        r = program_parse(args, &prog);
        if (r < 0)
                return r;
        mock_process_t *p = calloc(1, sizeof *p);
        if (!p) {
                free(prog.output);
                return -ENOMEM;
        }
        snprintf(p->exec_id, sizeof p->exec_id, "%s", exec_id);
        p->args = json_incref(args);
        p->tty = json_get_bool(cmd, "Interactive", false);
        int64_t now = now_realtime_ns();
        process_start(call->g, p, &prog, now);
        free(prog.output);
        mock_process_t **tail = &c->processes;
        while (*tail)
                tail = &(*tail)->next;
        *tail = p;
        trim_exited_execs(c);
        char when[64];
        format_rfc3339(now, when, sizeof when);
        call->result = json_pack("{s:i, s:s}", "Pid", p->pid, "StartTime", when);
        return 0;
}

static int call_wait_process(call_t *call) {
        mock_container_t *c;
        mock_process_t *p;
        int r = lookup_process(call, &c, &p);
        if (r < 0)
                return r;
        char exec_id[ID_MAX + 1], cid[ID_MAX + 1];
        snprintf(exec_id, sizeof exec_id, "%s", p->exec_id);
        snprintf(cid, sizeof cid, "%s", c->id);
        json_int_t timeout_ms = json_get_int(call->params, "TimeoutMs", -1);
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        if (timeout_ms >= 0) {
                deadline.tv_sec += timeout_ms / 1000;
                deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
                if (deadline.tv_nsec >= 1000000000L) {
                        deadline.tv_sec++;
                        deadline.tv_nsec -= 1000000000L;
                }
        }
        /* The process may be trimmed or its container removed while we sleep: look it up again. */
        for (;;) {
                if (call->g->dead || call->agent->closed)
                        return fail(call, -ESHUTDOWN, "the VM or the agent connection went away");
                c = find_container(call->g, cid);
                p = c ? find_process(c, exec_id) : NULL;
                if (!p)
                        return fail(call, -ENOENT, "process %s is gone", exec_id);
                if (p->exited)
                        break;
                if (timeout_ms < 0)
                        pthread_cond_wait(&call->g->changed, &call->g->lock);
                else if (pthread_cond_timedwait(&call->g->changed, &call->g->lock, &deadline) == ETIMEDOUT)
                        return fail(call, -ETIMEDOUT, "process %s did not exit in time", exec_id);
        }
        call->result = json_pack("{s:i}", "ExitCode", p->exit_code);
        return 0;
}

static int call_signal_process(call_t *call) {
        mock_container_t *c;
        mock_process_t *p;
        int r = lookup_process(call, &c, &p);
        if (r < 0)
                return r;
        int sig = (int) json_get_int(call->params, "Signal", 0);
        if (sig <= 0 || sig >= 64)
                return fail(call, -EINVAL, "invalid signal %d", sig);
        int64_t now = now_realtime_ns();
        if (json_get_bool(call->params, "All", false)) {
                /* Every process receives the signal itself: the container's own process last, since
                 * its exit would take the others down with SIGKILL. */
                bool any = false;
                for (mock_process_t *q = c->processes->next; q; q = q->next)
                        if (q->started && !q->exited) {
                                process_signal(call->g, c, q, sig, now);
                                any = true;
                        }
                if (c->processes->started && !c->processes->exited) {
                        process_signal(call->g, c, c->processes, sig, now);
                        any = true;
                }
                if (!any)
                        return fail(call, -ESRCH, "no process of container %s is running", c->id);
                return 0;
        }
        if (!p->started || p->exited)
                return fail(call, -ESRCH, "process %s is not running", p->init ? c->id : p->exec_id);
        process_signal(call->g, c, p, sig, now);
        return 0;
}

static int call_winsize_process(call_t *call) {
        mock_container_t *c;
        mock_process_t *p;
        int r = lookup_process(call, &c, &p);
        if (r < 0)
                return r;
        if (!p->tty)
                return fail(call, -ENOTTY, "process %s has no terminal", p->init ? c->id : p->exec_id);
        if (p->exited)
                return fail(call, -ESRCH, "process %s has exited", p->exec_id);
        p->height = (int) json_get_int(call->params, "Height", 0);
        p->width = (int) json_get_int(call->params, "Width", 0);
        return 0;
}

static int call_pause_resume(call_t *call, bool pause) {
        mock_container_t *c;
        int r = lookup_container(call, &c);
        if (r < 0)
                return r;
        int64_t now = now_realtime_ns();
        if (pause) {
                if (c->state != C_RUNNING)
                        return fail(call, -EBUSY, "container %s is %s, not running", c->id, cstate_names[c->state]);
                for (mock_process_t *p = c->processes; p; p = p->next)
                        process_freeze(p, now);
                c->state = C_PAUSED;
        } else {
                if (c->state != C_PAUSED)
                        return fail(call, -EBUSY, "container %s is %s, not paused", c->id, cstate_names[c->state]);
                c->state = C_RUNNING;
                for (mock_process_t *p = c->processes; p; p = p->next) {
                        process_thaw(call->g, c, p, now);
                        for (int sig = 1; sig < 64 && !p->exited; sig++)
                                if (p->pending & (UINT64_C(1) << sig))
                                        process_signal(call->g, c, p, sig, now);
                        p->pending = 0;
                }
        }
        return 0;
}

static int call_pause_container(call_t *call) {
        return call_pause_resume(call, true);
}

static int call_resume_container(call_t *call) {
        return call_pause_resume(call, false);
}

static json_int_t resource_limit(json_t *resources, const char *group, const char *key) {
        return json_get_int(json_get_object(resources, group), key, 0);
}

static int call_stats_container(call_t *call) {
        mock_container_t *c;
        int r = lookup_container(call, &c);
        if (r < 0)
                return r;
        int64_t now = now_realtime_ns(), cpu = 0;
        unsigned live = 0;
        for (mock_process_t *p = c->processes; p; p = p->next) {
                cpu += process_cpu_ns(p, now);
                live += p->started && !p->exited;
        }
        json_int_t mem = live ? (json_int_t) (1 + live) * 1024 * 1024 : 0;
        call->result = json_pack(
                "{s:{s:{s:{s:I, s:[I], s:I, s:I}, s:{s:i, s:i, s:i}}, s:{s:i, s:{s:I, s:I, s:i, s:I}, s:b}, "
                "s:{s:i, s:I}, s:{}}, s:[]}",
                "CgroupStats", "CPUStats", "CPUUsage", "TotalUsage", (json_int_t) cpu, "PercpuUsage",
                (json_int_t) cpu, "UsageInKernelmode", (json_int_t) (cpu / 5), "UsageInUsermode",
                (json_int_t) (cpu - cpu / 5), "ThrottlingData", "Periods", 0, "ThrottledPeriods", 0, "ThrottledTime",
                0, "MemoryStats", "Cache", 0, "Usage", "Usage", mem, "MaxUsage", mem, "Failcnt", 0, "Limit",
                resource_limit(c->resources, "memory", "limit"), "UseHierarchy", 1, "PidsStats", "Current",
                (int) live, "Limit", resource_limit(c->resources, "pids", "limit"), "BlkioStats", "NetworkStats");
        return call->result ? 0 : -ENOMEM;
}

static int call_update_container(call_t *call) {
        mock_container_t *c;
        int r = lookup_container(call, &c);
        if (r < 0)
                return r;
        json_t *resources = json_get_object(call->params, "Resources");
        if (!resources)
                return fail(call, -EINVAL, "Resources is required");
        if (c->state == C_STOPPED)
                return fail(call, -EBUSY, "container %s is stopped", c->id);
        if (!c->resources)
                c->resources = json_object();
        json_object_update_recursive(c->resources, resources);
        return 0;
}

static void args_to_string(json_t *args, char *buf, size_t size) {
        size_t i, off = 0;
        json_t *a;
        buf[0] = 0;
        json_array_foreach(args, i, a) {
                int n = snprintf(buf + off, size - off, "%s%s", i ? " " : "", json_string_value(a));
                if (n < 0 || (size_t) n >= size - off)
                        break;
                off += (size_t) n;
        }
}

static int call_list_processes(call_t *call) {
        mock_container_t *c;
        int r = lookup_container(call, &c);
        if (r < 0)
                return r;
        const char *format = json_get_string(call->params, "Format");
        if (format && !streq(format, "json") && !streq(format, "table"))
                return fail(call, -EINVAL, "unknown format %s", format);
        static const char *const titles[] = { "UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD" };
        _cleanup_json_ json_t *jt = json_array(), *rows = json_array();
        for (size_t i = 0; i < ELEMENTSOF(titles); i++)
                json_array_append_new(jt, json_string(titles[i]));
        int64_t now = now_realtime_ns();
        for (mock_process_t *p = c->processes; p; p = p->next) {
                if (!p->started || p->exited)
                        continue;
                char pid[16], ppid[16], stime[16], cpu[48], cmd[1024];
                snprintf(pid, sizeof pid, "%d", p->init ? 1 : p->pid);
                snprintf(ppid, sizeof ppid, "%d", 0);
                time_t st = (time_t) (p->start_ns / NSEC_PER_SEC);
                struct tm tm;
                gmtime_r(&st, &tm);
                strftime(stime, sizeof stime, "%H:%M", &tm);
                int64_t secs = process_cpu_ns(p, now) / NSEC_PER_SEC;
                snprintf(cpu, sizeof cpu, "%02d:%02d:%02d", (int) (secs / 3600), (int) (secs / 60 % 60),
                         (int) (secs % 60));
                args_to_string(p->args, cmd, sizeof cmd);
                json_array_append_new(rows, json_pack("[s, s, s, s, s, s, s, s]", "root", pid, ppid, "0", stime,
                                                      p->tty ? "pts/0" : "?", cpu, cmd));
        }
        if (format && streq(format, "table")) {
                size_t width[ELEMENTSOF(titles)];
                for (size_t k = 0; k < ELEMENTSOF(titles); k++)
                        width[k] = strlen(titles[k]);
                size_t i;
                json_t *row;
                json_array_foreach(rows, i, row) for (size_t k = 0; k + 1 < ELEMENTSOF(titles); k++) {
                        size_t w = strlen(json_string_value(json_array_get(row, k)));
                        if (w > width[k])
                                width[k] = w;
                }
                char *out = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&out, &len);
                if (!f)
                        return -ENOMEM;
                for (size_t k = 0; k < ELEMENTSOF(titles); k++)
                        fprintf(f, k + 1 < ELEMENTSOF(titles) ? "%-*s " : "%-*s\n", (int) width[k], titles[k]);
                json_array_foreach(rows, i, row) for (size_t k = 0; k < ELEMENTSOF(titles); k++) {
                        const char *cell = json_string_value(json_array_get(row, k));
                        if (k + 1 < ELEMENTSOF(titles))
                                fprintf(f, "%-*s ", (int) width[k], cell);
                        else
                                fprintf(f, "%s\n", cell);
                }
                fclose(f);
                call->result = json_pack("{s:s}", "Output", out);
                free(out);
        } else
                call->result = json_pack("{s:O, s:O}", "Titles", jt, "Processes", rows);
        return call->result ? 0 : -ENOMEM;
}

static int call_remove_container(call_t *call) {
        mock_container_t *c;
        int r = lookup_container(call, &c);
        if (r < 0)
                return r;
        for (mock_process_t *p = c->processes; p; p = p->next)
                if (p->started && !p->exited)
                        return fail(call, -EBUSY, "container %s still has running processes", c->id);
        for (mock_container_t **pp = &call->g->containers; *pp; pp = &(*pp)->next)
                if (*pp == c) {
                        *pp = c->next;
                        break;
                }
        container_free(c);
        pthread_cond_broadcast(&call->g->changed);
        return 0;
}

static json_t *container_status(mock_container_t *c) {
        mock_process_t *init = c->processes;
        return json_pack("{s:s, s:s, s:i, s:b, s:i}", "ID", c->id, "State", cstate_names[c->state], "Pid", init->pid,
                         "Exited", init->exited, "ExitCode", init->exit_code);
}

static int call_status_container(call_t *call) {
        mock_container_t *c;
        int r = lookup_container(call, &c);
        if (r < 0)
                return r;
        call->result = container_status(c);
        return call->result ? 0 : -ENOMEM;
}

static int call_list_containers(call_t *call) {
        json_t *list = json_array();
        for (mock_container_t *c = call->g->containers; c; c = c->next)
                json_array_append_new(list, container_status(c));
        call->result = json_pack("{s:o}", "Containers", list);
        return call->result ? 0 : -ENOMEM;
}

static const struct {
        const char *method;
        int (*fn)(call_t *call);
        bool mutates;
} methods[] = {
        { "Ping", call_ping, false },
        { "CreateContainer", call_create_container, true },
        { "StartContainer", call_start_container, true },
        { "ExecProcess", call_exec_process, true },
        { "WaitProcess", call_wait_process, false },
        { "SignalProcess", call_signal_process, true },
        { "WinsizeProcess", call_winsize_process, true },
        { "PauseContainer", call_pause_container, true },
        { "ResumeContainer", call_resume_container, true },
        { "StatsContainer", call_stats_container, false },
        { "UpdateContainer", call_update_container, true },
        { "ListProcesses", call_list_processes, false },
        { "RemoveContainer", call_remove_container, true },
        { "StatusContainer", call_status_container, false },
        { "ListContainers", call_list_containers, false },
};

static int mock_agent_call(agent_t *base, const char *method, json_t *params, json_t **ret_result, char **ret_message) {
        mock_agent_t *a = (mock_agent_t *) base;
        mock_guest_t *g = a->guest;
        _cleanup_json_ json_t *empty = params ? NULL : json_object();
        call_t call = { .g = g, .agent = a, .params = params ? params : empty };
        int r = -EOPNOTSUPP;

        pthread_mutex_lock(&g->lock);
        a->calls++;
        if (!g->dead && guest_expire(g))
                guest_rearm(g);
        if (a->closed || g->dead)
                r = fail(&call, -ESHUTDOWN, "the agent connection is closed");
        else if (g->vm_paused && !streq(method, "WaitProcess"))
                r = fail(&call, -EAGAIN, "the VM is paused");
        else
                for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                        if (streq(method, methods[i].method)) {
                                r = methods[i].fn(&call);
                                if (r >= 0 && methods[i].mutates) {
                                        guest_save(g);
                                        guest_rearm(g);
                                }
                                break;
                        }
        if (r == -EOPNOTSUPP && !call.message)
                fail(&call, r, "unknown method %s", method);
        if (r >= 0 && !call.result)
                call.result = json_object();
        a->calls--;
        pthread_cond_broadcast(&g->changed);
        pthread_mutex_unlock(&g->lock);

        if (r < 0) {
                json_decref(call.result);
                if (ret_message)
                        *ret_message = TAKE_PTR(call.message);
                free(call.message);
                return r;
        }
        free(call.message);
        if (ret_result)
                *ret_result = call.result;
        else
                json_decref(call.result);
        return 0;
}

static void mock_agent_close(agent_t *base) {
        mock_agent_t *a = (mock_agent_t *) base;
        mock_guest_t *g = a->guest;
        pthread_mutex_lock(&g->lock);
        a->closed = true;
        pthread_cond_broadcast(&g->changed);
        for (mock_agent_t **pp = &g->agents; *pp; pp = &(*pp)->next)
                if (*pp == a) {
                        *pp = a->next;
                        break;
                }
        /* No call may still use a, and no event may still be on its way to it. */
        while (a->calls > 0 || g->dispatching > 0)
                pthread_cond_wait(&g->changed, &g->lock);
        pthread_mutex_unlock(&g->lock);
        mock_guest_unref(g);
        free(a);
}

static void mock_agent_cancel(agent_t *base) {
        mock_agent_t *a = (mock_agent_t *) base;
        pthread_mutex_lock(&a->guest->lock);
        a->closed = true;
        pthread_cond_broadcast(&a->guest->changed);
        pthread_mutex_unlock(&a->guest->lock);
}

static void mock_agent_set_event_handler(agent_t *base, agent_event_cb cb, void *userdata) {
        mock_guest_t *g = ((mock_agent_t *) base)->guest;
        pthread_mutex_lock(&g->lock);
        base->on_event = cb;
        base->userdata = userdata;
        pthread_mutex_unlock(&g->lock);
}

static const agent_ops_t mock_agent_ops = {
        .call = mock_agent_call,
        .close = mock_agent_close,
        .cancel = mock_agent_cancel,
        .set_event_handler = mock_agent_set_event_handler,
};

int mock_guest_connect(mock_guest_t *g, agent_t **ret) {
        mock_agent_t *a = calloc(1, sizeof *a);
        if (!a)
                return -ENOMEM;
        a->base.ops = &mock_agent_ops;
        a->guest = mock_guest_ref(g);
        pthread_mutex_lock(&g->lock);
        if (g->dead) {
                pthread_mutex_unlock(&g->lock);
                mock_guest_unref(g);
                free(a);
                return -ESHUTDOWN;
        }
        a->next = g->agents;
        g->agents = a;
        pthread_mutex_unlock(&g->lock);
        *ret = &a->base;
        return 0;
}
