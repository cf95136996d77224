/* SPDX-License-Identifier: MIT */
#include <math.h>
#include <stdarg.h>
#include <time.h>

#include "tollgatectl-output.h"

void ctl_error(const char *format, ...) {
        va_list ap;

        fflush(stdout);
        fprintf(stderr, "%s: ", program_invocation_short_name);
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputc('\n', stderr);
}

int ctl_error_errno(int r, const char *format, ...) {
        va_list ap;

        fflush(stdout);
        errno = r < 0 ? -r : r;
        fprintf(stderr, "%s: ", program_invocation_short_name);
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputc('\n', stderr);
        return r < 0 ? r : -r;
}

/* --- UTF-8 ----------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (1…4), or 0 if the bytes there are
 * not one (overlong forms, surrogates and code points above U+10FFFF are not). */
static size_t utf8_sequence(const uint8_t *p, size_t n) {
        uint8_t lo = 0x80, hi = 0xBF;
        size_t len;

        if (p[0] < 0x80)
                return 1;
        if (p[0] >= 0xC2 && p[0] <= 0xDF)
                len = 2;
        else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
                len = 3;
                if (p[0] == 0xE0)
                        lo = 0xA0;
                else if (p[0] == 0xED)
                        hi = 0x9F;
        } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
                len = 4;
                if (p[0] == 0xF0)
                        lo = 0x90;
                else if (p[0] == 0xF4)
                        hi = 0x8F;
        } else
                return 0;
        if (n < len || p[1] < lo || p[1] > hi)
                return 0;
        for (size_t i = 2; i < len; i++)
                if (p[i] < 0x80 || p[i] > 0xBF)
                        return 0;
        return len;
}

bool utf8_valid(const void *s, size_t n) {
        const uint8_t *p = s;

        for (size_t i = 0, l; i < n; i += l) {
                l = utf8_sequence(p + i, n - i);
                if (l == 0)
                        return false;
        }
        return true;
}

/* --- JSON ------------------------------------------------------------------ */

static void json_indent(Json *j) {
        fputc('\n', j->f);
        for (unsigned i = 0; i < j->depth; i++)
                fputs("  ", j->f);
}

static void json_escaped(FILE *f, const uint8_t *p, size_t n) {
        fputc('"', f);
        for (size_t i = 0; i < n;) {
                uint8_t c = p[i];
                size_t l;

                switch (c) {
                case '"':
                        fputs("\\\"", f);
                        break;
                case '\\':
                        fputs("\\\\", f);
                        break;
                case '\b':
                        fputs("\\b", f);
                        break;
                case '\f':
                        fputs("\\f", f);
                        break;
                case '\n':
                        fputs("\\n", f);
                        break;
                case '\r':
                        fputs("\\r", f);
                        break;
                case '\t':
                        fputs("\\t", f);
                        break;
                default:
                        if (c < 0x20 || c == 0x7F) {
                                fprintf(f, "\\u%04x", c);
                                break;
                        }
                        l = utf8_sequence(p + i, n - i);
                        if (l == 0) {
                                fputs("\\ufffd", f); /* not UTF-8: JSON text must be */
                                break;
                        }
                        fwrite(p + i, 1, l, f);
                        i += l;
                        continue;
                }
                i++;
        }
        fputc('"', f);
}

static void json_begin_value(Json *j, const char *key) {
        if (j->depth > 0) {
                if (j->has_items[j->depth])
                        fputc(',', j->f);
                if (j->pretty)
                        json_indent(j);
        }
        j->has_items[j->depth] = true;
        if (key) {
                json_escaped(j->f, (const uint8_t *) key, strlen(key));
                fputs(j->pretty ? ": " : ":", j->f);
        }
}

static void json_open(Json *j, const char *key, char c) {
        json_begin_value(j, key);
        fputc(c, j->f);
        if (j->depth + 1 < JSON_DEPTH_MAX)
                j->depth++;
        j->has_items[j->depth] = false;
}

static void json_close(Json *j, char c) {
        bool had = j->has_items[j->depth];

        if (j->depth > 0)
                j->depth--;
        if (j->pretty && had)
                json_indent(j);
        fputc(c, j->f);
}

void json_object_open(Json *j, const char *key) {
        json_open(j, key, '{');
}

void json_object_close(Json *j) {
        json_close(j, '}');
}

void json_array_open(Json *j, const char *key) {
        json_open(j, key, '[');
}

void json_array_close(Json *j) {
        json_close(j, ']');
}

void json_string_n(Json *j, const char *key, const void *s, size_t n) {
        json_begin_value(j, key);
        json_escaped(j->f, s, n);
}

void json_string(Json *j, const char *key, const char *s) {
        if (!s) {
                json_null(j, key);
                return;
        }
        json_string_n(j, key, s, strlen(s));
}

void json_u64(Json *j, const char *key, uint64_t v) {
        json_begin_value(j, key);
        fprintf(j->f, "%" PRIu64, v);
}

void json_i64(Json *j, const char *key, int64_t v) {
        json_begin_value(j, key);
        fprintf(j->f, "%" PRIi64, v);
}

void json_double(Json *j, const char *key, double v) {
        char buf[64];

        if (!isfinite(v)) {
                json_null(j, key); /* JSON has no NaN or infinity */
                return;
        }
        /* The shortest of %.15g and %.17g that reads back as the same double. */
        snprintf(buf, sizeof buf, "%.15g", v);
        if (strtod(buf, NULL) != v)
                snprintf(buf, sizeof buf, "%.17g", v);
        json_begin_value(j, key);
        fputs(buf, j->f);
}

void json_bool(Json *j, const char *key, bool v) {
        json_begin_value(j, key);
        fputs(v ? "true" : "false", j->f);
}

void json_null(Json *j, const char *key) {
        json_begin_value(j, key);
        fputs("null", j->f);
}

void json_raw(Json *j, const char *key, const char *value) {
        json_begin_value(j, key);
        fputs(value, j->f);
}

void json_finish(Json *j) {
        fputc('\n', j->f);
        fflush(j->f);
        j->depth = 0;
        j->has_items[0] = false;
}

/* --- Tables ---------------------------------------------------------------- */

struct Table {
        size_t n_columns;
        char **cells; /* headers first, then the rows, row-major */
        size_t n_cells;
        size_t allocated;
        bool *right;
};

Table *table_free(Table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t->right);
        free(t);
        return NULL;
}

static int table_push(Table *t, char *cell) {
        if (!cell)
                return -ENOMEM;
        if (t->n_cells == t->allocated) {
                size_t a = t->allocated ? t->allocated * 2 : 16;
                char **c = realloc(t->cells, a * sizeof *c);
                if (!c) {
                        free(cell);
                        return -ENOMEM;
                }
                t->cells = c;
                t->allocated = a;
        }
        t->cells[t->n_cells++] = cell;
        return 0;
}

Table *table_new(const char *header, ...) {
        _cleanup_table_ Table *t = calloc(1, sizeof *t);
        va_list ap;
        size_t n = 0;

        if (!t)
                return NULL;
        va_start(ap, header);
        for (const char *h = header; h; h = va_arg(ap, const char *))
                n++;
        va_end(ap);
        t->n_columns = n;
        t->right = calloc(n ? n : 1, sizeof *t->right);
        if (!t->right)
                return NULL;
        va_start(ap, header);
        n = 0;
        for (const char *h = header; h; h = va_arg(ap, const char *), n++) {
                t->right[n] = h[0] == '>';
                if (table_push(t, strdup(h + t->right[n])) < 0) {
                        va_end(ap);
                        return NULL;
                }
        }
        va_end(ap);
        return TAKE_PTR(t);
}

int table_add(Table *t, const char *cell) {
        return table_push(t, strdup(cell ? cell : ""));
}

int table_addf(Table *t, const char *format, ...) {
        va_list ap;
        char *s;
        int r;

        va_start(ap, format);
        r = vasprintf(&s, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        return table_push(t, s);
}

size_t table_rows(const Table *t) {
        return t->n_columns ? t->n_cells / t->n_columns - 1 : 0;
}

/* Display width, counted in characters (code points). */
static size_t text_width(const char *s) {
        size_t w = 0;

        for (; *s; s++)
                if (((uint8_t) *s & 0xC0) != 0x80)
                        w++;
        return w;
}

int table_print(const Table *t, FILE *f, bool legend) {
        _cleanup_free_ size_t *width = calloc(t->n_columns ? t->n_columns : 1, sizeof *width);
        size_t first = legend ? 0 : t->n_columns;

        if (!width)
                return -ENOMEM;
        if (t->n_cells % t->n_columns != 0)
                return -EINVAL; /* a row is incomplete: a bug in the caller */
        for (size_t i = first; i < t->n_cells; i++)
                width[i % t->n_columns] = MAX(width[i % t->n_columns], text_width(t->cells[i]));
        for (size_t i = first; i < t->n_cells; i++) {
                size_t col = i % t->n_columns, pad = width[col] - text_width(t->cells[i]);
                bool last = col == t->n_columns - 1;

                if (t->right[col])
                        fprintf(f, "%*s", (int) pad, "");
                fputs(t->cells[i], f);
                if (last)
                        fputc('\n', f);
                else
                        fprintf(f, "%*s", (int) (t->right[col] ? 2 : pad + 2), "");
        }
        return 0;
}

/* --- Formatters -------------------------------------------------------------- */

const char *format_bytes(char *buf, size_t size, uint64_t bytes) {
        static const char units[] = "KMGTPE";
        uint64_t unit = 1024;
        size_t i = 0;

        if (bytes < 1024) {
                snprintf(buf, size, "%" PRIu64 "B", bytes);
                return buf;
        }
        while (i + 1 < sizeof units - 1 && bytes / unit >= 1024) {
                unit *= 1024;
                i++;
        }
        snprintf(buf, size, "%" PRIu64 ".%" PRIu64 "%c", bytes / unit, bytes % unit * 10 / unit, units[i]);
        return buf;
}

const char *format_timestamp(char *buf, size_t size, uint64_t usec) {
        time_t sec = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;
        char s[48];

        if (usec == 0 || !localtime_r(&sec, &tm) || strftime(s, sizeof s, "%Y-%m-%d %H:%M:%S", &tm) == 0) {
                snprintf(buf, size, "n/a");
                return buf;
        }
        snprintf(buf, size, "%s.%03u", s, (unsigned) (usec % USEC_PER_SEC / USEC_PER_MSEC));
        return buf;
}

const char *format_time_of_day(char *buf, size_t size, uint64_t usec) {
        time_t sec = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;
        char s[16];

        if (!localtime_r(&sec, &tm) || strftime(s, sizeof s, "%H:%M:%S", &tm) == 0)
                snprintf(s, sizeof s, "??:??:??");
        snprintf(buf, size, "%s.%03u", s, (unsigned) (usec % USEC_PER_SEC / USEC_PER_MSEC));
        return buf;
}

const char *format_timespan(char *buf, size_t size, uint64_t usec) {
        static const struct {
                const char *unit;
                uint64_t usec;
        } units[] = {
                { "d", 86400 * USEC_PER_SEC }, { "h", 3600 * USEC_PER_SEC }, { "min", 60 * USEC_PER_SEC },
                { "s", USEC_PER_SEC },         { "ms", USEC_PER_MSEC },      { "us", 1 },
        };
        size_t off = 0;

        if (usec == USEC_INFINITY) {
                snprintf(buf, size, "infinity");
                return buf;
        }
        if (usec == 0) {
                snprintf(buf, size, "0");
                return buf;
        }
        /* "1d 12h": the way the configuration files write it. */
        buf[0] = '\0';
        for (size_t i = 0; i < ELEMENTSOF(units) && usec > 0 && off < size; i++) {
                uint64_t n = usec / units[i].usec;
                int k;

                if (n == 0)
                        continue;
                k = snprintf(buf + off, size - off, "%s%" PRIu64 "%s", off ? " " : "", n, units[i].unit);
                if (k < 0)
                        break;
                off += (size_t) k;
                usec -= n * units[i].usec;
        }
        return buf;
}

char *format_payload(const void *p, size_t n, size_t width) {
        const uint8_t *b = p;
        char *text = NULL;
        size_t text_size = 0, w = 0;
        FILE *f = open_memstream(&text, &text_size);

        if (!f)
                return NULL;
        for (size_t i = 0; i < n;) {
                char piece[8];
                size_t l = 1, pw;

                if (b[i] == '\\')
                        snprintf(piece, sizeof piece, "\\\\");
                else if (b[i] == '\n')
                        snprintf(piece, sizeof piece, "\\n");
                else if (b[i] == '\t')
                        snprintf(piece, sizeof piece, "\\t");
                else if (b[i] >= 0x20 && b[i] < 0x7F)
                        snprintf(piece, sizeof piece, "%c", b[i]);
                else if (b[i] >= 0x80 && (l = utf8_sequence(b + i, n - i)) > 1 &&
                         !(b[i] == 0xC2 && b[i + 1] < 0xA0)) { /* C1 controls are escaped */
                        memcpy(piece, b + i, l);
                        piece[l] = '\0';
                } else {
                        l = 1;
                        snprintf(piece, sizeof piece, "\\x%02x", b[i]);
                }
                pw = piece[0] & 0x80 ? 1 : strlen(piece);
                if (w + pw > width) {
                        fputs("…", f);
                        break;
                }
                fputs(piece, f);
                w += pw;
                i += l;
        }
        if (fclose(f) != 0) {
                free(text);
                return NULL;
        }
        return text;
}

char *base64_encode(const void *p, size_t n) {
        static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const uint8_t *b = p;
        char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;

        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t) b[i] << 16;
                if (i + 1 < n)
                        v |= (uint32_t) b[i + 1] << 8;
                if (i + 2 < n)
                        v |= b[i + 2];
                *o++ = table[v >> 18 & 63];
                *o++ = table[v >> 12 & 63];
                *o++ = i + 1 < n ? table[v >> 6 & 63] : '=';
                *o++ = i + 2 < n ? table[v & 63] : '=';
        }
        *o = '\0';
        return out;
}

void print_field(const char *label, const char *format, ...) {
        va_list ap;

        printf("%12s: ", label);
        va_start(ap, format);
        vprintf(format, ap);
        va_end(ap);
        putchar('\n');
}
