/* katactl's output: how answers are shown to a human (tables) or a program (JSON). */
#ifdef HAVE_CONFIG_H
#include "config.h" /* first: it defines _GNU_SOURCE */
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "output.h"
#include "util.h"


struct table {
        size_t n_columns;
        char **cells; /* row after row, n_columns cells each */
        size_t n_cells;
        size_t allocated;
        bool oom;
};

void output_json(FILE *f, const json_t *json) {
        json_dumpf(json, f, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        fputc('\n', f);
}

void output_sanitized(FILE *f, const char *s, size_t max) {
        for (size_t i = 0; s[i] && (max == 0 || i < max); i++) {
                unsigned char c = (unsigned char) s[i];
                fputc(c < 0x20 || c == 0x7f ? '?' : c, f);
        }
}

void output_api_error(const http_response_t *response) {
        json_t *error = json_loadb(response->body, response->body_size, JSON_DECODE_ANY, NULL);
        const char *message = json_string_value(json_object_get(error, "message"));
        const char *code = json_string_value(json_object_get(error, "code"));

        fputs("katactl: ", stderr);
        if (message && !strempty(message)) {
                output_sanitized(stderr, message, 0);
                if (code)
                        fputs(" (", stderr), output_sanitized(stderr, code, 0), fputs(")\n", stderr);
                else
                        fprintf(stderr, " (HTTP %ld)\n", response->status);
        } else {
                fprintf(stderr, "katad answered HTTP %ld", response->status);
                /* The first line is enough to tell a proxy's HTML page or a crash message. */
                size_t first_line = strcspn(response->body, "\r\n");
                if (first_line > 0) {
                        fputs(": ", stderr);
                        output_sanitized(stderr, response->body, first_line < 200 ? first_line : 200);
                }
                fputc('\n', stderr);
        }
        json_decref(error);
}

table_t *table_new(size_t n_columns) {
        if (n_columns == 0 || n_columns > TABLE_COLUMNS_MAX) {
                errno = EINVAL;
                return NULL;
        }
        table_t *table = calloc(1, sizeof *table);
        if (!table)
                return NULL;
        table->n_columns = n_columns;
        return table;
}

void table_free(table_t *table) {
        if (!table)
                return;
        for (size_t i = 0; i < table->n_cells; i++)
                free(table->cells[i]);
        free(table->cells);
        free(table);
}

/* Copies a cell with tabs, newlines and other control characters turned into spaces. */
static char *cell_dup(const char *s) {
        char *copy = strdup(s ? s : "-");
        if (copy)
                for (char *p = copy; *p; p++)
                        if ((unsigned char) *p < 0x20 || *p == 0x7f)
                                *p = ' ';
        return copy;
}

void table_add_row(table_t *table, const char *const *row) {
        if (table->oom)
                return;
        if (table->n_cells + table->n_columns > table->allocated) {
                size_t allocated = table->allocated ? table->allocated * 2 : table->n_columns * 16;
                char **cells = realloc(table->cells, allocated * sizeof *cells);
                if (!cells) {
                        table->oom = true;
                        return;
                }
                table->cells = cells;
                table->allocated = allocated;
        }
        for (size_t i = 0; i < table->n_columns; i++) {
                char *cell = cell_dup(row[i]);
                if (!cell) {
                        table->oom = true;
                        return;
                }
                table->cells[table->n_cells++] = cell;
        }
}

void table_add(table_t *table, ...) {
        const char *row[TABLE_COLUMNS_MAX];
        va_list ap;

        va_start(ap, table);
        for (size_t i = 0; i < table->n_columns; i++)
                row[i] = va_arg(ap, const char *);
        va_end(ap);
        table_add_row(table, row);
}

void table_add_field(table_t *table, const char *key, const char *value) {
        _cleanup_free_ char *label = NULL;
        if (asprintf(&label, "%s:", key) < 0) {
                table->oom = true;
                return;
        }
        table_add(table, label, value);
}

void table_add_json_field(table_t *table, const char *key, const json_t *value) {
        _cleanup_free_ char *formatted = format_value(value);
        if (!formatted) {
                table->oom = true;
                return;
        }
        table_add_field(table, key, formatted);
}

int table_print(const table_t *table, FILE *f) {
        if (table->oom)
                return -ENOMEM;
        if (table->n_cells == 0)
                return 0;

        size_t widths[TABLE_COLUMNS_MAX] = { 0 };
        for (size_t i = 0; i < table->n_cells; i++) {
                size_t len = strlen(table->cells[i]);
                if (len > widths[i % table->n_columns])
                        widths[i % table->n_columns] = len;
        }
        for (size_t i = 0; i < table->n_cells; i++) {
                size_t column = i % table->n_columns;
                if (column + 1 == table->n_columns)
                        fprintf(f, "%s\n", table->cells[i]);
                else
                        fprintf(f, "%-*s   ", (int) widths[column], table->cells[i]);
        }
        return 0;
}

static bool json_is_scalar(const json_t *value) {
        return !json_is_object(value) && !json_is_array(value);
}

static char *format_scalar(const json_t *value) {
        char *s = NULL;
        switch (json_typeof(value)) {
        case JSON_STRING:
                return strdup(json_string_length(value) > 0 ? json_string_value(value) : "-");
        case JSON_INTEGER:
                if (asprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(value)) < 0)
                        return NULL;
                return s;
        case JSON_REAL: {
                double d = json_real_value(value);
                /* Integers too big for json_int_t arrive as reals; show them without an exponent. */
                if (asprintf(&s, "%.0f", d) < 0)
                        return NULL;
                if (strtod(s, NULL) != d) {
                        free(s);
                        if (asprintf(&s, "%g", d) < 0)
                                return NULL;
                }
                return s;
        }
        case JSON_TRUE:
                return strdup("true");
        case JSON_FALSE:
                return strdup("false");
        default:
                return strdup("-");
        }
}

static int compare_strings(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

const char **json_object_sorted_keys(const json_t *object) {
        size_t n = 0;
        const char **keys = calloc(json_object_size(object) + 1, sizeof *keys);
        const char *key;
        json_t *value;

        if (!keys)
                return NULL;
        json_object_foreach((json_t *) object, key, value) {
                keys[n++] = key;
        }
        qsort(keys, n, sizeof *keys, compare_strings);
        return keys;
}

/* "k=v,k2=v2" with sorted keys, for an object whose values are all scalars. */
static char *format_flat_object(const json_t *object) {
        _cleanup_free_ const char **keys = json_object_sorted_keys(object);
        char *buffer = NULL;
        size_t size = 0;

        if (!keys)
                return NULL;
        FILE *f = open_memstream(&buffer, &size);
        if (!f)
                return NULL;
        for (size_t i = 0; keys[i]; i++) {
                _cleanup_free_ char *formatted = format_scalar(json_object_get(object, keys[i]));
                fprintf(f, "%s%s=%s", i > 0 ? "," : "", keys[i], formatted ? formatted : "?");
        }
        if (fclose(f) != 0) {
                free(buffer);
                return NULL;
        }
        return buffer;
}

static char *format_flat_array(const json_t *array) {
        char *buffer = NULL;
        size_t size = 0, i;
        json_t *value;

        FILE *f = open_memstream(&buffer, &size);
        if (!f)
                return NULL;
        json_array_foreach(array, i, value) {
                _cleanup_free_ char *formatted = format_scalar(value);
                fprintf(f, "%s%s", i > 0 ? "," : "", formatted ? formatted : "?");
        }
        if (fclose(f) != 0) {
                free(buffer);
                return NULL;
        }
        return buffer;
}

char *format_value(const json_t *value) {
        if (!value)
                return strdup("-");
        if (json_is_scalar(value))
                return format_scalar(value);
        if (json_is_object(value) ? json_object_size(value) == 0 : json_array_size(value) == 0)
                return strdup("-");

        bool flat = true;
        if (json_is_object(value)) {
                const char *key;
                json_t *member;
                json_object_foreach((json_t *) value, key, member) {
                        flat = flat && json_is_scalar(member);
                }
                if (flat)
                        return format_flat_object(value);
        } else {
                size_t i;
                json_t *member;
                json_array_foreach(value, i, member) {
                        flat = flat && json_is_scalar(member);
                }
                if (flat)
                        return format_flat_array(value);
        }
        return json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
}

char *format_time(const char *rfc3339) {
        int64_t ns;
        if (strempty(rfc3339) || strncmp(rfc3339, "0001-01-01T00:00:00", 19) == 0)
                return strdup("-");
        if (parse_rfc3339(rfc3339, &ns) < 0)
                return strdup(rfc3339);

        time_t seconds = (time_t) (ns / 1000000000);
        struct tm tm;
        char buffer[64];
        if (!gmtime_r(&seconds, &tm) || strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                return strdup(rfc3339);
        return strdup(buffer);
}

json_t *json_path_get(const json_t *root, const char *dotted_path) {
        json_t *node = (json_t *) root;
        const char *p = dotted_path;
        while (node && *p) {
                const char *dot = strchrnul(p, '.');
                char key[128];
                size_t len = (size_t) (dot - p);
                if (len >= sizeof key || !json_is_object(node))
                        return NULL;
                memcpy(key, p, len);
                key[len] = 0;
                node = json_object_get(node, key);
                p = *dot ? dot + 1 : dot;
        }
        return node;
}

const char *json_path_string(const json_t *root, const char *dotted_path) {
        return json_string_value(json_path_get(root, dotted_path));
}
