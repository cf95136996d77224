/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The simulator's SQLite database: what the TSP received (batches,
 * records) and what it holds for the gateways (downlink). Tests read the
 * file directly, so the schema is part of the simulator's contract
 * (docs/tsp-simulator.md). One connection, one writer at a time; every
 * call is one transaction.
 */

#include <stdint.h>

#include "tg-macro.h"
#include "tg-record.h"

typedef struct TspStore TspStore;

typedef struct TspBatch {
        const char *client;   /* subject CN of the client certificate */
        const char *key;      /* Idempotency-Key */
        const char *encoding; /* "gzip", "deflate", "identity" */
        uint64_t received_usec;
        const uint8_t *records; /* decoded body: TGR1 records, already validated */
        size_t records_size;
        size_t n_records;
        size_t body_bytes; /* Content-Length, as sent */
        bool has_ack;
        uint64_t ack; /* Tollgate-Downlink-Ack */
} TspBatch;

typedef struct TspBatchResult {
        bool duplicate_batch;
        uint64_t stored;     /* new records */
        uint64_t duplicates; /* records whose id this client had sent before */
        uint64_t acked;      /* downlink records newly marked delivered */
        TgBuf downlink;      /* pending downlink records, TGR1; free with tg_buf_free() */
        size_t n_downlink;
} TspBatchResult;

int tsp_store_open(const char *path, TspStore **ret);
TspStore *tsp_store_free(TspStore *s);
TG_DEFINE_TRIVIAL_CLEANUP_FUNC(TspStore *, tsp_store_free);

/* Store a batch unless (client, key) is stored already, apply the downlink
 * acknowledgement, and collect the client's pending downlink records. */
int tsp_store_batch(TspStore *s, const TspBatch *b, TspBatchResult *ret);

/* Queue a downlink record for `client`; its id is > every id ever issued,
 * also across tsp_store_reset(). */
int tsp_store_queue_downlink(TspStore *s, const char *client, const char *topic, uint64_t timestamp_usec,
                             const void *payload, size_t size, uint64_t *ret_id);

/* Empty every table (downlink ids keep counting up). */
int tsp_store_reset(TspStore *s);
