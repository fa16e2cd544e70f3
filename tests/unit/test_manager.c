/* Unit tests of core/manager against the mock hypervisor: state machines, persistence, reload. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/manager.h"
#include "vmm/vmm.h"
#include "json-util.h"
#include "log.h"
#include "util.h"

typedef struct env {
        char dir[64];
        store_t *store;
        vmm_t *mock;
        factory_t *factory;
        manager_t *m;
        json_t *events;
        pthread_mutex_t lock;
} env_t;

static void on_event(json_t *event, void *userdata) {
        env_t *env = userdata;
        pthread_mutex_lock(&env->lock);
        json_array_append(env->events, event);
        pthread_mutex_unlock(&env->lock);
}

static void env_open(env_t *env, unsigned boot_delay_ms) {
        char run[128];
        snprintf(run, sizeof run, "%s/run", env->dir);
        ck_assert_int_eq(store_open(STORE_BACKEND_SQLITE, env->dir, &env->store), 0);
        vmm_mock_options_t opts = { .boot_delay_ms = boot_delay_ms };
        ck_assert_int_eq(vmm_new_mock(env->dir, &opts, &env->mock), 0);
        ck_assert_int_eq(factory_new(&env->mock, 1, &env->factory), 0);
        manager_config_t mc = { .run_dir = run, .default_hypervisor = "mock", .stop_timeout_sec = 1 };
        ck_assert_int_eq(manager_new(&mc, env->store, env->factory, &env->m), 0);
        manager_set_event_handler(env->m, on_event, env);
        ck_assert_int_eq(manager_load(env->m), 0);
}

static void env_close(env_t *env) {
        manager_shutdown(env->m);
        manager_free(env->m);
        factory_free(env->factory);
        vmm_free(env->mock);
        store_close(env->store);
        env->m = NULL;
}

static env_t *env_new(unsigned boot_delay_ms) {
        env_t *env = calloc(1, sizeof *env);
        strcpy(env->dir, "/tmp/katad-test-manager-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(env->dir));
        env->events = json_array();
        pthread_mutex_init(&env->lock, NULL);
        env_open(env, boot_delay_ms);
        return env;
}

static void env_free(env_t *env) {
        if (env->m)
                env_close(env);
        rm_rf(env->dir);
        json_decref(env->events);
        pthread_mutex_destroy(&env->lock);
        free(env);
}

static json_t *load(const char *text) {
        json_t *j = json_loads(text, 0, NULL);
        ck_assert_ptr_nonnull(j);
        return j;
}

static const char *state_of(json_t *status) {
        return json_get_string(json_get_object(status, "State"), "state");
}

static const char *container_state(env_t *env, const char *sid, const char *cid) {
        static char buf[16];
        json_t *st = NULL;
        kd_error_t e;
        ck_assert_int_eq(manager_container_status(env->m, sid, cid, &e, &st), 0);
        snprintf(buf, sizeof buf, "%s", state_of(st));
        json_decref(st);
        return buf;
}

static bool has_event(env_t *env, const char *type, const char *cid) {
        bool found = false;
        pthread_mutex_lock(&env->lock);
        size_t i;
        json_t *ev;
        json_array_foreach(env->events, i, ev) if (streq(json_get_string(ev, "Type"), type) &&
                                                   (!cid || streq(json_get_string(ev, "ContainerID") ?: "", cid)))
                found = true;
        pthread_mutex_unlock(&env->lock);
        return found;
}

static void create_demo(env_t *env, bool start) {
        json_t *cfg = load("{\"ID\":\"sb\",\"Containers\":["
                           "{\"ID\":\"web\",\"Cmd\":{\"Args\":[\"sleep\",\"infinity\"]}},"
                           "{\"ID\":\"job\",\"Cmd\":{\"Args\":[\"sh\",\"-c\",\"sleep 0.2; exit 4\"]}}]}");
        json_t *st = NULL;
        kd_error_t e;
        kd_caller_t who = { .known = true, .uid = 1234 };
        ck_assert_int_eq(manager_sandbox_create(env->m, cfg, start, &who, &e, &st), 0);
        ck_assert_str_eq(state_of(st), start ? "running" : "ready");
        json_decref(st);
        json_decref(cfg);
}

START_TEST(test_lifecycle) {
        env_t *env = env_new(0);
        kd_error_t e;
        json_t *st = NULL, *res = NULL;
        create_demo(env, false);
        ck_assert_str_eq(container_state(env, "sb", "web"), "ready");

        /* Exec needs a running container. */
        json_t *cmd = load("{\"Args\":[\"true\"]}");
        ck_assert_int_eq(manager_process_exec(env->m, "sb", "web", cmd, NULL, &e, &res), -EBUSY);
        ck_assert_str_eq(e.code, "wrong_state");

        ck_assert_int_eq(manager_sandbox_action(env->m, "sb", SANDBOX_START, NULL, NULL, &e, &st), 0);
        ck_assert_str_eq(state_of(st), "running");
        json_decref(st);
        ck_assert_str_eq(container_state(env, "sb", "web"), "running");

        /* The job's own process exits with 4 and its container stops. */
        ck_assert_int_eq(manager_process_wait(env->m, "sb", "job", "job", &e, &res), 0);
        ck_assert_int_eq(json_get_int(res, "ExitCode", -1), 4);
        json_decref(res);
        /* The worker records the exit, then emits the event: wait for both. */
        for (int i = 0; i < 200 && !(streq(container_state(env, "sb", "job"), "stopped") &&
                                     has_event(env, "container.exit", "job"));
             i++)
                usleep(10000);
        ck_assert_str_eq(container_state(env, "sb", "job"), "stopped");
        ck_assert(has_event(env, "container.exit", "job"));

        /* exec + wait gives the exit code. */
        json_decref(cmd);
        cmd = load("{\"Args\":[\"sh\",\"-c\",\"exit 9\"]}");
        ck_assert_int_eq(manager_process_exec(env->m, "sb", "web", cmd, NULL, &e, &res), 0);
        char token[ID_MAX + 1];
        snprintf(token, sizeof token, "%s", json_get_string(res, "Token"));
        ck_assert(id_is_valid(token));
        json_decref(res);
        ck_assert_int_eq(manager_process_wait(env->m, "sb", "web", token, &e, &res), 0);
        ck_assert_int_eq(json_get_int(res, "ExitCode", -1), 9);
        json_decref(res);

        /* Pause is idempotent; exec is refused while paused. */
        ck_assert_int_eq(manager_sandbox_action(env->m, "sb", SANDBOX_PAUSE, NULL, NULL, &e, NULL), 0);
        ck_assert_int_eq(manager_sandbox_action(env->m, "sb", SANDBOX_PAUSE, NULL, NULL, &e, NULL), 0);
        ck_assert_str_eq(container_state(env, "sb", "web"), "paused");
        ck_assert_int_eq(manager_process_exec(env->m, "sb", "web", cmd, NULL, &e, &res), -EBUSY);
        ck_assert_int_eq(manager_sandbox_action(env->m, "sb", SANDBOX_RESUME, NULL, NULL, &e, NULL), 0);
        ck_assert_str_eq(container_state(env, "sb", "web"), "running");

        /* Kill with SIGKILL: wait reports 137. */
        ck_assert_int_eq(manager_container_kill(env->m, "sb", "web", SIGKILL, false, NULL, &e), 0);
        ck_assert_int_eq(manager_process_wait(env->m, "sb", "web", "web", &e, &res), 0);
        ck_assert_int_eq(json_get_int(res, "ExitCode", -1), 137);
        json_decref(res);

        /* A running sandbox is not deleted without force. */
        ck_assert_int_eq(manager_sandbox_delete(env->m, "sb", false, NULL, &e), -EBUSY);
        ck_assert_int_eq(manager_sandbox_action(env->m, "sb", SANDBOX_STOP, NULL, NULL, &e, &st), 0);
        ck_assert_str_eq(state_of(st), "stopped");
        json_decref(st);
        ck_assert_int_eq(manager_sandbox_delete(env->m, "sb", false, NULL, &e), 0);
        ck_assert_int_eq(manager_sandbox_status(env->m, "sb", &e, &st), -ENOENT);
        ck_assert_str_eq(e.code, "sandbox_not_found");
        ck_assert(has_event(env, "sandbox.delete", NULL));

        /* Nothing of the mock VM is left. */
        char path[256];
        snprintf(path, sizeof path, "%s/mock/sb.json", env->dir);
        ck_assert_int_eq(access(path, F_OK), -1);
        json_decref(cmd);
        env_free(env);
}
END_TEST

START_TEST(test_stop_timeout_kills) {
        env_t *env = env_new(0);
        kd_error_t e;
        json_t *cfg = load("{\"ID\":\"t\",\"Containers\":[{\"ID\":\"stubborn\",\"Cmd\":{\"Args\":[\"sh\",\"-c\","
                           "\"trap '' TERM; sleep infinity\"]}}]}");
        json_t *st = NULL;
        ck_assert_int_eq(manager_sandbox_create(env->m, cfg, true, NULL, &e, &st), 0);
        json_decref(st);
        action_options_t opts = { .timeout_sec = 0 };
        ck_assert_int_eq(manager_container_action(env->m, "t", "stubborn", CONTAINER_STOP, &opts, NULL, &e, &st), 0);
        ck_assert_str_eq(state_of(st), "stopped");
        ck_assert_int_eq(json_get_int(st, "ExitCode", -1), 137);
        json_decref(st);
        json_decref(cfg);
        env_free(env);
}
END_TEST

START_TEST(test_persistence_and_reload) {
        env_t *env = env_new(0);
        kd_error_t e;
        create_demo(env, true);
        json_t *patch = load("{\"a\":\"1\",\"b\":\"2\"}"), *ann = NULL;
        ck_assert_int_eq(manager_sandbox_annotations(env->m, "sb", patch, NULL, &e, &ann), 0);
        json_decref(ann);
        json_decref(patch);

        /* katad goes away; the job's process exits while nobody watches. */
        env_close(env);
        usleep(300000);
        env_open(env, 0);

        json_t *st = NULL;
        ck_assert_int_eq(manager_sandbox_status(env->m, "sb", &e, &st), 0);
        ck_assert_str_eq(state_of(st), "running");
        ck_assert_str_eq(json_get_string(json_get_object(st, "Annotations"), "b"), "2");
        json_decref(st);
        ck_assert_str_eq(container_state(env, "sb", "web"), "running");
        ck_assert_str_eq(container_state(env, "sb", "job"), "stopped");
        ck_assert_int_eq(manager_container_status(env->m, "sb", "job", &e, &st), 0);
        ck_assert_int_eq(json_get_int(st, "ExitCode", -1), 4);
        json_decref(st);

        /* The VM is still there: exec works after the reload. */
        json_t *cmd = load("{\"Args\":[\"exit\",\"5\"]}"), *res = NULL;
        ck_assert_int_eq(manager_process_exec(env->m, "sb", "web", cmd, NULL, &e, &res), 0);
        char token[ID_MAX + 1];
        snprintf(token, sizeof token, "%s", json_get_string(res, "Token"));
        json_decref(res);
        ck_assert_int_eq(manager_process_wait(env->m, "sb", "web", token, &e, &res), 0);
        ck_assert_int_eq(json_get_int(res, "ExitCode", -1), 5);
        json_decref(res);
        json_decref(cmd);
        env_free(env);
}
END_TEST

START_TEST(test_vm_gone_marks_stopped) {
        env_t *env = env_new(0);
        kd_error_t e;
        create_demo(env, true);
        env_close(env);
        char path[256];
        snprintf(path, sizeof path, "%s/mock/sb.json", env->dir);
        ck_assert_int_eq(unlink(path), 0); /* the VM died while katad was away */
        env_open(env, 0);
        json_t *st = NULL;
        ck_assert_int_eq(manager_sandbox_status(env->m, "sb", &e, &st), 0);
        ck_assert_str_eq(state_of(st), "stopped");
        json_decref(st);
        ck_assert(has_event(env, "sandbox.vm-exited", NULL));
        /* A stopped sandbox starts again on a new VM. */
        ck_assert_int_eq(manager_sandbox_action(env->m, "sb", SANDBOX_START, NULL, NULL, &e, &st), 0);
        ck_assert_str_eq(state_of(st), "running");
        json_decref(st);
        ck_assert_str_eq(container_state(env, "sb", "web"), "running");
        env_free(env);
}
END_TEST

START_TEST(test_interrupted_create_is_undone) {
        env_t *env = env_new(0);
        const char *rec = "{\"Version\":1,\"ID\":\"half\",\"Config\":{\"ID\":\"half\"},\"State\":\"ready\","
                          "\"Hypervisor\":\"mock\",\"CreatedAt\":\"2026-01-01T00:00:00.000000000Z\",\"Creating\":true}";
        ck_assert_int_eq(store_save(env->store, "sandbox/half", rec, strlen(rec)), 0);
        env_close(env);
        env_open(env, 0);
        kd_error_t e;
        json_t *st = NULL;
        ck_assert_int_eq(manager_sandbox_status(env->m, "half", &e, &st), -ENOENT);
        char *value = NULL;
        ck_assert_int_eq(store_load(env->store, "sandbox/half", &value, NULL), -ENOENT);
        env_free(env);
}
END_TEST

START_TEST(test_validation) {
        env_t *env = env_new(0);
        kd_error_t e;
        json_t *st = NULL;
        static const struct {
                const char *body, *code;
        } bad[] = {
                { "{\"ID\":\"../x\"}", "invalid_id" },
                { "{\"ID\":\"ok\",\"Containers\":[{\"ID\":\"c\"}]}", "invalid_field" },
                { "{\"ID\":\"ok\",\"Containers\":[{\"ID\":\"c\",\"Cmd\":{\"Args\":\"sleep\"}}]}", "invalid_field" },
                { "{\"ID\":\"ok\",\"HypervisorType\":\"xen\"}", "invalid_field" },
                { "{\"ID\":\"ok\",\"Containers\":[{\"ID\":\"c\",\"RootFs\":\"rel/path\",\"Cmd\":{\"Args\":[\"x\"]}}]}",
                  "invalid_field" },
                { "{\"ID\":\"ok\",\"Containers\":[{\"ID\":\"c\",\"Cmd\":{\"Args\":[\"x\"]}},{\"ID\":\"c\",\"Cmd\":{\"Args\":[\"y\"]}}]}",
                  "invalid_field" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_t *cfg = load(bad[i].body);
                memset(&e, 0, sizeof e);
                ck_assert_int_eq(manager_sandbox_create(env->m, cfg, false, NULL, &e, &st), -EINVAL);
                ck_assert_str_eq(e.code, bad[i].code);
                ck_assert_int_eq(e.status, 400);
                json_decref(cfg);
        }
        json_t *list = NULL;
        ck_assert_int_eq(manager_sandbox_list(env->m, &list), 0);
        ck_assert_int_eq(json_array_size(list), 0);
        json_decref(list);
        create_demo(env, false);
        json_t *dup = load("{\"ID\":\"sb\"}");
        ck_assert_int_eq(manager_sandbox_create(env->m, dup, false, NULL, &e, &st), -EEXIST);
        ck_assert_str_eq(e.code, "already_exists");
        json_decref(dup);
        env_free(env);
}
END_TEST

typedef struct creator {
        env_t *env;
        int result;
        volatile int done;
} creator_t;

static void *create_slow(void *userdata) {
        creator_t *c = userdata;
        json_t *cfg = load("{\"ID\":\"slow\",\"Annotations\":{\"io.katad.mock.boot_delay_ms\":\"800\"},"
                           "\"Containers\":[{\"ID\":\"c\",\"Cmd\":{\"Args\":[\"sleep\",\"infinity\"]}}]}");
        json_t *st = NULL;
        kd_error_t e;
        c->result = manager_sandbox_create(c->env->m, cfg, false, NULL, &e, &st);
        json_decref(st);
        json_decref(cfg);
        __atomic_store_n(&c->done, 1, __ATOMIC_SEQ_CST);
        return NULL;
}

START_TEST(test_slow_boot_does_not_block_others) {
        env_t *env = env_new(0);
        kd_error_t e;
        create_demo(env, true);
        creator_t c = { .env = env };
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, create_slow, &c), 0);
        usleep(100000); /* let the boot begin */
        /* While "slow" boots: the list and an exec+wait in another sandbox complete. */
        json_t *list = NULL, *cmd = load("{\"Args\":[\"true\"]}"), *res = NULL;
        ck_assert_int_eq(manager_sandbox_list(env->m, &list), 0);
        ck_assert_int_eq(json_array_size(list), 1); /* the sandbox being created is not listed yet */
        json_decref(list);
        ck_assert_int_eq(manager_process_exec(env->m, "sb", "web", cmd, NULL, &e, &res), 0);
        char token[ID_MAX + 1];
        snprintf(token, sizeof token, "%s", json_get_string(res, "Token"));
        json_decref(res);
        ck_assert_int_eq(manager_process_wait(env->m, "sb", "web", token, &e, &res), 0);
        json_decref(res);
        ck_assert_int_eq(__atomic_load_n(&c.done, __ATOMIC_SEQ_CST), 0);
        /* An operation on "slow" waits for its creation, then succeeds. */
        json_t *st = NULL;
        ck_assert_int_eq(manager_sandbox_action(env->m, "slow", SANDBOX_START, NULL, NULL, &e, &st), 0);
        ck_assert_int_eq(__atomic_load_n(&c.done, __ATOMIC_SEQ_CST), 1);
        ck_assert_str_eq(state_of(st), "running");
        json_decref(st);
        pthread_join(t, NULL);
        ck_assert_int_eq(c.result, 0);
        json_decref(cmd);
        env_free(env);
}
END_TEST

START_TEST(test_mock_template_clone) {
        env_t *env = env_new(0);
        char run[128], tmpl[128];
        snprintf(run, sizeof run, "%s/run", env->dir);
        snprintf(tmpl, sizeof tmpl, "%s/template", env->dir);
        ck_assert_int_eq(mkdir_p(run, 0700), 0);
        ck_assert_int_eq(mkdir_p(tmpl, 0700), 0);
        vm_config_t cfg = { .id = "tmpl", .run_dir = run, .vcpus = 1, .memory_mib = 128 };
        vm_t *vm = NULL, *clone = NULL;
        ck_assert_int_eq(vmm_boot(env->mock, &cfg, &vm), 0);
        /* A template is taken from a paused VM only. */
        ck_assert_int_eq(vm_save_template(vm, tmpl), -EBUSY);
        ck_assert_int_eq(vm_pause(vm), 0);
        ck_assert_int_eq(vm_save_template(vm, tmpl), 0);
        vm_config_t cfg2 = { .id = "clone", .run_dir = run, .vcpus = 1, .memory_mib = 128 };
        ck_assert_int_eq(vmm_boot_from_template(env->mock, tmpl, &cfg2, &clone), 0);
        agent_t *agent = NULL;
        ck_assert_int_eq(vm_connect_agent(clone, &agent), 0);
        json_t *res = NULL;
        ck_assert_int_eq(agent_call(agent, "Ping", NULL, &res, NULL), 0);
        ck_assert_int_eq(json_get_int(res, "Version", 0), 1);
        json_decref(res);
        agent_close(agent);
        ck_assert_int_eq(vm_stop(clone, true), 0);
        ck_assert_int_eq(vm_stop(vm, true), 0);
        ck_assert_int_eq(vmm_boot_from_template(env->mock, "/nonexistent", &cfg2, &clone), -ENOENT);
        env_free(env);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("manager");
        TCase *tc = tcase_create("mock");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_lifecycle);
        tcase_add_test(tc, test_stop_timeout_kills);
        tcase_add_test(tc, test_persistence_and_reload);
        tcase_add_test(tc, test_vm_gone_marks_stopped);
        tcase_add_test(tc, test_interrupted_create_is_undone);
        tcase_add_test(tc, test_validation);
        tcase_add_test(tc, test_slow_boot_does_not_block_others);
        tcase_add_test(tc, test_mock_template_clone);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        log_set_level(LOG_ERR);
        SRunner *sr = srunner_create(suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
