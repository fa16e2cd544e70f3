/* The sqlite store backend: one table in dir/katad.db, WAL journal with full sync, a schema
 * version in PRAGMA user_version brought up to date by an ordered list of migrations. */
#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "macro.h"
#include "store-internal.h"

/* Migration i (counting from 1) takes the schema from version i - 1 to version i. Append only: a
 * released migration must never change, since databases in the field have already run it. */
static const char *const migrations[] = {
        "CREATE TABLE records(key TEXT PRIMARY KEY, value BLOB NOT NULL)",
};

#define SCHEMA_VERSION ((int) ELEMENTSOF(migrations))

/* Long enough to ride out another process (sqlite3 CLI, a backup) holding the write lock. */
#define BUSY_TIMEOUT_MSEC 5000

typedef enum statement_id {
        STATEMENT_SAVE,
        STATEMENT_LOAD,
        STATEMENT_DELETE,
        STATEMENT_LIST,
        STATEMENT_BEGIN,
        STATEMENT_COMMIT,
        STATEMENT_ROLLBACK,
        _STATEMENT_MAX,
} statement_id_t;

static const char *const statement_sql[_STATEMENT_MAX] = {
        [STATEMENT_SAVE] = "INSERT INTO records(key, value) VALUES(?1, ?2) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [STATEMENT_LOAD] = "SELECT value FROM records WHERE key = ?1",
        [STATEMENT_DELETE] = "DELETE FROM records WHERE key = ?1",
        /* A range rather than LIKE/GLOB, whose wildcards would need escaping and defeat the index. */
        [STATEMENT_LIST] = "SELECT key, value FROM records WHERE key >= ?1 AND key < ?2 ORDER BY key",
        [STATEMENT_BEGIN] = "BEGIN IMMEDIATE",
        [STATEMENT_COMMIT] = "COMMIT",
        [STATEMENT_ROLLBACK] = "ROLLBACK",
};

typedef struct sqlite_store {
        sqlite3 *db;
        char *path;
        sqlite3_stmt *statements[_STATEMENT_MAX];
} sqlite_store_t;

static void sqlite_store_free(sqlite_store_t *q) {
        if (!q)
                return;
        for (size_t i = 0; i < _STATEMENT_MAX; i++)
                sqlite3_finalize(q->statements[i]);
        if (q->db && sqlite3_close(q->db) != SQLITE_OK)
                log_warning("Failed to close %s: %s", q->path, sqlite3_errmsg(q->db));
        free(q->path);
        free(q);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite_store_t *, sqlite_store_free);

static void statement_resetp(sqlite3_stmt **stmt) {
        if (*stmt) {
                sqlite3_reset(*stmt);
                sqlite3_clear_bindings(*stmt);
        }
}

static void statement_finalizep(sqlite3_stmt **stmt) {
        sqlite3_finalize(*stmt);
}

static int errno_from_sqlite(sqlite3 *db, int rc) {
        switch (rc & 0xff) {
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EBADMSG;
        case SQLITE_TOOBIG:
                return -E2BIG;
        case SQLITE_CANTOPEN:
        case SQLITE_IOERR: {
                int e = db ? sqlite3_system_errno(db) : 0;
                return e > 0 ? -e : -EIO;
        }
        default:
                return -EIO;
        }
}

/* The SQL error text is detail for the debug log; callers get an errno. */
static int sqlite_fail(sqlite_store_t *q, int rc, const char *what) {
        return log_debug_errno(errno_from_sqlite(q->db, rc), "Failed to %s in %s: %s", what, q->path,
                               sqlite3_errmsg(q->db));
}

static int sqlite_exec(sqlite_store_t *q, const char *sql) {
        int rc = sqlite3_exec(q->db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return sqlite_fail(q, rc, sql);
        return 0;
}

/* Runs a statement that returns one row with one text or integer column. */
static int sqlite_query_text(sqlite_store_t *q, const char *sql, char **ret) {
        _cleanup_(statement_finalizep) sqlite3_stmt *stmt = NULL;
        int rc = sqlite3_prepare_v2(q->db, sql, -1, &stmt, NULL);
        if (rc != SQLITE_OK)
                return sqlite_fail(q, rc, sql);
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? -ENODATA : sqlite_fail(q, rc, sql);
        const char *text = (const char *) sqlite3_column_text(stmt, 0);
        char *copy = strdup(text ?: "");
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        return 0;
}

static int sqlite_get_statement(sqlite_store_t *q, statement_id_t id, sqlite3_stmt **ret) {
        if (!q->statements[id]) {
                int rc = sqlite3_prepare_v3(q->db, statement_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                            &q->statements[id], NULL);
                if (rc != SQLITE_OK)
                        return sqlite_fail(q, rc, "prepare statement");
        }
        *ret = q->statements[id];
        return 0;
}

static int sqlite_run(sqlite_store_t *q, statement_id_t id) {
        _cleanup_(statement_resetp) sqlite3_stmt *stmt = NULL;
        int r = sqlite_get_statement(q, id, &stmt);
        if (r < 0)
                return r;
        int rc = sqlite3_step(stmt);
        if (rc != SQLITE_DONE)
                return sqlite_fail(q, rc, statement_sql[id]);
        return 0;
}

/* Runs inside BEGIN IMMEDIATE, so two processes opening the same database cannot both migrate. */
static int sqlite_migrate_locked(sqlite_store_t *q) {
        _cleanup_free_ char *text = NULL;
        int r = sqlite_query_text(q, "PRAGMA user_version", &text);
        if (r < 0)
                return log_error_errno(r, "Failed to read the schema version of %s: %s", q->path,
                                       sqlite3_errmsg(q->db));
        int version = atoi(text);

        if (version > SCHEMA_VERSION)
                return log_error_errno(-EPROTO,
                                       "Database %s has schema version %d, newer than version %d known to "
                                       "this katad; refusing to open it (was katad downgraded?)",
                                       q->path, version, SCHEMA_VERSION);
        if (version < 0)
                return log_error_errno(-EBADMSG, "Database %s has invalid schema version %d", q->path, version);
        if (version == SCHEMA_VERSION)
                return 0;

        for (int v = version; v < SCHEMA_VERSION; v++) {
                r = sqlite_exec(q, migrations[v]);
                if (r < 0)
                        return log_error_errno(r, "Failed to migrate %s to schema version %d: %s", q->path, v + 1,
                                               sqlite3_errmsg(q->db));
        }

        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
        r = sqlite_exec(q, sql);
        if (r < 0)
                return log_error_errno(r, "Failed to record schema version %d in %s: %m", SCHEMA_VERSION, q->path);

        if (version == 0)
                log_debug("Created schema version %d in %s", SCHEMA_VERSION, q->path);
        else
                log_info("Migrated %s from schema version %d to %d", q->path, version, SCHEMA_VERSION);
        return 0;
}

/* Every failure is logged here, with the SQL error, since it stops katad from starting. */
static int sqlite_migrate(sqlite_store_t *q) {
        int r = sqlite_exec(q, "BEGIN IMMEDIATE");
        if (r < 0)
                return log_error_errno(r, "Failed to lock %s for migration: %s", q->path, sqlite3_errmsg(q->db));
        r = sqlite_migrate_locked(q);
        if (r < 0) {
                (void) sqlite_exec(q, "ROLLBACK");
                return r;
        }
        r = sqlite_exec(q, "COMMIT");
        if (r < 0)
                return log_error_errno(r, "Failed to commit the migration of %s: %s", q->path, sqlite3_errmsg(q->db));
        return 0;
}

static int sqlite_open(const char *dir, void **ret_data) {
        _cleanup_(sqlite_store_freep) sqlite_store_t *q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;
        if (asprintf(&q->path, "%s/katad.db", dir) < 0) {
                q->path = NULL;
                return -ENOMEM;
        }

        /* NOMUTEX: store.c already serialises every use of the handle. */
        int rc = sqlite3_open_v2(q->path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 NULL);
        if (rc != SQLITE_OK) {
                int r = errno_from_sqlite(q->db, rc);
                return log_error_errno(r, "Failed to open %s: %s", q->path,
                                       q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
        }
        sqlite3_busy_timeout(q->db, BUSY_TIMEOUT_MSEC);

        _cleanup_free_ char *mode = NULL;
        int r = sqlite_query_text(q, "PRAGMA journal_mode = WAL", &mode);
        if (r < 0)
                return log_error_errno(r, "Failed to switch %s to WAL mode: %s", q->path, sqlite3_errmsg(q->db));
        if (!streq(mode, "wal"))
                return log_error_errno(-EOPNOTSUPP, "Database %s cannot use WAL mode (journal mode is %s)",
                                       q->path, mode);

        /* FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power failure, and a save
         * must be durable when it returns. */
        r = sqlite_exec(q, "PRAGMA synchronous = FULL");
        if (r < 0)
                return log_error_errno(r, "Failed to set synchronous mode on %s: %s", q->path,
                                       sqlite3_errmsg(q->db));

        r = sqlite_migrate(q);
        if (r < 0)
                return r;

        *ret_data = TAKE_PTR(q);
        return 0;
}

static void sqlite_close(void *data) {
        sqlite_store_free(data);
}

static int sqlite_save(void *data, const char *key, const void *value, size_t len) {
        sqlite_store_t *q = data;
        _cleanup_(statement_resetp) sqlite3_stmt *stmt = NULL;
        int r = sqlite_get_statement(q, STATEMENT_SAVE, &stmt);
        if (r < 0)
                return r;

        /* A non-NULL pointer even for an empty value: a NULL blob would violate NOT NULL. */
        int rc = sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(stmt, 2, value, (int) len, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return sqlite_fail(q, rc, "bind values");

        rc = sqlite3_step(stmt);
        if (rc != SQLITE_DONE)
                return sqlite_fail(q, rc, "save record");
        return 0;
}

static int sqlite_load(void *data, const char *key, char **ret_value, size_t *ret_len) {
        sqlite_store_t *q = data;
        _cleanup_(statement_resetp) sqlite3_stmt *stmt = NULL;
        int r = sqlite_get_statement(q, STATEMENT_LOAD, &stmt);
        if (r < 0)
                return r;

        int rc = sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return sqlite_fail(q, rc, "bind key");

        rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return sqlite_fail(q, rc, "load record");

        const void *blob = sqlite3_column_blob(stmt, 0);
        size_t len = (size_t) sqlite3_column_bytes(stmt, 0);
        if (!blob && len > 0)
                return -ENOMEM;
        char *value = store_value_dup(blob, len);
        if (!value)
                return -ENOMEM;
        *ret_value = value;
        *ret_len = len;
        return 0;
}

static int sqlite_delete(void *data, const char *key) {
        sqlite_store_t *q = data;
        _cleanup_(statement_resetp) sqlite3_stmt *stmt = NULL;
        int r = sqlite_get_statement(q, STATEMENT_DELETE, &stmt);
        if (r < 0)
                return r;

        int rc = sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return sqlite_fail(q, rc, "bind key");

        rc = sqlite3_step(stmt);
        if (rc != SQLITE_DONE)
                return sqlite_fail(q, rc, "delete record");
        return sqlite3_changes(q->db) > 0 ? 0 : -ENOENT;
}

static int sqlite_list(void *data, const char *prefix, store_list_cb cb, void *userdata) {
        sqlite_store_t *q = data;

        /* Keys are printable ASCII, so every key with the prefix sorts below the prefix with its last
         * byte incremented, and every key at all sorts below "\x7f". */
        char upper[STORE_KEY_MAX + 1];
        size_t n = strlen(prefix);
        if (n == 0)
                strcpy(upper, "\x7f");
        else {
                memcpy(upper, prefix, n + 1);
                upper[n - 1]++;
        }

        /* A callback that lists again finds the cached statement still stepping; give it its own. */
        _cleanup_(statement_resetp) sqlite3_stmt *cached = NULL;
        _cleanup_(statement_finalizep) sqlite3_stmt *own = NULL;
        sqlite3_stmt *stmt;
        if (q->statements[STATEMENT_LIST] && sqlite3_stmt_busy(q->statements[STATEMENT_LIST])) {
                int rc = sqlite3_prepare_v2(q->db, statement_sql[STATEMENT_LIST], -1, &own, NULL);
                if (rc != SQLITE_OK)
                        return sqlite_fail(q, rc, "prepare statement");
                stmt = own;
        } else {
                int r = sqlite_get_statement(q, STATEMENT_LIST, &cached);
                if (r < 0)
                        return r;
                stmt = cached;
        }

        int rc = sqlite3_bind_text(stmt, 1, prefix, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(stmt, 2, upper, -1, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return sqlite_fail(q, rc, "bind prefix");

        for (;;) {
                rc = sqlite3_step(stmt);
                if (rc == SQLITE_DONE)
                        return 0;
                if (rc != SQLITE_ROW)
                        return sqlite_fail(q, rc, "list records");

                /* Copies, because the callback may write to the row under the cursor. */
                const char *k = (const char *) sqlite3_column_text(stmt, 0);
                size_t key_len = (size_t) sqlite3_column_bytes(stmt, 0);
                if (!k)
                        return -ENOMEM;
                if (key_len > STORE_KEY_MAX)
                        continue;
                char key[STORE_KEY_MAX + 1];
                memcpy(key, k, key_len + 1);

                const void *blob = sqlite3_column_blob(stmt, 1);
                size_t len = (size_t) sqlite3_column_bytes(stmt, 1);
                if (!blob && len > 0)
                        return -ENOMEM;
                _cleanup_free_ char *value = store_value_dup(blob, len);
                if (!value)
                        return -ENOMEM;

                int r = cb(key, value, len, userdata);
                if (r < 0)
                        return r;
        }
}

static int sqlite_begin(void *data) {
        return sqlite_run(data, STATEMENT_BEGIN);
}

static int sqlite_commit(void *data) {
        return sqlite_run(data, STATEMENT_COMMIT);
}

static int sqlite_rollback(void *data) {
        sqlite_store_t *q = data;
        /* Some errors (SQLITE_FULL, SQLITE_IOERR) already rolled the transaction back. */
        if (sqlite3_get_autocommit(q->db))
                return 0;
        return sqlite_run(q, STATEMENT_ROLLBACK);
}

const store_ops_t store_sqlite_ops = {
        .open = sqlite_open,
        .close = sqlite_close,
        .save = sqlite_save,
        .load = sqlite_load,
        .delete = sqlite_delete,
        .list = sqlite_list,
        .begin = sqlite_begin,
        .commit = sqlite_commit,
        .rollback = sqlite_rollback,
};
