/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The classifier: takes telemetry from producers (SEQPACKET socket, D-Bus
 * Submit), classifies each record by topic, sends real-time records to the
 * TSP at once (classifier-uplink.c) and stores deferred ones in the outbox
 * for key-sync (classifier-store.c).
 *
 * When a record counts as kept ("resolved"), and only then is its producer
 * acknowledged (ACK frame, D-Bus reply):
 *   - a deferred record once the group commit that writes its outbox segment
 *     has succeeded (at most CommitInterval after it arrived);
 *   - a real-time record once the TSP has acknowledged its batch, or the
 *     batch has been written to the backlog: a batch still unacknowledged
 *     SpillAfter after it closed, or any batch while the uplink is down, is
 *     spilled by the next commit.
 * So the backlog is written only when the uplink is slow or down. Batches get
 * increasing ids, so "every real-time record below the watermark is resolved"
 * (uplink_watermark) is what ACKs and replies wait for. The records at risk on
 * a crash are the unacknowledged ones: deferred records of the last
 * CommitInterval, real-time records of the last SpillAfter (+ BatchWindow).
 */

#include <curl/curl.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "classifier-conf.h"
#include "tg-daemon.h"
#include "tg-http.h"
#include "tg-log.h"
#include "tg-queue.h"
#include "tg-record.h"

#define ID_RUN_SHIFT 40

typedef struct Manager Manager;
typedef struct Producer Producer;
typedef struct Batch Batch;
typedef struct PendingReply PendingReply;

/* One connected producer on the telemetry socket. */
struct Producer {
        Manager *manager;
        int fd;
        sd_event_source *io;
        pid_t pid;
        uid_t uid;
        uint32_t received_seq;  /* last frame taken in */
        uint32_t committed_seq; /* last frame taken in before the last successful commit */
        uint32_t acked_seq;     /* last ACK sent */
        bool any_received, any_committed;
        /* Frames with real-time records not resolved yet: (seq, highest record id),
         * oldest first. An ACK never passes the first of them. */
        struct {
                uint32_t seq;
                uint64_t rt_id;
        } *rt_frames;
        size_t n_rt_frames, allocated_rt_frames;
        Producer *next, *prev;
};

typedef enum BatchState {
        BATCH_COLLECTING, /* open: the batch window is running */
        BATCH_READY,      /* closed and compressed, waiting for an uplink slot */
        BATCH_SENDING,    /* HTTP request in flight */
} BatchState;

/* A real-time HTTP batch; its id is its first record's id (Idempotency-Key). */
struct Batch {
        Manager *manager;
        uint64_t id;
        BatchState state;
        uint64_t closed_usec; /* CLOCK_MONOTONIC */
        uint32_t records;
        uint64_t expires_usec;
        TgBuf raw;      /* TGR1 records while collecting */
        TgBuf body;     /* what goes on the wire (gzip or raw) */
        bool gzip;
        bool persisted; /* also in the backlog (deleted from there once the TSP acknowledges) */
        bool spilling;  /* written by the commit under way */
        bool drain;     /* read back from the backlog, not fresh */
        CURL *easy;
        struct curl_slist *headers;
        TgBuf response;
        Batch *next, *prev;
};

/* An outbox segment being filled: deferred records sharing priority and TTL. */
typedef struct Segment {
        unsigned priority;
        uint64_t ttl_usec;
        uint64_t first_id;
        uint32_t records;
        TgBuf data;
} Segment;

/* A D-Bus Submit waiting for the commit that stores its record. */
struct PendingReply {
        sd_bus_message *message;
        DataClass class;
        uint64_t id;     /* the record's id */
        bool committed;  /* a commit succeeded since it was accepted */
        PendingReply *next;
};

typedef struct Counters {
        uint64_t accepted;          /* records taken in */
        uint64_t accepted_bytes;    /* their TGR1 size */
        uint64_t rejected;          /* records in rejected frames or calls */
        uint64_t realtime_sent;     /* records the TSP acknowledged */
        uint64_t realtime_rejected; /* records in batches the TSP refused for good */
        uint64_t deferred_evicted;  /* records dropped from the outbox by expiry or quota */
        uint64_t backlog_evicted;   /* records dropped from the backlog by expiry or quota */
} Counters;

struct Manager {
        TgDaemon *daemon;
        sd_event *event;
        sd_bus *bus;
        ClassifierConfig config;
        char config_error[512]; /* why the last reload was rejected */

        /* ids */
        uint64_t run;
        uint64_t next_seq;

        /* rule cache: topic → rule (NULL: defaults), direct-mapped */
        struct {
                char *topic;
                const Rule *rule;
        } cache[1024];

        /* ingest */
        int listen_fd;
        bool listen_fd_activated;
        sd_event_source *listen_io;
        Producer *producers;
        unsigned n_producers;
        bool paused;          /* back-pressure: producers not read until a commit frees memory */
        uint8_t *frame_buf;   /* TG_FRAME_MAX + 1 */
        TgRateLimit frame_ratelimit;

        /* store */
        TgQueue *outbox;
        TgQueue *backlog;
        Segment *segments;
        size_t n_segments;
        uint64_t pending_bytes;     /* accepted, not yet committed */
        uint64_t *backlog_deletes;  /* acknowledged batches to remove at the next commit */
        size_t n_backlog_deletes, allocated_backlog_deletes;
        PendingReply *replies, **replies_tail;
        sd_event_source *commit_timer;
        sd_event_source *expiry_timer;
        bool commit_failed;
        TgQueueCounts outbox_counts;
        TgQueueCounts backlog_counts; /* batches waiting (kind "batch") */

        /* downlink (SPEC C9) */
        TgQueue *inbox;
        uint64_t downlink_ack;    /* highest downlink id stored: acknowledged to the TSP */
        uint64_t downlink_queued; /* records in the inbox */

        /* uplink */
        TgHttp *http;
        sd_event_source *spill_timer;
        struct libdeflate_compressor *deflater;
        unsigned deflater_level;
        TgBuf deflate_scratch; /* compression output, reused */
        TgBuf spare_raw;       /* the last batch's collecting buffer, for the next one */
        Batch *batches;            /* in memory, all states */
        Batch *collecting;
        unsigned inflight_fresh;
        bool draining;             /* a backlog batch is in flight (one at a time) */
        uint64_t drain_cursor;
        bool online;
        unsigned failures;
        sd_event_source *batch_timer;
        sd_event_source *backoff_timer;
        uint64_t retry_after_usec;

        Counters counters;
        uint64_t cellular_bytes;

        /* property change coalescing */
        sd_event_source *props_timer;
        uint64_t props_emitted_usec;
};

/* classifier.c */
const Rule *manager_classify(Manager *m, const char *topic, size_t len, DataClass *ret_class,
                             unsigned *ret_priority, uint64_t *ret_ttl);
uint64_t manager_new_id(Manager *m);
int manager_accept_record(Manager *m, const TgRecord *rec, DataClass *ret_class, uint64_t *ret_id);
/* Tell producers and D-Bus callers about records now resolved. */
void manager_acknowledge(Manager *m);
void manager_properties_changed(Manager *m);

/* classifier-ingest.c */
int ingest_setup(Manager *m);
void ingest_done(Manager *m);
void ingest_pause(Manager *m, bool pause);
void ingest_ack_all(Manager *m);
void ingest_commit_done(Manager *m);

/* classifier-store.c */
int store_setup(Manager *m);
void store_done(Manager *m);
int store_add_deferred(Manager *m, const TgRecord *rec, unsigned priority, uint64_t ttl_usec);
void store_schedule_commit(Manager *m, bool now);
int store_commit(Manager *m);
int store_queue_reply(Manager *m, sd_bus_message *msg, DataClass class, uint64_t id);
void store_reply_resolved(Manager *m);
int store_backlog_delete(Manager *m, uint64_t id);
bool store_backlog_delete_pending(Manager *m, uint64_t id);
int store_refresh_counts(Manager *m);

/* classifier-uplink.c */
int uplink_setup(Manager *m);
void uplink_done(Manager *m);
int uplink_add_record(Manager *m, const TgRecord *rec, uint64_t ttl_usec);
/* Close the collecting batch now (at stop: everything must be resolved). */
void uplink_close_collecting(Manager *m);
/* Called by the commit: write the batches that must be spilled (all of them when `all`). */
int uplink_persist(Manager *m, TgQueue *backlog, uint64_t now, bool all);
bool uplink_spill_due(Manager *m, bool all);
/* Every real-time record with an id below this is resolved (acknowledged by the TSP or spilled). */
uint64_t uplink_watermark(Manager *m);
void uplink_after_commit(Manager *m);
void uplink_kick(Manager *m);


/* classifier-downlink.c */
int downlink_setup(Manager *m);
void downlink_done(Manager *m);
int downlink_refresh(Manager *m);
void downlink_handle_response(Manager *m, const uint8_t *body, size_t size, const char *content_type);
int bus_method_fetch_downlink(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int bus_method_ack_downlink(sd_bus_message *msg, void *userdata, sd_bus_error *error);

/* classifier-bus.c */
int bus_setup(Manager *m);
