/* katad-agent: the guest agent of katad's VMs. As PID 1 (the initrd's /init) it sets the VM up
 * and serves the agent protocol on the virtio-serial port io.katad.agent.0; with --listen it
 * serves the same protocol on a Unix socket on the host, for tests. See docs/agent-protocol.md. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "channel.h"
#include "guest.h"
#include "init.h"
#include "log.h"
#include "loop.h"
#include "agent/protocol.h"
#include "session.h"
#include "util.h"

#define DEFAULT_STATE_DIR "/run/katad/agent"
#define PORT_TIMEOUT_MS 10000
#define SHUTDOWN_FLUSH_MS 1000

typedef struct agent_main {
        loop_t *loop;
        guest_t *guest;
        channel_t *channel;
        int64_t shutdown_deadline_ns;
} agent_main_t;

static void usage(FILE *f) {
        fprintf(f, "Usage: katad-agent                 (as PID 1 of a katad VM)\n"
                   "       katad-agent --listen SOCKET [--no-cgroups] [--state-dir DIR] [--debug]\n"
                   "\n"
                   "  --listen SOCKET   serve the agent protocol on a Unix socket (test mode)\n"
                   "  --no-cgroups      do not use cgroups (pause, resume and update fail with EOPNOTSUPP;\n"
                   "                    statistics are zeros)\n"
                   "  --state-dir DIR   where the agent keeps its files (default " DEFAULT_STATE_DIR ")\n"
                   "  --debug           log every request\n");
}

static void signal_event(loop_io_t *io, int fd, uint32_t events, void *ud) {
        agent_main_t *m = ud;
        struct signalfd_siginfo si;
        while (read(fd, &si, sizeof si) == (ssize_t) sizeof si) {
                if (si.ssi_signo == SIGCHLD)
                        guest_reap(m->guest);
                else if (getpid() != 1) {
                        log_info("Got %s; stopping", signal_to_string((int) si.ssi_signo) ?: "a signal");
                        loop_quit(m->loop, 0);
                }
        }
        /* signalfd merges SIGCHLDs: reap in any case. */
        guest_reap(m->guest);
}

static void shutdown_step(loop_timer_t *t, void *ud) {
        agent_main_t *m = ud;
        channel_flush(m->channel);
        if (channel_is_idle(m->channel) || now_monotonic_ns() > m->shutdown_deadline_ns) {
                loop_quit(m->loop, 0);
                return;
        }
        loop_timer_t *next;
        if (loop_add_timer(m->loop, 10, shutdown_step, m, &next) < 0)
                loop_quit(m->loop, 0);
}

/* Shutdown was answered: give the answer a moment to reach the host, then stop. */
static void on_shutdown(void *ud) {
        agent_main_t *m = ud;
        log_info("Shutdown requested");
        m->shutdown_deadline_ns = now_monotonic_ns() + (int64_t) SHUTDOWN_FLUSH_MS * 1000000;
        loop_timer_t *t;
        if (loop_add_timer(m->loop, 0, shutdown_step, m, &t) < 0)
                loop_quit(m->loop, 0);
}

static int run(bool pid1, const char *listen_path, bool cgroups, const char *state_dir) {
        agent_main_t m = { 0 };
        session_t *session = NULL;
        int sfd = -1, r;
        loop_io_t *signal_io = NULL;

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        if ((r = loop_new(&m.loop)) < 0)
                return log_error_errno(r, "Cannot create the event loop: %m");
        guest_options_t options = { .cgroups = cgroups, .state_dir = state_dir };
        if ((r = guest_new(m.loop, &options, &m.guest)) < 0)
                goto out;
        if ((r = session_new(guest_ops(), m.guest, &session)) < 0 || (r = guest_attach(m.guest, session)) < 0) {
                log_error_errno(r, "Cannot set up the session: %m");
                goto out;
        }
        guest_set_shutdown_handler(m.guest, on_shutdown, &m);
        sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (sfd < 0 || (r = loop_add_io(m.loop, sfd, EPOLLIN, signal_event, &m, &signal_io)) < 0) {
                r = log_error_errno(sfd < 0 ? errno : -r, "Cannot watch signals: %m");
                goto out;
        }
        if (listen_path) {
                if ((r = channel_listen(m.loop, session, listen_path, &m.channel)) < 0) {
                        log_error_errno(r, "Cannot listen on %s: %m", listen_path);
                        goto out;
                }
                log_info("Listening on %s", listen_path);
        } else {
                _cleanup_free_ char *port = NULL;
                if ((r = init_find_port(AGENT_PORT_NAME, PORT_TIMEOUT_MS, &port)) < 0) {
                        log_error_errno(r, "No virtio-serial port named %s: %m", AGENT_PORT_NAME);
                        goto out;
                }
                if ((r = channel_open_port(m.loop, session, port, &m.channel)) < 0) {
                        log_error_errno(r, "Cannot open %s: %m", port);
                        goto out;
                }
                log_info("Serving on %s", port);
        }
        r = loop_run(m.loop);
        if (r < 0)
                log_error_errno(r, "The event loop failed: %m");
out:
        if (m.guest)
                guest_kill_all(m.guest, 2000);
        channel_free(m.channel);
        loop_io_free(signal_io);
        if (sfd >= 0)
                close(sfd);
        guest_free(m.guest);
        session_free(session);
        loop_free(m.loop);
        (void) pid1;
        return r;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "listen", required_argument, NULL, 'l' },
                { "no-cgroups", no_argument, NULL, 'n' },
                { "state-dir", required_argument, NULL, 's' },
                { "debug", no_argument, NULL, 'd' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *listen_path = NULL, *state_dir = DEFAULT_STATE_DIR;
        bool cgroups = true, debug = false;
        bool pid1 = getpid() == 1;
        int c;
        while (!pid1 && (c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'l':
                        listen_path = optarg;
                        break;
                case 'n':
                        cgroups = false;
                        break;
                case 's':
                        state_dir = optarg;
                        break;
                case 'd':
                        debug = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        if (!pid1 && (!listen_path || optind < argc)) {
                usage(stderr);
                return 2;
        }
        if (!pid1) {
                log_set_level(debug ? LOG_DEBUG : LOG_WARNING);
                return run(false, listen_path, cgroups, state_dir) < 0 ? 1 : 0;
        }

        /* PID 1: the kernel command line decides how chatty the console is. */
        log_set_level(LOG_WARNING);
        bool cgroups_ok = false;
        int r = init_system(&cgroups_ok);
        if (init_debug_requested())
                log_set_level(LOG_DEBUG);
        log_info("Starting");
        if (r < 0) {
                log_error_errno(r, "The VM cannot be set up: %m");
                init_poweroff();
        }
        init_mount_share();
        run(true, NULL, cgroups_ok, DEFAULT_STATE_DIR);
        log_info("Powering off");
        init_poweroff();
}
