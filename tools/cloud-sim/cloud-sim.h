/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * tollgate-cloud-sim: plays the carmaker's cloud for the car key's relay
 * (docs/key-protocol.md §5, docs/cloud-simulator.md). State shared by the
 * key API (cloud-api.c), the control API (cloud-control.c) and main
 * (cloud-sim.c); the database and the download files are cloud-store.c's.
 */

#include <pthread.h>
#include <stdint.h>

#include "cloud-store.h"
#include "cloud-util.h"
#include "sim-httpd.h"
#include "tg-log.h"

/* What the simulated cloud does with the requests it receives. */
typedef enum CloudModeKind {
        CLOUD_MODE_NORMAL,
        CLOUD_MODE_HANG,       /* read the request, never answer, keep the connection */
        CLOUD_MODE_GARBAGE,    /* answer with bytes that are not HTTP, close */
        CLOUD_MODE_ERROR,      /* 503 + Retry-After: 1 */
        CLOUD_MODE_REJECT,     /* 400 */
        CLOUD_MODE_CLOSE,      /* close without answering */
        CLOUD_MODE_LOSE_REPLY, /* process (store, ack, ...), then close without answering */
        CLOUD_MODE_SLOW,       /* process, answer after `arg` ms */
        CLOUD_MODE_TRUNCATE,   /* download answers stop after `arg` body bytes; the connection closes */
        _CLOUD_MODE_MAX,
} CloudModeKind;

typedef struct CloudMode {
        CloudModeKind kind;
        uint64_t arg;
} CloudMode;

#define CLOUD_MODE_SLOW_MAX_MSEC ((uint64_t) 3600 * 1000)
#define CLOUD_MODE_STRING_MAX 48

int cloud_mode_from_string(const char *s, CloudMode *ret);
const char *cloud_mode_to_string(const CloudMode *m, char buf[static CLOUD_MODE_STRING_MAX]);

/* Counters that the HTTP layer does not keep; updated with __atomic builtins. */
typedef struct CloudCounters {
        uint64_t uploads;           /* items stored (201) */
        uint64_t duplicate_uploads; /* items the cloud had already (200) */
        uint64_t upload_conflicts;  /* same (gateway, item id), other bytes (409) */
        uint64_t bytes_in;          /* item bytes of uploads answered 200 or 201 */
        uint64_t records;           /* TGR1 records stored */
        uint64_t duplicate_records; /* records whose (gateway, id) was stored before */
        uint64_t listings;          /* GET .../downloads answered */
        uint64_t downloads_served;  /* GET .../downloads/{id} answered 200 or 206 */
        uint64_t bytes_out;         /* body bytes of those answers */
        uint64_t acks;              /* downloads acknowledged (first ack of each) */
        uint64_t duplicate_acks;
        uint64_t delivered;         /* first "delivered" of each download */
        uint64_t downloads_queued;  /* through the control API */
        uint64_t bad_requests;      /* refused because of the request itself (4xx but 403) */
        uint64_t forbidden;         /* 403: no identity, or a key acting for a gateway it is not paired with */
        uint64_t faults_injected;   /* answers changed by the mode */
} CloudCounters;

typedef struct CloudPair {
        char *key;
        char *gateway;
} CloudPair;

typedef struct CloudSim {
        CloudStore *store;
        SimHttpd *api;
        SimHttpd *control;

        pthread_mutex_t lock; /* mode, pairs, log_limit */
        CloudMode mode;
        CloudPair *pairs;
        size_t n_pairs;
        TgRateLimit log_limit;

        CloudCounters counters;
} CloudSim;

/* Key ids and gateway ids: 1-64 characters of [A-Za-z0-9._-], the
 * alphabet tollgate-pki allows in a CN. */
#define CLOUD_ID_MAX 64
bool cloud_id_valid(const char *s, size_t len);

static inline const char *strempty(const char *s) {
        return s ?: "";
}

static inline void cloud_count(uint64_t *counter, uint64_t n) {
        __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

CloudMode cloud_sim_get_mode(CloudSim *sim);
void cloud_sim_set_mode(CloudSim *sim, const CloudMode *mode);

/* Pairing: may `key` act for `gateway`? */
bool cloud_sim_is_paired(CloudSim *sim, const char *key, const char *gateway);
/* 1 if added, 0 if it was there, negative errno. */
int cloud_sim_pair(CloudSim *sim, const char *key, const char *gateway);
/* 1 if removed, 0 if it was not there. */
int cloud_sim_unpair(CloudSim *sim, const char *key, const char *gateway);
/* The pairs as a JSON array, appended to `out`. */
int cloud_sim_pairs_json(CloudSim *sim, TgBuf *out);

/* Log a peer-triggered event at most a few dozen times a second. */
void cloud_sim_log_peer(CloudSim *sim, int level, const char *format, ...) _printf_(3, 4);

/* Handlers for sim-httpd; userdata is the CloudSim. */
int cloud_api_handle(const SimRequest *req, SimResponse *resp, void *userdata);
int cloud_control_handle(const SimRequest *req, SimResponse *resp, void *userdata);
void cloud_api_request_error(const char *peer_address, const char *peer_cn, int status, const char *reason,
                             void *userdata);
void cloud_api_tls_failure(const char *peer_address, const char *reason, void *userdata);
