/* The daemon context handed to every request handler: no global state besides the log level. */
#pragma once

#include <pthread.h>
#include <stdbool.h>

#include "config.h"
#include "core/manager.h"
#include "events.h"
#include "factory/factory.h"
#include "store/store.h"
#include "vmm/vmm.h"

typedef struct server server_t;

typedef struct katad {
        katad_config_t config;
        store_t *store;
        vmm_t *mock;
        vmm_t *qemu;
        factory_t *factory;
        manager_t *manager;
        event_bus_t *events;
        server_t *server;

        pthread_mutex_t streams_lock; /* event streams and WebSocket sessions in flight */
        pthread_cond_t streams_cond;
        unsigned streams;
} katad_t;
