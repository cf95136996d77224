/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * libtollgate-producer: hand telemetry to the Tollgate classifier.
 *
 * For high-rate producers (ECU-facing processes). Records are packed into
 * frames of up to TG_PRODUCER_FRAME_SIZE bytes (a single larger record is
 * sent alone) and sent over the classifier's
 * SOCK_SEQPACKET socket; the classifier acknowledges frames once their
 * records are committed (stored durably or delivered).
 *
 *     TgProducer *p;
 *     int r = tg_producer_connect(NULL, &p);            // default socket
 *     r = tg_producer_add(p, "vehicle.speed", now_usec, buf, len);
 *     ...
 *     r = tg_producer_flush(p, 5 * 1000 * 1000);        // everything committed?
 *     tg_producer_free(p);
 *
 * Records wait in the frame being built until it is full or the producer
 * calls tg_producer_send() (or _flush()): a producer that goes idle between
 * samples should send first, or its real-time data waits for a full frame.
 *
 * All functions return 0 (or a count) on success and a negative errno on
 * failure. -EBADMSG means the classifier rejected a frame; the reason is in
 * tg_producer_last_error(). The socket is blocking: a full classifier
 * applies back-pressure by blocking tg_producer_add()/tg_producer_send().
 * Not thread-safe: use one TgProducer per thread.
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TG_PRODUCER_EXPORT)
#define TG_PRODUCER_API __attribute__((visibility("default")))
#else
#define TG_PRODUCER_API
#endif

#define TG_PRODUCER_DEFAULT_SOCKET "/run/tollgate/telemetry.sock"
#define TG_PRODUCER_FRAME_SIZE (64 * 1024)

typedef struct TgProducer TgProducer;

/* path: NULL for $TOLLGATE_TELEMETRY_SOCKET or the default socket. */
TG_PRODUCER_API int tg_producer_connect(const char *path, TgProducer **ret);
TG_PRODUCER_API void tg_producer_free(TgProducer *p);

/* Queue one record; sends the current frame first if the record does not fit.
 * Validates topic (1..255 of [A-Za-z0-9_./-]) and payload size (≤ 64 KiB). */
TG_PRODUCER_API int tg_producer_add(TgProducer *p, const char *topic, uint64_t timestamp_usec, const void *payload,
                    size_t size);

/* Send the frame being built, if any. */
TG_PRODUCER_API int tg_producer_send(TgProducer *p);

/* Send what is buffered and wait until every sent record is committed, or
 * the timeout passes (-ETIMEDOUT). */
TG_PRODUCER_API int tg_producer_flush(TgProducer *p, uint64_t timeout_usec);

/* Read pending ACK/ERROR frames without blocking. Returns -EBADMSG if the
 * classifier rejected a frame since the last call. */
TG_PRODUCER_API int tg_producer_process(TgProducer *p);

/* The socket, to poll for POLLIN in an event loop (then call tg_producer_process). */
TG_PRODUCER_API int tg_producer_fd(const TgProducer *p);

/* Frames sent and acknowledged so far; records rejected in total. */
TG_PRODUCER_API uint32_t tg_producer_sent_seq(const TgProducer *p);
TG_PRODUCER_API uint32_t tg_producer_acked_seq(const TgProducer *p);
TG_PRODUCER_API uint64_t tg_producer_rejected_records(const TgProducer *p);

/* Explanation of the last rejection ("invalid-topic: record 3: ..."), or "". */
TG_PRODUCER_API const char *tg_producer_last_error(const TgProducer *p);

#ifdef __cplusplus
}
#endif
