/* SPDX-License-Identifier: MIT */

/*
 * tollgatectl watch: follow the daemons live, one line per event, until
 * SIGINT/SIGTERM. Signal matches only (sd_bus_match_signal), no polling: the
 * daemons coalesce PropertiesChanged themselves (the classifier to one per
 * 200 ms at most).
 */

#include <signal.h>
#include <time.h>

#include "tg-time.h"
#include "tollgatectl.h"

#define PROPERTIES_INTERFACE "org.freedesktop.DBus.Properties"

typedef struct Watched {
        Context *c;
        const Service *s;
} Watched;

void watch_event_begin(const Context *c, const Service *s, const char *event, Json *j) {
        uint64_t now = tg_now(CLOCK_REALTIME);

        if (c->json) {
                *j = (Json) { .f = stdout }; /* one object per line, never pretty */
                json_object_open(j, NULL);
                json_u64(j, "time_usec", now);
                json_string(j, "service", s->name);
                json_string(j, "event", event);
        } else {
                char buf[FORMAT_TIMESTAMP_MAX];
                printf("%s %-10s ", format_time_of_day(buf, sizeof buf, now), s->name);
        }
}

void watch_event_end(const Context *c, Json *j) {
        if (c->json) {
                json_object_close(j);
                json_finish(j);
        } else {
                putchar('\n');
                fflush(stdout);
        }
}

static void print_properties(const Context *c, Json *j, const PropertyList *props) {
        if (c->json) {
                json_object_open(j, "properties");
                for (size_t i = 0; i < props->n; i++)
                        json_raw(j, props->items[i].name, props->items[i].json);
                json_object_close(j);
                return;
        }
        for (size_t i = 0; i < props->n; i++)
                printf("%s%s=%s", i ? " " : "", props->items[i].name, props->items[i].text);
}

static void print_state(Watched *w) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(property_list_done) PropertyList props = {};
        Json j;
        int r;

        r = service_get_all(w->c, w->s, &props, &error);
        if (r < 0) {
                if (bus_error_is_not_running(&error)) {
                        watch_event_begin(w->c, w->s, "not-running", &j);
                        if (!w->c->json)
                                fputs("not running", stdout);
                        watch_event_end(w->c, &j);
                } else
                        ctl_bus_failure(&error, r, "GetAll()");
                return;
        }
        watch_event_begin(w->c, w->s, "state", &j);
        print_properties(w->c, &j, &props);
        watch_event_end(w->c, &j);
}

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        _cleanup_(property_list_done) PropertyList props = {};
        _cleanup_free_ char **invalidated = NULL;
        Watched *w = userdata;
        const char *interface;
        Json j;
        int r;

        r = sd_bus_message_read(m, "s", &interface);
        if (r < 0 || !streq(interface, w->s->interface))
                return 0;
        r = property_list_read(m, w->s, &props);
        if (r >= 0)
                r = sd_bus_message_read_strv(m, &invalidated);
        if (r < 0) {
                ctl_error_errno(r, "Cannot read PropertiesChanged of %s: %m", w->s->bus_name);
                return 0;
        }

        watch_event_begin(w->c, w->s, "changed", &j);
        print_properties(w->c, &j, &props);
        if (w->c->json)
                json_array_open(&j, "invalidated");
        for (char **p = invalidated; p && *p; p++) {
                if (w->c->json)
                        json_string(&j, NULL, *p);
                else
                        printf("%s%s=?", props.n > 0 || p != invalidated ? " " : "", *p);
        }
        if (w->c->json)
                json_array_close(&j);
        watch_event_end(w->c, &j);
        for (char **p = invalidated; p && *p; p++)
                free(*p);
        return 0;
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Watched *w = userdata;
        const char *name, *old_owner, *new_owner;
        Json j;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 || !streq(name, w->s->bus_name))
                return 0;
        if (*new_owner) {
                watch_event_begin(w->c, w->s, "started", &j);
                if (w->c->json)
                        json_string(&j, "owner", new_owner);
                else
                        printf("started (%s)", new_owner);
                watch_event_end(w->c, &j);
                /* A new process: its counters start again. Show where they start. */
                print_state(w);
        } else {
                watch_event_begin(w->c, w->s, "stopped", &j);
                if (!w->c->json)
                        fputs("stopped", stdout);
                watch_event_end(w->c, &j);
        }
        return 0;
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        return sd_event_exit(sd_event_source_get_event(s), CTL_EXIT_SUCCESS);
}

static int add_matches(Watched *w) {
        _cleanup_free_ char *owner_match = NULL;
        int r;

        r = sd_bus_match_signal(w->c->bus, NULL, w->s->bus_name, w->s->path, PROPERTIES_INTERFACE,
                                "PropertiesChanged", on_properties_changed, w);
        if (r < 0)
                return r;
        /* Only this name's changes, not every client coming and going on the bus. */
        if (asprintf(&owner_match,
                     "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                     "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='%s'",
                     w->s->bus_name) < 0)
                return -ENOMEM;
        r = sd_bus_add_match(w->c->bus, NULL, owner_match, on_name_owner_changed, w);
        if (r < 0)
                return r;
        return w->s->watch ? w->s->watch(w->c, w->s) : 0;
}

int verb_watch(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_free_ Watched *watched = NULL;
        size_t n = 0, max = 0;
        sigset_t mask;
        int r;

        for (const Service *const *s = services; *s; s++)
                max++;
        watched = calloc(max, sizeof *watched);
        if (!watched)
                return ctl_error_errno(-ENOMEM, "Out of memory.");
        if (argc > 1)
                for (int i = 1; i < argc; i++) {
                        const Service *s = service_find(argv[i]);
                        if (!s) {
                                ctl_error("Unknown service \"%s\".", argv[i]);
                                return CTL_EXIT_USAGE;
                        }
                        if (n < max)
                                watched[n++] = (Watched) { c, s };
                }
        else
                for (const Service *const *s = services; *s; s++)
                        if (service_available(*s))
                                watched[n++] = (Watched) { c, *s };

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return ctl_error_errno(-errno, "Cannot block signals: %m");
        r = sd_event_default(&e);
        if (r >= 0)
                r = sd_event_add_signal(e, NULL, SIGINT, on_exit_signal, NULL);
        if (r >= 0)
                r = sd_event_add_signal(e, NULL, SIGTERM, on_exit_signal, NULL);
        if (r >= 0)
                r = sd_bus_attach_event(c->bus, e, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = sd_bus_set_exit_on_disconnect(c->bus, true);
        if (r < 0)
                return ctl_error_errno(r, "Cannot set up the event loop: %m");

        /* Matches first (AddMatch is synchronous), then the current state: no
         * change falls between the two. */
        for (size_t i = 0; i < n; i++) {
                r = add_matches(&watched[i]);
                if (r < 0)
                        return ctl_error_errno(r, "Cannot watch %s: %m", watched[i].s->bus_name);
        }
        for (size_t i = 0; i < n; i++)
                print_state(&watched[i]);

        r = sd_event_loop(e);
        if (r < 0)
                return ctl_error_errno(r, "Event loop failed: %m");
        if (r != CTL_EXIT_SUCCESS)
                ctl_error("The bus connection was closed.");
        return r;
}
