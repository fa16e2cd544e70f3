/* jansson helpers shared by katad and katactl. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

/* jansson provides json_decrefp(); this names it in the style of the other cleanup helpers. */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* The string value of key, or NULL when absent, null or not a string. */
const char *json_get_string(const json_t *obj, const char *key);
/* The integer value of key, or def when absent or not an integer. */
json_int_t json_get_int(const json_t *obj, const char *key, json_int_t def);
/* The boolean value of key, or def when absent or not a boolean. */
bool json_get_bool(const json_t *obj, const char *key, bool def);
/* The object/array value of key, or NULL when absent or of another type. */
json_t *json_get_object(const json_t *obj, const char *key);
json_t *json_get_array(const json_t *obj, const char *key);
/* Sets key to a new string (no-op for NULL values); returns negative errno on allocation failure. */
int json_set_string(json_t *obj, const char *key, const char *value);
/* Dumps compactly into a malloc'ed string; NULL on allocation failure. */
char *json_dump_compact(const json_t *j);
