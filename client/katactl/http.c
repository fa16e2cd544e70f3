/* katactl's transport: one libcurl easy handle per request, connected to katad's Unix socket. */
#ifdef HAVE_CONFIG_H
#include "config.h" /* first: it defines _GNU_SOURCE */
#endif

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "macro.h"

/* Far above any answer katad gives (its own request limit is 1 MiB); stops a runaway peer. */
#define BODY_MAX ((size_t) 64 << 20)

typedef struct transfer {
        CURL *curl;
        char *data;
        size_t size;
        size_t allocated;
        http_line_fn on_line; /* NULL unless streaming was asked for */
        void *userdata;
        bool status_checked;
        bool streaming; /* the answer is 2xx, so its lines go to on_line */
        bool stopped;   /* on_line asked to stop */
        bool too_large;
} transfer_t;

static void curl_easy_cleanupp(CURL **p) {
        if (*p)
                curl_easy_cleanup(*p);
}

static void curl_slist_free_allp(struct curl_slist **p) {
        curl_slist_free_all(*p);
}

void http_response_done(http_response_t *response) {
        if (!response)
                return;
        free(response->content_type);
        free(response->body);
        *response = (http_response_t) { 0 };
}

static int transfer_append(transfer_t *t, const char *p, size_t n) {
        if (n > BODY_MAX - t->size - 1)
                return -EFBIG;
        if (t->size + n + 1 > t->allocated) {
                size_t allocated = t->allocated ? t->allocated : 4096;
                while (allocated < t->size + n + 1)
                        allocated *= 2;
                char *data = realloc(t->data, allocated);
                if (!data)
                        return -ENOMEM;
                t->data = data;
                t->allocated = allocated;
        }
        memcpy(t->data + t->size, p, n);
        t->size += n;
        t->data[t->size] = 0;
        return 0;
}

/* Hands every complete line in the buffer to on_line and keeps the unfinished rest. */
static void transfer_deliver_lines(transfer_t *t) {
        size_t start = 0;
        while (!t->stopped) {
                char *newline = memchr(t->data + start, '\n', t->size - start);
                if (!newline)
                        break;
                size_t len = (size_t) (newline - (t->data + start));
                *newline = 0;
                if (len > 0 && t->data[start + len - 1] == '\r')
                        t->data[start + --len] = 0;
                if (t->on_line(t->data + start, len, t->userdata) < 0)
                        t->stopped = true;
                start = (size_t) (newline - t->data) + 1;
        }
        memmove(t->data, t->data + start, t->size - start);
        t->size -= start;
        if (t->data)
                t->data[t->size] = 0;
}

static size_t write_callback(char *ptr, size_t size, size_t nmemb, void *userdata) {
        transfer_t *t = userdata;
        size_t n = size * nmemb;

        if (t->on_line && !t->status_checked) {
                long status = 0;
                curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
                t->streaming = status >= 200 && status < 300;
                t->status_checked = true;
        }
        if (transfer_append(t, ptr, n) < 0) {
                t->too_large = true;
                return 0; /* makes curl fail with CURLE_WRITE_ERROR */
        }
        if (t->streaming) {
                transfer_deliver_lines(t);
                if (t->stopped)
                        return 0;
        }
        return n;
}

static void set_reason(char *reason, size_t reason_size, const char *text) {
        if (reason && reason_size > 0)
                snprintf(reason, reason_size, "%s", text);
}

static int perform(const char *socket_path, const char *method, const char *path, const char *json_body,
                   http_line_fn on_line, void *userdata, http_response_t *ret, char *reason,
                   size_t reason_size) {
        _cleanup_(curl_easy_cleanupp) CURL *curl = curl_easy_init();
        _cleanup_(curl_slist_free_allp) struct curl_slist *headers = NULL;
        _cleanup_free_ char *url = NULL;
        char error_buffer[CURL_ERROR_SIZE] = "";
        transfer_t t = { .on_line = on_line, .userdata = userdata };
        int r = 0;

        if (!curl) {
                set_reason(reason, reason_size, "cannot initialize libcurl");
                return -ENOMEM;
        }
        if (asprintf(&url, "http://localhost%s", path) < 0) {
                url = NULL;
                set_reason(reason, reason_size, strerror(ENOMEM));
                return -ENOMEM;
        }
        t.curl = curl;

        headers = curl_slist_append(headers, "Expect:");
        bool sends_body = json_body || streq(method, "POST") || streq(method, "PUT") || streq(method, "PATCH");
        if (sends_body)
                /* An empty body goes without Content-Type, instead of curl's form encoding. */
                headers = curl_slist_append(headers, json_body ? "Content-Type: application/json" : "Content-Type:");
        if (!headers) {
                set_reason(reason, reason_size, strerror(ENOMEM));
                return -ENOMEM;
        }

        curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, socket_path);
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_PROXY, ""); /* http_proxy in the environment must not apply */
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "katactl");
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_callback);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
        if (sends_body) {
                curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) (json_body ? strlen(json_body) : 0));
                curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json_body ? json_body : "");
        }

        CURLcode code = curl_easy_perform(curl);
        if (code == CURLE_WRITE_ERROR && t.stopped)
                code = CURLE_OK;

        curl_off_t connect_time = 0;
        curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME_T, &connect_time);
        if (code == CURLE_COULDNT_CONNECT || (code == CURLE_OPERATION_TIMEDOUT && connect_time == 0)) {
                long os_errno = 0;
                curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
                if (os_errno > 0)
                        set_reason(reason, reason_size, strerror((int) os_errno));
                else
                        set_reason(reason, reason_size, *error_buffer ? error_buffer : curl_easy_strerror(code));
                r = -ENOTCONN;
        } else if (t.too_large) {
                set_reason(reason, reason_size, "answer larger than 64 MiB");
                r = -EFBIG;
        } else if (code != CURLE_OK) {
                set_reason(reason, reason_size, *error_buffer ? error_buffer : curl_easy_strerror(code));
                r = -EPROTO;
        }
        if (r < 0) {
                free(t.data);
                return r;
        }

        if (t.streaming && t.size > 0 && !t.stopped) {
                t.on_line(t.data, t.size, t.userdata);
                t.size = 0;
        }

        http_response_t response = { 0 };
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
        const char *content_type = NULL;
        curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &content_type);
        if (content_type)
                response.content_type = strdup(content_type);
        response.body = t.data ? t.data : strdup("");
        response.body_size = t.streaming ? 0 : t.size;
        if (t.streaming && response.body)
                response.body[0] = 0;
        if (!response.body || (content_type && !response.content_type)) {
                http_response_done(&response);
                set_reason(reason, reason_size, strerror(ENOMEM));
                return -ENOMEM;
        }
        http_response_done(ret);
        *ret = response;
        return 0;
}

int http_request(const char *socket_path, const char *method, const char *path, const char *json_body,
                 http_response_t *ret, char *reason, size_t reason_size) {
        return perform(socket_path, method, path, json_body, NULL, NULL, ret, reason, reason_size);
}

int http_stream_lines(const char *socket_path, const char *path, http_line_fn on_line, void *userdata,
                      http_response_t *ret, char *reason, size_t reason_size) {
        return perform(socket_path, "GET", path, NULL, on_line, userdata, ret, reason, reason_size);
}

char *http_escape(const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        char *escaped = malloc(strlen(s) * 3 + 1);
        if (!escaped)
                return NULL;
        char *p = escaped;
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;
                if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '.' || c == '_' || c == '~')
                        *p++ = (char) c;
                else {
                        *p++ = '%';
                        *p++ = hex[c >> 4];
                        *p++ = hex[c & 15];
                }
        }
        *p = 0;
        return escaped;
}
