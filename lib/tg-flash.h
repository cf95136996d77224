/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The flash routine (issue 6): take one ECU from its current image to a new
 * one over a TgDiagChannel (DoIP or ISO-TP), asynchronously on the channel's
 * sd-event, and back (rollback).
 *
 * Steps: [10 03] [85 02] [28 03 03] 10 02, 27 seed/key, 31 01 0203 check
 * preconditions, 31 01 FF00 erase (address, size), 34 RequestDownload, 36
 * TransferData blocks, 37 RequestTransferExit, 31 01 FF01 check programming
 * dependencies (SHA-256 + version), [31 01 F0B1 bank switch for A/B], 11 01
 * ECUReset. The reset brings the ECU back to the default session, which
 * restores communication (28) and DTC setting (85): no explicit restore is
 * sent afterwards.
 *
 * Memory is bounded: the image is pulled through plan->read in blocks of at
 * most the TransferData data size (one block buffer), never held whole, so
 * it can stream from a file or from a download (lib/tg-download.h). A source
 * whose next bytes have not arrived yet returns -EAGAIN: the flash waits
 * until tg_flash_resume(), keeping the ECU's programming session alive with
 * TesterPresent (3E 80) every plan->keepalive_usec, and ends with a named
 * error ("transfer-data: image source stalled …") if nothing comes for
 * plan->source_timeout_usec. A source that fails returns another negative
 * errno: the flash ends at transfer-data with it.
 *
 * Retries: NRC 0x21 busyRepeatRequest and 0x37 requiredTimeDelayNotExpired
 * repeat the same request (SecurityAccess: from the seed) after
 * plan->retry_delay_usec, at most plan->max_retries times in a row. So does
 * a connection lost before the ECU answered anything in this run (the
 * reset that ended the previous flash closed a connection that looked
 * idle): the repeated request reconnects. Any other NRC, a transport error
 * (TgDiagResult) or a malformed response ends the flash with the step that
 * failed.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tg-diag.h"
#include "tg-uds.h"

typedef enum TgFlashStep {
        TG_FLASH_STEP_EXTENDED_SESSION,
        TG_FLASH_STEP_DTC_OFF,
        TG_FLASH_STEP_COMM_OFF,
        TG_FLASH_STEP_PROGRAMMING_SESSION,
        TG_FLASH_STEP_SECURITY_SEED,
        TG_FLASH_STEP_SECURITY_KEY,
        TG_FLASH_STEP_PRECONDITIONS,
        TG_FLASH_STEP_ERASE,
        TG_FLASH_STEP_REQUEST_DOWNLOAD,
        TG_FLASH_STEP_TRANSFER_DATA,
        TG_FLASH_STEP_TRANSFER_EXIT,
        TG_FLASH_STEP_CHECK_DEPENDENCIES,
        TG_FLASH_STEP_BANK_SWITCH,
        TG_FLASH_STEP_RESET,
        TG_FLASH_STEP_DONE,
        _TG_FLASH_STEP_MAX,
} TgFlashStep;

/* "extended-session", "transfer-data", "check-dependencies", … "done" */
const char *tg_flash_step_to_string(TgFlashStep s);

/* Read len bytes of the image at offset into buf. Returns len, -EAGAIN if
 * they have not arrived yet (then call tg_flash_resume() when they have), or
 * another negative errno (a short read is an error). len ≤ the block size;
 * offsets only grow, except that the same offset may be read again. */
typedef ssize_t (*TgFlashReadFn)(void *userdata, uint64_t offset, uint8_t *buf, size_t len);

typedef struct TgFlashPlan {
        TgFlashReadFn read;
        void *read_userdata;
        uint64_t size;                  /* image bytes */
        uint8_t sha256[32];             /* of the whole image (0xFF01) */
        const char *version;            /* sent with 0xFF01; NULL/"" = none (copied) */
        uint64_t memory_address;        /* erase and download address */
        TgUdsKeyFn key_fn;              /* NULL: no SecurityAccess */
        void *key_userdata;
        uint8_t security_level;         /* requestSeed sub-function; 0 = 0x01 */
        bool ab_banks;                  /* A/B: bank switch (0xF0B1) before the reset */
        bool extended_session;          /* 10 03 first */
        bool dtc_off;                   /* 85 02 (needs extended_session) */
        bool comm_off;                  /* 28 03 03 (needs extended_session) */
        size_t transport_max;           /* largest UDS message of the transport; 0 = no cap */
        size_t max_block_data;          /* cap on TransferData data bytes (a source's window); 0 = none */
        unsigned max_retries;           /* NRC 0x21 / 0x37 in a row; 0 = 10 */
        uint64_t retry_delay_usec;      /* 0 = 100 ms */
        uint64_t keepalive_usec;        /* TesterPresent while read says -EAGAIN; 0 = 2 s (S3 is 5 s) */
        uint64_t source_timeout_usec;   /* longest wait for image bytes; 0 = 60 s */
} TgFlashPlan;

typedef struct TgFlashError {
        int error;                      /* 0 done; negative errno (-EIO transport, -EREMOTEIO NRC, -EBADMSG, …) */
        TgFlashStep step;               /* the step that failed (TG_FLASH_STEP_DONE when it worked) */
        uint8_t nrc;                    /* the UDS NRC, 0 if none */
        TgDiagResult diag;              /* the transport's result (data not valid) */
        char message[192];              /* "transfer-data: negative response 0x72 generalProgrammingFailure" */
} TgFlashError;

typedef struct TgFlash TgFlash;

typedef struct TgFlashCallbacks {
        /* done ≤ total, never decreasing within one flash; step = step name. */
        void (*progress)(TgFlash *f, uint64_t done, uint64_t total, const char *step, void *userdata);
        /* Exactly once; the TgFlash may be freed from here. */
        void (*finished)(TgFlash *f, const TgFlashError *err, void *userdata);
} TgFlashCallbacks;

/* Start flashing target. plan (and version) is copied; cb must stay valid.
 * The channel must have no request in flight and takes none else until
 * finished. */
int tg_flash_start(TgDiagChannel *ch, uint16_t target, const TgFlashPlan *plan, const TgFlashCallbacks *cb,
                   void *userdata, TgFlash **ret);

/* The inverse. A/B (plan->ab_banks): session, security, bank switch back to
 * the previous bank (31 01 F0B1 01: the ECU refuses when it is not valid)
 * and reset; the image fields of plan are ignored. Single bank: a re-flash
 * of the previous image that plan describes (tg_flash_start()). */
int tg_flash_rollback(TgDiagChannel *ch, uint16_t target, const TgFlashPlan *plan, const TgFlashCallbacks *cb,
                      void *userdata, TgFlash **ret);

/* The image source has more bytes (or has failed): a flash waiting for
 * them reads again, from the event loop. Harmless at any other time. */
void tg_flash_resume(TgFlash *f);

/* Stops a flash in progress (no finished callback then). */
TgFlash *tg_flash_free(TgFlash *f);
TG_DEFINE_TRIVIAL_CLEANUP_FUNC(TgFlash *, tg_flash_free);
