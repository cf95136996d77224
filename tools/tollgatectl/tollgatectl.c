/* SPDX-License-Identifier: MIT */

/*
 * tollgatectl: the human CLI over the Tollgate daemons' D-Bus interfaces.
 * See tollgatectl(1) and tollgatectl.h for how the files fit together.
 */

#include <getopt.h>
#include <limits.h>

#include "tg-config.h"
#include "tg-parse.h"
#include "tollgatectl.h"

/* The daemons of the D-Bus contract that have no client file yet: known by
 * name so that status can say they are absent. Each moves to its own
 * tollgatectl-<daemon>.c (with hooks and commands) when the daemon exists. */
static const Service service_ota = {
        .name = "ota-agent",
        .title = "OTA agent",
        .bus_name = "org.tollgate.Ota1",
        .path = "/org/tollgate/Ota1",
        .interface = "org.tollgate.Ota1",
};

const Service *const services[] = {
        &service_classifier,
        &service_keysync,
        &service_ota,
        &service_power,
        NULL,
};

const Service *service_find(const char *name) {
        for (const Service *const *s = services; *s; s++)
                if (streq((*s)->name, name) || streq((*s)->bus_name, name))
                        return *s;
        return NULL;
}

/* --- status ------------------------------------------------------------------ */

static const char *state_string(const ServiceState *st) {
        if (st->running)
                return "running";
        return st->activatable ? "not running (starts on demand)" : "not installed/not running";
}

static size_t n_services(void) {
        size_t n = 0;

        for (const Service *const *s = services; *s; s++)
                n++;
        return n;
}

/* Ask everything first, print after: a failure prints nothing half-done. */
static int status_collect(Context *c, ServiceState *states, PropertyList *props) {
        for (size_t i = 0; services[i]; i++) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                int r;

                r = service_state(c, services[i], &states[i]);
                if (r < 0)
                        return r;
                if (!states[i].running || !service_available(services[i]))
                        continue;
                r = service_get_all(c, services[i], &props[i], &error);
                if (r < 0 && bus_error_is_not_running(&error))
                        states[i].running = false; /* stopped since NameHasOwner */
                else if (r < 0)
                        return ctl_bus_failure(&error, r, "GetAll()");
        }
        return CTL_EXIT_SUCCESS;
}

static void status_print_json(const Context *c, const ServiceState *states, const PropertyList *props) {
        Json j = { .f = stdout, .pretty = c->json_pretty };

        json_object_open(&j, NULL);
        json_array_open(&j, "services");
        for (size_t i = 0; services[i]; i++) {
                json_object_open(&j, NULL);
                json_string(&j, "service", services[i]->name);
                json_string(&j, "bus_name", services[i]->bus_name);
                json_string(&j, "object", services[i]->path);
                json_bool(&j, "running", states[i].running);
                json_bool(&j, "activatable", states[i].activatable);
                if (states[i].pid)
                        json_u64(&j, "pid", states[i].pid);
                else
                        json_null(&j, "pid");
                if (states[i].running && service_available(services[i])) {
                        /* The daemon's own property names: one contract, not two. */
                        json_object_open(&j, "properties");
                        for (size_t k = 0; k < props[i].n; k++)
                                json_raw(&j, props[i].items[k].name, props[i].items[k].json);
                        json_object_close(&j);
                } else
                        json_null(&j, "properties");
                json_object_close(&j);
        }
        json_array_close(&j);
        json_object_close(&j);
        json_finish(&j);
}

static int status_print_human(const Context *c, const ServiceState *states, const PropertyList *props) {
        _cleanup_table_ Table *t = table_new("SERVICE", "BUS NAME", "STATE", NULL);

        if (!t)
                return ctl_error_errno(-ENOMEM, "Out of memory.");
        for (size_t i = 0; services[i]; i++) {
                const char *state = state_string(&states[i]);

                if (table_add(t, services[i]->name) < 0 || table_add(t, services[i]->bus_name) < 0 ||
                    (states[i].pid ? table_addf(t, "%s (pid %" PRIu32 ")", state, states[i].pid)
                                   : table_add(t, state)) < 0)
                        return ctl_error_errno(-ENOMEM, "Out of memory.");
        }
        table_print(t, stdout, c->legend);
        for (size_t i = 0; services[i]; i++)
                if (states[i].running && services[i]->status) {
                        printf("\n%s:\n", services[i]->title);
                        services[i]->status(c, services[i], &props[i]);
                }
        return CTL_EXIT_SUCCESS;
}

static int verb_status(Context *c, int argc, char *argv[]) {
        size_t n = n_services();
        _cleanup_free_ ServiceState *states = calloc(n, sizeof *states);
        _cleanup_free_ PropertyList *props = calloc(n, sizeof *props);
        int r;

        if (!states || !props)
                return ctl_error_errno(-ENOMEM, "Out of memory.");
        r = status_collect(c, states, props);
        if (r == CTL_EXIT_SUCCESS) {
                if (c->json)
                        status_print_json(c, states, props);
                else
                        r = status_print_human(c, states, props);
        }
        for (size_t i = 0; i < n; i++)
                property_list_done(&props[i]);
        return r;
}

/* --- outbox ------------------------------------------------------------------ */

static int verb_outbox(Context *c, int argc, char *argv[]) {
        _cleanup_table_ Table *t = table_new("SERVICE", ">RECORDS", ">BYTES", NULL);
        Json j = { .f = stdout, .pretty = c->json_pretty };
        int ret = CTL_EXIT_SUCCESS;

        if (!t)
                return ctl_error_errno(-ENOMEM, "Out of memory.");
        if (c->json)
                json_array_open(&j, NULL);
        for (const Service *const *s = services; *s; s++) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                _cleanup_(property_list_done) PropertyList props = {};
                uint64_t records = 0, bytes = 0;
                bool running;
                int r;

                if (!(*s)->outbox)
                        continue;
                r = service_get_all(c, *s, &props, &error);
                running = r >= 0;
                if (r < 0) {
                        /* Say why, keep going with the other daemons. */
                        r = ctl_bus_failure(&error, r, "GetAll()");
                        ret = MAX(ret, r);
                } else
                        (*s)->outbox(&props, &records, &bytes);

                if (c->json) {
                        json_object_open(&j, NULL);
                        json_string(&j, "service", (*s)->name);
                        json_bool(&j, "running", running);
                        if (running) {
                                json_u64(&j, "records", records);
                                json_u64(&j, "bytes", bytes);
                        } else {
                                json_null(&j, "records");
                                json_null(&j, "bytes");
                        }
                        json_object_close(&j);
                } else {
                        char buf[FORMAT_BYTES_MAX];
                        if (table_add(t, (*s)->name) < 0 ||
                            (running ? table_addf(t, "%" PRIu64, records) : table_add(t, "-")) < 0 ||
                            table_add(t, running ? format_bytes(buf, sizeof buf, bytes) : "-") < 0)
                                return ctl_error_errno(-ENOMEM, "Out of memory.");
                }
        }
        if (c->json) {
                json_array_close(&j);
                json_finish(&j);
        } else
                table_print(t, stdout, c->legend);
        return ret;
}

/* --- reload [SERVICE...] ----------------------------------------------------------- */

static int verb_reload(Context *c, int argc, char *argv[]) {
        const Service *selected[ELEMENTSOF(services)] = {};
        size_t n = 0;
        int ret = CTL_EXIT_SUCCESS;

        if (argc > 1)
                for (int i = 1; i < argc; i++) {
                        const Service *s = service_find(argv[i]);
                        if (!s) {
                                ctl_error("Unknown service \"%s\".", argv[i]);
                                return CTL_EXIT_USAGE;
                        }
                        if (!s->reload) {
                                ctl_error("tollgatectl cannot reload %s (yet).", s->name);
                                return CTL_EXIT_USAGE;
                        }
                        if (n < ELEMENTSOF(selected) - 1)
                                selected[n++] = s;
                }
        else
                for (const Service *const *s = services; *s; s++)
                        if ((*s)->reload)
                                selected[n++] = *s;

        for (size_t i = 0; i < n; i++) {
                int r = selected[i]->reload(c, selected[i]);
                ret = MAX(ret, r < 0 ? CTL_EXIT_FAILURE : r);
        }
        if (c->json) {
                Json j = { .f = stdout, .pretty = c->json_pretty };
                json_object_open(&j, NULL);
                json_bool(&j, "reloaded", ret == CTL_EXIT_SUCCESS);
                json_array_open(&j, "services");
                for (size_t i = 0; i < n; i++)
                        json_string(&j, NULL, selected[i]->name);
                json_array_close(&j);
                json_object_close(&j);
                json_finish(&j);
        }
        return ret;
}

/* --- The command line ------------------------------------------------------------ */

static int verb_help(Context *c, int argc, char *argv[]);

static const Verb verbs[] = {
        { "status", "", "Show the daemons and their figures", 0, 0, verb_status },
        { "outbox", "", "Show what waits in the outbox for the car key", 0, 0, verb_outbox },
        { "reload", "[SERVICE...]", "Reload the configuration (default: all that can)", 0, UINT_MAX,
          verb_reload },
        { "watch", "[SERVICE...]", "Follow changes live, one line each, until Ctrl-C", 0, UINT_MAX,
          verb_watch },
        { "help", "", "Show this help", 0, 0, verb_help },
        {},
};

static void print_verbs(const Verb *v) {
        for (; v->name; v++) {
                _cleanup_free_ char *synopsis = NULL;
                if (asprintf(&synopsis, "%s %s", v->name, v->args) < 0)
                        return;
                printf("  %-24s  %s\n", synopsis, v->help);
        }
}

static void help(void) {
        printf("%s [OPTIONS...] COMMAND ...\n\n"
               "Look at and control the Tollgate gateway daemons over D-Bus.\n\n"
               "Commands:\n",
               program_invocation_short_name);
        print_verbs(verbs);
        for (const Service *const *s = services; *s; s++)
                if ((*s)->verbs) {
                        printf("\n%s commands:\n", (*s)->title);
                        print_verbs((*s)->verbs);
                }
        printf("\nOptions:\n"
               "  -h --help                 Show this help\n"
               "     --version              Show the version\n"
               "     --address=ADDRESS      Connect to this bus instead of the system bus\n"
               "     --json[=short|pretty]  Print JSON (watch: one object per line)\n"
               "     --no-legend            Leave out column headers and footers\n"
               "     --timestamp=USEC       submit: the record's timestamp (default: now)\n"
               "     --max=N                downlink: at most N records (1…1000, default 1000)\n"
               "\nExit status: 0 success, 1 failure (D-Bus errors print their name), 2 usage\n"
               "error, 3 a daemon the command needs is not running.\n"
               "\nSee the tollgatectl(1) manual page for details.\n");
}

static int verb_help(Context *c, int argc, char *argv[]) {
        help();
        return CTL_EXIT_SUCCESS;
}

/* Returns 1 to go on, 0 to exit with success, or an exit status > 0 (negated). */
static int parse_argv(int argc, char *argv[], Context *c) {
        enum {
                ARG_VERSION = 0x100,
                ARG_ADDRESS,
                ARG_JSON,
                ARG_NO_LEGEND,
                ARG_TIMESTAMP,
                ARG_MAX,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "address", required_argument, NULL, ARG_ADDRESS },
                { "json", optional_argument, NULL, ARG_JSON },
                { "no-legend", no_argument, NULL, ARG_NO_LEGEND },
                { "timestamp", required_argument, NULL, ARG_TIMESTAMP },
                { "max", required_argument, NULL, ARG_MAX },
                {},
        };
        unsigned max;
        int opt;

        /* Options may come before or after the command (getopt permutes); a
         * payload that starts with '-' goes after "--". */
        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("tollgatectl %s\n", PACKAGE_VERSION);
                        return 0;
                case ARG_ADDRESS:
                        c->address = optarg;
                        break;
                case ARG_JSON:
                        if (!optarg || streq(optarg, "short"))
                                c->json_pretty = false;
                        else if (streq(optarg, "pretty"))
                                c->json_pretty = true;
                        else {
                                ctl_error("--json= takes \"short\" or \"pretty\", not \"%s\".", optarg);
                                return -CTL_EXIT_USAGE;
                        }
                        c->json = true;
                        break;
                case ARG_NO_LEGEND:
                        c->legend = false;
                        break;
                case ARG_TIMESTAMP:
                        if (tg_parse_uint64(optarg, &c->timestamp_usec) < 0 || c->timestamp_usec == 0) {
                                ctl_error("--timestamp= takes microseconds since the epoch, not \"%s\".", optarg);
                                return -CTL_EXIT_USAGE;
                        }
                        break;
                case ARG_MAX:
                        if (tg_parse_unsigned(optarg, &max) < 0 || max < 1 || max > 1000) {
                                ctl_error("--max= takes a number from 1 to 1000, not \"%s\".", optarg);
                                return -CTL_EXIT_USAGE;
                        }
                        c->max = max;
                        break;
                case '?':
                        return -CTL_EXIT_USAGE; /* getopt said why */
                default:
                        return -CTL_EXIT_USAGE;
                }
        return 1;
}

static const Verb *verb_find(const char *name) {
        for (const Verb *v = verbs; v->name; v++)
                if (streq(v->name, name))
                        return v;
        for (const Service *const *s = services; *s; s++)
                for (const Verb *v = (*s)->verbs; v && v->name; v++)
                        if (streq(v->name, name))
                                return v;
        return NULL;
}

int main(int argc, char *argv[]) {
        Context c = { .legend = true };
        static char *default_argv[] = { (char *) "status", NULL };
        const Verb *v;
        unsigned nargs;
        int r;

        r = parse_argv(argc, argv, &c);
        if (r <= 0)
                return -r;
        argc -= optind;
        argv += optind;
        if (argc == 0) {
                argc = 1;
                argv = default_argv;
        }

        v = verb_find(argv[0]);
        if (!v) {
                ctl_error("Unknown command \"%s\"; see --help.", argv[0]);
                return CTL_EXIT_USAGE;
        }
        nargs = (unsigned) argc - 1;
        if (nargs < v->min_args || nargs > v->max_args) {
                ctl_error("%s takes %s%s.", v->name, *v->args ? "" : "no arguments", v->args);
                return CTL_EXIT_USAGE;
        }
        if (v->run == verb_help)
                return v->run(&c, argc, argv);

        r = ctl_connect(&c);
        if (r < 0)
                return CTL_EXIT_FAILURE;
        r = v->run(&c, argc, argv);
        c.bus = sd_bus_flush_close_unref(c.bus);
        if (fflush(stdout) != 0 || ferror(stdout)) {
                ctl_error_errno(-EIO, "Cannot write to standard output: %m");
                return CTL_EXIT_FAILURE;
        }
        return r < 0 ? CTL_EXIT_FAILURE : r;
}
