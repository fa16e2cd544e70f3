/* The event bus: a ring of recent events with sequence numbers; subscribers read at their pace. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events.h"
#include "json-util.h"
#include "util.h"

struct event_bus {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        json_t **ring;
        size_t size;
        uint64_t next_seq; /* sequence number of the next event published */
        bool shutdown;
        unsigned subscribers;
};

struct event_sub {
        event_bus_t *bus;
        char *sandbox, *container;
        uint64_t next_seq;
};

int event_bus_new(size_t history, event_bus_t **ret) {
        event_bus_t *bus = calloc(1, sizeof *bus);
        if (!bus)
                return -ENOMEM;
        bus->size = history ? history : 1;
        bus->ring = calloc(bus->size, sizeof *bus->ring);
        if (!bus->ring) {
                free(bus);
                return -ENOMEM;
        }
        pthread_mutex_init(&bus->lock, NULL);
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&bus->cond, &attr);
        pthread_condattr_destroy(&attr);
        *ret = bus;
        return 0;
}

void event_bus_shutdown(event_bus_t *bus) {
        pthread_mutex_lock(&bus->lock);
        bus->shutdown = true;
        pthread_cond_broadcast(&bus->cond);
        pthread_mutex_unlock(&bus->lock);
}

void event_bus_free(event_bus_t *bus) {
        if (!bus)
                return;
        for (size_t i = 0; i < bus->size; i++)
                json_decref(bus->ring[i]);
        free(bus->ring);
        pthread_cond_destroy(&bus->cond);
        pthread_mutex_destroy(&bus->lock);
        free(bus);
}

void event_bus_publish(event_bus_t *bus, json_t *event) {
        pthread_mutex_lock(&bus->lock);
        /* Stamped here, in the order of the stream: two emitters racing would otherwise publish
         * their events in another order than the times they took. */
        char when[64];
        format_rfc3339(now_realtime_ns(), when, sizeof when);
        json_object_set_new(event, "Time", json_string(when));
        size_t slot = bus->next_seq % bus->size;
        json_decref(bus->ring[slot]);
        bus->ring[slot] = json_incref(event);
        bus->next_seq++;
        pthread_cond_broadcast(&bus->cond);
        pthread_mutex_unlock(&bus->lock);
}

static bool matches(event_sub_t *sub, json_t *ev) {
        if (sub->sandbox && !streq(json_get_string(ev, "SandboxID") ?: "", sub->sandbox))
                return false;
        if (sub->container && !streq(json_get_string(ev, "ContainerID") ?: "", sub->container))
                return false;
        return true;
}

int event_bus_subscribe(event_bus_t *bus, const char *sandbox, const char *container, int64_t since_ns,
                        event_sub_t **ret) {
        event_sub_t *sub = calloc(1, sizeof *sub);
        if (!sub)
                return -ENOMEM;
        sub->bus = bus;
        sub->sandbox = sandbox ? strdup(sandbox) : NULL;
        sub->container = container ? strdup(container) : NULL;
        if ((sandbox && !sub->sandbox) || (container && !sub->container)) {
                event_sub_free(sub);
                return -ENOMEM;
        }
        pthread_mutex_lock(&bus->lock);
        bus->subscribers++;
        sub->next_seq = bus->next_seq;
        if (since_ns >= 0) {
                /* Walk back over the kept history to the first event newer than since. */
                uint64_t oldest = bus->next_seq > bus->size ? bus->next_seq - bus->size : 0;
                while (sub->next_seq > oldest) {
                        json_t *ev = bus->ring[(sub->next_seq - 1) % bus->size];
                        int64_t t;
                        const char *when = json_get_string(ev, "Time");
                        if (!when || parse_rfc3339(when, &t) < 0 || t <= since_ns)
                                break;
                        sub->next_seq--;
                }
        }
        pthread_mutex_unlock(&bus->lock);
        *ret = sub;
        return 0;
}

int event_sub_next(event_sub_t *sub, int timeout_ms, json_t **ret) {
        event_bus_t *bus = sub->bus;
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
        }
        int r = 0;
        pthread_mutex_lock(&bus->lock);
        for (;;) {
                if (bus->shutdown) {
                        r = -ESHUTDOWN;
                        break;
                }
                uint64_t oldest = bus->next_seq > bus->size ? bus->next_seq - bus->size : 0;
                if (sub->next_seq < oldest) {
                        uint64_t lost = oldest - sub->next_seq;
                        sub->next_seq = oldest;
                        char when[64];
                        format_rfc3339(now_realtime_ns(), when, sizeof when);
                        *ret = json_pack("{s:s, s:s, s:I}", "Type", "events.lost", "Time", when, "Lost",
                                         (json_int_t) lost);
                        r = 1;
                        break;
                }
                while (sub->next_seq < bus->next_seq) {
                        json_t *ev = bus->ring[sub->next_seq % bus->size];
                        sub->next_seq++;
                        if (matches(sub, ev)) {
                                *ret = json_incref(ev);
                                r = 1;
                                break;
                        }
                }
                if (r == 1)
                        break;
                if (pthread_cond_timedwait(&bus->cond, &bus->lock, &deadline) == ETIMEDOUT) {
                        r = 0;
                        break;
                }
        }
        pthread_mutex_unlock(&bus->lock);
        return r;
}

void event_sub_free(event_sub_t *sub) {
        if (!sub)
                return;
        pthread_mutex_lock(&sub->bus->lock);
        sub->bus->subscribers--;
        pthread_mutex_unlock(&sub->bus->lock);
        free(sub->sandbox);
        free(sub->container);
        free(sub);
}
