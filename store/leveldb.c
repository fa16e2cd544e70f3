/* The leveldb store backend: a database in dir/leveldb with synchronous writes; a transaction is
 * buffered in memory and committed as one synchronous write batch. */
#include <errno.h>
#include <leveldb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "macro.h"
#include "store-internal.h"

typedef struct leveldb_store {
        char *path;
        leveldb_t *db;
        leveldb_options_t *options;
        leveldb_readoptions_t *read_options;
        leveldb_writeoptions_t *write_options;
        store_overlay_t pending;
        bool in_transaction;
} leveldb_store_t;

static void leveldb_store_free(leveldb_store_t *l) {
        if (!l)
                return;
        if (l->db)
                leveldb_close(l->db);
        if (l->options)
                leveldb_options_destroy(l->options);
        if (l->read_options)
                leveldb_readoptions_destroy(l->read_options);
        if (l->write_options)
                leveldb_writeoptions_destroy(l->write_options);
        store_overlay_clear(&l->pending);
        free(l->path);
        free(l);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(leveldb_store_t *, leveldb_store_free);

static void leveldb_iterator_destroyp(leveldb_iterator_t **it) {
        if (*it)
                leveldb_iter_destroy(*it);
}

static void leveldb_writebatch_destroyp(leveldb_writebatch_t **b) {
        if (*b)
                leveldb_writebatch_destroy(*b);
}

/* leveldb reports errors only as text ("IO error: lock …", "Corruption: …"). */
static int errno_from_leveldb(const char *error) {
        if (strncmp(error, "IO error: lock", 14) == 0)
                return -EBUSY;
        if (strncmp(error, "Corruption", 10) == 0)
                return -EBADMSG;
        if (strncmp(error, "Invalid argument", 16) == 0)
                return -EINVAL;
        if (strncmp(error, "Not implemented", 15) == 0)
                return -EOPNOTSUPP;
        return -EIO;
}

/* Frees error; its text is detail for the debug log, callers get an errno. */
static int leveldb_store_fail(leveldb_store_t *l, char *error, const char *what) {
        int r = log_debug_errno(errno_from_leveldb(error), "Failed to %s in %s: %s", what, l->path, error);
        leveldb_free(error);
        return r;
}

static int leveldb_store_open(const char *dir, void **ret_data) {
        _cleanup_(leveldb_store_freep) leveldb_store_t *l = calloc(1, sizeof *l);
        if (!l)
                return -ENOMEM;
        if (asprintf(&l->path, "%s/leveldb", dir) < 0) {
                l->path = NULL;
                return -ENOMEM;
        }
        /* leveldb would create it too, but with the umask's mode rather than 0700. */
        if (mkdir(l->path, 0700) < 0 && errno != EEXIST)
                return log_error_errno(errno, "Failed to create %s: %m", l->path);

        l->options = leveldb_options_create();
        l->read_options = leveldb_readoptions_create();
        l->write_options = leveldb_writeoptions_create();
        if (!l->options || !l->read_options || !l->write_options)
                return -ENOMEM;
        leveldb_options_set_create_if_missing(l->options, 1);
        leveldb_readoptions_set_verify_checksums(l->read_options, 1);
        /* Every write reaches the disk before it returns, as a save must be durable. */
        leveldb_writeoptions_set_sync(l->write_options, 1);

        char *error = NULL;
        l->db = leveldb_open(l->options, l->path, &error);
        if (error) {
                int r = errno_from_leveldb(error);
                if (r == -EBUSY)
                        log_error("Store %s is already open elsewhere: %s", l->path, error);
                else
                        log_error("Failed to open %s: %s", l->path, error);
                leveldb_free(error);
                return r;
        }

        *ret_data = TAKE_PTR(l);
        return 0;
}

static void leveldb_store_close(void *data) {
        leveldb_store_free(data);
}

/* Reads the committed value of key, leaving ret_* untouched when it is absent (returns -ENOENT). */
static int leveldb_store_get_committed(leveldb_store_t *l, const char *key, char **ret_value, size_t *ret_len) {
        char *error = NULL;
        size_t len = 0;
        char *raw = leveldb_get(l->db, l->read_options, key, strlen(key), &len, &error);
        if (error)
                return leveldb_store_fail(l, error, "read record");
        if (!raw)
                return -ENOENT;
        if (!ret_value) {
                leveldb_free(raw);
                return 0;
        }
        char *value = store_value_dup(raw, len);
        leveldb_free(raw);
        if (!value)
                return -ENOMEM;
        *ret_value = value;
        *ret_len = len;
        return 0;
}

/* The value of key as the open transaction (if any) sees it; ret_value NULL checks existence. */
static int leveldb_store_get(leveldb_store_t *l, const char *key, char **ret_value, size_t *ret_len) {
        const store_pending_t *p = l->in_transaction ? store_overlay_find(&l->pending, key) : NULL;
        if (!p)
                return leveldb_store_get_committed(l, key, ret_value, ret_len);
        if (p->deleted)
                return -ENOENT;
        if (!ret_value)
                return 0;
        char *value = store_value_dup(p->value, p->len);
        if (!value)
                return -ENOMEM;
        *ret_value = value;
        *ret_len = p->len;
        return 0;
}

static int leveldb_store_save(void *data, const char *key, const void *value, size_t len) {
        leveldb_store_t *l = data;
        if (l->in_transaction)
                return store_overlay_put(&l->pending, key, value, len, false);

        char *error = NULL;
        leveldb_put(l->db, l->write_options, key, strlen(key), value, len, &error);
        if (error)
                return leveldb_store_fail(l, error, "save record");
        return 0;
}

static int leveldb_store_load(void *data, const char *key, char **ret_value, size_t *ret_len) {
        return leveldb_store_get(data, key, ret_value, ret_len);
}

static int leveldb_store_delete(void *data, const char *key) {
        leveldb_store_t *l = data;
        /* leveldb deletes absent keys silently; the interface reports them. */
        int r = leveldb_store_get(l, key, NULL, NULL);
        if (r < 0)
                return r;
        if (l->in_transaction)
                return store_overlay_put(&l->pending, key, NULL, 0, true);

        char *error = NULL;
        leveldb_delete(l->db, l->write_options, key, strlen(key), &error);
        if (error)
                return leveldb_store_fail(l, error, "delete record");
        return 0;
}

/* Positions the iterator on the next committed record with the prefix and copies its key into
 * ret_key; false when there is none. */
static bool next_committed_key(leveldb_iterator_t *it, const char *prefix, char ret_key[static STORE_KEY_MAX + 1]) {
        size_t prefix_len = strlen(prefix);
        for (; leveldb_iter_valid(it); leveldb_iter_next(it)) {
                size_t len;
                const char *k = leveldb_iter_key(it, &len);
                if (len < prefix_len || memcmp(k, prefix, prefix_len) != 0)
                        return false;
                /* Not a key katad can have written. */
                if (len > STORE_KEY_MAX || memchr(k, 0, len))
                        continue;
                memcpy(ret_key, k, len);
                ret_key[len] = 0;
                return true;
        }
        return false;
}

static int leveldb_store_list(void *data, const char *prefix, store_list_cb cb, void *userdata) {
        leveldb_store_t *l = data;

        /* The iterator reads an implicit snapshot, so writes from the callback cannot disturb it. */
        _cleanup_(leveldb_iterator_destroyp) leveldb_iterator_t *it = leveldb_create_iterator(l->db, l->read_options);
        if (!it)
                return -ENOMEM;
        leveldb_iter_seek(it, prefix, strlen(prefix));

        /* Merges the committed records with the transaction's pending writes, both in key order. The
         * overlay is searched by the last key seen, as the callback may change it. */
        char committed_key[STORE_KEY_MAX + 1], last[STORE_KEY_MAX + 1];
        bool have_committed = next_committed_key(it, prefix, committed_key), have_last = false;
        for (;;) {
                const store_pending_t *p =
                        l->in_transaction ? store_overlay_next(&l->pending, prefix, have_last ? last : NULL) : NULL;
                if (!have_committed && !p)
                        break;

                int c = !have_committed ? 1 : !p ? -1 : strcmp(committed_key, p->key);
                _cleanup_free_ char *value = NULL;
                size_t len = 0;
                bool deleted = false;
                if (c < 0) {
                        const char *v = leveldb_iter_value(it, &len);
                        value = store_value_dup(v, len);
                        strcpy(last, committed_key);
                } else {
                        deleted = p->deleted;
                        if (!deleted) {
                                value = store_value_dup(p->value, p->len);
                                len = p->len;
                        }
                        strcpy(last, p->key);
                }
                if (!deleted && !value)
                        return -ENOMEM;
                have_last = true;
                if (c <= 0) {
                        leveldb_iter_next(it);
                        have_committed = next_committed_key(it, prefix, committed_key);
                }

                if (!deleted) {
                        int r = cb(last, value, len, userdata);
                        if (r < 0)
                                return r;
                }
        }

        char *error = NULL;
        leveldb_iter_get_error(it, &error);
        if (error)
                return leveldb_store_fail(l, error, "list records");
        return 0;
}

static int leveldb_store_begin(void *data) {
        leveldb_store_t *l = data;
        l->in_transaction = true;
        return 0;
}

static int leveldb_store_commit(void *data) {
        leveldb_store_t *l = data;
        if (l->pending.n_entries > 0) {
                _cleanup_(leveldb_writebatch_destroyp) leveldb_writebatch_t *batch = leveldb_writebatch_create();
                if (!batch)
                        return -ENOMEM;
                for (size_t i = 0; i < l->pending.n_entries; i++) {
                        const store_pending_t *e = &l->pending.entries[i];
                        if (e->deleted)
                                leveldb_writebatch_delete(batch, e->key, strlen(e->key));
                        else
                                leveldb_writebatch_put(batch, e->key, strlen(e->key), e->value, e->len);
                }

                /* One synchronous batch: leveldb applies it whole or, after a crash, not at all. */
                char *error = NULL;
                leveldb_write(l->db, l->write_options, batch, &error);
                if (error)
                        return leveldb_store_fail(l, error, "commit transaction");
        }

        store_overlay_clear(&l->pending);
        l->in_transaction = false;
        return 0;
}

static int leveldb_store_rollback(void *data) {
        leveldb_store_t *l = data;
        store_overlay_clear(&l->pending);
        l->in_transaction = false;
        return 0;
}

const store_ops_t store_leveldb_ops = {
        .open = leveldb_store_open,
        .close = leveldb_store_close,
        .save = leveldb_store_save,
        .load = leveldb_store_load,
        .delete = leveldb_store_delete,
        .list = leveldb_store_list,
        .begin = leveldb_store_begin,
        .commit = leveldb_store_commit,
        .rollback = leveldb_store_rollback,
};
