/* ListProcesses (see ps.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "json-util.h"
#include "macro.h"
#include "ps.h"
#include "util.h"

typedef struct proc_info {
        pid_t pid, ns_pid, ppid;
        unsigned uid, gid;
        char comm[64];
        char state;
        int session, pgrp, tpgid, tty_nr;
        long threads;
        unsigned long long utime, stime, starttime, vsize, rss;
        char *cmdline;
} proc_info_t;

static int read_proc(pid_t pid, const char *file, char **ret) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/%s", (int) pid, file);
        return read_file(path, 1 << 20, ret, NULL);
}

static int proc_info_read(pid_t pid, proc_info_t *ret) {
        proc_info_t p = { .pid = pid, .ns_pid = pid };
        _cleanup_free_ char *stat = NULL, *status = NULL;
        int r = read_proc(pid, "stat", &stat);
        if (r < 0)
                return r;
        char *open = strchr(stat, '('), *close = strrchr(stat, ')');
        if (!open || !close || close < open)
                return -EBADMSG;
        snprintf(p.comm, sizeof p.comm, "%.*s", (int) (close - open - 1), open + 1);
        int ppid;
        if (sscanf(close + 2, "%c %d %d %d %d %d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %ld %*d %llu %llu %llu",
                   &p.state, &ppid, &p.pgrp, &p.session, &p.tty_nr, &p.tpgid, &p.utime, &p.stime, &p.threads,
                   &p.starttime, &p.vsize, &p.rss) != 12)
                return -EBADMSG;
        p.ppid = ppid;
        if (read_proc(pid, "status", &status) >= 0) {
                char *line;
                if ((line = strstr(status, "\nUid:")))
                        sscanf(line + 5, "%u", &p.uid);
                if ((line = strstr(status, "\nGid:")))
                        sscanf(line + 5, "%u", &p.gid);
                if ((line = strstr(status, "\nNSpid:"))) {
                        /* The last number is the pid in the innermost namespace: the container's. */
                        line += 7;
                        char *end = strchr(line, '\n');
                        if (end)
                                *end = 0;
                        char *last = strrchr(line, '\t');
                        int v;
                        if (last && sscanf(last, "%d", &v) == 1)
                                p.ns_pid = v;
                }
        }
        size_t len = 0;
        char *cmd = NULL;
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/cmdline", (int) pid);
        if (read_file(path, 64 * 1024, &cmd, &len) >= 0) {
                for (size_t i = 0; i < len; i++)
                        if (cmd[i] == 0)
                                cmd[i] = ' ';
                while (len > 0 && cmd[len - 1] == ' ')
                        cmd[--len] = 0;
        }
        if (!cmd || !*cmd) {
                free(cmd);
                if (asprintf(&cmd, "[%s]", p.comm) < 0)
                        cmd = NULL;
        }
        p.cmdline = cmd;
        *ret = p;
        return 0;
}

/* The container's /etc/passwd, read through its root without following symlinks out of it. */
static char *container_passwd(pid_t init_pid) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/root", (int) init_pid);
        _cleanup_close_ int root = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
                return NULL;
        struct open_how how = { .flags = O_RDONLY | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
        _cleanup_close_ int fd = (int) syscall(SYS_openat2, root, "etc/passwd", &how, sizeof how);
        if (fd < 0)
                return NULL;
        char *buf = malloc(256 * 1024 + 1);
        if (!buf)
                return NULL;
        size_t len = 0;
        ssize_t n;
        while (len < 256 * 1024 && (n = read(fd, buf + len, 256 * 1024 - len)) > 0)
                len += (size_t) n;
        buf[len] = 0;
        return buf;
}

static void user_name(const char *passwd, unsigned uid, char *buf, size_t size) {
        snprintf(buf, size, "%u", uid);
        for (const char *line = passwd; line && *line;) {
                const char *nl = strchr(line, '\n');
                size_t n = nl ? (size_t) (nl - line) : strlen(line);
                char entry[512], *f[4] = { 0 };
                if (n < sizeof entry) {
                        memcpy(entry, line, n);
                        entry[n] = 0;
                        char *s = entry;
                        for (int i = 0; i < 4 && s; i++) {
                                f[i] = s;
                                s = strchr(s, ':');
                                if (s)
                                        *s++ = 0;
                        }
                        unsigned u;
                        if (f[2] && sscanf(f[2], "%u", &u) == 1 && u == uid) {
                                snprintf(buf, size, "%s", f[0]);
                                return;
                        }
                }
                line = nl ? nl + 1 : NULL;
        }
}

static void tty_name(int tty_nr, char *buf, size_t size) {
        unsigned major = ((unsigned) tty_nr >> 8) & 0xfff,
                 minor = ((unsigned) tty_nr & 0xff) | (((unsigned) tty_nr >> 12) & 0xfff00);
        if (tty_nr == 0)
                snprintf(buf, size, "?");
        else if (major >= 136 && major <= 143)
                snprintf(buf, size, "pts/%u", (major - 136) * 256 + minor);
        else if (major == 4 && minor < 64)
                snprintf(buf, size, "tty%u", minor);
        else if (major == 4)
                snprintf(buf, size, "ttyS%u", minor - 64);
        else if (major == 5 && minor == 1)
                snprintf(buf, size, "console");
        else
                snprintf(buf, size, "%u,%u", major, minor);
}

static void format_duration(unsigned long long secs, bool elapsed, char *buf, size_t size) {
        unsigned long long d = secs / 86400, h = secs / 3600 % 24, m = secs / 60 % 60, s = secs % 60;
        if (elapsed) {
                if (d)
                        snprintf(buf, size, "%llu-%02llu:%02llu:%02llu", d, h, m, s);
                else if (h)
                        snprintf(buf, size, "%02llu:%02llu:%02llu", h, m, s);
                else
                        snprintf(buf, size, "%02llu:%02llu", m, s);
        } else if (d)
                snprintf(buf, size, "%llu-%02llu:%02llu:%02llu", d, h, m, s);
        else
                snprintf(buf, size, "%02llu:%02llu:%02llu", h, m, s);
}

typedef struct clock_info {
        unsigned long long hz, btime, page_kib;
        double uptime;
        time_t now;
} clock_info_t;

static void clock_info_read(clock_info_t *c) {
        long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
        c->hz = hz > 0 ? (unsigned long long) hz : 100;
        c->page_kib = page > 0 ? (unsigned long long) page / 1024 : 4;
        c->now = time(NULL);
        c->btime = 0;
        c->uptime = 0;
        _cleanup_free_ char *stat = NULL, *up = NULL;
        if (read_file("/proc/stat", 1 << 20, &stat, NULL) >= 0) {
                char *b = strstr(stat, "\nbtime ");
                if (b)
                        sscanf(b + 7, "%llu", &c->btime);
        }
        if (read_file("/proc/uptime", 256, &up, NULL) >= 0)
                sscanf(up, "%lf", &c->uptime);
}

static char *cell(const proc_info_t *p, ps_field_t f, const proc_info_t *all, size_t n, const char *passwd,
                  const clock_info_t *c) {
        char buf[128];
        double started = (double) p->starttime / (double) c->hz;
        unsigned long long cpu = (p->utime + p->stime) / c->hz;
        switch (f) {
        case PS_PID:
                snprintf(buf, sizeof buf, "%d", (int) p->ns_pid);
                break;
        case PS_PPID: {
                int ppid = 0;
                for (size_t i = 0; i < n; i++)
                        if (all[i].pid == p->ppid)
                                ppid = all[i].ns_pid;
                snprintf(buf, sizeof buf, "%d", ppid);
                break;
        }
        case PS_USER:
                user_name(passwd, p->uid, buf, sizeof buf);
                break;
        case PS_UID:
                snprintf(buf, sizeof buf, "%u", p->uid);
                break;
        case PS_GID:
                snprintf(buf, sizeof buf, "%u", p->gid);
                break;
        case PS_COMM:
                return strdup(p->comm);
        case PS_ARGS:
        case PS_CMD:
                return strdup(p->cmdline ? p->cmdline : p->comm);
        case PS_STAT:
                snprintf(buf, sizeof buf, "%c%s%s%s", p->state, p->session == p->pid ? "s" : "",
                         p->threads > 1 ? "l" : "", p->tpgid > 0 && p->tpgid == p->pgrp ? "+" : "");
                break;
        case PS_RSS:
                snprintf(buf, sizeof buf, "%llu", p->rss * c->page_kib);
                break;
        case PS_VSZ:
                snprintf(buf, sizeof buf, "%llu", p->vsize / 1024);
                break;
        case PS_TIME:
                format_duration(cpu, false, buf, sizeof buf);
                break;
        case PS_ETIME:
                format_duration(c->uptime > started ? (unsigned long long) (c->uptime - started) : 0, true, buf,
                                sizeof buf);
                break;
        case PS_C: {
                double run = c->uptime - started;
                unsigned pct = run > 0 ? (unsigned) ((double) (p->utime + p->stime) / (double) c->hz * 100.0 / run) : 0;
                snprintf(buf, sizeof buf, "%u", pct > 99 ? 99 : pct);
                break;
        }
        case PS_STIME: {
                time_t start = (time_t) (c->btime + p->starttime / c->hz);
                struct tm tm, now;
                gmtime_r(&start, &tm);
                gmtime_r(&c->now, &now);
                if (c->now - start < 86400 && tm.tm_yday == now.tm_yday)
                        strftime(buf, sizeof buf, "%H:%M", &tm);
                else if (tm.tm_year == now.tm_year)
                        strftime(buf, sizeof buf, "%b%d", &tm);
                else
                        strftime(buf, sizeof buf, "%Y", &tm);
                break;
        }
        case PS_TTY:
                tty_name(p->tty_nr, buf, sizeof buf);
                break;
        default:
                snprintf(buf, sizeof buf, "?");
        }
        return strdup(buf);
}

static int by_ns_pid(const void *a, const void *b) {
        const proc_info_t *x = a, *y = b;
        return (x->ns_pid > y->ns_pid) - (x->ns_pid < y->ns_pid);
}

static json_t *format_table(const ps_spec_t *ps, json_t *rows) {
        size_t width[PS_COLUMNS_MAX];
        for (size_t k = 0; k < ps->n_columns; k++)
                width[k] = strlen(ps->titles[k]);
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row) for (size_t k = 0; k < ps->n_columns; k++) {
                size_t w = strlen(json_string_value(json_array_get(row, k)));
                if (w > width[k])
                        width[k] = w;
        }
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        if (!f)
                return NULL;
        /* Every column is padded to its widest cell, except the last (a command line). */
        for (size_t k = 0; k < ps->n_columns; k++) {
                if (k + 1 < ps->n_columns)
                        fprintf(f, "%-*s ", (int) width[k], ps->titles[k]);
                else
                        fprintf(f, "%s\n", ps->titles[k]);
        }
        json_array_foreach(rows, i, row) for (size_t k = 0; k < ps->n_columns; k++) {
                const char *v = json_string_value(json_array_get(row, k));
                if (k + 1 < ps->n_columns)
                        fprintf(f, "%-*s ", (int) width[k], v);
                else
                        fprintf(f, "%s\n", v);
        }
        fclose(f);
        json_t *result = json_pack("{s:s}", "Output", out ? out : "");
        free(out);
        return result;
}

int ps_list(const ps_spec_t *ps, const pid_t *pids, size_t n, pid_t init_pid, json_t **ret) {
        proc_info_t *info = calloc(n ? n : 1, sizeof *info);
        if (!info)
                return -ENOMEM;
        size_t count = 0;
        for (size_t i = 0; i < n; i++)
                if (proc_info_read(pids[i], &info[count]) >= 0)
                        count++;
        qsort(info, count, sizeof *info, by_ns_pid);
        clock_info_t clk;
        clock_info_read(&clk);
        _cleanup_free_ char *passwd = init_pid > 0 ? container_passwd(init_pid) : NULL;
        json_t *titles = json_array(), *rows = json_array();
        int r = titles && rows ? 0 : -ENOMEM;
        for (size_t k = 0; r >= 0 && k < ps->n_columns; k++)
                json_array_append_new(titles, json_string(ps->titles[k]));
        for (size_t i = 0; r >= 0 && i < count; i++) {
                json_t *row = json_array();
                for (size_t k = 0; row && k < ps->n_columns; k++) {
                        char *v = cell(&info[i], ps->fields[k], info, count, passwd, &clk);
                        json_array_append_new(row, json_string(v ? v : ""));
                        free(v);
                }
                if (!row || json_array_append_new(rows, row) < 0)
                        r = -ENOMEM;
        }
        for (size_t i = 0; i < count; i++)
                free(info[i].cmdline);
        free(info);
        json_t *result = NULL;
        if (r >= 0)
                result = ps->table ? format_table(ps, rows)
                                   : json_pack("{s:O, s:O}", "Titles", titles, "Processes", rows);
        json_decref(titles);
        json_decref(rows);
        if (!result)
                return -ENOMEM;
        *ret = result;
        return 0;
}
