/* Request handlers: one per route, each turning HTTP into a manager call and back. */
#pragma once

#include "server.h"

#define HANDLER(name) enum MHD_Result name(katad_t *k, request_t *req)

HANDLER(handle_versions);
HANDLER(handle_info);
HANDLER(handle_sandbox_list);
HANDLER(handle_sandbox_create);
HANDLER(handle_sandbox_status);
HANDLER(handle_sandbox_delete);
HANDLER(handle_sandbox_start);
HANDLER(handle_sandbox_stop);
HANDLER(handle_sandbox_pause);
HANDLER(handle_sandbox_resume);
HANDLER(handle_sandbox_release);
HANDLER(handle_sandbox_stats);
HANDLER(handle_annotations_get);
HANDLER(handle_annotations_patch);
HANDLER(handle_container_list);
HANDLER(handle_container_create);
HANDLER(handle_container_status);
HANDLER(handle_container_delete);
HANDLER(handle_container_start);
HANDLER(handle_container_stop);
HANDLER(handle_container_pause);
HANDLER(handle_container_resume);
HANDLER(handle_container_kill);
HANDLER(handle_container_stats);
HANDLER(handle_container_update);
HANDLER(handle_container_ps);
HANDLER(handle_container_logs);
HANDLER(handle_process_exec);
HANDLER(handle_process_wait);
HANDLER(handle_process_signal);
HANDLER(handle_process_winsize);
/* IO streams, hotplug and the factory until their issues land: 501 in the common error shape. */
HANDLER(handle_not_implemented);
/* stream.c: the event stream, as NDJSON or over a WebSocket. */
HANDLER(handle_events);
