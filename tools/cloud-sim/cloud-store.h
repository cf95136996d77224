/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The cloud simulator's storage: an SQLite database (what keys uploaded,
 * the TGR1 records in it, what the cloud holds for each gateway) and a
 * directory with the bytes of the downloads. Tests read the database
 * directly, so the schema is part of the simulator's contract
 * (docs/cloud-simulator.md). One connection, one writer at a time; every
 * call is one transaction. Functions return negative errno and do not log
 * above debug, except for database failures, logged once here with the
 * SQL that failed.
 */

#include <stdint.h>

#include "cloud-util.h"
#include "tg-macro.h"

typedef struct CloudStore CloudStore;

typedef struct CloudUpload {
        const char *gateway;
        uint64_t item_id;
        const char *kind;     /* "telemetry", "upgrade-package", "kb-update", "file" */
        uint64_t records;     /* Tollgate-Records */
        const char *sha256;   /* lowercase hex of data, verified by the caller */
        const char *key_id;   /* CN of the key that sent it */
        uint64_t received_usec;
        const uint8_t *data;
        size_t size;
        bool tgr1; /* data is TGR1 records, validated by the caller: store them in `records` too */
} CloudUpload;

typedef enum CloudUploadStatus {
        CLOUD_UPLOAD_STORED,
        CLOUD_UPLOAD_DUPLICATE, /* (gateway, item_id) stored before with the same SHA-256 */
        CLOUD_UPLOAD_CONFLICT,  /* stored before with another SHA-256; nothing changed */
} CloudUploadStatus;

typedef struct CloudUploadResult {
        CloudUploadStatus status;
        uint64_t records_stored;
        uint64_t records_duplicate; /* (gateway, record id) stored before, by another item */
} CloudUploadResult;

/* A download: an item the cloud holds for a gateway. */
typedef struct CloudDownload {
        uint64_t id;
        char *gateway;
        char *kind;
        char *name;
        char *path; /* the file with its bytes (gone once acknowledged) */
        uint64_t size;
        char sha256[SHA256_HEX_SIZE];
        bool acked;
} CloudDownload;

void cloud_download_done(CloudDownload *d);
CloudDownload *cloud_downloads_free(CloudDownload *d, size_t n);

typedef struct CloudQueueRequest {
        const char *gateway;
        const char *kind;
        const char *name;
        /* The bytes: data/size, or a file to copy (source_fd >= 0), read to
         * its end in pieces: its size is not limited by memory. */
        const uint8_t *data;
        size_t size;
        int source_fd;
} CloudQueueRequest;

/* Open (creating) the database at `db_path` and the download directory
 * `files_dir` (created if missing). */
int cloud_store_open(const char *db_path, const char *files_dir, CloudStore **ret);
CloudStore *cloud_store_free(CloudStore *s);
TG_DEFINE_TRIVIAL_CLEANUP_FUNC(CloudStore *, cloud_store_free);

const char *cloud_store_files_dir(const CloudStore *s);

/* Store an uploaded item once per (gateway, item_id). */
int cloud_store_upload(CloudStore *s, const CloudUpload *u, CloudUploadResult *ret);

/* Copy the bytes into a new file of the download directory, then record
 * the download; its id is larger than every id issued before, also across
 * cloud_store_reset(). */
int cloud_store_queue_download(CloudStore *s, const CloudQueueRequest *q, uint64_t *ret_id, uint64_t *ret_size,
                               char ret_sha256[static SHA256_HEX_SIZE]);

/* The downloads of `gateway` not acknowledged yet, ids ascending. */
int cloud_store_list_downloads(CloudStore *s, const char *gateway, CloudDownload **ret, size_t *ret_n);

/* Download `id` of `gateway` (acknowledged or not); -ENOENT if none. */
int cloud_store_get_download(CloudStore *s, const char *gateway, uint64_t id, CloudDownload *ret);

/* Count an answer that carried the download's bytes. */
int cloud_store_count_fetch(CloudStore *s, uint64_t id);

/* The key stored download `id` durably: mark it (the first time only;
 * *ret_first says whether this was it) and delete its file. -ENOENT if
 * `gateway` has no such download. */
int cloud_store_ack(CloudStore *s, const char *gateway, uint64_t id, uint64_t usec, bool *ret_first);

/* The car acknowledged download `id`: record when (the first time only). */
int cloud_store_delivered(CloudStore *s, const char *gateway, uint64_t id, uint64_t usec, bool *ret_first);

/* Empty every table and delete the download files (ids keep counting up). */
int cloud_store_reset(CloudStore *s);
