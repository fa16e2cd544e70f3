/* The filesystem store backend: one file per record under dir/records/, named by the percent-encoded
 * key, replaced atomically; transactions are buffered in memory and committed through dir/journal. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "store-internal.h"

/* Encoded bytes per path component. Keys are up to 512 bytes and encoding triples some bytes, so a
 * long key is split over nested directories (each named with a trailing '+') to stay below NAME_MAX. */
#define COMPONENT_MAX 240
/* Worst case: 512 bytes encoded as %XX, plus a "+/" per component. */
#define RELATIVE_PATH_MAX (STORE_KEY_MAX * 3 + 2 * (STORE_KEY_MAX * 3 / COMPONENT_MAX + 1) + 1)

/* Encoded names never start with '.', so this cannot collide with a record and listing skips it. */
#define TEMPORARY_NAME ".#katad-tmp"
#define JOURNAL_NAME "journal"
#define JOURNAL_HEADER "katad-store-journal 1\n"
#define JOURNAL_END "end\n"

typedef struct fs_store {
        char *dir;
        int dir_fd;
        int records_fd; /* holds the flock that keeps a second katad out */
        store_overlay_t pending;
        bool in_transaction;
        /* A commit failed after its journal was written: it must be completed before anything else. */
        bool journal_pending;
} fs_store_t;

static void fs_store_free(fs_store_t *f) {
        if (!f)
                return;
        if (f->records_fd >= 0)
                close(f->records_fd);
        if (f->dir_fd >= 0)
                close(f->dir_fd);
        store_overlay_clear(&f->pending);
        free(f->dir);
        free(f);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(fs_store_t *, fs_store_free);

static bool byte_is_plain(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
               c == '-';
}

/* Writes the path of key's file relative to records/. Each component encodes a leading '.' too, so
 * no component is "." or ".." and none looks like the temporary file. */
static void key_to_path(const char *key, char ret[static RELATIVE_PATH_MAX]) {
        static const char hex[] = "0123456789ABCDEF";
        char *p = ret;
        size_t component = 0;
        for (const char *k = key; *k; k++) {
                unsigned char c = (unsigned char) *k;
                bool plain = byte_is_plain(c) && !(component == 0 && c == '.');
                if (component + (plain ? 1 : 3) > COMPONENT_MAX) {
                        *p++ = '+';
                        *p++ = '/';
                        component = 0;
                        plain = byte_is_plain(c) && c != '.';
                }
                if (plain)
                        *p++ = (char) c;
                else {
                        *p++ = '%';
                        *p++ = hex[c >> 4];
                        *p++ = hex[c & 15];
                }
                component += plain ? 1 : 3;
        }
        *p = 0;
}

static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* The key stored at path, or -EINVAL when path is not exactly what key_to_path makes of some key
 * (a stray file, lower-case escapes, a different split): such files are not records. */
static int path_to_key(const char *path, char ret[static STORE_KEY_MAX + 1]) {
        size_t n = 0;
        for (const char *p = path; *p;) {
                if (n >= STORE_KEY_MAX)
                        return -EINVAL;
                if (p[0] == '+' && p[1] == '/') {
                        p += 2;
                        continue;
                }
                if (*p == '%') {
                        int hi = hex_value(p[1]), lo = hi >= 0 ? hex_value(p[2]) : -1;
                        if (lo < 0)
                                return -EINVAL;
                        ret[n++] = (char) (hi << 4 | lo);
                        p += 3;
                } else if (byte_is_plain(*p))
                        ret[n++] = *p++;
                else
                        return -EINVAL;
        }
        ret[n] = 0;
        if (n == 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) ret[i] < 0x20 || (unsigned char) ret[i] > 0x7e)
                        return -EINVAL;

        char canonical[RELATIVE_PATH_MAX];
        key_to_path(ret, canonical);
        return streq(canonical, path) ? 0 : -EINVAL;
}

static int fsync_fd(int fd) {
        return fsync(fd) < 0 ? -errno : 0;
}

static int write_all(int fd, const void *data, size_t len) {
        const char *p = data;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

/* Replaces dir_fd/name with data so that a reader or a crash sees the old or the new contents. The
 * caller syncs the directory. A fixed temporary name is enough: the flock makes us the only writer. */
static int write_file_atomic_at(int dir_fd, const char *name, const void *data, size_t len) {
        _cleanup_close_ int fd = openat(dir_fd, TEMPORARY_NAME, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                                        0600);
        if (fd < 0)
                return -errno;
        int r = write_all(fd, data, len);
        if (r >= 0)
                r = fsync_fd(fd);
        if (r >= 0 && renameat(dir_fd, TEMPORARY_NAME, dir_fd, name) < 0)
                r = -errno;
        if (r < 0)
                (void) unlinkat(dir_fd, TEMPORARY_NAME, 0);
        return r;
}

/* Opens the directory holding the file at path (relative to records/), creating the nested
 * directories of a long key when asked; *ret_name points at the last component inside path. */
static int open_parent(fs_store_t *f, const char *path, bool create, int *ret_fd, const char **ret_name) {
        _cleanup_close_ int fd = fcntl(f->records_fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;

        const char *p = path;
        for (const char *slash; (slash = strchr(p, '/')); p = slash + 1) {
                char component[NAME_MAX + 1];
                size_t n = (size_t) (slash - p);
                if (n >= sizeof component)
                        return -ENAMETOOLONG;
                memcpy(component, p, n);
                component[n] = 0;

                if (create) {
                        if (mkdirat(fd, component, 0700) >= 0) {
                                int r = fsync_fd(fd);
                                if (r < 0)
                                        return r;
                        } else if (errno != EEXIST)
                                return -errno;
                }
                int child = openat(fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (child < 0)
                        return errno == ENOTDIR ? -ENOENT : -errno;
                close(fd);
                fd = child;
        }

        *ret_fd = TAKE_FD(fd);
        *ret_name = p;
        return 0;
}

/* sync_records: also fsync records/ itself; a commit leaves that for the end of the batch. Nested
 * directories of long keys are always synced. */
static int write_record(fs_store_t *f, const char *key, const void *value, size_t len, bool sync_records) {
        char path[RELATIVE_PATH_MAX];
        key_to_path(key, path);

        _cleanup_close_ int parent = -1;
        const char *name;
        int r = open_parent(f, path, true, &parent, &name);
        if (r < 0)
                return r;
        r = write_file_atomic_at(parent, name, value, len);
        if (r < 0)
                return r;
        if (sync_records || name != path)
                return fsync_fd(parent);
        return 0;
}

/* Removes the now possibly empty directories of a long key; leftovers are harmless, so errors are
 * ignored and nothing is synced. */
static void remove_empty_parents(fs_store_t *f, const char *path) {
        char dir[RELATIVE_PATH_MAX];
        strcpy(dir, path);
        for (char *slash; (slash = strrchr(dir, '/'));) {
                *slash = 0;
                if (unlinkat(f->records_fd, dir, AT_REMOVEDIR) < 0)
                        return;
        }
}

static int delete_record(fs_store_t *f, const char *key, bool sync_records) {
        char path[RELATIVE_PATH_MAX];
        key_to_path(key, path);

        _cleanup_close_ int parent = -1;
        const char *name;
        int r = open_parent(f, path, false, &parent, &name);
        if (r < 0)
                return r;
        if (unlinkat(parent, name, 0) < 0)
                return errno == EISDIR ? -ENOENT : -errno;
        if (sync_records || name != path) {
                r = fsync_fd(parent);
                if (r < 0)
                        return r;
        }
        if (name != path)
                remove_empty_parents(f, path);
        return 0;
}

static int record_exists(fs_store_t *f, const char *key) {
        char path[RELATIVE_PATH_MAX];
        key_to_path(key, path);
        struct stat st;
        if (fstatat(f->records_fd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
        return S_ISREG(st.st_mode);
}

static int read_record(fs_store_t *f, const char *key, char **ret_value, size_t *ret_len) {
        char path[RELATIVE_PATH_MAX];
        key_to_path(key, path);

        _cleanup_close_ int fd = openat(f->records_fd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return errno == ENOENT || errno == ENOTDIR ? -ENOENT : -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADMSG;
        if (st.st_size > STORE_VALUE_MAX)
                return -EFBIG;

        /* Records are replaced by rename, never written in place, so the size cannot change under us. */
        size_t size = (size_t) st.st_size, len = 0;
        _cleanup_free_ char *value = malloc(size + 1);
        if (!value)
                return -ENOMEM;
        while (len < size) {
                ssize_t n = read(fd, value + len, size - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        value[len] = 0;
        *ret_value = TAKE_PTR(value);
        *ret_len = len;
        return 0;
}

/* Reads "<decimal> " or "<decimal>\n" (as told by terminator) from *p. */
static int parse_length(const char **p, const char *end, char terminator, size_t *ret) {
        const char *s = *p;
        size_t v = 0;
        if (s >= end || *s < '0' || *s > '9')
                return -EBADMSG;
        for (; s < end && *s >= '0' && *s <= '9'; s++) {
                if (v > (SIZE_MAX - 9) / 10)
                        return -EBADMSG;
                v = v * 10 + (size_t) (*s - '0');
        }
        if (s >= end || *s != terminator)
                return -EBADMSG;
        *p = s + 1;
        *ret = v;
        return 0;
}

static bool consume(const char **p, const char *end, const char *word) {
        size_t n = strlen(word);
        if ((size_t) (end - *p) < n || memcmp(*p, word, n) != 0)
                return false;
        *p += n;
        return true;
}

/* Walks a journal (format in docs/store.md): checks it when apply is false, performs its operations
 * when apply is true. Operations are idempotent, so replaying a half-applied journal is safe. */
static int journal_walk(fs_store_t *f, const char *data, size_t size, bool apply) {
        const char *p = data, *end = data + size;
        if (!consume(&p, end, JOURNAL_HEADER))
                return -EBADMSG;

        for (;;) {
                if (consume(&p, end, JOURNAL_END))
                        return p == end ? 0 : -EBADMSG;

                bool save;
                size_t key_len, value_len = 0;
                int r;
                if (consume(&p, end, "save ")) {
                        save = true;
                        r = parse_length(&p, end, ' ', &key_len);
                        if (r >= 0)
                                r = parse_length(&p, end, '\n', &value_len);
                } else if (consume(&p, end, "delete ")) {
                        save = false;
                        r = parse_length(&p, end, '\n', &key_len);
                } else
                        return -EBADMSG;
                if (r < 0)
                        return r;
                if (key_len == 0 || key_len > STORE_KEY_MAX || value_len > STORE_VALUE_MAX ||
                    (size_t) (end - p) < key_len + value_len + 1 || p[key_len + value_len] != '\n')
                        return -EBADMSG;

                char key[STORE_KEY_MAX + 1];
                memcpy(key, p, key_len);
                key[key_len] = 0;
                for (size_t i = 0; i < key_len; i++)
                        if ((unsigned char) key[i] < 0x20 || (unsigned char) key[i] > 0x7e)
                                return -EBADMSG;
                const char *value = p + key_len;
                p += key_len + value_len + 1;

                if (!apply)
                        continue;
                if (save)
                        r = write_record(f, key, value, value_len, false);
                else {
                        r = delete_record(f, key, false);
                        if (r == -ENOENT)
                                r = 0;
                }
                if (r < 0)
                        return log_error_errno(r, "Failed to %s record %s from journal: %m",
                                               save ? "write" : "delete", key);
        }
}

/* Completes a commit whose journal was written but not (fully) applied: at open after a crash, or
 * after a commit that failed half way. */
static int fs_recover(fs_store_t *f) {
        _cleanup_close_ int fd = openat(f->dir_fd, JOURNAL_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                if (errno != ENOENT)
                        return log_error_errno(errno, "Failed to open journal in %s: %m", f->dir);
                f->journal_pending = false;
                return 0;
        }

        struct stat st;
        if (fstat(fd, &st) < 0)
                return log_error_errno(errno, "Failed to stat journal in %s: %m", f->dir);
        size_t size = (size_t) st.st_size, len = 0;
        _cleanup_free_ char *data = malloc(size + 1);
        if (!data)
                return -ENOMEM;
        while (len < size) {
                ssize_t n = read(fd, data + len, size - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_error_errno(errno, "Failed to read journal in %s: %m", f->dir);
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }

        /* Checked in full before applying anything: the journal is written atomically, so a bad one
         * is not a torn write but damage that a person should look at. */
        int r = journal_walk(f, data, len, false);
        if (r < 0)
                return log_error_errno(r, "Journal %s/" JOURNAL_NAME " is corrupt; move it away to discard the "
                                          "interrupted commit",
                                       f->dir);
        r = journal_walk(f, data, len, true);
        if (r < 0)
                return r;

        r = fsync_fd(f->records_fd);
        if (r < 0)
                return log_error_errno(r, "Failed to sync %s/records: %m", f->dir);
        if (unlinkat(f->dir_fd, JOURNAL_NAME, 0) < 0)
                return log_error_errno(errno, "Failed to remove journal in %s: %m", f->dir);
        r = fsync_fd(f->dir_fd);
        if (r < 0)
                return log_error_errno(r, "Failed to sync %s: %m", f->dir);

        f->journal_pending = false;
        log_info("Completed an interrupted commit from the journal in %s", f->dir);
        return 0;
}

static int fs_ensure_recovered(fs_store_t *f) {
        return f->journal_pending ? fs_recover(f) : 0;
}

static int fs_open(const char *dir, void **ret_data) {
        _cleanup_(fs_store_freep) fs_store_t *f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        f->dir_fd = f->records_fd = -1;
        f->dir = strdup(dir);
        if (!f->dir)
                return -ENOMEM;

        f->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (f->dir_fd < 0)
                return log_error_errno(errno, "Failed to open store directory %s: %m", dir);

        if (mkdirat(f->dir_fd, "records", 0700) >= 0) {
                int r = fsync_fd(f->dir_fd);
                if (r < 0)
                        return log_error_errno(r, "Failed to sync %s: %m", dir);
        } else if (errno != EEXIST)
                return log_error_errno(errno, "Failed to create %s/records: %m", dir);

        f->records_fd = openat(f->dir_fd, "records", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (f->records_fd < 0)
                return log_error_errno(errno, "Failed to open %s/records: %m", dir);

        if (flock(f->records_fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno == EWOULDBLOCK)
                        return log_error_errno(EBUSY, "Store %s is already open elsewhere", dir);
                return log_error_errno(errno, "Failed to lock %s/records: %m", dir);
        }

        int r = fs_recover(f);
        if (r < 0)
                return r;

        *ret_data = TAKE_PTR(f);
        return 0;
}

static void fs_close(void *data) {
        fs_store_free(data);
}

static int fs_save(void *data, const char *key, const void *value, size_t len) {
        fs_store_t *f = data;
        int r = fs_ensure_recovered(f);
        if (r < 0)
                return r;
        if (f->in_transaction)
                return store_overlay_put(&f->pending, key, value, len, false);

        r = write_record(f, key, value, len, true);
        if (r < 0)
                return log_debug_errno(r, "Failed to write record %s in %s: %m", key, f->dir);
        return 0;
}

/* The value of key as this transaction sees it. */
static int fs_get(fs_store_t *f, const char *key, char **ret_value, size_t *ret_len) {
        const store_pending_t *p = f->in_transaction ? store_overlay_find(&f->pending, key) : NULL;
        if (!p)
                return read_record(f, key, ret_value, ret_len);
        if (p->deleted)
                return -ENOENT;
        char *value = store_value_dup(p->value, p->len);
        if (!value)
                return -ENOMEM;
        *ret_value = value;
        *ret_len = p->len;
        return 0;
}

static int fs_load(void *data, const char *key, char **ret_value, size_t *ret_len) {
        fs_store_t *f = data;
        int r = fs_ensure_recovered(f);
        if (r < 0)
                return r;
        r = fs_get(f, key, ret_value, ret_len);
        if (r < 0 && r != -ENOENT)
                return log_debug_errno(r, "Failed to read record %s in %s: %m", key, f->dir);
        return r;
}

static int fs_delete(void *data, const char *key) {
        fs_store_t *f = data;
        int r = fs_ensure_recovered(f);
        if (r < 0)
                return r;

        if (f->in_transaction) {
                const store_pending_t *p = store_overlay_find(&f->pending, key);
                if (p) {
                        if (p->deleted)
                                return -ENOENT;
                } else {
                        r = record_exists(f, key);
                        if (r <= 0)
                                return r < 0 ? r : -ENOENT;
                }
                return store_overlay_put(&f->pending, key, NULL, 0, true);
        }

        r = delete_record(f, key, true);
        if (r < 0 && r != -ENOENT)
                return log_debug_errno(r, "Failed to delete record %s in %s: %m", key, f->dir);
        return r;
}

typedef struct key_list {
        char **keys;
        size_t n_keys;
        size_t n_allocated;
} key_list_t;

static void key_list_done(key_list_t *l) {
        for (size_t i = 0; i < l->n_keys; i++)
                free(l->keys[i]);
        free(l->keys);
}

static int key_list_add(key_list_t *l, const char *key) {
        if (l->n_keys == l->n_allocated) {
                size_t n = l->n_allocated ? l->n_allocated * 2 : 64;
                char **keys = reallocarray(l->keys, n, sizeof *keys);
                if (!keys)
                        return -ENOMEM;
                l->keys = keys;
                l->n_allocated = n;
        }
        l->keys[l->n_keys] = strdup(key);
        if (!l->keys[l->n_keys])
                return -ENOMEM;
        l->n_keys++;
        return 0;
}

static int compare_keys(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

/* Adds the keys of the records below dir_fd (which is records/ or a nested directory at path) that
 * start with prefix. Anything that is not a canonically named record is skipped. */
static int collect_keys(int dir_fd, char path[static RELATIVE_PATH_MAX], const char *prefix, key_list_t *l) {
        int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        _cleanup_(closedirp) DIR *d = fdopendir(fd);
        if (!d) {
                int r = -errno;
                close(fd);
                return r;
        }

        size_t path_len = strlen(path);
        for (;;) {
                errno = 0;
                struct dirent *de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                return -errno;
                        return 0;
                }
                if (de->d_name[0] == '.')
                        continue;
                size_t name_len = strlen(de->d_name);
                if (path_len + name_len + 2 > RELATIVE_PATH_MAX)
                        continue;

                unsigned char type = de->d_type;
                if (type == DT_UNKNOWN) {
                        struct stat st;
                        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                continue;
                        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
                }

                memcpy(path + path_len, de->d_name, name_len + 1);
                int r = 0;
                if (type == DT_DIR && de->d_name[name_len - 1] == '+') {
                        _cleanup_close_ int child = openat(dirfd(d), de->d_name,
                                                           O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (child >= 0) {
                                strcpy(path + path_len + name_len, "/");
                                r = collect_keys(child, path, prefix, l);
                        }
                } else if (type == DT_REG) {
                        char key[STORE_KEY_MAX + 1];
                        if (path_to_key(path, key) >= 0 && store_key_has_prefix(key, prefix))
                                r = key_list_add(l, key);
                }
                path[path_len] = 0;
                if (r < 0)
                        return r;
        }
}

static int fs_list(void *data, const char *prefix, store_list_cb cb, void *userdata) {
        fs_store_t *f = data;
        int r = fs_ensure_recovered(f);
        if (r < 0)
                return r;

        _cleanup_(key_list_done) key_list_t l = {};
        char path[RELATIVE_PATH_MAX] = "";
        r = collect_keys(f->records_fd, path, prefix, &l);
        if (r < 0)
                return log_debug_errno(r, "Failed to read %s/records: %m", f->dir);

        if (f->in_transaction)
                for (const store_pending_t *p = NULL; (p = store_overlay_next(&f->pending, prefix, p ? p->key : NULL));)
                        if (!p->deleted) {
                                r = key_list_add(&l, p->key);
                                if (r < 0)
                                        return r;
                        }

        if (l.n_keys > 1)
                qsort(l.keys, l.n_keys, sizeof *l.keys, compare_keys);

        /* Each value is read when its turn comes, so changes the callback makes are seen and a key
         * it deleted is skipped. */
        for (size_t i = 0; i < l.n_keys; i++) {
                if (i > 0 && streq(l.keys[i], l.keys[i - 1]))
                        continue;
                _cleanup_free_ char *value = NULL;
                size_t len;
                r = fs_get(f, l.keys[i], &value, &len);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return log_debug_errno(r, "Failed to read record %s in %s: %m", l.keys[i], f->dir);
                r = cb(l.keys[i], value, len, userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int fs_begin(void *data) {
        fs_store_t *f = data;
        int r = fs_ensure_recovered(f);
        if (r < 0)
                return r;
        f->in_transaction = true;
        return 0;
}

static int journal_build(const store_overlay_t *o, char **ret, size_t *ret_size) {
        size_t size = strlen(JOURNAL_HEADER) + strlen(JOURNAL_END);
        for (size_t i = 0; i < o->n_entries; i++)
                /* Room for the longer "save <n> <n>\n" line with two 20-digit numbers. */
                size += 5 + 2 * 21 + strlen(o->entries[i].key) + o->entries[i].len + 1;

        _cleanup_free_ char *buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        char *p = stpcpy(buf, JOURNAL_HEADER);
        for (size_t i = 0; i < o->n_entries; i++) {
                const store_pending_t *e = &o->entries[i];
                size_t key_len = strlen(e->key);
                if (e->deleted)
                        p += sprintf(p, "delete %zu\n", key_len);
                else
                        p += sprintf(p, "save %zu %zu\n", key_len, e->len);
                p = mempcpy(p, e->key, key_len);
                if (!e->deleted)
                        p = mempcpy(p, e->value, e->len);
                *p++ = '\n';
        }
        p = stpcpy(p, JOURNAL_END);

        *ret_size = (size_t) (p - buf);
        *ret = TAKE_PTR(buf);
        return 0;
}

static int apply_pending(fs_store_t *f) {
        for (size_t i = 0; i < f->pending.n_entries; i++) {
                const store_pending_t *e = &f->pending.entries[i];
                int r;
                if (e->deleted) {
                        r = delete_record(f, e->key, false);
                        if (r == -ENOENT)
                                r = 0;
                } else
                        r = write_record(f, e->key, e->value, e->len, false);
                if (r < 0)
                        return r;
        }
        int r = fsync_fd(f->records_fd);
        if (r < 0)
                return r;
        if (unlinkat(f->dir_fd, JOURNAL_NAME, 0) < 0)
                return -errno;
        return fsync_fd(f->dir_fd);
}

/* Makes the pending writes durable through the journal, then applies them. */
static int commit_pending(fs_store_t *f) {
        _cleanup_free_ char *journal = NULL;
        size_t size;
        int r = journal_build(&f->pending, &journal, &size);
        if (r < 0)
                return r;

        r = write_file_atomic_at(f->dir_fd, JOURNAL_NAME, journal, size);
        if (r >= 0)
                r = fsync_fd(f->dir_fd);
        if (r < 0) {
                (void) unlinkat(f->dir_fd, JOURNAL_NAME, 0);
                return log_debug_errno(r, "Failed to write journal in %s: %m", f->dir);
        }

        /* With the journal on disk the commit has happened: a crash from here on is completed by the
         * next open, a failure by the next call, which recovers before it reads or writes anything.
         * So no caller can see the state before the commit any more, and it is reported as done. */
        r = apply_pending(f);
        if (r < 0) {
                f->journal_pending = true;
                log_warning_errno(r, "Failed to apply a committed transaction in %s, completing it later: %m",
                                  f->dir);
        }
        return 0;
}

static int fs_commit(void *data) {
        fs_store_t *f = data;
        int r = f->pending.n_entries > 0 ? commit_pending(f) : 0;
        if (r < 0)
                return r;
        store_overlay_clear(&f->pending);
        f->in_transaction = false;
        return 0;
}

static int fs_rollback(void *data) {
        fs_store_t *f = data;
        store_overlay_clear(&f->pending);
        f->in_transaction = false;
        return 0;
}

const store_ops_t store_fs_ops = {
        .open = fs_open,
        .close = fs_close,
        .save = fs_save,
        .load = fs_load,
        .delete = fs_delete,
        .list = fs_list,
        .begin = fs_begin,
        .commit = fs_commit,
        .rollback = fs_rollback,
};
