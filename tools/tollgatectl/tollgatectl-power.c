/* SPDX-License-Identifier: MIT */

/*
 * tollgatectl's side of org.tollgate.Power1 (docs/power-wake.md): the
 * power-wake status section, reload, the Woken and PoweringDown signals for
 * watch, and the commands holds, hold, wakes, wake-at, wake-cancel,
 * wake-now and hv.
 */

#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>

#include "tg-parse.h"
#include "tg-time.h"
#include "tollgatectl.h"

extern char **environ;

#define PROPERTIES_INTERFACE "org.freedesktop.DBus.Properties"

typedef struct PowerHold {
        char *who, *why;
} PowerHold;

typedef struct PowerWake {
        uint64_t id, when_usec;
        char *reason;
} PowerWake;

typedef struct PowerLists {
        PowerHold *holds;
        size_t n_holds;
        PowerWake *wakes;
        size_t n_wakes;
} PowerLists;

static void power_lists_done(PowerLists *l) {
        for (size_t i = 0; i < l->n_holds; i++) {
                free(l->holds[i].who);
                free(l->holds[i].why);
        }
        for (size_t i = 0; i < l->n_wakes; i++)
                free(l->wakes[i].reason);
        free(l->holds);
        free(l->wakes);
        *l = (PowerLists) {};
}

/* Get(property) without starting the daemon (reading never activates). */
static int get_property(const Context *c, const char *name, const char *type, sd_bus_error *error,
                        sd_bus_message **reply) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        int r;

        r = sd_bus_message_new_method_call(c->bus, &call, service_power.bus_name, service_power.path,
                                           PROPERTIES_INTERFACE, "Get");
        if (r >= 0)
                r = sd_bus_message_append(call, "ss", service_power.interface, name);
        if (r >= 0)
                r = sd_bus_message_set_auto_start(call, false);
        if (r < 0)
                return r;
        r = sd_bus_call(c->bus, call, 0, error, reply);
        if (r < 0)
                return r;
        return sd_bus_message_enter_container(*reply, 'v', type);
}

/* Holds and Wakes, decoded. On a D-Bus error *error is set (and r < 0). */
static int read_lists(const Context *c, bool holds, bool wakes, PowerLists *ret, sd_bus_error *error) {
        _cleanup_(power_lists_done) PowerLists l = {};
        int r;

        if (holds) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                const char *who, *why;

                r = get_property(c, "Holds", "a(ss)", error, &reply);
                if (r >= 0)
                        r = sd_bus_message_enter_container(reply, 'a', "(ss)");
                while (r >= 0 && (r = sd_bus_message_read(reply, "(ss)", &who, &why)) > 0) {
                        PowerHold *h = realloc(l.holds, (l.n_holds + 1) * sizeof *h);
                        if (!h)
                                return -ENOMEM;
                        l.holds = h;
                        h[l.n_holds] = (PowerHold) { strdup(who), strdup(why) };
                        if (!h[l.n_holds].who || !h[l.n_holds].why)
                                return -ENOMEM;
                        l.n_holds++;
                }
                if (r < 0)
                        return r;
        }
        if (wakes) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                const char *reason;
                uint64_t id, when;

                r = get_property(c, "Wakes", "a(tts)", error, &reply);
                if (r >= 0)
                        r = sd_bus_message_enter_container(reply, 'a', "(tts)");
                while (r >= 0 && (r = sd_bus_message_read(reply, "(tts)", &id, &when, &reason)) > 0) {
                        PowerWake *w = realloc(l.wakes, (l.n_wakes + 1) * sizeof *w);
                        if (!w)
                                return -ENOMEM;
                        l.wakes = w;
                        w[l.n_wakes] = (PowerWake) { id, when, strdup(reason) };
                        if (!w[l.n_wakes].reason)
                                return -ENOMEM;
                        l.n_wakes++;
                }
                if (r < 0)
                        return r;
        }
        *ret = l;
        l = (PowerLists) {};
        return 0;
}

/* "in 3min 20s", "2s ago", "now": whole seconds, relative to now. */
static const char *format_relative(char *buf, size_t size, uint64_t usec) {
        uint64_t now = tg_now(CLOCK_REALTIME);
        uint64_t d = usec > now ? usec - now : now - usec;
        char span[FORMAT_TIMESPAN_MAX];

        d = (d + USEC_PER_SEC / 2) / USEC_PER_SEC * USEC_PER_SEC;
        if (d == 0)
                snprintf(buf, size, "now");
        else if (usec > now)
                snprintf(buf, size, "in %s", format_timespan(span, sizeof span, d));
        else
                snprintf(buf, size, "%s ago", format_timespan(span, sizeof span, d));
        return buf;
}

static const char *format_value(char *buf, size_t size, const Property *p, const char *unit) {
        if (!p || !isfinite(p->d))
                snprintf(buf, size, "unknown");
        else
                snprintf(buf, size, "%.*f %s", unit[0] == 'V' ? 2 : 1, p->d, unit);
        return buf;
}

static void power_status(const Context *c, const Service *s, const PropertyList *p) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(power_lists_done) PowerLists l = {};
        char v1[32], v2[32], t1[FORMAT_TIMESTAMP_MAX], t2[48];
        uint64_t power_down = property_u64(p, "PowerDownUsec");
        int r;

        print_field("Ignition", "%s", property_str(p, "Ignition"));
        print_field("Parked", "%s (speed %s)", property_u64(p, "Parked") ? "yes" : "no",
                    format_value(v1, sizeof v1, property_find(p, "Speed"), "km/h"));
        print_field("Battery", "%s", format_value(v2, sizeof v2, property_find(p, "BatteryVoltage"), "V"));
        print_field("High voltage", "%s", property_str(p, "HighVoltage"));

        /* The lists, decoded (GetAll rendered them as text only). */
        r = read_lists(c, true, true, &l, &error);
        if (r < 0) {
                const Property *h = property_find(p, "Holds"), *w = property_find(p, "Wakes");
                print_field("Holds", "%s", h && h->text ? h->text : "?");
                print_field("Next wakes", "%s", w && w->text ? w->text : "?");
        } else {
                if (l.n_holds == 0)
                        print_field("Holds", "none");
                for (size_t i = 0; i < l.n_holds; i++)
                        printf("%12s%c %s (%s)\n", i == 0 ? "Holds" : "", i == 0 ? ':' : ' ', l.holds[i].who,
                               l.holds[i].why);
                if (l.n_wakes == 0)
                        print_field("Next wakes", "none");
                for (size_t i = 0; i < l.n_wakes && i < 3; i++)
                        printf("%12s%c #%" PRIu64 " at %s (%s): %s\n", i == 0 ? "Next wakes" : "", i == 0 ? ':' : ' ',
                               l.wakes[i].id, format_timestamp(t1, sizeof t1, l.wakes[i].when_usec),
                               format_relative(t2, sizeof t2, l.wakes[i].when_usec), l.wakes[i].reason);
                if (l.n_wakes > 3)
                        printf("%12s  … %zu more (tollgatectl wakes)\n", "", l.n_wakes - 3);
        }
        if (power_down)
                print_field("Power-down", "pending at %s (%s)", format_timestamp(t1, sizeof t1, power_down),
                            format_relative(t2, sizeof t2, power_down));
        else
                print_field("Power-down", "not pending");
}

/* --- watch ---------------------------------------------------------------------- */

static int on_woken(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Context *c = userdata;
        const char *reason;
        uint64_t id;
        Json j;

        if (sd_bus_message_read(m, "ts", &id, &reason) < 0)
                return 0; /* not the signal the interface promises: ignore it */
        watch_event_begin(c, &service_power, "woken", &j);
        if (c->json) {
                json_u64(&j, "id", id);
                json_string(&j, "reason", reason);
        } else
                printf("woken: wake #%" PRIu64 " (%s)", id, reason);
        watch_event_end(c, &j);
        return 0;
}

static int on_powering_down(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Context *c = userdata;
        Json j;

        watch_event_begin(c, &service_power, "powering-down", &j);
        if (!c->json)
                fputs("powering down: ignition off, no holds, grace period over", stdout);
        watch_event_end(c, &j);
        return 0;
}

static int power_watch(Context *c, const Service *s) {
        int r;

        r = sd_bus_match_signal(c->bus, NULL, s->bus_name, s->path, s->interface, "Woken", on_woken, c);
        if (r >= 0)
                r = sd_bus_match_signal(c->bus, NULL, s->bus_name, s->path, s->interface, "PoweringDown",
                                        on_powering_down, c);
        return r;
}

/* --- holds ---------------------------------------------------------------------- */

static int verb_holds(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(power_lists_done) PowerLists l = {};
        _cleanup_table_ Table *t = NULL;
        Json j = { .f = stdout, .pretty = c->json_pretty };
        int r;

        r = read_lists(c, true, false, &l, &error);
        if (r < 0 && sd_bus_error_is_set(&error))
                return ctl_bus_failure(&error, r, "Get(Holds)");
        if (r < 0)
                return ctl_reply_failure(r, "Get(Holds)");
        if (c->json) {
                json_array_open(&j, NULL);
                for (size_t i = 0; i < l.n_holds; i++) {
                        json_object_open(&j, NULL);
                        json_string(&j, "who", l.holds[i].who);
                        json_string(&j, "why", l.holds[i].why);
                        json_object_close(&j);
                }
                json_array_close(&j);
                json_finish(&j);
                return CTL_EXIT_SUCCESS;
        }
        t = table_new("WHO", "WHY", NULL);
        if (!t)
                return ctl_error_errno(-ENOMEM, "Out of memory.");
        for (size_t i = 0; i < l.n_holds; i++)
                if (table_add(t, l.holds[i].who) < 0 || table_add(t, l.holds[i].why) < 0)
                        return ctl_error_errno(-ENOMEM, "Out of memory.");
        if (l.n_holds > 0)
                table_print(t, stdout, c->legend);
        if (c->legend)
                printf("%s%zu hold%s.\n", l.n_holds > 0 ? "\n" : "", l.n_holds, l.n_holds == 1 ? "" : "s");
        return CTL_EXIT_SUCCESS;
}

/* --- hold WHO WHY -- COMMAND... --------------------------------------------------- */

static volatile sig_atomic_t child_pid;

static void forward_signal(int sig) {
        if (child_pid > 0)
                (void) kill((pid_t) child_pid, sig);
}

/* Take a hold, run the command, release the hold when it exits (as
 * systemd-inhibit does). The hold's fd stays in this process (close-on-exec):
 * should tollgatectl die, the kernel closes it and the hold ends, whatever
 * the command does. */
static int verb_hold(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct sigaction sa = { .sa_handler = forward_signal, .sa_flags = SA_RESTART }, old_int, old_term, old_hup;
        posix_spawnattr_t attr;
        sigset_t none, defaults;
        uint64_t start;
        pid_t pid;
        int r, status, bus_fd, exit_status;

        r = service_call(c, &service_power, "Hold", &error, &reply, "ss", argv[1], argv[2]);
        if (r < 0)
                return ctl_bus_failure(&error, r, "Hold()");
        r = sd_bus_message_read(reply, "h", &bus_fd);
        if (r < 0)
                return ctl_reply_failure(r, "Hold");
        fd = fcntl(bus_fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return ctl_error_errno(-errno, "Cannot keep the hold's file descriptor: %m");
        reply = sd_bus_message_unref(reply);
        /* The bus is not needed while the command runs; a daemon that goes
         * away ends the hold anyway (its end of the pipe closes). */
        c->bus = sd_bus_flush_close_unref(c->bus);

        sigemptyset(&none);
        sigemptyset(&defaults);
        sigaddset(&defaults, SIGINT);
        sigaddset(&defaults, SIGTERM);
        sigaddset(&defaults, SIGHUP);
        sigaddset(&defaults, SIGPIPE);
        r = posix_spawnattr_init(&attr);
        if (r == 0)
                r = posix_spawnattr_setsigmask(&attr, &none);
        if (r == 0)
                r = posix_spawnattr_setsigdefault(&attr, &defaults);
        if (r == 0)
                r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (r != 0)
                return ctl_error_errno(-r, "Cannot set up the command: %m");

        /* Signals that end tollgatectl go to the command instead; the hold
         * ends when the command does. */
        (void) sigaction(SIGINT, &sa, &old_int);
        (void) sigaction(SIGTERM, &sa, &old_term);
        (void) sigaction(SIGHUP, &sa, &old_hup);
        start = tg_now(CLOCK_MONOTONIC);
        r = posix_spawnp(&pid, argv[3], NULL, &attr, argv + 3, environ);
        posix_spawnattr_destroy(&attr);
        if (r != 0) {
                ctl_error_errno(-r, "Cannot run %s: %m", argv[3]);
                return r == ENOENT ? 127 : 126; /* as a shell says */
        }
        child_pid = pid;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return ctl_error_errno(-errno, "Cannot wait for %s: %m", argv[3]);
        child_pid = 0;
        (void) sigaction(SIGINT, &old_int, NULL);
        (void) sigaction(SIGTERM, &old_term, NULL);
        (void) sigaction(SIGHUP, &old_hup, NULL);
        fd = safe_close(fd); /* the hold ends here */

        exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (c->json) {
                Json j = { .f = stdout, .pretty = c->json_pretty };
                json_object_open(&j, NULL);
                json_string(&j, "who", argv[1]);
                json_string(&j, "why", argv[2]);
                json_u64(&j, "held_usec", tg_now(CLOCK_MONOTONIC) - start);
                json_i64(&j, "exit_status", exit_status);
                json_object_close(&j);
                json_finish(&j);
        }
        if (WIFSIGNALED(status))
                ctl_error("%s was killed by signal %s.", argv[3], sigabbrev_np(WTERMSIG(status)) ?: "?");
        return exit_status;
}

/* --- wakes ------------------------------------------------------------------------ */

static int verb_wakes(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(power_lists_done) PowerLists l = {};
        _cleanup_table_ Table *t = NULL;
        Json j = { .f = stdout, .pretty = c->json_pretty };
        int r;

        r = read_lists(c, false, true, &l, &error);
        if (r < 0 && sd_bus_error_is_set(&error))
                return ctl_bus_failure(&error, r, "Get(Wakes)");
        if (r < 0)
                return ctl_reply_failure(r, "Get(Wakes)");
        if (c->json) {
                json_array_open(&j, NULL);
                for (size_t i = 0; i < l.n_wakes; i++) {
                        json_object_open(&j, NULL);
                        json_u64(&j, "id", l.wakes[i].id);
                        json_u64(&j, "when_usec", l.wakes[i].when_usec);
                        json_string(&j, "reason", l.wakes[i].reason);
                        json_object_close(&j);
                }
                json_array_close(&j);
                json_finish(&j);
                return CTL_EXIT_SUCCESS;
        }
        t = table_new(">ID", "WHEN", "LEFT", "REASON", NULL);
        if (!t)
                return ctl_error_errno(-ENOMEM, "Out of memory.");
        for (size_t i = 0; i < l.n_wakes; i++) {
                char t1[FORMAT_TIMESTAMP_MAX], t2[48];

                if (table_addf(t, "%" PRIu64, l.wakes[i].id) < 0 ||
                    table_add(t, format_timestamp(t1, sizeof t1, l.wakes[i].when_usec)) < 0 ||
                    table_add(t, format_relative(t2, sizeof t2, l.wakes[i].when_usec)) < 0 ||
                    table_add(t, l.wakes[i].reason) < 0)
                        return ctl_error_errno(-ENOMEM, "Out of memory.");
        }
        if (l.n_wakes > 0)
                table_print(t, stdout, c->legend);
        if (c->legend)
                printf("%s%zu scheduled wake%s.\n", l.n_wakes > 0 ? "\n" : "", l.n_wakes, l.n_wakes == 1 ? "" : "s");
        return CTL_EXIT_SUCCESS;
}

/* --- wake-at TIME REASON ------------------------------------------------------------- */

/* Digits only, into *ret; 0 or -EINVAL. */
static int parse_digits(const char *s, size_t n, int *ret) {
        int v = 0;

        if (n == 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return 0;
}

/* ".123456" → µs; p points at '.', moved past the digits. */
static int parse_fraction(const char **p, uint64_t *ret) {
        uint64_t usec = 0, scale = 100000;
        const char *s = *p + 1;

        if (**p != '.' || *s < '0' || *s > '9')
                return -EINVAL;
        for (; *s >= '0' && *s <= '9'; s++) {
                usec += (uint64_t) (*s - '0') * scale;
                scale /= 10;
        }
        *p = s;
        *ret = usec;
        return 0;
}

/* TIME of wake-at: "+SPAN" (from now: +10min, +1h 30min, +30s), "@EPOCH" or
 * EPOCH (seconds since 1970, a fraction allowed), or ISO 8601
 * "YYYY-MM-DD[T| ]HH:MM[:SS[.frac]][Z|±HH:MM]" (local time without a zone). */
static int parse_wake_time(const char *s, uint64_t now, uint64_t *ret) {
        struct tm tm = { .tm_isdst = -1 };
        uint64_t frac = 0, span;
        const char *p = s;
        int year, mon, day, hour, min, sec = 0;
        bool utc = false;
        size_t n;
        long offset = 0;
        time_t t;

        if (*s == '+') {
                if (tg_parse_timespan(s + 1, USEC_PER_SEC, &span) < 0 || span == USEC_INFINITY ||
                    span > UINT64_MAX - now)
                        return -EINVAL;
                *ret = now + span;
                return 0;
        }
        if (*s == '@')
                p++;
        n = strspn(p, "0123456789");
        if (n > 0 && (p[n] == '\0' || p[n] == '.')) {
                /* Seconds since the epoch. */
                uint64_t secs = 0;

                if (n > 11)
                        return -EINVAL;
                for (size_t i = 0; i < n; i++)
                        secs = secs * 10 + (uint64_t) (p[i] - '0');
                p += n;
                if (*p == '.' && (parse_fraction(&p, &frac) < 0 || *p))
                        return -EINVAL;
                *ret = secs * USEC_PER_SEC + frac;
                return 0;
        }
        if (p != s)
                return -EINVAL; /* "@" wants seconds */

        /* ISO 8601. */
        if (strlen(p) < 16 || parse_digits(p, 4, &year) < 0 || p[4] != '-' || parse_digits(p + 5, 2, &mon) < 0 ||
            p[7] != '-' || parse_digits(p + 8, 2, &day) < 0 || (p[10] != 'T' && p[10] != ' ') ||
            parse_digits(p + 11, 2, &hour) < 0 || p[13] != ':' || parse_digits(p + 14, 2, &min) < 0)
                return -EINVAL;
        p += 16;
        if (*p == ':') {
                if (parse_digits(p + 1, 2, &sec) < 0)
                        return -EINVAL;
                p += 3;
                if (*p == '.' && parse_fraction(&p, &frac) < 0)
                        return -EINVAL;
        }
        if (*p == 'Z' || *p == 'z') {
                utc = true;
                p++;
        } else if (*p == '+' || *p == '-') {
                int oh, om;

                if (parse_digits(p + 1, 2, &oh) < 0 || p[3] != ':' || parse_digits(p + 4, 2, &om) < 0 || oh > 23 ||
                    om > 59)
                        return -EINVAL;
                offset = (oh * 3600L + om * 60L) * (*p == '-' ? -1 : 1);
                utc = true;
                p += 6;
        }
        if (*p || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
                return -EINVAL;
        tm.tm_year = year - 1900;
        tm.tm_mon = mon - 1;
        tm.tm_mday = day;
        tm.tm_hour = hour;
        tm.tm_min = min;
        tm.tm_sec = sec;
        t = utc ? timegm(&tm) : mktime(&tm);
        if (t == (time_t) -1 || tm.tm_mday != day)
                return -EINVAL; /* also 31 February */
        t -= offset;
        if (t < 0)
                return -EINVAL;
        *ret = (uint64_t) t * USEC_PER_SEC + frac;
        return 0;
}

static int verb_wake_at(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(power_lists_done) PowerLists l = {};
        char t1[FORMAT_TIMESTAMP_MAX], t2[48];
        uint64_t when, id = 0;
        int r;

        if (parse_wake_time(argv[1], tg_now(CLOCK_REALTIME), &when) < 0) {
                ctl_error("wake-at takes a TIME of +SPAN (+10min), seconds since the epoch or ISO 8601 "
                          "(2030-01-31T06:00:00Z), not \"%s\".", argv[1]);
                return CTL_EXIT_USAGE;
        }
        r = service_call(c, &service_power, "ScheduleWake", &error, NULL, "ts", when, argv[2]);
        if (r < 0)
                return ctl_bus_failure(&error, r, "ScheduleWake()");
        /* ScheduleWake() answers no id: the newest wake of this time and reason is ours. */
        if (read_lists(c, false, true, &l, &error) >= 0)
                for (size_t i = 0; i < l.n_wakes; i++)
                        if (l.wakes[i].when_usec == when && streq(l.wakes[i].reason, argv[2]))
                                id = MAX(id, l.wakes[i].id);
        if (c->json) {
                Json j = { .f = stdout, .pretty = c->json_pretty };
                json_object_open(&j, NULL);
                if (id)
                        json_u64(&j, "id", id);
                else
                        json_null(&j, "id");
                json_u64(&j, "when_usec", when);
                json_string(&j, "reason", argv[2]);
                json_object_close(&j);
                json_finish(&j);
        } else if (id)
                printf("Wake #%" PRIu64 " scheduled at %s (%s).\n", id, format_timestamp(t1, sizeof t1, when),
                       format_relative(t2, sizeof t2, when));
        else
                printf("Wake scheduled at %s (%s); it has fired already.\n", format_timestamp(t1, sizeof t1, when),
                       format_relative(t2, sizeof t2, when));
        return CTL_EXIT_SUCCESS;
}

/* --- wake-cancel ID, wake-now REASON --------------------------------------------------- */

static int verb_wake_cancel(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id;
        int r;

        if (tg_parse_uint64(argv[1], &id) < 0 || id == 0) {
                ctl_error("wake-cancel takes a wake id (see tollgatectl wakes), not \"%s\".", argv[1]);
                return CTL_EXIT_USAGE;
        }
        r = service_call(c, &service_power, "CancelWake", &error, NULL, "t", id);
        if (r < 0)
                return ctl_bus_failure(&error, r, "CancelWake()");
        if (c->json) {
                Json j = { .f = stdout, .pretty = c->json_pretty };
                json_object_open(&j, NULL);
                json_u64(&j, "id", id);
                json_bool(&j, "cancelled", true);
                json_object_close(&j);
                json_finish(&j);
        } else
                printf("Wake #%" PRIu64 " cancelled.\n", id);
        return CTL_EXIT_SUCCESS;
}

static int verb_wake_now(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = service_call(c, &service_power, "RequestWake", &error, NULL, "s", argv[1]);
        if (r < 0)
                return ctl_bus_failure(&error, r, "RequestWake()");
        if (c->json) {
                Json j = { .f = stdout, .pretty = c->json_pretty };
                json_object_open(&j, NULL);
                json_string(&j, "reason", argv[1]);
                json_bool(&j, "requested", true);
                json_object_close(&j);
                json_finish(&j);
        } else
                printf("Wake requested: power-wake holds power for \"%s\" until the job acknowledges it.\n", argv[1]);
        return CTL_EXIT_SUCCESS;
}

/* --- hv on|off ----------------------------------------------------------------------- */

static int verb_hv(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(property_list_done) PropertyList props = {};
        bool on;
        int r;

        if (streq(argv[1], "on"))
                on = true;
        else if (streq(argv[1], "off"))
                on = false;
        else {
                ctl_error("hv takes \"on\" or \"off\", not \"%s\".", argv[1]);
                return CTL_EXIT_USAGE;
        }
        r = service_call(c, &service_power, "RequestHighVoltage", &error, NULL, "b", on);
        if (r < 0)
                return ctl_bus_failure(&error, r, "RequestHighVoltage()");
        /* What the contactors say now (they follow within the BMS's precharge time). */
        sd_bus_error_free(&error);
        (void) service_get_all(c, &service_power, &props, &error);
        if (c->json) {
                Json j = { .f = stdout, .pretty = c->json_pretty };
                json_object_open(&j, NULL);
                json_string(&j, "requested", argv[1]);
                if (property_find(&props, "HighVoltage"))
                        json_string(&j, "high_voltage", property_str(&props, "HighVoltage"));
                else
                        json_null(&j, "high_voltage");
                json_object_close(&j);
                json_finish(&j);
        } else
                printf("High voltage %s requested; the contactors report \"%s\" (see HighVoltage in status or watch).\n",
                       argv[1], property_find(&props, "HighVoltage") ? property_str(&props, "HighVoltage") : "?");
        return CTL_EXIT_SUCCESS;
}

static const Verb power_verbs[] = {
        { "holds", "", "List who holds power", 0, 0, verb_holds },
        { "hold", "WHO WHY -- CMD...", "Hold power while CMD runs (like systemd-inhibit)", 3, UINT_MAX,
          verb_hold },
        { "wakes", "", "List the scheduled wakes", 0, 0, verb_wakes },
        { "wake-at", "TIME REASON", "Schedule a wake (TIME: +10min, epoch seconds, ISO 8601)", 2, 2, verb_wake_at },
        { "wake-cancel", "ID", "Cancel a scheduled wake", 1, 1, verb_wake_cancel },
        { "wake-now", "REASON", "Wake now, as a remote wake request does", 1, 1, verb_wake_now },
        { "hv", "on|off", "Ask the battery management for high voltage (parked only)", 1, 1, verb_hv },
        {},
};

const Service service_power = {
        .name = "power-wake",
        .title = "Power and wake",
        .bus_name = "org.tollgate.Power1",
        .path = "/org/tollgate/Power1",
        .interface = "org.tollgate.Power1",
        .status = power_status,
        .reload = service_reload,
        .watch = power_watch,
        .verbs = power_verbs,
};
