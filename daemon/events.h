/* The event bus: a bounded history of events and any number of filtered subscribers. */
#pragma once

#include <jansson.h>
#include <stdint.h>

typedef struct event_bus event_bus_t;
typedef struct event_sub event_sub_t;

int event_bus_new(size_t history, event_bus_t **ret);
/* Wakes every subscriber for good (event_sub_next returns -ESHUTDOWN) and frees nothing. */
void event_bus_shutdown(event_bus_t *bus);
/* Frees the bus; every subscription must be freed first. */
void event_bus_free(event_bus_t *bus);
/* Appends an event (borrowed; the bus keeps its own reference), setting its "Time" so that the
 * stream is in time order, and wakes subscribers. */
void event_bus_publish(event_bus_t *bus, json_t *event);

/* Subscribes to events of one sandbox (and container) or of all (NULL). Events in the history
 * newer than since_ns (RFC 3339 time in ns; -1 for none) are delivered first. */
int event_bus_subscribe(event_bus_t *bus, const char *sandbox, const char *container, int64_t since_ns,
                        event_sub_t **ret);
/* Returns 1 with the next matching event (new reference), 0 after timeout_ms without one,
 * -ESHUTDOWN once the bus shuts down. A subscriber that fell behind the history gets a synthetic
 * {"Type":"events.lost","Lost":N} event first. */
int event_sub_next(event_sub_t *sub, int timeout_ms, json_t **ret);
void event_sub_free(event_sub_t *sub);
