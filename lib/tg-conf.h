/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Table-driven configuration files, in the syntax systemd uses:
 *
 *   # comment            ; comment
 *   [Section]            [Section name]     (a section with an argument)
 *   Key=Value
 *
 * A main file (e.g. /etc/tollgate/classifier.conf) is read first, then every
 * "*.conf" file of the drop-in folder beside it ("classifier.conf.d/"), in
 * lexical order; later assignments override earlier ones.
 *
 * Policy for bad input (one policy, everywhere): the whole load is rejected
 * at the first unknown section, unknown key, syntax error or invalid value,
 * and the error names file, line, key and reason. A daemon refuses to start
 * on a rejected file and keeps its running configuration when a reload is
 * rejected.
 */

#include <stddef.h>
#include <stdint.h>

#include "tg-macro.h"

#define TG_CONF_MAX_FILE_SIZE (1024 * 1024)

typedef struct TgConfError {
        char text[512];
} TgConfError;

/* Parse `value` into `field`. Return 0, or -EINVAL/-ERANGE and optionally
 * explain in reason[reason_size]. */
typedef int (*TgConfParser)(const char *value, void *field, const void *extra, char *reason, size_t reason_size);

typedef struct TgConfItem {
        const char *section; /* section name, without its argument */
        const char *key;
        TgConfParser parse;
        size_t offset; /* of the field in the section's object */
        const void *extra;
} TgConfItem;

/* Returns the object that items of "[section arg]" apply to, creating it if it
 * is new; NULL (with a reason) rejects the section. */
typedef void *(*TgConfSectionLookup)(void *userdata, const char *section, const char *arg, char *reason,
                                     size_t reason_size);

typedef struct TgConfTable {
        const TgConfItem *items;
        size_t n_items;
        const char *const *arg_sections; /* NULL-terminated names of sections that take an argument */
        TgConfSectionLookup lookup;
} TgConfTable;

/* Bounds for the numeric parsers; a NULL extra means no bounds. */
typedef struct TgConfRange {
        uint64_t min;
        uint64_t max;
        uint64_t unit_usec; /* timespan only: unit of a bare number (default: seconds) */
} TgConfRange;

/* Load `path` (missing is fine unless must_exist) plus its drop-in folder. */
int tg_conf_load(const char *path, bool must_exist, const TgConfTable *table, void *userdata, TgConfError *err);
/* Parse one buffer; `name` is used in error messages. */
int tg_conf_parse_buffer(const char *text, size_t size, const char *name, const TgConfTable *table,
                         void *userdata, TgConfError *err);

/* While a value parser or a section lookup of tg_conf_load() or
 * tg_conf_parse_buffer() runs: the file (its name as passed in, valid only
 * during that call: copy it) and the line being read. For checks that can
 * only be made once every file is read (cross-references between sections,
 * keys that go together), so that their errors still name file:line:key.
 * Outside a parse both are NULL/0. */
void tg_conf_location(const char **ret_file, unsigned *ret_line);

/* Standard value parsers. */
int tg_conf_parse_string(const char *value, void *field, const void *extra, char *reason, size_t reason_size);
int tg_conf_parse_bool(const char *value, void *field, const void *extra, char *reason, size_t reason_size);
int tg_conf_parse_uint64(const char *value, void *field, const void *extra, char *reason, size_t reason_size);
int tg_conf_parse_unsigned(const char *value, void *field, const void *extra, char *reason, size_t reason_size);
int tg_conf_parse_size(const char *value, void *field, const void *extra, char *reason, size_t reason_size);
int tg_conf_parse_timespan(const char *value, void *field, const void *extra, char *reason, size_t reason_size);
