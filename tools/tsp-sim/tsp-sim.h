/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * tollgate-tsp-sim: plays the telematics service platform for the
 * classifier's real-time uplink. State shared by the uplink handler
 * (tsp-uplink.c), the control API (tsp-control.c) and main (tsp-sim.c).
 */

#include <pthread.h>
#include <stdint.h>

#include "sim-httpd.h"
#include "tg-log.h"
#include "tsp-store.h"

/* What the simulated TSP does with the requests it receives. */
typedef enum TspModeKind {
        TSP_MODE_NORMAL,
        TSP_MODE_HANG,       /* read the request, never answer, keep the connection */
        TSP_MODE_GARBAGE,    /* answer with bytes that are not HTTP, close */
        TSP_MODE_ERROR,      /* 503 + Retry-After: 1 */
        TSP_MODE_REJECT,     /* 400 */
        TSP_MODE_CLOSE,      /* close without answering */
        TSP_MODE_LOSE_REPLY, /* process (store), then close without answering */
        TSP_MODE_SLOW,       /* process (store), answer after slow_msec */
        _TSP_MODE_MAX,
} TspModeKind;

typedef struct TspMode {
        TspModeKind kind;
        uint64_t slow_msec;
} TspMode;

#define TSP_MODE_SLOW_MAX_MSEC ((uint64_t) 3600 * 1000)
#define TSP_MODE_STRING_MAX 32

int tsp_mode_from_string(const char *s, TspMode *ret);
const char *tsp_mode_to_string(const TspMode *m, char buf[static TSP_MODE_STRING_MAX]);

/* Counters that the HTTP layer does not keep; updated with __atomic builtins. */
typedef struct TspCounters {
        uint64_t batches;
        uint64_t duplicate_batches;
        uint64_t records;
        uint64_t duplicate_records;
        uint64_t bad_requests;    /* refused because of the request itself (4xx) */
        uint64_t faults_injected; /* answers changed by the mode */
        uint64_t downlink_queued;
        uint64_t downlink_sent;   /* records put in responses, repeats included */
        uint64_t downlink_acked;
} TspCounters;

typedef struct TspSim {
        TspStore *store;
        SimHttpd *uplink;
        SimHttpd *control;

        pthread_mutex_t lock; /* mode, log_limit */
        TspMode mode;
        TgRateLimit log_limit;

        /* Bytes of decompressed bodies held at once, across connections;
         * bounds memory when many clients send large gzip bodies. */
        uint64_t inflate_in_use;

        TspCounters counters;
} TspSim;

static inline const char *strempty(const char *s) {
        return s ?: "";
}

static inline void tsp_count(uint64_t *counter, uint64_t n) {
        __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

TspMode tsp_sim_get_mode(TspSim *sim);
void tsp_sim_set_mode(TspSim *sim, const TspMode *mode);

/* Log a peer-triggered event at most a few dozen times a second. */
void tsp_sim_log_peer(TspSim *sim, int level, const char *format, ...) _printf_(3, 4);

/* Handlers for sim-httpd; userdata is the TspSim. */
int tsp_uplink_handle(const SimRequest *req, SimResponse *resp, void *userdata);
int tsp_control_handle(const SimRequest *req, SimResponse *resp, void *userdata);
void tsp_uplink_request_error(const char *peer_address, const char *peer_cn, int status, const char *reason,
                              void *userdata);
void tsp_uplink_tls_failure(const char *peer_address, const char *reason, void *userdata);
