/* A tiny static PID 1 for testing the QEMU backend (tests/qemu/), not the guest agent: it speaks
 * just enough of the agent wire protocol (agent/protocol.c) on the io.katad.agent.0 virtio-serial
 * port to answer HELLO and three RPCs:
 *   Ping       -> {"Version":1,"Agent":"katad-qemu-test-init"}
 *   Probe9p    -> mounts the "katad" 9p share and writes "from-guest" into it -> {"Written":true}
 *   Shutdown   -> answers, syncs and reboots; QEMU runs with -no-reboot, so that ends it
 * Anything else gets {"Error":{"Errno":38,...}}. With "katad.test=silent" on the kernel command line it
 * never opens the port (a guest whose agent does not come up). With Debian's modular kernel it first loads the
 * modules listed, in order, in /etc/katad-test-modules (the initrd builder resolves dependencies).
 * Every console line starts with "test-init: ". */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent/protocol.h"

static void say(const char *fmt, ...) {
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        dprintf(STDERR_FILENO, "test-init: %s\n", buf);
}

static void load_modules(void) {
        FILE *f = fopen("/etc/katad-test-modules", "r");
        if (!f)
                return;
        char line[512];
        while (fgets(line, sizeof line, f)) {
                line[strcspn(line, "\n")] = 0;
                if (!line[0])
                        continue;
                int fd = open(line, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || syscall(SYS_finit_module, fd, "", 0) < 0)
                        if (errno != EEXIST)
                                say("cannot load %s: %s", line, strerror(errno));
                if (fd >= 0)
                        close(fd);
        }
        fclose(f);
}

/* Finds /dev/vportNpM whose name is the agent's port; waits for udev-less devtmpfs to show it. */
static int open_agent_port(void) {
        for (int tries = 0; tries < 500; tries++) {
                DIR *d = opendir("/sys/class/virtio-ports");
                struct dirent *e;
                while (d && (e = readdir(d))) {
                        if (e->d_name[0] == '.')
                                continue;
                        char path[512], name[128] = "";
                        snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
                        int fd = open(path, O_RDONLY);
                        if (fd < 0)
                                continue;
                        ssize_t n = read(fd, name, sizeof name - 1);
                        close(fd);
                        if (n <= 0)
                                continue;
                        name[strcspn(name, "\n")] = 0;
                        if (strcmp(name, AGENT_PORT_NAME) != 0)
                                continue;
                        snprintf(path, sizeof path, "/dev/%s", e->d_name);
                        fd = open(path, O_RDWR | O_CLOEXEC);
                        if (fd >= 0) {
                                closedir(d);
                                say("agent port %s open", path);
                                return fd;
                        }
                }
                if (d)
                        closedir(d);
                usleep(10000);
        }
        return -1;
}

static void send_frame(int fd, agent_frame_type_t type, uint32_t id, const char *json) {
        size_t size;
        uint8_t *frame = agent_frame_build(type, 0, id, json, strlen(json), &size);
        if (!frame)
                return;
        size_t off = 0;
        while (off < size) {
                ssize_t n = write(fd, frame + off, size - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                off += (size_t) n;
        }
        free(frame);
}

static int probe_9p(void) {
        mkdir("/shared", 0755);
        if (mount("katad", "/shared", "9p", 0, "trans=virtio,version=9p2000.L,msize=262144") < 0 && errno != EBUSY)
                return -errno;
        int fd = open("/shared/from-guest", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
                return -errno;
        int r = write(fd, "from-guest\n", 11) == 11 ? 0 : -EIO;
        close(fd);
        return r;
}

static void handle_request(int fd, uint32_t id, const uint8_t *payload, size_t len) {
        char req[4096];
        snprintf(req, sizeof req, "%.*s", (int) (len < sizeof req - 1 ? len : sizeof req - 1), (const char *) payload);
        /* Good enough for a test: the host's JSON is compact. */
        if (strstr(req, "\"Method\":\"Ping\"")) {
                send_frame(fd, AGENT_FRAME_RESPONSE, id,
                           "{\"Result\":{\"Version\":1,\"Agent\":\"katad-qemu-test-init\"}}");
        } else if (strstr(req, "\"Method\":\"Probe9p\"")) {
                int r = probe_9p();
                char buf[256];
                if (r < 0)
                        snprintf(buf, sizeof buf, "{\"Error\":{\"Errno\":%d,\"Message\":\"9p: %s\"}}", -r,
                                 strerror(-r));
                else
                        snprintf(buf, sizeof buf, "{\"Result\":{\"Written\":true}}");
                send_frame(fd, AGENT_FRAME_RESPONSE, id, buf);
        } else if (strstr(req, "\"Method\":\"Shutdown\"")) {
                send_frame(fd, AGENT_FRAME_RESPONSE, id, "{\"Result\":{}}");
                say("shutting down");
                sync();
                reboot(RB_AUTOBOOT);
        } else {
                send_frame(fd, AGENT_FRAME_RESPONSE, id,
                           "{\"Error\":{\"Errno\":38,\"Message\":\"not implemented by the test init\"}}");
        }
}

int main(void) {
        mkdir("/dev", 0755);
        mkdir("/proc", 0555);
        mkdir("/sys", 0555);
        mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
        mount("proc", "/proc", "proc", 0, NULL);
        mount("sysfs", "/sys", "sysfs", 0, NULL);
        int console = open("/dev/console", O_WRONLY);
        if (console >= 0 && console != STDERR_FILENO)
                dup2(console, STDERR_FILENO);
        say("reached /init");
        load_modules();
        char cmdline[4096] = "";
        int cfd = open("/proc/cmdline", O_RDONLY);
        if (cfd >= 0) {
                ssize_t n = read(cfd, cmdline, sizeof cmdline - 1);
                cmdline[n > 0 ? n : 0] = 0;
                close(cfd);
        }
        if (strstr(cmdline, "katad.test=silent")) {
                say("staying silent");
                for (;;)
                        pause();
        }

        int fd = open_agent_port();
        if (fd < 0) {
                say("no %s port; rebooting", AGENT_PORT_NAME);
                reboot(RB_AUTOBOOT);
                return 1;
        }
        agent_frame_reader_t reader = {0};
        for (;;) {
                uint8_t buf[65536];
                ssize_t n = read(fd, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        /* No host connected to the chardev: wait for one. */
                        usleep(20000);
                        continue;
                }
                if (agent_frame_reader_feed(&reader, buf, (size_t) n) < 0)
                        agent_frame_reader_reset(&reader);
                for (;;) {
                        agent_frame_header_t h;
                        const uint8_t *payload;
                        int r = agent_frame_reader_next(&reader, &h, &payload);
                        if (r < 0) {
                                say("protocol error %d; resetting", r);
                                agent_frame_reader_reset(&reader);
                                break;
                        }
                        if (r == 0)
                                break;
                        if (h.type == AGENT_FRAME_HELLO) {
                                send_frame(fd, AGENT_FRAME_HELLO, 0,
                                           "{\"Version\":1,\"Agent\":\"katad-qemu-test-init\"}");
                        } else if (h.type == AGENT_FRAME_REQUEST) {
                                handle_request(fd, h.id, payload, h.length);
                        }
                }
        }
}
