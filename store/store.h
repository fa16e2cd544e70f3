/* The metadata store plugin: a transactional key/value map with three backends.
 *
 * Keys are printable ASCII strings of at most 512 bytes ("sandbox/abc", "container/abc/web").
 * Values are opaque byte strings (katad stores JSON) of at most 16 MiB.
 * Every function is thread-safe: a handle serialises its callers internally. A transaction
 * (store_begin .. store_commit/store_rollback) belongs to the thread that began it; other threads
 * wait until it ends. Reads inside a transaction see its own uncommitted writes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct store store_t;

typedef enum store_backend {
        STORE_BACKEND_SQLITE,
        STORE_BACKEND_FS,
        STORE_BACKEND_LEVELDB,
        _STORE_BACKEND_MAX,
} store_backend_t;

#define STORE_KEY_MAX 512
#define STORE_VALUE_MAX (16u * 1024u * 1024u)

/* "sqlite", "fs" (also "filesystem"), "leveldb" → backend; -EINVAL otherwise. */
int store_backend_from_string(const char *s, store_backend_t *ret);
const char *store_backend_to_string(store_backend_t backend);

/* Opens (creating if needed) the store of the given backend inside directory dir (created 0700).
 * sqlite: dir/katad.db (WAL, schema version, migrations); fs: dir/records/; leveldb: dir/leveldb/.
 * Recovers an interrupted commit on open. -EPROTO when the sqlite schema is newer than this code;
 * -EBUSY when an fs or leveldb store is already open (in this or another process); -EBADMSG when
 * an fs journal is corrupt. See docs/store.md for the on-disk layouts. */
int store_open(store_backend_t backend, const char *dir, store_t **ret);
/* Closes the handle; rolls back an open transaction. Accepts NULL. No other call on the handle may
 * be running or waiting. */
void store_close(store_t *s);

/* Inserts or replaces the value of key. -EINVAL for a bad key or an oversized value. */
int store_save(store_t *s, const char *key, const void *value, size_t len);
/* Loads key into a newly allocated NUL-terminated buffer; -ENOENT when absent. ret_len may be NULL. */
int store_load(store_t *s, const char *key, char **ret_value, size_t *ret_len);
/* Deletes key; -ENOENT when absent. */
int store_delete(store_t *s, const char *key);

/* Calls cb for every key starting with prefix, in ascending byte order of keys. A negative
 * return from cb stops the walk and is returned. A NULL or "" prefix lists everything; a prefix
 * that breaks the key rules (other than being empty) is -EINVAL. value is NUL-terminated and valid
 * only during the call. cb runs with the handle locked and may call back into the store from the
 * same thread; whether the walk sees records that cb writes is unspecified. */
typedef int (*store_list_cb)(const char *key, const char *value, size_t len, void *userdata);
int store_list(store_t *s, const char *prefix, store_list_cb cb, void *userdata);

/* Transactions: all writes between begin and commit become visible and durable together, or not at
 * all (also across a crash). Nesting is not supported (-EBUSY from a nested begin). Commit and
 * rollback give -EINVAL when this thread has no transaction open. A commit that fails has ended the
 * transaction and rolled it back. */
int store_begin(store_t *s);
int store_commit(store_t *s);
int store_rollback(store_t *s);
