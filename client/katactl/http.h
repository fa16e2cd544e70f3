/* katactl's transport: HTTP/1.1 requests to katad over its Unix socket, through libcurl. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* What katad answered; the body is always NUL-terminated (an empty string when there was none). */
typedef struct http_response {
        long status;
        char *content_type; /* NULL when the answer had no Content-Type */
        char *body;
        size_t body_size;
} http_response_t;

/* Called once per line of a streamed answer, NUL-terminated, without its line end; a negative return ends the stream. */
typedef int (*http_line_fn)(const char *line, size_t size, void *userdata);

/* Frees what a response holds and resets it; accepts a zeroed or already freed response. */
void http_response_done(http_response_t *response);

/*
 * Sends `method path` (path includes its query) to katad at socket_path, with json_body (or no body
 * when NULL) as application/json, and stores the answer in *ret whatever its status.
 * Returns 0 when an HTTP answer arrived; -ENOTCONN when the socket could not be connected to;
 * another negative errno when the exchange failed after connecting. On failure a human reason is
 * written to reason.
 */
int http_request(const char *socket_path, const char *method, const char *path, const char *json_body,
                 http_response_t *ret, char *reason, size_t reason_size);

/*
 * Like http_request for a GET whose answer is a stream of lines: when the status is 2xx each line
 * is handed to on_line as it arrives (a last line without newline too) and ret->body stays empty;
 * otherwise the body is collected into ret as usual. Returns when katad ends the stream or on_line
 * asks to stop (both 0), or with the same errors as http_request.
 */
int http_stream_lines(const char *socket_path, const char *path, http_line_fn on_line, void *userdata,
                      http_response_t *ret, char *reason, size_t reason_size);

/* Percent-encodes s for a URL query value (everything but A-Z a-z 0-9 - . _ ~); NULL + errno on OOM. */
char *http_escape(const char *s);
