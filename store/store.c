/* The store front end: validates arguments, serialises callers, owns transaction state and
 * dispatches to the backend; also the pending-write overlay shared by the fs and leveldb backends. */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "macro.h"
#include "store-internal.h"
#include "store.h"
#include "util.h"

static const char *const backend_names[_STORE_BACKEND_MAX] = {
        [STORE_BACKEND_SQLITE] = "sqlite",
        [STORE_BACKEND_FS] = "fs",
        [STORE_BACKEND_LEVELDB] = "leveldb",
};

static const store_ops_t *const backend_ops[_STORE_BACKEND_MAX] = {
        [STORE_BACKEND_SQLITE] = &store_sqlite_ops,
        [STORE_BACKEND_FS] = &store_fs_ops,
        [STORE_BACKEND_LEVELDB] = &store_leveldb_ops,
};

int store_backend_from_string(const char *s, store_backend_t *ret) {
        if (!s)
                return -EINVAL;
        store_backend_t backend;
        if (streq(s, "filesystem"))
                backend = STORE_BACKEND_FS;
        else {
                for (backend = 0; backend < _STORE_BACKEND_MAX; backend++)
                        if (streq(s, backend_names[backend]))
                                break;
                if (backend == _STORE_BACKEND_MAX)
                        return -EINVAL;
        }
        if (ret)
                *ret = backend;
        return 0;
}

const char *store_backend_to_string(store_backend_t backend) {
        if (backend < 0 || backend >= _STORE_BACKEND_MAX)
                return NULL;
        return backend_names[backend];
}

static bool is_printable_ascii(char c) {
        return (unsigned char) c >= 0x20 && (unsigned char) c <= 0x7e;
}

/* Backends rely on this: the fs backend encodes keys into file names and the sqlite backend
 * computes the upper bound of a prefix range by incrementing its last byte. */
static bool prefix_is_valid(const char *prefix) {
        size_t n = 0;
        for (; prefix[n]; n++)
                if (n >= STORE_KEY_MAX || !is_printable_ascii(prefix[n]))
                        return false;
        return true;
}

static bool key_is_valid(const char *key) {
        return key && *key && prefix_is_valid(key);
}

static store_t *store_lock(store_t *s) {
        int r = pthread_mutex_lock(&s->lock);
        assert(r == 0);
        (void) r;
        return s;
}

static void store_unlock(store_t *s) {
        int r = pthread_mutex_unlock(&s->lock);
        assert(r == 0);
        (void) r;
}

static void store_unlockp(store_t **s) {
        if (*s)
                store_unlock(*s);
}

/* Holds the handle's lock until the end of the enclosing scope. */
#define STORE_LOCKED(s) _cleanup_(store_unlockp) _unused_ store_t *_locked_ = store_lock(s)

int store_open(store_backend_t backend, const char *dir, store_t **ret) {
        if (backend < 0 || backend >= _STORE_BACKEND_MAX || strempty(dir) || !ret)
                return -EINVAL;

        int r = mkdir_p(dir, 0700);
        if (r < 0)
                return log_error_errno(r, "Failed to create store directory %s: %m", dir);

        _cleanup_free_ store_t *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->ops = backend_ops[backend];

        r = s->ops->open(dir, &s->data);
        if (r < 0)
                return r;

        pthread_mutexattr_t attr;
        pthread_mutexattr_init(&attr);
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
        r = -pthread_mutex_init(&s->lock, &attr);
        pthread_mutexattr_destroy(&attr);
        if (r < 0) {
                s->ops->close(s->data);
                return r;
        }

        log_debug("Opened %s store in %s", backend_names[backend], dir);
        *ret = TAKE_PTR(s);
        return 0;
}

/* Releases the hold that store_begin kept. */
static void end_transaction(store_t *s) {
        s->in_transaction = false;
        store_unlock(s);
}

void store_close(store_t *s) {
        if (!s)
                return;

        store_lock(s);
        if (s->in_transaction) {
                int r = s->ops->rollback(s->data);
                if (r < 0)
                        log_warning_errno(r, "Failed to roll back the open transaction on close: %m");
                end_transaction(s);
        }
        s->ops->close(s->data);
        store_unlock(s);

        pthread_mutex_destroy(&s->lock);
        free(s);
}

int store_save(store_t *s, const char *key, const void *value, size_t len) {
        if (!s || !key_is_valid(key) || len > STORE_VALUE_MAX || (!value && len > 0))
                return -EINVAL;

        STORE_LOCKED(s);
        return s->ops->save(s->data, key, value ?: "", len);
}

int store_load(store_t *s, const char *key, char **ret_value, size_t *ret_len) {
        if (!s || !key_is_valid(key) || !ret_value)
                return -EINVAL;

        STORE_LOCKED(s);
        char *value;
        size_t len;
        int r = s->ops->load(s->data, key, &value, &len);
        if (r < 0)
                return r;
        *ret_value = value;
        if (ret_len)
                *ret_len = len;
        return 0;
}

int store_delete(store_t *s, const char *key) {
        if (!s || !key_is_valid(key))
                return -EINVAL;

        STORE_LOCKED(s);
        return s->ops->delete(s->data, key);
}

int store_list(store_t *s, const char *prefix, store_list_cb cb, void *userdata) {
        if (!s || !cb || (prefix && !prefix_is_valid(prefix)))
                return -EINVAL;

        STORE_LOCKED(s);
        return s->ops->list(s->data, prefix ?: "", cb, userdata);
}

int store_begin(store_t *s) {
        if (!s)
                return -EINVAL;

        STORE_LOCKED(s);
        /* Only the owner can hold the lock while a transaction is open, so this is a nested begin. */
        if (s->in_transaction) {
                assert(pthread_equal(s->transaction_owner, pthread_self()));
                return -EBUSY;
        }

        int r = s->ops->begin(s->data);
        if (r < 0)
                return r;

        store_lock(s);
        s->in_transaction = true;
        s->transaction_owner = pthread_self();
        return 0;
}

int store_commit(store_t *s) {
        if (!s)
                return -EINVAL;

        STORE_LOCKED(s);
        if (!s->in_transaction)
                return -EINVAL;

        int r = s->ops->commit(s->data);
        if (r < 0) {
                int k = s->ops->rollback(s->data);
                if (k < 0)
                        log_debug_errno(k, "Failed to roll back after a failed commit: %m");
        }
        end_transaction(s);
        return r;
}

int store_rollback(store_t *s) {
        if (!s)
                return -EINVAL;

        STORE_LOCKED(s);
        if (!s->in_transaction)
                return -EINVAL;

        int r = s->ops->rollback(s->data);
        end_transaction(s);
        return r;
}

char *store_value_dup(const void *value, size_t len) {
        char *copy = malloc(len + 1);
        if (!copy)
                return NULL;
        if (len > 0)
                memcpy(copy, value, len);
        copy[len] = 0;
        return copy;
}

/* Index of the first entry whose key is >= key (or > key when strict). */
static size_t overlay_bound(const store_overlay_t *o, const char *key, bool strict) {
        size_t lo = 0, hi = o->n_entries;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(o->entries[mid].key, key);
                if (c < 0 || (strict && c == 0))
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

int store_overlay_put(store_overlay_t *o, const char *key, const void *value, size_t len, bool deleted) {
        _cleanup_free_ char *copy = NULL;
        if (!deleted) {
                copy = store_value_dup(value, len);
                if (!copy)
                        return -ENOMEM;
        }

        size_t i = overlay_bound(o, key, false);
        if (i < o->n_entries && streq(o->entries[i].key, key)) {
                store_pending_t *p = &o->entries[i];
                free(p->value);
                p->value = TAKE_PTR(copy);
                p->len = deleted ? 0 : len;
                p->deleted = deleted;
                return 0;
        }

        _cleanup_free_ char *key_copy = strdup(key);
        if (!key_copy)
                return -ENOMEM;
        if (o->n_entries == o->n_allocated) {
                size_t n = o->n_allocated ? o->n_allocated * 2 : 16;
                store_pending_t *entries = reallocarray(o->entries, n, sizeof *entries);
                if (!entries)
                        return -ENOMEM;
                o->entries = entries;
                o->n_allocated = n;
        }
        memmove(o->entries + i + 1, o->entries + i, (o->n_entries - i) * sizeof *o->entries);
        o->entries[i] = (store_pending_t) {
                .key = TAKE_PTR(key_copy),
                .value = TAKE_PTR(copy),
                .len = deleted ? 0 : len,
                .deleted = deleted,
        };
        o->n_entries++;
        return 0;
}

const store_pending_t *store_overlay_find(const store_overlay_t *o, const char *key) {
        size_t i = overlay_bound(o, key, false);
        if (i < o->n_entries && streq(o->entries[i].key, key))
                return &o->entries[i];
        return NULL;
}

const store_pending_t *store_overlay_next(const store_overlay_t *o, const char *prefix, const char *after) {
        size_t i = overlay_bound(o, prefix, false);
        if (after) {
                size_t j = overlay_bound(o, after, true);
                if (j > i)
                        i = j;
        }
        if (i < o->n_entries && store_key_has_prefix(o->entries[i].key, prefix))
                return &o->entries[i];
        return NULL;
}

void store_overlay_clear(store_overlay_t *o) {
        for (size_t i = 0; i < o->n_entries; i++) {
                free(o->entries[i].key);
                free(o->entries[i].value);
        }
        free(o->entries);
        *o = (store_overlay_t) {};
}
