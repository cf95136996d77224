/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <stdio.h>
#include <strings.h>

#include "tg-parse.h"

int tg_parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        return -EINVAL;
}

/* Parse leading decimal digits; rejects signs, empty input and overflow. */
static int parse_digits(const char **p, uint64_t *ret) {
        const char *s = *p;
        uint64_t v = 0;

        if (!isdigit((unsigned char) *s))
                return -EINVAL;
        for (; isdigit((unsigned char) *s); s++) {
                unsigned d = (unsigned) (*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *p = s;
        *ret = v;
        return 0;
}

int tg_parse_uint64(const char *s, uint64_t *ret) {
        uint64_t v;
        int r;

        r = parse_digits(&s, &v);
        if (r < 0)
                return r;
        if (*s != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}

int tg_parse_unsigned(const char *s, unsigned *ret) {
        uint64_t v;
        int r;

        r = tg_parse_uint64(s, &v);
        if (r < 0)
                return r;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (unsigned) v;
        return 0;
}

int tg_parse_size(const char *s, uint64_t *ret) {
        static const struct {
                const char *suffix;
                uint64_t factor;
        } table[] = {
                { "", 1 },
                { "B", 1 },
                { "K", UINT64_C(1) << 10 },
                { "M", UINT64_C(1) << 20 },
                { "G", UINT64_C(1) << 30 },
                { "T", UINT64_C(1) << 40 },
        };
        uint64_t v;
        int r;

        r = parse_digits(&s, &v);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (streq(s, table[i].suffix)) {
                        if (v > UINT64_MAX / table[i].factor)
                                return -ERANGE;
                        *ret = v * table[i].factor;
                        return 0;
                }
        return -EINVAL;
}

static const struct {
        const char *unit;
        uint64_t usec;
} time_units[] = {
        /* Longest names first so "ms" is not read as "m" + "s". */
        { "usec", 1 },
        { "us", 1 },
        { "msec", USEC_PER_MSEC },
        { "ms", USEC_PER_MSEC },
        { "min", 60 * USEC_PER_SEC },
        { "sec", USEC_PER_SEC },
        { "s", USEC_PER_SEC },
        { "h", 3600 * USEC_PER_SEC },
        { "d", 86400 * USEC_PER_SEC },
        { "w", 7 * 86400 * USEC_PER_SEC },
};

int tg_parse_timespan(const char *s, uint64_t default_unit_usec, uint64_t *ret) {
        uint64_t total = 0;
        bool any = false;
        int r;

        if (streq(s, "infinity")) {
                *ret = USEC_INFINITY;
                return 0;
        }
        for (;;) {
                uint64_t v, unit = 0;

                while (*s == ' ')
                        s++;
                if (*s == '\0')
                        break;
                r = parse_digits(&s, &v);
                if (r < 0)
                        return r;
                if (*s == '\0' || *s == ' ')
                        unit = default_unit_usec;
                else
                        for (size_t i = 0; i < ELEMENTSOF(time_units); i++) {
                                size_t l = strlen(time_units[i].unit);
                                if (strncmp(s, time_units[i].unit, l) == 0 &&
                                    (s[l] == '\0' || s[l] == ' ' || isdigit((unsigned char) s[l]))) {
                                        unit = time_units[i].usec;
                                        s += l;
                                        break;
                                }
                        }
                if (unit == 0)
                        return -EINVAL;
                if (v > UINT64_MAX / unit || total > UINT64_MAX - v * unit)
                        return -ERANGE;
                total += v * unit;
                any = true;
        }
        if (!any)
                return -EINVAL;
        *ret = total;
        return 0;
}

const char *tg_format_timespan(char *buf, size_t size, uint64_t usec) {
        static const struct {
                const char *unit;
                uint64_t usec;
        } units[] = {
                { "w", 7 * 86400 * USEC_PER_SEC }, { "d", 86400 * USEC_PER_SEC },
                { "h", 3600 * USEC_PER_SEC },      { "min", 60 * USEC_PER_SEC },
                { "s", USEC_PER_SEC },              { "ms", USEC_PER_MSEC },
        };

        if (usec == USEC_INFINITY) {
                snprintf(buf, size, "infinity");
                return buf;
        }
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (usec >= units[i].usec && usec % units[i].usec == 0) {
                        snprintf(buf, size, "%llu%s", (unsigned long long) (usec / units[i].usec), units[i].unit);
                        return buf;
                }
        snprintf(buf, size, "%lluus", (unsigned long long) usec);
        return buf;
}
