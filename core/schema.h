/* Type checking of request bodies against the virtcontainers structures.
 *
 * Bodies stay jansson values; a schema says which known keys must have which JSON type, as Go's
 * encoding/json would demand when decoding into the virtcontainers structs. Unknown keys are
 * ignored and null is accepted where Go accepts it (slices, maps, structs, pointers). */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "error.h"

typedef enum schema_type {
        SCHEMA_ANY,
        SCHEMA_STRING,
        SCHEMA_BOOL,
        SCHEMA_INT,      /* an integer */
        SCHEMA_UINT,     /* a non-negative integer */
        SCHEMA_OBJECT,   /* an object with the given fields */
        SCHEMA_ARRAY,    /* an array whose items have the item type (and fields, for objects) */
        SCHEMA_MAP,      /* an object whose values are strings */
        SCHEMA_SIGNAL,   /* a signal: a number or a name like "SIGTERM" */
        SCHEMA_ROOTFS,   /* a path string or a RootFs object */
        SCHEMA_NULLABLE_MAP, /* an object whose values are strings or null (a merge patch) */
} schema_type_t;

typedef struct schema_field {
        const char *name;
        schema_type_t type;
        schema_type_t item;                 /* for SCHEMA_ARRAY */
        const struct schema_field *fields;  /* for SCHEMA_OBJECT, or arrays of objects; NULL-name ended */
        int required;                       /* the key must be present and not null */
} schema_field_t;

extern const schema_field_t schema_sandbox_config[];
extern const schema_field_t schema_container_config[];
extern const schema_field_t schema_cmd[];
extern const schema_field_t schema_linux_resources[];
extern const schema_field_t schema_signal_request[];
extern const schema_field_t schema_winsize_request[];

/* Checks that value is an object whose known keys have the schema's types. On a mismatch fills e
 * with code "invalid_field" and a message naming the path (e.g. "Containers[1].Cmd.Args: expected
 * an array of strings") and returns -EINVAL. */
int schema_check(const json_t *value, const schema_field_t *fields, const char *what, kd_error_t *e);
/* Checks a merge patch for annotations: an object of strings or nulls. */
int schema_check_annotations_patch(const json_t *value, kd_error_t *e);
/* Decodes a request body (len bytes, not NUL-terminated) into JSON, filling e with "invalid_json"
 * on malformed input. The fuzz target drives this function together with schema_check. */
int schema_decode_body(const char *body, size_t len, json_t **ret, kd_error_t *e);
