/* Unit tests of the metadata store: one suite whose tests run against every backend, plus checks of
 * the fs on-disk layout and journal recovery and of the sqlite schema version. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "store/store.h"
#include "util.h"

/* One directory per run, made in the parent so that it is removed even when a forked test dies, and
 * a fresh directory inside it for each test. */
static char root_dir[PATH_MAX];
static char dir[PATH_MAX];

/* dir/relative, asserting that it fits. */
static void path_at(char ret[static PATH_MAX], const char *relative) {
        int n = snprintf(ret, PATH_MAX, "%s/%s", dir, relative);
        ck_assert(n > 0 && n < PATH_MAX);
}

static void root_setup(void) {
        const char *tmp = getenv("TMPDIR");
        int n = snprintf(root_dir, sizeof root_dir, "%s/test_store.XXXXXX", tmp ?: "/tmp");
        ck_assert(n > 0 && n < (int) sizeof root_dir);
        ck_assert_ptr_nonnull(mkdtemp(root_dir));
}

static void root_teardown(void) {
        rm_rf(root_dir);
}

static void dir_setup(void) {
        int n = snprintf(dir, sizeof dir, "%s/test.XXXXXX", root_dir);
        ck_assert(n > 0 && n < (int) sizeof dir);
        ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void dir_teardown(void) {
        ck_assert_int_eq(rm_rf(dir), 0);
}

static store_t *open_store(store_backend_t backend) {
        store_t *s = NULL;
        ck_assert_int_eq(store_open(backend, dir, &s), 0);
        ck_assert_ptr_nonnull(s);
        return s;
}

static store_t *reopen_store(store_t *s, store_backend_t backend) {
        store_close(s);
        return open_store(backend);
}

static void save_string(store_t *s, const char *key, const char *value) {
        ck_assert_int_eq(store_save(s, key, value, strlen(value)), 0);
}

static void assert_value(store_t *s, const char *key, const char *expected, size_t expected_len) {
        char *value = NULL;
        size_t len = 0;
        ck_assert_int_eq(store_load(s, key, &value, &len), 0);
        ck_assert_uint_eq(len, expected_len);
        ck_assert_mem_eq(value, expected, len);
        ck_assert_int_eq(value[len], 0);
        free(value);
}

static void assert_string(store_t *s, const char *key, const char *expected) {
        assert_value(s, key, expected, strlen(expected));
}

static void assert_missing(store_t *s, const char *key) {
        char *value = (char *) 0x1;
        size_t len = 4242;
        ck_assert_int_eq(store_load(s, key, &value, &len), -ENOENT);
        ck_assert_ptr_eq(value, (char *) 0x1);
        ck_assert_uint_eq(len, 4242);
}

typedef struct listing {
        FILE *out;
        unsigned count;
} listing_t;

static int collect_cb(const char *key, const char *value, size_t len, void *userdata) {
        listing_t *l = userdata;
        ck_assert_int_eq(value[len], 0);
        fprintf(l->out, "%s=%.*s\n", key, (int) len, value);
        l->count++;
        return 0;
}

/* Every record with the prefix as "key=value\n" lines, in the order store_list gave them. */
static char *list_string(store_t *s, const char *prefix, unsigned *ret_count) {
        char *text = NULL;
        size_t size = 0;
        listing_t l = { .out = open_memstream(&text, &size) };
        ck_assert_ptr_nonnull(l.out);
        ck_assert_int_eq(store_list(s, prefix, collect_cb, &l), 0);
        ck_assert_int_eq(fclose(l.out), 0);
        if (ret_count)
                *ret_count = l.count;
        return text;
}

static void assert_list(store_t *s, const char *prefix, const char *expected) {
        char *text = list_string(s, prefix, NULL);
        ck_assert_str_eq(text, expected);
        free(text);
}

START_TEST(test_backend_names) {
        store_backend_t b = _STORE_BACKEND_MAX;
        ck_assert_int_eq(store_backend_from_string("sqlite", &b), 0);
        ck_assert_int_eq(b, STORE_BACKEND_SQLITE);
        ck_assert_int_eq(store_backend_from_string("fs", &b), 0);
        ck_assert_int_eq(b, STORE_BACKEND_FS);
        b = _STORE_BACKEND_MAX;
        ck_assert_int_eq(store_backend_from_string("filesystem", &b), 0);
        ck_assert_int_eq(b, STORE_BACKEND_FS);
        ck_assert_int_eq(store_backend_from_string("leveldb", &b), 0);
        ck_assert_int_eq(b, STORE_BACKEND_LEVELDB);

        b = _STORE_BACKEND_MAX;
        ck_assert_int_eq(store_backend_from_string("SQLite", &b), -EINVAL);
        ck_assert_int_eq(store_backend_from_string("", &b), -EINVAL);
        ck_assert_int_eq(store_backend_from_string("rocksdb", &b), -EINVAL);
        ck_assert_int_eq(store_backend_from_string(NULL, &b), -EINVAL);
        ck_assert_int_eq(b, _STORE_BACKEND_MAX);

        ck_assert_str_eq(store_backend_to_string(STORE_BACKEND_SQLITE), "sqlite");
        ck_assert_str_eq(store_backend_to_string(STORE_BACKEND_FS), "fs");
        ck_assert_str_eq(store_backend_to_string(STORE_BACKEND_LEVELDB), "leveldb");
        ck_assert_ptr_null(store_backend_to_string(_STORE_BACKEND_MAX));
        ck_assert_ptr_null(store_backend_to_string((store_backend_t) -1));
}
END_TEST

START_TEST(test_open_arguments) {
        store_t *s = (store_t *) 0x1;
        ck_assert_int_eq(store_open(_STORE_BACKEND_MAX, dir, &s), -EINVAL);
        ck_assert_int_eq(store_open(STORE_BACKEND_SQLITE, NULL, &s), -EINVAL);
        ck_assert_int_eq(store_open(STORE_BACKEND_SQLITE, "", &s), -EINVAL);
        ck_assert_ptr_eq(s, (store_t *) 0x1);
        store_close(NULL);

        /* The store directory and its parents are created, the store directory with mode 0700. */
        char nested[PATH_MAX];
        path_at(nested, "a/b");
        s = NULL;
        ck_assert_int_eq(store_open(STORE_BACKEND_SQLITE, nested, &s), 0);
        struct stat st;
        ck_assert_int_eq(stat(nested, &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0700);
        store_close(s);
}
END_TEST

START_TEST(test_save_load_overwrite_delete) {
        store_t *s = open_store(_i);

        save_string(s, "sandbox/abc", "{\"state\":\"created\"}");
        assert_string(s, "sandbox/abc", "{\"state\":\"created\"}");

        save_string(s, "sandbox/abc", "{\"state\":\"running\",\"pid\":42}");
        assert_string(s, "sandbox/abc", "{\"state\":\"running\",\"pid\":42}");

        /* Overwriting with a shorter value leaves nothing of the longer one behind. */
        save_string(s, "sandbox/abc", "{}");
        assert_string(s, "sandbox/abc", "{}");

        save_string(s, "sandbox/def", "x");
        ck_assert_int_eq(store_delete(s, "sandbox/abc"), 0);
        assert_missing(s, "sandbox/abc");
        assert_string(s, "sandbox/def", "x");

        /* A deleted key can be saved again. */
        save_string(s, "sandbox/abc", "again");
        assert_string(s, "sandbox/abc", "again");
        assert_list(s, "", "sandbox/abc=again\nsandbox/def=x\n");

        /* ret_len is optional. */
        char *value = NULL;
        ck_assert_int_eq(store_load(s, "sandbox/def", &value, NULL), 0);
        ck_assert_str_eq(value, "x");
        free(value);

        store_close(s);
}
END_TEST

START_TEST(test_missing_records) {
        store_t *s = open_store(_i);

        assert_missing(s, "nothing");
        ck_assert_int_eq(store_delete(s, "nothing"), -ENOENT);

        save_string(s, "once", "1");
        ck_assert_int_eq(store_delete(s, "once"), 0);
        ck_assert_int_eq(store_delete(s, "once"), -ENOENT);
        assert_missing(s, "once");

        /* Keys differing only by a prefix relation are distinct records. */
        save_string(s, "sandbox/ab", "ab");
        assert_missing(s, "sandbox/a");
        assert_missing(s, "sandbox/abc");
        ck_assert_int_eq(store_delete(s, "sandbox/a"), -ENOENT);
        assert_string(s, "sandbox/ab", "ab");

        store_close(s);
}
END_TEST

static int binary_cb(const char *key, const char *value, size_t len, void *userdata) {
        const char *expected = userdata;
        ck_assert_str_eq(key, "blob");
        ck_assert_uint_eq(len, 1024);
        ck_assert_mem_eq(value, expected, 1024);
        ck_assert_int_eq(value[len], 0);
        return 1;
}

START_TEST(test_binary_values) {
        store_t *s = open_store(_i);

        char blob[1024];
        for (size_t i = 0; i < sizeof blob; i++)
                blob[i] = (char) (i * 7 % 256);
        blob[0] = 0;
        blob[sizeof blob - 1] = 0;
        ck_assert_int_eq(store_save(s, "blob", blob, sizeof blob), 0);
        assert_value(s, "blob", blob, sizeof blob);
        ck_assert_int_eq(store_list(s, "blob", binary_cb, blob), 0);

        ck_assert_int_eq(store_save(s, "nul", "\0\0\0", 3), 0);
        assert_value(s, "nul", "\0\0\0", 3);

        ck_assert_int_eq(store_save(s, "empty", "", 0), 0);
        assert_value(s, "empty", "", 0);
        ck_assert_int_eq(store_save(s, "null-empty", NULL, 0), 0);
        assert_value(s, "null-empty", "", 0);
        ck_assert_int_eq(store_save(s, "null-long", NULL, 3), -EINVAL);
        assert_missing(s, "null-long");

        s = reopen_store(s, _i);
        assert_value(s, "blob", blob, sizeof blob);
        assert_value(s, "nul", "\0\0\0", 3);
        assert_value(s, "empty", "", 0);
        store_close(s);
}
END_TEST

START_TEST(test_key_validation) {
        store_t *s = open_store(_i);

        char too_long[STORE_KEY_MAX + 2];
        memset(too_long, 'k', STORE_KEY_MAX + 1);
        too_long[STORE_KEY_MAX + 1] = 0;
        char longest[STORE_KEY_MAX + 1];
        memset(longest, 'k', STORE_KEY_MAX);
        longest[STORE_KEY_MAX] = 0;

        const char *bad[] = { "", too_long, "a\tb", "new\nline", "\x01", "del\x7f", "caf\xc3\xa9", "\x80" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *value = (char *) 0x1;
                ck_assert_int_eq(store_save(s, bad[i], "v", 1), -EINVAL);
                ck_assert_int_eq(store_load(s, bad[i], &value, NULL), -EINVAL);
                ck_assert_ptr_eq(value, (char *) 0x1);
                ck_assert_int_eq(store_delete(s, bad[i]), -EINVAL);
        }
        ck_assert_int_eq(store_save(s, NULL, "v", 1), -EINVAL);
        ck_assert_int_eq(store_delete(s, NULL), -EINVAL);
        ck_assert_int_eq(store_save(NULL, "k", "v", 1), -EINVAL);
        char *value;
        ck_assert_int_eq(store_load(s, "k", NULL, NULL), -EINVAL);
        ck_assert_int_eq(store_load(NULL, "k", &value, NULL), -EINVAL);
        assert_list(s, "", "");

        /* The longest key, and a key of every printable character, are fine. */
        save_string(s, longest, "max");
        assert_string(s, longest, "max");
        char printable[0x7f - 0x20 + 1];
        for (int c = 0x20; c < 0x7f; c++)
                printable[c - 0x20] = (char) c;
        printable[sizeof printable - 1] = 0;
        save_string(s, printable, "all");
        assert_string(s, printable, "all");
        save_string(s, " ", "space");
        assert_string(s, " ", "space");

        /* Prefixes follow the key rules, except that the empty (or NULL) prefix lists everything. */
        listing_t l = {};
        ck_assert_int_eq(store_list(s, too_long, collect_cb, &l), -EINVAL);
        ck_assert_int_eq(store_list(s, "\x01", collect_cb, &l), -EINVAL);
        ck_assert_int_eq(store_list(s, "k", NULL, NULL), -EINVAL);
        ck_assert_uint_eq(l.count, 0);
        unsigned count = 0;
        free(list_string(s, NULL, &count));
        ck_assert_uint_eq(count, 3);

        store_close(s);
}
END_TEST

START_TEST(test_value_size) {
        store_t *s = open_store(_i);

        char *big = malloc(STORE_VALUE_MAX + 1);
        ck_assert_ptr_nonnull(big);
        for (size_t i = 0; i < STORE_VALUE_MAX + 1; i++)
                big[i] = (char) ('a' + i % 26);

        ck_assert_int_eq(store_save(s, "big", big, STORE_VALUE_MAX + 1), -EINVAL);
        assert_missing(s, "big");

        ck_assert_int_eq(store_save(s, "big", big, STORE_VALUE_MAX), 0);
        assert_value(s, "big", big, STORE_VALUE_MAX);

        ck_assert_int_eq(store_begin(s), 0);
        ck_assert_int_eq(store_save(s, "big2", big, STORE_VALUE_MAX + 1), -EINVAL);
        ck_assert_int_eq(store_commit(s), 0);
        assert_missing(s, "big2");

        free(big);
        store_close(s);
}
END_TEST

START_TEST(test_list_prefix) {
        store_t *s = open_store(_i);

        const char *keys[] = {
                "sandbox/ab", "sandbox/a",   "sandbox/a/x", "sandbox/b", "sandbox%",   "sandbox%25", "sandbox",
                "sandboy",    "san",         ".",           "..",        "../escape",  "a b",        " lead",
                "x/../y",     "sandbox/a.b", "sandbox/a%2F", "~",        "sandbox/a_", "sandbox/a*", "sandbox/a?",
        };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                save_string(s, keys[i], keys[i]);

        assert_list(s, "",
                    " lead= lead\n"
                    ".=.\n"
                    "..=..\n"
                    "../escape=../escape\n"
                    "a b=a b\n"
                    "san=san\n"
                    "sandbox=sandbox\n"
                    "sandbox%=sandbox%\n"
                    "sandbox%25=sandbox%25\n"
                    "sandbox/a=sandbox/a\n"
                    "sandbox/a%2F=sandbox/a%2F\n"
                    "sandbox/a*=sandbox/a*\n"
                    "sandbox/a.b=sandbox/a.b\n"
                    "sandbox/a/x=sandbox/a/x\n"
                    "sandbox/a?=sandbox/a?\n"
                    "sandbox/a_=sandbox/a_\n"
                    "sandbox/ab=sandbox/ab\n"
                    "sandbox/b=sandbox/b\n"
                    "sandboy=sandboy\n"
                    "x/../y=x/../y\n"
                    "~=~\n");
        assert_list(s, "sandbox/a",
                    "sandbox/a=sandbox/a\n"
                    "sandbox/a%2F=sandbox/a%2F\n"
                    "sandbox/a*=sandbox/a*\n"
                    "sandbox/a.b=sandbox/a.b\n"
                    "sandbox/a/x=sandbox/a/x\n"
                    "sandbox/a?=sandbox/a?\n"
                    "sandbox/a_=sandbox/a_\n"
                    "sandbox/ab=sandbox/ab\n");
        assert_list(s, "sandbox/ab", "sandbox/ab=sandbox/ab\n");
        assert_list(s, "sandbox/a/", "sandbox/a/x=sandbox/a/x\n");
        assert_list(s, "sandbox%", "sandbox%=sandbox%\nsandbox%25=sandbox%25\n");
        assert_list(s, "sandbox/", "sandbox/a=sandbox/a\n"
                                           "sandbox/a%2F=sandbox/a%2F\n"
                                           "sandbox/a*=sandbox/a*\n"
                                           "sandbox/a.b=sandbox/a.b\n"
                                           "sandbox/a/x=sandbox/a/x\n"
                                           "sandbox/a?=sandbox/a?\n"
                                           "sandbox/a_=sandbox/a_\n"
                                           "sandbox/ab=sandbox/ab\n"
                                           "sandbox/b=sandbox/b\n");
        /* Wildcards of LIKE and GLOB are plain characters in a prefix. */
        assert_list(s, "sandbox/a_", "sandbox/a_=sandbox/a_\n");
        assert_list(s, "sandbox/a*", "sandbox/a*=sandbox/a*\n");
        assert_list(s, "sandbox/a?", "sandbox/a?=sandbox/a?\n");
        assert_list(s, "sandbox_", "");
        assert_list(s, "%", "");
        assert_list(s, ".", ".=.\n..=..\n../escape=../escape\n");
        assert_list(s, "..", "..=..\n../escape=../escape\n");
        assert_list(s, " ", " lead= lead\n");
        assert_list(s, "~", "~=~\n");
        assert_list(s, "sandboz", "");
        assert_list(s, "zzz", "");

        s = reopen_store(s, _i);
        assert_list(s, "sandbox/ab", "sandbox/ab=sandbox/ab\n");
        assert_list(s, "..", "..=..\n../escape=../escape\n");
        store_close(s);
}
END_TEST

typedef struct stopper {
        unsigned calls;
} stopper_t;

static int stop_cb(const char *key, const char *value, size_t len, void *userdata) {
        stopper_t *st = userdata;
        st->calls++;
        return st->calls == 2 ? -ECANCELED : 0;
}

START_TEST(test_list_callback_stops) {
        store_t *s = open_store(_i);
        save_string(s, "a", "1");
        save_string(s, "b", "2");
        save_string(s, "c", "3");

        stopper_t st = {};
        ck_assert_int_eq(store_list(s, "", stop_cb, &st), -ECANCELED);
        ck_assert_uint_eq(st.calls, 2);

        /* Positive returns do not stop the walk and are not returned. */
        listing_t l = { .out = fopen("/dev/null", "we") };
        ck_assert_int_eq(store_list(s, "", collect_cb, &l), 0);
        fclose(l.out);
        ck_assert_uint_eq(l.count, 3);
        store_close(s);
}
END_TEST

typedef struct rewriter {
        store_t *s;
        unsigned calls;
} rewriter_t;

/* Moves every listed record from "t/" to "u/", writing to the store from inside the walk. */
static int move_cb(const char *key, const char *value, size_t len, void *userdata) {
        rewriter_t *rw = userdata;
        char target[64];
        snprintf(target, sizeof target, "u/%s", key + 2);
        ck_assert_int_eq(store_delete(rw->s, key), 0);
        ck_assert_int_eq(store_save(rw->s, target, value, len), 0);
        /* The value handed to us must survive the writes. */
        ck_assert_int_eq(value[len], 0);
        ck_assert_int_eq(value[0], 'v');
        /* A nested walk works too. */
        unsigned count = 0;
        free(list_string(rw->s, "u/", &count));
        ck_assert_uint_eq(count, ++rw->calls);
        return 0;
}

START_TEST(test_list_callback_writes) {
        store_t *s = open_store(_i);
        save_string(s, "t/1", "v1");
        save_string(s, "t/2", "v2");
        save_string(s, "t/3", "v3");

        rewriter_t rw = { .s = s };
        ck_assert_int_eq(store_list(s, "t/", move_cb, &rw), 0);
        ck_assert_uint_eq(rw.calls, 3);
        assert_list(s, "", "u/1=v1\nu/2=v2\nu/3=v3\n");

        /* The same inside a transaction, where the writes go to the pending set. */
        save_string(s, "t/4", "v4");
        ck_assert_int_eq(store_begin(s), 0);
        save_string(s, "t/5", "v5");
        rw.calls = 3;
        ck_assert_int_eq(store_list(s, "t/", move_cb, &rw), 0);
        ck_assert_uint_eq(rw.calls, 5);
        assert_list(s, "", "u/1=v1\nu/2=v2\nu/3=v3\nu/4=v4\nu/5=v5\n");
        ck_assert_int_eq(store_commit(s), 0);
        assert_list(s, "", "u/1=v1\nu/2=v2\nu/3=v3\nu/4=v4\nu/5=v5\n");
        store_close(s);
}
END_TEST

START_TEST(test_transaction_commit) {
        store_t *s = open_store(_i);
        save_string(s, "old", "o");
        save_string(s, "gone", "g");

        ck_assert_int_eq(store_begin(s), 0);
        save_string(s, "sandbox/1", "one");
        save_string(s, "sandbox/2", "two");
        save_string(s, "old", "replaced");
        ck_assert_int_eq(store_delete(s, "gone"), 0);
        ck_assert_int_eq(store_commit(s), 0);

        assert_list(s, "", "old=replaced\nsandbox/1=one\nsandbox/2=two\n");
        assert_missing(s, "gone");

        s = reopen_store(s, _i);
        assert_list(s, "", "old=replaced\nsandbox/1=one\nsandbox/2=two\n");

        /* An empty transaction commits. */
        ck_assert_int_eq(store_begin(s), 0);
        ck_assert_int_eq(store_commit(s), 0);
        assert_list(s, "", "old=replaced\nsandbox/1=one\nsandbox/2=two\n");
        store_close(s);
}
END_TEST

START_TEST(test_transaction_rollback) {
        store_t *s = open_store(_i);
        save_string(s, "a", "1");
        save_string(s, "d", "4");

        ck_assert_int_eq(store_begin(s), 0);
        save_string(s, "a", "2");
        save_string(s, "n", "new");
        ck_assert_int_eq(store_delete(s, "d"), 0);
        assert_list(s, "", "a=2\nn=new\n");
        ck_assert_int_eq(store_rollback(s), 0);

        assert_string(s, "a", "1");
        assert_string(s, "d", "4");
        assert_missing(s, "n");
        assert_list(s, "", "a=1\nd=4\n");

        s = reopen_store(s, _i);
        assert_list(s, "", "a=1\nd=4\n");

        /* Writes after the rollback are ordinary again. */
        save_string(s, "after", "x");
        s = reopen_store(s, _i);
        assert_list(s, "", "a=1\nafter=x\nd=4\n");
        store_close(s);
}
END_TEST

START_TEST(test_transaction_reads_pending) {
        store_t *s = open_store(_i);
        save_string(s, "a", "1");
        save_string(s, "c", "3");
        save_string(s, "e", "5");
        save_string(s, "x/1", "x");

        ck_assert_int_eq(store_begin(s), 0);
        save_string(s, "b", "2");
        save_string(s, "a", "10");
        ck_assert_int_eq(store_delete(s, "c"), 0);

        assert_string(s, "a", "10");
        assert_string(s, "b", "2");
        assert_missing(s, "c");
        assert_string(s, "e", "5");
        ck_assert_int_eq(store_delete(s, "c"), -ENOENT);
        ck_assert_int_eq(store_delete(s, "zz"), -ENOENT);
        assert_list(s, "", "a=10\nb=2\ne=5\nx/1=x\n");

        /* Delete a pending save, save over a pending delete, overwrite a pending save. */
        ck_assert_int_eq(store_delete(s, "b"), 0);
        assert_missing(s, "b");
        ck_assert_int_eq(store_delete(s, "b"), -ENOENT);
        save_string(s, "c", "33");
        save_string(s, "a", "100");
        save_string(s, "0", "zero");
        save_string(s, "x/0", "pending");
        save_string(s, "x/2", "pending");
        save_string(s, "z", "last");
        assert_list(s, "", "0=zero\na=100\nc=33\ne=5\nx/0=pending\nx/1=x\nx/2=pending\nz=last\n");
        assert_list(s, "x/", "x/0=pending\nx/1=x\nx/2=pending\n");
        assert_list(s, "c", "c=33\n");
        assert_list(s, "b", "");

        ck_assert_int_eq(store_commit(s), 0);
        assert_list(s, "", "0=zero\na=100\nc=33\ne=5\nx/0=pending\nx/1=x\nx/2=pending\nz=last\n");
        s = reopen_store(s, _i);
        assert_list(s, "", "0=zero\na=100\nc=33\ne=5\nx/0=pending\nx/1=x\nx/2=pending\nz=last\n");
        store_close(s);
}
END_TEST

START_TEST(test_persistence) {
        store_t *s = open_store(_i);
        save_string(s, "sandbox/abc", "{\"id\":\"abc\"}");
        save_string(s, "container/abc/web", "{\"id\":\"web\"}");
        save_string(s, "temp", "t");
        ck_assert_int_eq(store_delete(s, "temp"), 0);

        s = reopen_store(s, _i);
        assert_string(s, "sandbox/abc", "{\"id\":\"abc\"}");
        assert_string(s, "container/abc/web", "{\"id\":\"web\"}");
        assert_missing(s, "temp");
        assert_list(s, "", "container/abc/web={\"id\":\"web\"}\nsandbox/abc={\"id\":\"abc\"}\n");
        store_close(s);
}
END_TEST

START_TEST(test_nested_begin) {
        store_t *s = open_store(_i);

        ck_assert_int_eq(store_commit(s), -EINVAL);
        ck_assert_int_eq(store_rollback(s), -EINVAL);

        ck_assert_int_eq(store_begin(s), 0);
        ck_assert_int_eq(store_begin(s), -EBUSY);
        /* The outer transaction is still open and intact. */
        save_string(s, "k", "v");
        ck_assert_int_eq(store_begin(s), -EBUSY);
        ck_assert_int_eq(store_commit(s), 0);
        assert_string(s, "k", "v");

        ck_assert_int_eq(store_commit(s), -EINVAL);
        ck_assert_int_eq(store_rollback(s), -EINVAL);

        ck_assert_int_eq(store_begin(s), 0);
        save_string(s, "k", "w");
        ck_assert_int_eq(store_rollback(s), 0);
        assert_string(s, "k", "v");
        store_close(s);
}
END_TEST

START_TEST(test_close_rolls_back) {
        store_t *s = open_store(_i);
        save_string(s, "kept", "1");
        ck_assert_int_eq(store_begin(s), 0);
        save_string(s, "dropped", "2");
        ck_assert_int_eq(store_delete(s, "kept"), 0);
        store_close(s);

        s = open_store(_i);
        assert_missing(s, "dropped");
        assert_list(s, "", "kept=1\n");
        store_close(s);
}
END_TEST

START_TEST(test_second_open) {
        store_t *s = open_store(_i), *other = (store_t *) 0x1;
        int r = store_open(_i, dir, &other);
        if (_i == STORE_BACKEND_SQLITE) {
                /* sqlite does its own locking between connections. */
                ck_assert_int_eq(r, 0);
                save_string(s, "k", "v");
                assert_string(other, "k", "v");
                store_close(other);
        } else {
                ck_assert_int_eq(r, -EBUSY);
                ck_assert_ptr_eq(other, (store_t *) 0x1);
        }
        store_close(s);
}
END_TEST

typedef struct race {
        store_t *s;
        sem_t started;
        atomic_int sequence;
        atomic_bool saved;
        int saved_at;
        int result;
} race_t;

static void *race_thread(void *userdata) {
        race_t *race = userdata;
        sem_post(&race->started);
        race->result = store_save(race->s, "race", "B", 1);
        race->saved_at = atomic_fetch_add(&race->sequence, 1);
        atomic_store(&race->saved, true);
        return NULL;
}

START_TEST(test_concurrent_save_waits_for_transaction) {
        race_t race = { .s = open_store(_i) };
        ck_assert_int_eq(sem_init(&race.started, 0, 0), 0);

        ck_assert_int_eq(store_begin(race.s), 0);
        save_string(race.s, "race", "A");

        pthread_t thread;
        ck_assert_int_eq(pthread_create(&thread, NULL, race_thread, &race), 0);
        ck_assert_int_eq(sem_wait(&race.started), 0);
        /* Ample time for the other thread's save to finish if it did not wait; it must not have. */
        usleep(200 * 1000);
        bool saved = atomic_load(&race.saved);
        ck_assert_msg(!saved, "The other thread's save did not wait for the transaction");
        assert_string(race.s, "race", "A");
        save_string(race.s, "other", "A");

        int committed_at = atomic_fetch_add(&race.sequence, 1);
        ck_assert_int_eq(store_commit(race.s), 0);
        ck_assert_int_eq(pthread_join(thread, NULL), 0);

        ck_assert_int_eq(race.result, 0);
        ck_assert_int_lt(committed_at, race.saved_at);
        assert_string(race.s, "race", "B");
        assert_string(race.s, "other", "A");

        sem_destroy(&race.started);
        store_close(race.s);
}
END_TEST

static void make_long_key(char *buf, char c, size_t n, const char *suffix) {
        memset(buf, c, n);
        strcpy(buf + n, suffix);
}

START_TEST(test_long_keys) {
        store_t *s = open_store(_i);

        /* '/' is encoded as three bytes by the fs backend, so these names exceed NAME_MAX. */
        char k1[STORE_KEY_MAX + 1], k2[STORE_KEY_MAX + 1], k3[STORE_KEY_MAX + 1], k4[STORE_KEY_MAX + 1],
                k5[STORE_KEY_MAX + 1];
        make_long_key(k1, '/', 300, "");
        make_long_key(k2, '/', 300, "a");
        make_long_key(k3, '/', STORE_KEY_MAX, "");
        make_long_key(k4, '.', STORE_KEY_MAX, "");
        make_long_key(k5, 'x', STORE_KEY_MAX - 1, "/");
        save_string(s, k1, "1");
        save_string(s, k2, "2");
        save_string(s, k3, "3");
        save_string(s, k4, "4");
        save_string(s, k5, "5");

        s = reopen_store(s, _i);
        assert_string(s, k1, "1");
        assert_string(s, k2, "2");
        assert_string(s, k3, "3");
        assert_string(s, k4, "4");
        assert_string(s, k5, "5");

        char expected[8 * STORE_KEY_MAX];
        snprintf(expected, sizeof expected, "%s=1\n%s=3\n%s=2\n", k1, k3, k2);
        assert_list(s, k1, expected);
        snprintf(expected, sizeof expected, "%s=4\n%s=1\n%s=3\n%s=2\n%s=5\n", k4, k1, k3, k2, k5);
        assert_list(s, "", expected);

        ck_assert_int_eq(store_begin(s), 0);
        ck_assert_int_eq(store_delete(s, k1), 0);
        save_string(s, k3, "33");
        ck_assert_int_eq(store_commit(s), 0);
        snprintf(expected, sizeof expected, "%s=33\n%s=2\n", k3, k2);
        assert_list(s, "/", expected);

        ck_assert_int_eq(store_delete(s, k2), 0);
        ck_assert_int_eq(store_delete(s, k3), 0);
        ck_assert_int_eq(store_delete(s, k4), 0);
        ck_assert_int_eq(store_delete(s, k5), 0);
        ck_assert_int_eq(store_delete(s, k5), -ENOENT);
        assert_list(s, "", "");

        if (_i == STORE_BACKEND_FS) {
                /* The nested directories of the long keys went away with them. */
                char records[PATH_MAX];
                path_at(records, "records");
                DIR *d = opendir(records);
                ck_assert_ptr_nonnull(d);
                unsigned entries = 0;
                for (struct dirent *de; (de = readdir(d));)
                        if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                                entries++;
                closedir(d);
                ck_assert_uint_eq(entries, 0);
        }
        store_close(s);
}
END_TEST

#define MANY 2000

static char *many_expected(unsigned first, unsigned last, unsigned step) {
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);
        ck_assert_ptr_nonnull(f);
        for (unsigned i = first; i <= last; i += step)
                fprintf(f, "item/%04u=value %u\n", i, i);
        ck_assert_int_eq(fclose(f), 0);
        return text;
}

START_TEST(test_many_records) {
        store_t *s = open_store(_i);
        save_string(s, "before", "b");
        save_string(s, "item0", "not in item/");

        /* Saved in reverse so that the listing order cannot just be the order of insertion. */
        ck_assert_int_eq(store_begin(s), 0);
        for (int i = MANY - 1; i >= 0; i--) {
                char key[32], value[32];
                snprintf(key, sizeof key, "item/%04d", i);
                snprintf(value, sizeof value, "value %d", i);
                save_string(s, key, value);
        }
        ck_assert_int_eq(store_commit(s), 0);

        unsigned count = 0;
        char *text = list_string(s, "item/", &count);
        char *expected = many_expected(0, MANY - 1, 1);
        ck_assert_uint_eq(count, MANY);
        ck_assert_str_eq(text, expected);
        free(text);
        free(expected);

        text = list_string(s, "item/1", &count);
        expected = many_expected(1000, 1999, 1);
        ck_assert_uint_eq(count, 1000);
        ck_assert_str_eq(text, expected);
        free(text);
        free(expected);

        s = reopen_store(s, _i);
        ck_assert_int_eq(store_begin(s), 0);
        for (int i = 1; i < MANY; i += 2) {
                char key[32];
                snprintf(key, sizeof key, "item/%04d", i);
                ck_assert_int_eq(store_delete(s, key), 0);
        }
        ck_assert_int_eq(store_commit(s), 0);

        text = list_string(s, "item/", &count);
        expected = many_expected(0, MANY - 2, 2);
        ck_assert_uint_eq(count, MANY / 2);
        ck_assert_str_eq(text, expected);
        free(text);
        free(expected);

        free(list_string(s, "", &count));
        ck_assert_uint_eq(count, MANY / 2 + 2);
        store_close(s);
}
END_TEST

static void write_file_at(const char *relative, const void *data, size_t len) {
        char path[PATH_MAX];
        path_at(path, relative);
        ck_assert_int_eq(write_file_atomic(path, data, len, 0600), 0);
}

static void write_string_at(const char *relative, const char *text) {
        write_file_at(relative, text, strlen(text));
}

static bool exists_at(const char *relative) {
        char path[PATH_MAX];
        path_at(path, relative);
        return access(path, F_OK) == 0;
}

START_TEST(test_fs_layout) {
        store_t *s = open_store(STORE_BACKEND_FS);
        save_string(s, "sandbox/abc", "1");
        save_string(s, ".", "2");
        save_string(s, "..", "3");
        save_string(s, "a b%", "4");
        save_string(s, "Az09_.-", "5");

        ck_assert(exists_at("records/sandbox%2Fabc"));
        ck_assert(exists_at("records/%2E"));
        ck_assert(exists_at("records/%2E."));
        ck_assert(exists_at("records/a%20b%25"));
        ck_assert(exists_at("records/Az09_.-"));
        assert_value(s, "sandbox/abc", "1", 1);

        /* Files that are not canonically named records are ignored, not listed or decoded. */
        write_string_at("records/.#katad-tmp", "junk");
        write_string_at("records/.hidden", "junk");
        write_string_at("records/sandbox%2fabc", "lower-case escape");
        write_string_at("records/%2E%2E", "non-canonical");
        write_string_at("records/bad%zz", "bad escape");
        write_string_at("records/bad%2", "short escape");
        write_string_at("records/plus+", "not a directory");
        write_string_at("records/tab%09", "non-printable");
        char path[PATH_MAX];
        path_at(path, "records/subdir");
        ck_assert_int_eq(mkdir(path, 0700), 0);
        write_string_at("records/subdir/x", "junk");
        /* A file written by hand with a canonical name is a record. */
        write_string_at("records/by%2Fhand", "h");

        assert_list(s, "", ".=2\n..=3\nAz09_.-=5\na b%=4\nby/hand=h\nsandbox/abc=1\n");
        store_close(s);
}
END_TEST

START_TEST(test_fs_journal_recovery) {
        store_t *s = open_store(STORE_BACKEND_FS);
        save_string(s, "keep", "old");
        save_string(s, "gone", "x");
        save_string(s, "untouched", "u");
        store_close(s);

        /* What a commit leaves behind when it crashes after writing its journal: the format in
         * docs/store.md. The delete of a missing key shows that replay tolerates half-applied ops. */
        static const char journal[] = "katad-store-journal 1\n"
                                      "save 11 3\nsandbox/new"
                                      "a\0b\n"
                                      "delete 4\ngone\n"
                                      "delete 7\nmissing\n"
                                      "save 4 3\nkeepnew\n"
                                      "save 5 0\nempty\n"
                                      "end\n";
        write_file_at("journal", journal, sizeof journal - 1);

        s = open_store(STORE_BACKEND_FS);
        ck_assert(!exists_at("journal"));
        assert_value(s, "sandbox/new", "a\0b", 3);
        assert_string(s, "keep", "new");
        assert_string(s, "empty", "");
        assert_string(s, "untouched", "u");
        assert_missing(s, "gone");
        /* The listing prints values with %.*s, which stops at the NUL inside "a\0b". */
        assert_list(s, "", "empty=\nkeep=new\nsandbox/new=a\nuntouched=u\n");
        store_close(s);
}
END_TEST

START_TEST(test_fs_corrupt_journal) {
        store_t *s = open_store(STORE_BACKEND_FS);
        save_string(s, "keep", "old");
        store_close(s);

        /* Cut short: the end marker and part of the value are missing. */
        static const char journal[] = "katad-store-journal 1\nsave 4 3\nkeepne";
        write_file_at("journal", journal, sizeof journal - 1);
        s = (store_t *) 0x1;
        ck_assert_int_eq(store_open(STORE_BACKEND_FS, dir, &s), -EBADMSG);
        ck_assert_ptr_eq(s, (store_t *) 0x1);
        ck_assert(exists_at("journal"));

        /* Nothing of it was applied. */
        char path[PATH_MAX];
        path_at(path, "journal");
        ck_assert_int_eq(unlink(path), 0);
        s = open_store(STORE_BACKEND_FS);
        assert_list(s, "", "keep=old\n");
        store_close(s);

        static const char *const bad[] = {
                "katad-store-journal 2\nend\n",
                "katad-store-journal 1\nsave 4 3\nkeepnew\n",
                "katad-store-journal 1\nsave 4 3\nkeepnewX\nend\n",
                "katad-store-journal 1\nsave 0 3\nnew\nend\n",
                "katad-store-journal 1\nsave -4 3\nkeepnew\nend\n",
                "katad-store-journal 1\nrename 4\nkeep\nend\n",
                "katad-store-journal 1\ndelete 3\na\tb\nend\n",
                "katad-store-journal 1\nend\ntrailing",
                "",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                write_file_at("journal", bad[i], strlen(bad[i]));
                ck_assert_int_eq(store_open(STORE_BACKEND_FS, dir, &s), -EBADMSG);
        }
        ck_assert_int_eq(unlink(path), 0);
}
END_TEST

START_TEST(test_fs_commit_completes_later) {
        store_t *s = open_store(STORE_BACKEND_FS);
        save_string(s, "a", "old");

        /* A directory where record "k" must go makes applying the commit fail after its journal is
         * written, which is the commit point. */
        ck_assert_int_eq(store_begin(s), 0);
        save_string(s, "a", "new");
        save_string(s, "k", "v");
        char path[PATH_MAX];
        path_at(path, "records/k");
        ck_assert_int_eq(mkdir(path, 0700), 0);
        ck_assert_int_eq(store_commit(s), 0);
        ck_assert(exists_at("journal"));

        /* Nothing can be read until the commit is complete, so its old state is never seen. */
        char *value = NULL;
        ck_assert_int_eq(store_load(s, "a", &value, NULL), -EISDIR);
        ck_assert_ptr_null(value);

        ck_assert_int_eq(rmdir(path), 0);
        assert_string(s, "k", "v");
        assert_string(s, "a", "new");
        ck_assert(!exists_at("journal"));
        store_close(s);
}
END_TEST

static int sqlite_user_version(void) {
        char path[PATH_MAX];
        path_at(path, "katad.db");
        sqlite3 *db = NULL;
        ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        sqlite3_stmt *stmt = NULL;
        ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL), SQLITE_OK);
        ck_assert_int_eq(sqlite3_step(stmt), SQLITE_ROW);
        int version = sqlite3_column_int(stmt, 0);
        sqlite3_finalize(stmt);
        sqlite3_close(db);
        return version;
}

static void sqlite_set_user_version(int version) {
        char path[PATH_MAX], sql[64];
        path_at(path, "katad.db");
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", version);
        sqlite3 *db = NULL;
        ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
        ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
}

START_TEST(test_sqlite_schema_version) {
        store_t *s = open_store(STORE_BACKEND_SQLITE);
        save_string(s, "k", "v");
        store_close(s);
        ck_assert_int_eq(sqlite_user_version(), 1);

        /* Reopening at the current version changes nothing. */
        s = open_store(STORE_BACKEND_SQLITE);
        assert_string(s, "k", "v");
        store_close(s);
        ck_assert_int_eq(sqlite_user_version(), 1);

        /* A database from a newer katad is refused rather than misread. */
        sqlite_set_user_version(2);
        s = (store_t *) 0x1;
        ck_assert_int_eq(store_open(STORE_BACKEND_SQLITE, dir, &s), -EPROTO);
        ck_assert_ptr_eq(s, (store_t *) 0x1);
        ck_assert_int_eq(sqlite_user_version(), 2);

        sqlite_set_user_version(1);
        s = open_store(STORE_BACKEND_SQLITE);
        assert_string(s, "k", "v");
        store_close(s);
}
END_TEST

static Suite *store_suite(void) {
        Suite *suite = suite_create("store");

        TCase *tc = tcase_create("all backends");
        tcase_add_unchecked_fixture(tc, root_setup, root_teardown);
        tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
        /* Generous: every save is fsynced, and valgrind runs are slow. */
        tcase_set_timeout(tc, 600);
        tcase_add_test(tc, test_backend_names);
        tcase_add_test(tc, test_open_arguments);
        tcase_add_loop_test(tc, test_save_load_overwrite_delete, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_missing_records, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_binary_values, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_key_validation, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_value_size, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_list_prefix, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_list_callback_stops, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_list_callback_writes, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_transaction_commit, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_transaction_rollback, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_transaction_reads_pending, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_persistence, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_nested_begin, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_close_rolls_back, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_second_open, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_concurrent_save_waits_for_transaction, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_long_keys, 0, _STORE_BACKEND_MAX);
        tcase_add_loop_test(tc, test_many_records, 0, _STORE_BACKEND_MAX);
        tcase_add_test(tc, test_fs_layout);
        tcase_add_test(tc, test_fs_journal_recovery);
        tcase_add_test(tc, test_fs_corrupt_journal);
        tcase_add_test(tc, test_fs_commit_completes_later);
        tcase_add_test(tc, test_sqlite_schema_version);
        suite_add_tcase(suite, tc);

        return suite;
}

int main(void) {
        SRunner *runner = srunner_create(store_suite());
        srunner_run_all(runner, CK_NORMAL);
        int failed = srunner_ntests_failed(runner);
        srunner_free(runner);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
