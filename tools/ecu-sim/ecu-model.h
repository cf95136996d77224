/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The simulated ECU's UDS server core (issue 6), sans-IO: one UDS request in
 * (bytes), the response bytes out, time driven by the caller's monotonic
 * clock (µs). No sockets, no clock reads, no logging: the DoIP entity and the
 * ISO-TP node of the simulator carry the bytes and call ecu_model_poll() at
 * the deadline the model asks for.
 *
 * Services: 0x10 (default / programming / extended, S3 5 s back to default),
 * 0x11 (hard/key-off-on/soft: default session, locked, a pending bank switch
 * takes effect), 0x22 (F187 part number, F189 software version of the active
 * bank, F18C serial, F190 VIN if configured), 0x27 (one level, seeds from a
 * seeded PRNG, key = tg_uds_key_demo(), 3 wrong keys → 0x36 then 0x37 for
 * 10 s; the attempt counter and the delay survive resets and session
 * changes, so a reset does not reopen brute forcing), 0x28, 0x85, 0x3E, 0x31 (0x0203 check preconditions, 0xFF00 erase,
 * 0xFF01 check programming dependencies, 0xF0B1 bank switch), 0x34, 0x36,
 * 0x37.
 *
 * Functional requests: only 0x10, 0x28, 0x3E and 0x85 are served; anything else gets no response at all. NRCs 0x11 0x12 0x31 0x7E
 * 0x7F to functional requests are dropped (ISO 14229-1 7.5).
 *
 * Flash memory: one bank (single) or two (A/B) of bank_size bytes mapped at
 * memory_address. Erase (0xFF00) and downloads go to the inactive bank (A/B)
 * or to the only bank (single: the ECU then has no valid image until 0xFF01
 * passes). A bank is marked valid ONLY by 0xFF01 whose option record carries
 * the SHA-256 of exactly the bytes written since the erase
 * ([image start, image end) of the downloads, contiguous); any erase or write
 * clears the flag first. 0xFF01 option record: hash(32) [version string];
 * without a version string the version is read from the image (a first line
 * "TGV:<version>\n"), else it is "unknown".
 *
 * 0xFF01 answers 71 01 FF 01 00 when the hash matches and NRC 0x72
 * generalProgrammingFailure when it does not (the bank stays invalid).
 * With check_speed the check takes image bytes / check_speed seconds, as
 * hashing does on a real ECU: longer than P2, 7F 31 78 at once, again every
 * pending_interval_ms, and the final answer (either one) from
 * ecu_model_poll() at the deadline; shorter, no 0x78 and the answer from
 * ecu_model_poll(). Meanwhile requests get 0x21. The bank becomes valid only
 * when the positive answer is due: a power cycle during the check leaves it
 * invalid (still erased and written: 0xFF01 may be run again).
 * 0xF0B1 start: the inactive bank, if valid (else 0x22), becomes active at
 * the next reset (ECUReset or power cycle); option 0x01 ("back to the
 * previous bank") does the same on two banks. Status byte = the bank that
 * will be active. An erase of that bank cancels the pending switch. 0xF0B1
 * results (0x03): 1 byte, the active bank now. Single bank: 0x31.
 *
 * Session rules: programming only from extended (or programming), else
 * 0x22; 0x27/0x28/0x85/0x31 not in default (0x7F); 0xFF00/0xFF01/0xF0B1
 * need programming (0x22) and unlock (0x33); 0x34/0x36/0x37 programming
 * (0x7F) and unlock (0x33). A change of session locks and ends an open
 * download; default also restores 0x28 and 0x85. While a response is owed
 * (ecu_model_busy()) physical requests get 0x21 busyRepeatRequest.
 * Downloads: only into an erased bank (else 0x70), contiguous with the
 * bytes written since the erase; dataFormatIdentifier must be 0x00.
 * TransferData: the last block repeated with the same counter and length
 * is answered positively and not written again; any other counter than
 * last + 1 is 0x73; more data than announced 0x71; a request longer than
 * maxNumberOfBlockLength 0x13. RequestTransferExit before all bytes: 0x24.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct EcuModel EcuModel;

#define ECU_MODEL_VERSION_MAX 32
/* Every response but a 0x22 for many DIDs fits in this many bytes; smaller
 * response buffers are refused with -ENOBUFS. */
#define ECU_MODEL_RESP_MIN 64

typedef struct EcuModelConfig {
        bool ab_banks;                /* two banks A/B; false: one bank */
        size_t bank_size;             /* bytes per bank, > 0 */
        uint64_t memory_address;      /* where the bank window starts for 0x34/0xFF00 */
        /* The image in the active bank (A) at start; NULL = empty. Without
         * initial_version the bank starts invalid (no software). */
        const uint8_t *initial_image;
        size_t initial_image_len;
        const char *initial_version;
        const char *part_number;      /* F187, "" if NULL */
        const char *serial;           /* F18C, "" if NULL */
        const char *vin;              /* F190; NULL = DID not supported */
        uint32_t erase_time_ms;       /* 0xFF00 duration */
        uint64_t write_speed;         /* TransferData bytes/s; 0 = instant */
        uint64_t check_speed;         /* 0xFF01 hashes image bytes/s; 0 = instant */
        uint32_t max_block_length;    /* 0x34 response, whole 0x36 request; 0 = 4095 */
        uint16_t p2_ms;               /* 0 = 50 */
        uint32_t p2_star_ms;          /* 0 = 5000 (multiple of 10) */
        uint32_t s3_ms;               /* 0 = 5000 */
        uint32_t pending_interval_ms; /* repeat 0x78 this often; 0 = 2000 */
        uint8_t security_level;       /* requestSeed sub-function; 0 = 0x01 */
        uint8_t seed_len;             /* 0 = 4 (≤ 16) */
        uint64_t prng_seed;           /* the seed generator's start state */
        uint32_t lockout_ms;          /* 0 = 10000 */
        uint8_t max_attempts;         /* wrong keys before lockout; 0 = 3 */
        bool preconditions_fail;      /* 0x0203 answers 0x22 (see ecu_model_set_preconditions()) */
} EcuModelConfig;

/* Fault injection; every fault fires once and then clears itself. */
typedef struct EcuModelFaults {
        uint8_t nrc_sid;              /* the next request for this SID gets NRC nrc, no state change */
        uint8_t nrc;
        uint8_t pending_storm_sid;    /* the next request for this SID: N× 0x78, then its answer */
        unsigned pending_storm_count;
        unsigned reset_after_blocks;  /* K: block K+1 (0x36) power-cycles the ECU unanswered */
        unsigned power_loss_after_blocks; /* K: block K+1 half written, then power cycle */
        unsigned corrupt_after_blocks; /* K: after block K is written flip a byte in flash */
} EcuModelFaults;

EcuModel *ecu_model_new(const EcuModelConfig *c);  /* NULL: bad config (errno EINVAL) or ENOMEM */
EcuModel *ecu_model_free(EcuModel *m);             /* returns NULL */

void ecu_model_set_faults(EcuModel *m, const EcuModelFaults *f);
void ecu_model_set_preconditions(EcuModel *m, bool ok);

/* Serve one request received at now. functional: it came to the functional
 * address (DoIP 0xE400, ISO-TP 0x7DF). Returns
 *   1  resp[0…*resp_len) is to be sent now (a positive or negative response,
 *      or 7F sid 78 whose final response comes from ecu_model_poll()),
 *   0  nothing to send now (suppressed, not served functionally, or a
 *      response delayed by the write speed, erase time or check speed, not
 *      beyond P2: see ecu_model_next_deadline()),
 *   -ENOBUFS resp_size < ECU_MODEL_RESP_MIN (the request was not
 *            processed), or a 0x22 answer for many DIDs that does not
 *            fit (0x22 changes no state),
 *   -EINVAL  NULL arguments.
 * After it, check ecu_model_take_reset(): a reset drops the connection. */
int ecu_model_request(EcuModel *m, const uint8_t *req, size_t n, bool functional, uint64_t now, uint8_t *resp,
                      size_t resp_size, size_t *resp_len);

/* Advance time to now: delivers a due 0x78 or final response (1, one per
 * call: call again until 0), applies the S3 timeout. *next_deadline (may be
 * NULL) is when to call again, USEC_INFINITY for never. */
int ecu_model_poll(EcuModel *m, uint64_t now, uint8_t *resp, size_t resp_size, size_t *resp_len,
                   uint64_t *next_deadline);
uint64_t ecu_model_next_deadline(const EcuModel *m);

/* True once after every reset (ECUReset served, injected reset or power
 * loss, ecu_model_power_cycle()): the front end drops its connection. */
bool ecu_model_take_reset(EcuModel *m);
/* Power off and on: volatile state lost, a pending bank switch applied. */
void ecu_model_power_cycle(EcuModel *m, uint64_t now);

/* ---- Queries (tests, simulator status) ---- */
unsigned ecu_model_n_banks(const EcuModel *m);
unsigned ecu_model_active_bank(const EcuModel *m);  /* 0 = A, 1 = B */
bool ecu_model_bank_valid(const EcuModel *m, unsigned bank);
const char *ecu_model_bank_version(const EcuModel *m, unsigned bank); /* "" when erased */
const char *ecu_model_version(const EcuModel *m);   /* the active bank's */
size_t ecu_model_bank_written(const EcuModel *m, unsigned bank);  /* bytes of the image */
/* SHA-256 of the bank's image bytes; -EINVAL for a bad bank. */
int ecu_model_bank_sha256(const EcuModel *m, unsigned bank, uint8_t ret[32]);
const uint8_t *ecu_model_bank_data(const EcuModel *m, unsigned bank, size_t *len);
uint8_t ecu_model_session(const EcuModel *m);
bool ecu_model_unlocked(const EcuModel *m);
uint8_t ecu_model_comm_control(const EcuModel *m);  /* last 0x28 control, 0x00 after reset */
bool ecu_model_dtc_setting_on(const EcuModel *m);
bool ecu_model_transfer_active(const EcuModel *m);
bool ecu_model_switch_pending(const EcuModel *m);
/* A response is still owed (0x78 sent or a delayed answer): requests get 0x21. */
bool ecu_model_busy(const EcuModel *m);
