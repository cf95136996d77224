/* SPDX-License-Identifier: MIT */
#pragma once

/* Small helpers of the cloud simulator: SHA-256 in hex, JSON output. */

#include <stddef.h>
#include <stdint.h>

#include "tg-macro.h"
#include "tg-record.h"

#define SHA256_HEX_SIZE 65 /* 64 hex digits and a NUL */

/* Incremental SHA-256 (wolfCrypt underneath; the state is opaque here so
 * that wolfSSL's headers stay out of every other file). */
typedef struct CloudSha256 CloudSha256;

int cloud_sha256_new(CloudSha256 **ret);
int cloud_sha256_update(CloudSha256 *h, const void *data, size_t size);
/* Lowercase hex digest into `out`; the state is reset. */
int cloud_sha256_final(CloudSha256 *h, char out[static SHA256_HEX_SIZE]);
CloudSha256 *cloud_sha256_free(CloudSha256 *h);
TG_DEFINE_TRIVIAL_CLEANUP_FUNC(CloudSha256 *, cloud_sha256_free);

/* One shot. */
int cloud_sha256_hex(const void *data, size_t size, char out[static SHA256_HEX_SIZE]);

/* 64 hex digits, either case. */
bool cloud_sha256_hex_valid(const char *s);

int cloud_json_append(TgBuf *b, const char *format, ...) _printf_(2, 3);
/* Append `s` as a JSON string, quotes included (control characters, '"'
 * and '\' escaped; other bytes as they are: callers pass UTF-8). */
int cloud_json_append_string(TgBuf *b, const char *s);
