/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Logging for the daemons and tools.
 *
 * Under systemd (stderr connected to the journal, $JOURNAL_STREAM) records go
 * to journald with sd_journal_sendv() so they carry structured fields:
 * PRIORITY, MESSAGE, MESSAGE_ID, ERRNO, CODE_FILE/LINE/FUNC and any extra
 * "KEY=value" fields.  Elsewhere (sandbox, tests, a terminal) the same record
 * is written as one line to stderr, with the MESSAGE_ID and extra fields
 * appended, so scripts can grep for the same ids they would query with
 * journalctl.
 *
 * Library code (lib/) logs at debug level only; it returns negative errno
 * and the caller that decides logs once.
 */

#include <stdarg.h>
#include <syslog.h>

#include "tg-macro.h"

typedef enum TgLogTarget {
        TG_LOG_TARGET_AUTO,
        TG_LOG_TARGET_JOURNAL,
        TG_LOG_TARGET_CONSOLE,
} TgLogTarget;

void tg_log_open(const char *ident, TgLogTarget target);
void tg_log_set_max_level(int level);
int tg_log_get_max_level(void);
int tg_log_target_from_string(const char *s, TgLogTarget *ret);
int tg_log_level_from_string(const char *s, int *ret);

/* Returns -abs(error) (or 0 if error is 0) so callers can "return log_..._errno(r, ...)". */
int tg_log_full(int level, int error, const char *message_id, const char *const *fields,
                const char *file, int line, const char *func, const char *format, ...) _printf_(8, 9);

#define tg_log(level, error, msgid, fields, ...) \
        tg_log_full(level, error, msgid, fields, __FILE__, __LINE__, __func__, __VA_ARGS__)

#define log_debug(...) tg_log(LOG_DEBUG, 0, NULL, NULL, __VA_ARGS__)
#define log_info(...) tg_log(LOG_INFO, 0, NULL, NULL, __VA_ARGS__)
#define log_notice(...) tg_log(LOG_NOTICE, 0, NULL, NULL, __VA_ARGS__)
#define log_warning(...) tg_log(LOG_WARNING, 0, NULL, NULL, __VA_ARGS__)
#define log_error(...) tg_log(LOG_ERR, 0, NULL, NULL, __VA_ARGS__)

#define log_debug_errno(r, ...) tg_log(LOG_DEBUG, r, NULL, NULL, __VA_ARGS__)
#define log_info_errno(r, ...) tg_log(LOG_INFO, r, NULL, NULL, __VA_ARGS__)
#define log_notice_errno(r, ...) tg_log(LOG_NOTICE, r, NULL, NULL, __VA_ARGS__)
#define log_warning_errno(r, ...) tg_log(LOG_WARNING, r, NULL, NULL, __VA_ARGS__)
#define log_error_errno(r, ...) tg_log(LOG_ERR, r, NULL, NULL, __VA_ARGS__)

/* An event an operator searches for: carries MESSAGE_ID (see lib/tg-message-ids.h
 * and conf/tollgate.catalog) and optional extra "KEY=value" fields (NULL-terminated). */
#define log_event(level, msgid, ...) tg_log(level, 0, msgid, NULL, __VA_ARGS__)
#define log_event_errno(level, r, msgid, ...) tg_log(level, r, msgid, NULL, __VA_ARGS__)
#define log_event_fields(level, r, msgid, fields, ...) tg_log(level, r, msgid, fields, __VA_ARGS__)

/* Rate limiting for messages triggered by peers (bad frames, bad requests).
 * Not thread-safe: one per event loop, or guard it with a lock. Allows
 * at most `burst` messages per `interval_usec`; the first message after a
 * suppressed period says how many were dropped. */
typedef struct TgRateLimit {
        uint64_t interval_usec;
        unsigned burst;
        uint64_t begin_usec;
        unsigned num;
        unsigned suppressed;
} TgRateLimit;

#define TG_RATELIMIT_INIT(interval, b) { .interval_usec = (interval), .burst = (b) }

/* Returns true if the message may be logged; *ret_suppressed tells how many
 * were dropped since the last one that got through. */
bool tg_ratelimit_check(TgRateLimit *rl, unsigned *ret_suppressed);

const char *tg_strerror(int error, char *buf, size_t size);
