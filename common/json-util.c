/* jansson helpers shared by katad and katactl. */
#include <errno.h>

#include "json-util.h"

const char *json_get_string(const json_t *obj, const char *key) {
        json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
        return json_is_string(v) ? json_string_value(v) : NULL;
}

json_int_t json_get_int(const json_t *obj, const char *key, json_int_t def) {
        json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
        return json_is_integer(v) ? json_integer_value(v) : def;
}

bool json_get_bool(const json_t *obj, const char *key, bool def) {
        json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
        return json_is_boolean(v) ? json_is_true(v) : def;
}

json_t *json_get_object(const json_t *obj, const char *key) {
        json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
        return json_is_object(v) ? v : NULL;
}

json_t *json_get_array(const json_t *obj, const char *key) {
        json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
        return json_is_array(v) ? v : NULL;
}

int json_set_string(json_t *obj, const char *key, const char *value) {
        if (!value)
                return 0;
        return json_object_set_new(obj, key, json_string(value)) < 0 ? -ENOMEM : 0;
}

char *json_dump_compact(const json_t *j) {
        return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}
