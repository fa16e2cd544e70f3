/* What a store backend implements, the handle that store.c wraps around it, and the pending-write
 * overlay that the fs and leveldb backends use to make a transaction's writes visible to itself. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "store.h"

/* Backends are called with the handle locked and with arguments already validated: keys are valid,
 * values are within STORE_VALUE_MAX, prefix is never NULL (it is "" to list everything), begin is
 * never nested and commit/rollback only follow a successful begin. Every function returns 0 or a
 * negative errno. */
typedef struct store_ops {
        int (*open)(const char *dir, void **ret_data);
        /* Called with no transaction open. Accepts NULL. */
        void (*close)(void *data);
        int (*save)(void *data, const char *key, const void *value, size_t len);
        int (*load)(void *data, const char *key, char **ret_value, size_t *ret_len);
        int (*delete)(void *data, const char *key);
        /* The value handed to cb is NUL-terminated and must stay valid while cb runs, even if cb
         * writes to the store. */
        int (*list)(void *data, const char *prefix, store_list_cb cb, void *userdata);
        int (*begin)(void *data);
        /* On failure store.c calls rollback, so the transaction always ends. */
        int (*commit)(void *data);
        int (*rollback)(void *data);
} store_ops_t;

extern const store_ops_t store_sqlite_ops;
extern const store_ops_t store_fs_ops;
extern const store_ops_t store_leveldb_ops;

struct store {
        const store_ops_t *ops;
        /* Recursive, so that a list callback may call back into the store, and held from
         * store_begin until the transaction ends, so that other threads wait for it. */
        pthread_mutex_t lock;
        bool in_transaction;
        pthread_t transaction_owner;
        void *data;
};

/* Pending writes of a transaction, kept sorted by key bytes. */
typedef struct store_pending {
        char *key;
        char *value; /* NUL-terminated copy; NULL when deleted */
        size_t len;
        bool deleted;
} store_pending_t;

typedef struct store_overlay {
        store_pending_t *entries;
        size_t n_entries;
        size_t n_allocated;
} store_overlay_t;

/* Records a save (value, len) or, when deleted is true, a deletion of key. */
int store_overlay_put(store_overlay_t *o, const char *key, const void *value, size_t len, bool deleted);
/* The pending write of key, or NULL when the transaction has not touched it. */
const store_pending_t *store_overlay_find(const store_overlay_t *o, const char *key);
/* The first pending write whose key starts with prefix and sorts after `after` (or the first with
 * the prefix when after is NULL); NULL when there is none. Looking up by key rather than keeping a
 * position lets a list callback write to the overlay while the walk goes on. */
const store_pending_t *store_overlay_next(const store_overlay_t *o, const char *prefix, const char *after);
/* Forgets every pending write. Accepts an empty overlay. */
void store_overlay_clear(store_overlay_t *o);

/* A copy of (value, len) with a NUL appended, so that stored values can be read as strings. */
char *store_value_dup(const void *value, size_t len);

/* True when key starts with prefix. */
static inline bool store_key_has_prefix(const char *key, const char *prefix) {
        for (; *prefix; key++, prefix++)
                if (*key != *prefix)
                        return false;
        return true;
}
