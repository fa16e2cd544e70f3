/* libFuzzer target for HTTP request bodies: schema_decode_body, then schema_check against every
 * body schema and the annotations merge-patch check. Must never crash, leak or trip a sanitizer. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/schema.h"
#include "core/types.h"
#include "json-util.h"

static const struct {
        const schema_field_t *fields;
        const char *what;
} schemas[] = {
        {schema_sandbox_config, "SandboxConfig"},
        {schema_container_config, "ContainerConfig"},
        {schema_cmd, "Cmd"},
        {schema_linux_resources, "LinuxResources"},
        {schema_signal_request, "signal request"},
        {schema_winsize_request, "winsize request"},
};

/* A filled error must be a terminated string pair with a 400; anything else is a bug. */
static void check_error(int r, const kd_error_t *e, const char *code) {
        if (r == 0)
                return;
        if (r != -EINVAL || e->status != 400 || strcmp(e->code, code) != 0 ||
            memchr(e->message, 0, sizeof e->message) == NULL || e->message[0] == 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* An exact-size copy, so reading past len is caught by ASan rather than hidden. */
        char *body = malloc(size ? size : 1);
        if (!body)
                return 0;
        memcpy(body, data, size);

        kd_error_t e = {0};
        json_t *j = NULL;
        int r = schema_decode_body(body, size, &j, &e);
        check_error(r, &e, "invalid_json");
        if (r == 0) {
                for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
                        memset(&e, 0, sizeof e);
                        r = schema_check(j, schemas[i].fields, schemas[i].what, &e);
                        check_error(r, &e, "invalid_field");
                        if (r == 0 && schemas[i].fields == schema_container_config)
                                (void) path_is_safe_absolute(rootfs_path(j));
                        /* A NULL error is allowed and must give the same verdict. */
                        if (schema_check(j, schemas[i].fields, schemas[i].what, NULL) != r)
                                abort();
                }
                memset(&e, 0, sizeof e);
                check_error(schema_check_annotations_patch(j, &e), &e, "invalid_field");
                json_decref(j);
        }
        free(body);
        return 0;
}
