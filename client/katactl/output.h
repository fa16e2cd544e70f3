/* katactl's output: pretty JSON, aligned tables and "key: value" blocks, API errors on stderr. */
#pragma once

#include <jansson.h>
#include <stdio.h>

#include "http.h"
#include "macro.h"

/* Prints json indented by two spaces, with a final newline. */
void output_json(FILE *f, const json_t *json);

/*
 * Prints a failed answer to stderr as "katactl: <message> (<code>)" when it has the API's error
 * shape, else as "katactl: katad answered HTTP <status>" with the start of the body.
 */
void output_api_error(const http_response_t *response);

/* Prints s to f with control characters replaced, at most max bytes of it (0: no limit). */
void output_sanitized(FILE *f, const char *s, size_t max);

/*
 * A table printed with columns aligned, three spaces apart. Rows are copied in; a NULL cell prints
 * as "-". A failed allocation is remembered and reported by table_print, so adds need no checks.
 */
typedef struct table table_t;

#define TABLE_COLUMNS_MAX 32

/* A table of n_columns (1..TABLE_COLUMNS_MAX) columns; NULL + errno on OOM or a bad count. */
table_t *table_new(size_t n_columns);
void table_free(table_t *table);
DEFINE_TRIVIAL_CLEANUP_FUNC(table_t *, table_free)
/* Appends a row of exactly n_columns strings. */
void table_add(table_t *table, ...);
void table_add_row(table_t *table, const char *const *row);
/* Appends a "key:  value" row to a two-column table. */
void table_add_field(table_t *table, const char *key, const char *value);
/* Like table_add_field with the value formatted by format_value. */
void table_add_json_field(table_t *table, const char *key, const json_t *value);
/* Prints the table; -ENOMEM if a row was lost to OOM (nothing is printed then). */
int table_print(const table_t *table, FILE *f);

/*
 * Formats a JSON value for a human: strings as they are, numbers in decimal, arrays of scalars as
 * "a,b", objects of scalars as "k=v,k2=v2" (keys sorted), anything deeper as compact JSON; absent,
 * null, "" and empty containers as "-". Returns a new string; NULL on OOM.
 */
char *format_value(const json_t *value);
/* Shortens an RFC 3339 time to whole seconds in UTC; Go's zero time and NULL become "-". */
char *format_time(const char *rfc3339);

/* Follows a dotted path of object keys ("VM.MemoryBytes"); a borrowed reference or NULL. */
json_t *json_path_get(const json_t *root, const char *dotted_path);
/* The keys of an object, sorted, in a NULL-terminated array to free (not the keys); NULL on OOM. */
const char **json_object_sorted_keys(const json_t *object);
/* The string at a dotted path, or NULL when it is absent or not a string. */
const char *json_path_string(const json_t *root, const char *dotted_path);
