/* SPDX-License-Identifier: MIT */
#pragma once

/* Strict parsers for configuration values and command-line arguments.
 * Each returns 0 on success and -EINVAL/-ERANGE on garbage; nothing is
 * written to *ret on failure. */

#include <stdint.h>

#include "tg-macro.h"

int tg_parse_bool(const char *s, bool *ret);
int tg_parse_uint64(const char *s, uint64_t *ret);
int tg_parse_unsigned(const char *s, unsigned *ret);
/* "512", "64K", "16M", "2G" (powers of 1024). */
int tg_parse_size(const char *s, uint64_t *ret);
/* "250ms", "5s", "1min", "2h", "7d", "1w", "100us", combinations ("1h 30min");
 * a bare number is taken in default_unit_usec. "infinity" gives USEC_INFINITY. */
int tg_parse_timespan(const char *s, uint64_t default_unit_usec, uint64_t *ret);

/* Format a span in the largest exact unit ("10ms", "7d"), for messages and docs. */
const char *tg_format_timespan(char *buf, size_t size, uint64_t usec);
