/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The output layer every tollgatectl command shares: error messages, a JSON
 * writer (hand-written, with correct string escaping; no dependency), a
 * table printer for the human form, and formatters for bytes, times and
 * payloads. Human output and --json output are produced by the same
 * command code, side by side, so they cannot drift apart.
 */

#include <stdarg.h>
#include <stdio.h>

#include "tg-macro.h"

/* Exit statuses (documented in tollgatectl(1)). */
#define CTL_EXIT_SUCCESS 0
#define CTL_EXIT_FAILURE 1     /* a D-Bus error, or any other failure */
#define CTL_EXIT_USAGE 2       /* bad command line */
#define CTL_EXIT_NOT_RUNNING 3 /* the daemon a command needs is not on the bus */

/* "tollgatectl: MESSAGE" on stderr. The _errno form sets errno from r for %m
 * and returns r (negative errno), so "return ctl_error_errno(r, ...)". */
void ctl_error(const char *format, ...) _printf_(1, 2);
int ctl_error_errno(int r, const char *format, ...) _printf_(2, 3);

/* --- JSON ------------------------------------------------------------------ */

#define JSON_DEPTH_MAX 32

typedef struct Json {
        FILE *f;
        bool pretty;
        unsigned depth;
        bool has_items[JSON_DEPTH_MAX]; /* a value was written at this depth: next one needs a comma */
} Json;

/* `key` names the member inside an object; NULL at the top level and in arrays. */
void json_object_open(Json *j, const char *key);
void json_object_close(Json *j);
void json_array_open(Json *j, const char *key);
void json_array_close(Json *j);
void json_string(Json *j, const char *key, const char *s);
/* Bytes as a string: valid UTF-8 is kept, invalid bytes become U+FFFD. */
void json_string_n(Json *j, const char *key, const void *s, size_t n);
void json_u64(Json *j, const char *key, uint64_t v);
void json_i64(Json *j, const char *key, int64_t v);
void json_double(Json *j, const char *key, double v);
void json_bool(Json *j, const char *key, bool v);
void json_null(Json *j, const char *key);
/* An already-encoded JSON value. */
void json_raw(Json *j, const char *key, const char *value);
/* After the top-level value: newline and flush. */
void json_finish(Json *j);

bool utf8_valid(const void *s, size_t n);

/* --- Tables ---------------------------------------------------------------- */

typedef struct Table Table;

/* Column headers, NULL-terminated. A header starting with '>' is a
 * right-aligned (numeric) column; the '>' is not printed. */
Table *table_new(const char *header, ...);
Table *table_free(Table *t);
int table_add(Table *t, const char *cell);
int table_addf(Table *t, const char *format, ...) _printf_(2, 3);
size_t table_rows(const Table *t);
/* The header line only with legend. */
int table_print(const Table *t, FILE *f, bool legend);
static inline void table_freep(Table **t) {
        table_free(*t);
}
#define _cleanup_table_ _cleanup_(table_freep)

/* --- Formatters -------------------------------------------------------------- */

#define FORMAT_BYTES_MAX 16
#define FORMAT_TIMESTAMP_MAX 64
#define FORMAT_TIMESPAN_MAX 32

/* 512B, 1.5K, 12.3M, 4.0G (powers of 1024, like the configuration). */
const char *format_bytes(char *buf, size_t size, uint64_t bytes);
/* Local time, "2024-05-01 10:00:00.123"; "n/a" for 0. */
const char *format_timestamp(char *buf, size_t size, uint64_t usec);
/* "10:00:00.123" local time, for watch lines. */
const char *format_time_of_day(char *buf, size_t size, uint64_t usec);
/* "1h", "30d", "infinity". */
const char *format_timespan(char *buf, size_t size, uint64_t usec);
/* Printable preview of an opaque payload: UTF-8 text as is, other bytes as
 * \xNN, at most `width` characters ("…" when cut). Returns malloc'ed text. */
char *format_payload(const void *p, size_t n, size_t width);
/* Standard base64 with padding; malloc'ed. */
char *base64_encode(const void *p, size_t n);

/* One line of a status section: "      Label: value" (labels right-aligned to 12). */
void print_field(const char *label, const char *format, ...) _printf_(2, 3);
