/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * tollgatectl: the human CLI over the Tollgate daemons' D-Bus interfaces.
 *
 * tollgatectl.c          options, the command table, status, outbox, reload
 * tollgatectl-bus.c      connection, calls, properties, D-Bus errors → exit status
 * tollgatectl-watch.c    watch: PropertiesChanged and name changes, live
 * tollgatectl-output.c   JSON writer, tables, formatters, messages
 * tollgatectl-<daemon>.c one per daemon: its Service (bus names, hooks for
 *                        status/outbox/reload/watch) and its own commands
 *
 * A daemon's file fills in a Service; everything generic (status, outbox,
 * reload, watch, --json) picks it up from the services[] list.
 */

#include <systemd/sd-bus.h>

#include "tollgatectl-output.h"

typedef struct Context Context;
typedef struct Service Service;

struct Context {
        sd_bus *bus;
        const char *address; /* --address=, else the system bus ($DBUS_SYSTEM_BUS_ADDRESS) */
        bool json;
        bool json_pretty;
        bool legend;
        /* Options of single commands */
        uint64_t timestamp_usec; /* submit --timestamp=; 0: now */
        unsigned max;            /* downlink --max= */
};

/* A command. argv[0] is the command's name. Returns an exit status (≥ 0,
 * CTL_EXIT_*), or a negative errno after printing why (exit status 1). */
typedef struct Verb {
        const char *name;
        const char *args;   /* for --help, e.g. "TOPIC [PAYLOAD|-]" */
        const char *help;
        unsigned min_args;  /* not counting the command itself */
        unsigned max_args;  /* UINT_MAX: any number */
        int (*run)(Context *c, int argc, char *argv[]);
} Verb;

/* Properties of one GetAll, decoded once: raw values of basic types for the
 * commands, and each value rendered as JSON and as text. */
typedef struct Property {
        char *name;
        char type;     /* D-Bus type code of the value ('t', 's', 'a', …) */
        uint64_t u;    /* unsigned integers and booleans */
        int64_t i;     /* signed integers */
        double d;
        char *s;       /* strings, object paths, signatures */
        char *json;
        char *text;
} Property;

typedef struct PropertyList {
        Property *items;
        size_t n;
} PropertyList;

void property_list_done(PropertyList *l);
const Property *property_find(const PropertyList *l, const char *name);
uint64_t property_u64(const PropertyList *l, const char *name); /* 0 if absent */
const char *property_str(const PropertyList *l, const char *name); /* "" if absent */

struct Service {
        const char *name;      /* "classifier": what users type */
        const char *title;     /* "Classifier": heading in status */
        const char *bus_name;  /* contract: /work/shared/design/ARCHITECTURE.md */
        const char *path;
        const char *interface;
        /* Integer properties shown with byte units in human output. */
        const char *const *byte_properties;

        /* Hooks; NULL while the daemon does not exist yet. */
        /* Human status section from the properties of one GetAll. */
        void (*status)(const Context *c, const Service *s, const PropertyList *props);
        /* The outbox as this daemon sees it. */
        void (*outbox)(const PropertyList *props, uint64_t *ret_records, uint64_t *ret_bytes);
        /* Reload the daemon's configuration; returns like a Verb. */
        int (*reload)(Context *c, const Service *s);
        /* Extra signal matches for watch (besides PropertiesChanged). */
        int (*watch)(Context *c, const Service *s);
        /* The daemon's own commands, terminated by an entry with name NULL. */
        const Verb *verbs;
};

extern const Service service_classifier; /* tollgatectl-classifier.c */
extern const Service service_keysync;    /* tollgatectl-keysync.c */
extern const Service service_power;      /* tollgatectl-power.c */
extern const Service *const services[];  /* tollgatectl.c; NULL-terminated */

const Service *service_find(const char *name);
static inline bool service_available(const Service *s) {
        return s->status != NULL; /* the daemon exists and tollgatectl knows it */
}

/* --- Bus ------------------------------------------------------------------- */

int ctl_connect(Context *c);

typedef struct ServiceState {
        bool running;     /* the bus name has an owner */
        bool activatable; /* the bus would start it on the first call */
        uint32_t pid;     /* 0 if unknown */
} ServiceState;

int service_state(Context *c, const Service *s, ServiceState *ret);

/* One GetAll of the service's interface. Never starts the daemon (no D-Bus
 * activation for reading state). */
int service_get_all(Context *c, const Service *s, PropertyList *ret, sd_bus_error *error);
/* Decode an a{sv} at the read position of m. */
int property_list_read(sd_bus_message *m, const Service *s, PropertyList *ret);

/* Call a method of the service's interface (D-Bus activation allowed, like busctl). */
int service_call(Context *c, const Service *s, const char *member, sd_bus_error *error, sd_bus_message **reply,
                 const char *types, ...);
int service_call_message(Context *c, sd_bus_message *m, sd_bus_error *error, sd_bus_message **reply);
/* Service.reload for a daemon with a Reload() method: call it, report a failure. */
int service_reload(Context *c, const Service *s);

/* Print a failed call as "tollgatectl: <ErrorName>: <message>" (or what failed
 * and the errno when there is no D-Bus error) and return the exit status:
 * CTL_EXIT_NOT_RUNNING if the name has no owner, else CTL_EXIT_FAILURE. */
int ctl_bus_failure(const sd_bus_error *error, int r, const char *what);
bool bus_error_is_not_running(const sd_bus_error *error);
/* A parse failure of a reply: print and return CTL_EXIT_FAILURE. */
int ctl_reply_failure(int r, const char *member);

/* Render the value at the read position of m (a complete type) as JSON and as
 * text (either may be NULL), and consume it. */
int bus_render_value(sd_bus_message *m, bool bytes, FILE *json, FILE *text);

/* --- watch (tollgatectl-watch.c) ------------------------------------------------ */

int verb_watch(Context *c, int argc, char *argv[]);

/* One event line of watch, for a daemon's own signals: begin writes the time,
 * service and event (human: "10:00:00.123 classifier "; --json: the opening
 * of one JSON object per line), the caller adds its fields, end closes the
 * line and flushes it. */
void watch_event_begin(const Context *c, const Service *s, const char *event, Json *j);
void watch_event_end(const Context *c, Json *j);
