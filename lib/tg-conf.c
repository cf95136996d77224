/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>

#include "tg-conf.h"
#include "tg-parse.h"

static int conf_error(TgConfError *err, int r, const char *format, ...) _printf_(3, 4);
static int conf_error(TgConfError *err, int r, const char *format, ...) {
        va_list ap;

        if (err) {
                va_start(ap, format);
                vsnprintf(err->text, sizeof err->text, format, ap);
                va_end(ap);
        }
        return r;
}

static char *strip(char *s) {
        char *e;

        while (*s == ' ' || *s == '\t')
                s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
                *--e = '\0';
        return s;
}

static __thread const char *location_file;
static __thread unsigned location_line;

void tg_conf_location(const char **ret_file, unsigned *ret_line) {
        if (ret_file)
                *ret_file = location_file;
        if (ret_line)
                *ret_line = location_line;
}

static bool section_takes_arg(const TgConfTable *t, const char *section) {
        for (const char *const *p = t->arg_sections; p && *p; p++)
                if (streq(*p, section))
                        return true;
        return false;
}

static bool section_known(const TgConfTable *t, const char *section) {
        for (size_t i = 0; i < t->n_items; i++)
                if (streq(t->items[i].section, section))
                        return true;
        return false;
}

static bool valid_name(const char *s) {
        if (*s == '\0')
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      strchr("_-.:", *s)))
                        return false;
        return true;
}

static int parse_buffer(const char *text, size_t size, const char *name, const TgConfTable *t, void *userdata,
                        TgConfError *err) {
        _cleanup_free_ char *buf = NULL, *section = NULL, *label = NULL; /* label: "Source body" */
        void *base = NULL;
        unsigned lineno = 0;
        char *line, *next;

        location_file = name;

        if (memchr(text, '\0', size))
                return conf_error(err, -EINVAL, "%s: contains a NUL byte, not a text file", name);
        /* No NUL inside (above), maybe none at the end: copy exactly size bytes. */
        buf = malloc(size + 1);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, text, size);
        buf[size] = '\0';

        for (line = buf; line; line = next) {
                char reason[256] = "";
                char *s, *eq, *key, *value;
                const TgConfItem *item = NULL;
                int r;

                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                lineno++;
                location_line = lineno;

                s = strip(line);
                if (*s == '\0' || *s == '#' || *s == ';')
                        continue;

                if (*s == '[') {
                        char *end = s + strlen(s) - 1, *arg;

                        if (*end != ']')
                                return conf_error(err, -EINVAL, "%s:%u: section header without closing ']'", name, lineno);
                        *end = '\0';
                        s = strip(s + 1);
                        arg = strpbrk(s, " \t");
                        if (arg) {
                                *arg++ = '\0';
                                arg = strip(arg);
                        }
                        if (!section_known(t, s))
                                return conf_error(err, -EINVAL, "%s:%u: unknown section [%s]", name, lineno, s);
                        if (section_takes_arg(t, s)) {
                                if (!arg || !valid_name(arg))
                                        return conf_error(err, -EINVAL,
                                                          "%s:%u: section [%s] needs a name of letters, digits, '_-.:' ([%s NAME])",
                                                          name, lineno, s, s);
                                base = t->lookup(userdata, s, arg, reason, sizeof reason);
                                if (!base)
                                        return conf_error(err, -EINVAL, "%s:%u: [%s %s]: %s", name, lineno, s, arg,
                                                          reason[0] ? reason : "rejected");
                        } else {
                                if (arg && *arg)
                                        return conf_error(err, -EINVAL, "%s:%u: section [%s] takes no name", name, lineno, s);
                                base = userdata;
                        }
                        free(section);
                        free(label);
                        section = strdup(s);
                        if (arg && *arg ? asprintf(&label, "%s %s", s, arg) < 0 : !(label = strdup(s)))
                                label = NULL;
                        if (!section || !label)
                                return -ENOMEM;
                        continue;
                }

                eq = strchr(s, '=');
                if (!eq)
                        return conf_error(err, -EINVAL, "%s:%u: expected Key=Value, got \"%.64s\"", name, lineno, s);
                *eq = '\0';
                key = strip(s);
                value = strip(eq + 1);
                if (!section)
                        return conf_error(err, -EINVAL, "%s:%u: %s= outside of any [Section]", name, lineno, key);

                for (size_t i = 0; i < t->n_items; i++)
                        if (streq(t->items[i].section, section) && streq(t->items[i].key, key)) {
                                item = &t->items[i];
                                break;
                        }
                if (!item)
                        return conf_error(err, -EINVAL, "%s:%u: unknown key %s= in [%s]", name, lineno, key, label);

                r = item->parse(value, (uint8_t *) base + item->offset, item->extra, reason, sizeof reason);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return conf_error(err, r, "%s:%u: [%s] %s=%.128s: %s", name, lineno, label, key, value,
                                          reason[0] ? reason : (r == -ERANGE ? "out of range" : "invalid value"));
        }
        return 0;
}

int tg_conf_parse_buffer(const char *text, size_t size, const char *name, const TgConfTable *t,
                         void *userdata, TgConfError *err) {
        int r;

        location_line = 0;
        r = parse_buffer(text, size, name, t, userdata, err);
        location_file = NULL;
        location_line = 0;
        return r;
}

static int read_file(const char *path, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t n = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if (st.st_size > TG_CONF_MAX_FILE_SIZE)
                return -EFBIG;
        buf = malloc((size_t) st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        while (n < (size_t) st.st_size) {
                ssize_t k = read(fd, buf + n, (size_t) st.st_size - n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        break;
                n += (size_t) k;
        }
        buf[n] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_size = n;
        return 0;
}

static int load_one(const char *path, bool must_exist, const TgConfTable *t, void *userdata, TgConfError *err) {
        _cleanup_free_ char *text = NULL;
        char ebuf[128];
        size_t size;
        int r;

        r = read_file(path, &text, &size);
        if (r == -ENOENT && !must_exist)
                return 0;
        if (r == -EFBIG)
                return conf_error(err, r, "%s: larger than %d bytes", path, TG_CONF_MAX_FILE_SIZE);
        if (r < 0)
                return conf_error(err, r, "%s: cannot read: %s", path, strerror_r(-r, ebuf, sizeof ebuf));
        return tg_conf_parse_buffer(text, size, path, t, userdata, err);
}

static int filter_conf(const struct dirent *de) {
        size_t l = strlen(de->d_name);

        return de->d_name[0] != '.' && l > 5 && streq(de->d_name + l - 5, ".conf");
}

int tg_conf_load(const char *path, bool must_exist, const TgConfTable *t, void *userdata, TgConfError *err) {
        _cleanup_free_ char *dir = NULL;
        struct dirent **list = NULL;
        int r, n;

        r = load_one(path, must_exist, t, userdata, err);
        if (r < 0)
                return r;

        if (asprintf(&dir, "%s.d", path) < 0)
                return -ENOMEM;
        n = scandir(dir, &list, filter_conf, alphasort);
        if (n < 0)
                return errno == ENOENT || errno == ENOTDIR ? 0 : conf_error(err, negative_errno(), "%s: cannot list drop-ins", dir);

        r = 0;
        for (int i = 0; i < n; i++) {
                if (r >= 0) {
                        _cleanup_free_ char *p = NULL;
                        if (asprintf(&p, "%s/%s", dir, list[i]->d_name) < 0)
                                r = -ENOMEM;
                        else
                                r = load_one(p, true, t, userdata, err);
                }
                free(list[i]);
        }
        free(list);
        return r;
}

int tg_conf_parse_string(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        char **s = field, *copy = NULL;

        (void) extra, (void) reason, (void) reason_size;
        if (*value) {
                copy = strdup(value);
                if (!copy)
                        return -ENOMEM;
        }
        free(*s);
        *s = copy; /* an empty value resets to the built-in default (NULL) */
        return 0;
}

int tg_conf_parse_bool(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        (void) extra;
        if (tg_parse_bool(value, field) < 0) {
                snprintf(reason, reason_size, "expected a boolean (yes/no, true/false, on/off, 1/0)");
                return -EINVAL;
        }
        return 0;
}

static int check_range(uint64_t v, const TgConfRange *range, bool timespan, char *reason, size_t reason_size) {
        char a[32], b[32];

        if (!range || (v >= range->min && v <= range->max))
                return 0;
        if (timespan)
                snprintf(reason, reason_size, "must be between %s and %s",
                         tg_format_timespan(a, sizeof a, range->min), tg_format_timespan(b, sizeof b, range->max));
        else
                snprintf(reason, reason_size, "must be between %llu and %llu", (unsigned long long) range->min,
                         (unsigned long long) range->max);
        return -ERANGE;
}

int tg_conf_parse_uint64(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        uint64_t v;
        int r;

        r = tg_parse_uint64(value, &v);
        if (r < 0) {
                snprintf(reason, reason_size, "expected a non-negative integer");
                return r;
        }
        r = check_range(v, extra, false, reason, reason_size);
        if (r < 0)
                return r;
        *(uint64_t *) field = v;
        return 0;
}

int tg_conf_parse_unsigned(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        uint64_t v;
        int r;

        r = tg_conf_parse_uint64(value, &v, extra, reason, reason_size);
        if (r < 0)
                return r;
        if (v > UINT32_MAX) {
                snprintf(reason, reason_size, "must be at most %u", UINT32_MAX);
                return -ERANGE;
        }
        *(unsigned *) field = (unsigned) v;
        return 0;
}

int tg_conf_parse_size(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        uint64_t v;
        int r;

        r = tg_parse_size(value, &v);
        if (r < 0) {
                snprintf(reason, reason_size, "expected a size such as 4096, 64K, 16M or 2G");
                return r;
        }
        r = check_range(v, extra, false, reason, reason_size);
        if (r < 0)
                return r;
        *(uint64_t *) field = v;
        return 0;
}

int tg_conf_parse_timespan(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        const TgConfRange *range = extra;
        uint64_t v;
        int r;

        r = tg_parse_timespan(value, range && range->unit_usec ? range->unit_usec : USEC_PER_SEC, &v);
        if (r < 0) {
                snprintf(reason, reason_size, "expected a time span such as 250ms, 5s, 10min, 2h or 7d");
                return r;
        }
        r = check_range(v, range, true, reason, reason_size);
        if (r < 0)
                return r;
        *(uint64_t *) field = v;
        return 0;
}
