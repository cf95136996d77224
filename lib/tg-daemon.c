/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "tg-bus.h"
#include "tg-config.h"
#include "tg-daemon.h"
#include "tg-log.h"

static char status_last[256];

void tg_daemon_status(TgDaemon *d, const char *format, ...) {
        char buf[256];
        va_list ap;

        va_start(ap, format);
        vsnprintf(buf, sizeof buf, format, ap);
        va_end(ap);
        if (streq(buf, status_last))
                return;
        memcpy(status_last, buf, sizeof buf);
        (void) sd_notifyf(false, "STATUS=%s", buf);
}

void tg_daemon_exit(TgDaemon *d, int code) {
        d->exit_code = code;
        (void) sd_event_exit(d->event, code);
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        TgDaemon *d = userdata;
        int r = 0;

        if (d->stopping) {
                /* A second signal while draining: stop now. */
                tg_daemon_exit(d, d->exit_code);
                return 0;
        }
        d->stopping = true;
        log_info("Received %s, stopping.", strsignal((int) si->ssi_signo));
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping");
        if (d->stop)
                r = d->stop(d);
        if (r <= 0)
                tg_daemon_exit(d, r < 0 ? EXIT_FAILURE : d->exit_code);
        return 0;
}

static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        TgDaemon *d = userdata;

        if (d->reload) {
                (void) sd_notify(false, "RELOADING=1");
                (void) d->reload(d); /* the daemon logs why a reload was refused */
                (void) sd_notify(false, "READY=1");
        }
        return 0;
}

static int on_name_acquired(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        TgDaemon *d = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        uint32_t ret = 0;
        int r;

        if (e) {
                log_error("Failed to own bus name %s: %s", d->bus_name, e->message ? e->message : e->name);
                tg_daemon_exit(d, EXIT_FAILURE);
                return 0;
        }
        /* 1: primary owner, 4: already the owner; 3: someone else has it (we asked
         * not to be queued). Another instance running is a hard error. */
        r = sd_bus_message_read(m, "u", &ret);
        if (r < 0 || (ret != 1 && ret != 4)) {
                log_error("Bus name %s is owned by another process (reply %u); is the daemon already running?",
                          d->bus_name, ret);
                tg_daemon_exit(d, EXIT_FAILURE);
                return 0;
        }
        d->ready = true;
        (void) sd_notifyf(false, "READY=1\nSTATUS=Running\nMAINPID=%d", (int) getpid());
        log_info("%s %s ready, owns %s.", d->name, PACKAGE_VERSION, d->bus_name);
        if (d->on_ready)
                d->on_ready(d);
        return 0;
}

static void help(const TgDaemon *d, const char *argv0) {
        printf("%s [OPTIONS...]\n\n%s\n\n"
               "  -h --help              Show this help\n"
               "     --version           Show the version\n"
               "  -c --config=PATH       Configuration file (default %s/%s.conf, drop-ins in PATH.d/)\n"
               "     --log-target=TARGET auto, journal or console\n"
               "     --log-level=LEVEL   err, warning, notice, info or debug\n",
               argv0, d->description, TG_SYSCONFDIR, d->name);
}

static int parse_argv(TgDaemon *d, int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_LOG_TARGET, ARG_LOG_LEVEL };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "config", required_argument, NULL, 'c' },
                { "log-target", required_argument, NULL, ARG_LOG_TARGET },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                {},
        };
        TgLogTarget target = TG_LOG_TARGET_AUTO;
        int c, level;

        while ((c = getopt_long(argc, argv, "hc:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help(d, program_invocation_short_name);
                        return 0;
                case ARG_VERSION:
                        printf("%s %s\n", d->name, PACKAGE_VERSION);
                        return 0;
                case 'c':
                        d->config_path = optarg;
                        break;
                case ARG_LOG_TARGET:
                        if (tg_log_target_from_string(optarg, &target) < 0) {
                                fprintf(stderr, "Unknown log target: %s\n", optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_LOG_LEVEL:
                        if (tg_log_level_from_string(optarg, &level) < 0) {
                                fprintf(stderr, "Unknown log level: %s\n", optarg);
                                return -EINVAL;
                        }
                        tg_log_set_max_level(level);
                        break;
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                fprintf(stderr, "%s takes no positional arguments.\n", d->name);
                return -EINVAL;
        }
        tg_log_open(d->name, target);
        return 1;
}

static int run(TgDaemon *d) {
        _cleanup_free_ char *default_config = NULL;
        sigset_t mask;
        int r;

        if (!d->config_path) {
                if (asprintf(&default_config, "%s/%s.conf", TG_SYSCONFDIR, d->name) < 0)
                        return log_error_errno(-ENOMEM, "Out of memory.");
                d->config_path = default_config;
        }

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(negative_errno(), "Failed to block signals: %m");
        (void) signal(SIGPIPE, SIG_IGN);

        r = sd_event_default(&d->event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate event loop: %m");
        r = sd_event_add_signal(d->event, NULL, SIGTERM, on_exit_signal, d);
        if (r >= 0)
                r = sd_event_add_signal(d->event, NULL, SIGINT, on_exit_signal, d);
        if (r >= 0)
                r = sd_event_add_signal(d->event, NULL, SIGHUP, on_reload_signal, d);
        if (r < 0)
                return log_error_errno(r, "Failed to install signal handlers: %m");
        /* Pings the service manager from the loop itself: a wedged loop gets restarted. */
        r = sd_event_set_watchdog(d->event, true);
        if (r < 0)
                return log_error_errno(r, "Failed to enable watchdog: %m");

        r = tg_bus_error_map_register();
        if (r < 0)
                return log_error_errno(r, "Failed to register D-Bus error map: %m");
        r = sd_bus_open_system_with_description(&d->bus, d->name);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the system bus: %m");
        r = sd_bus_attach_event(d->bus, d->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Failed to attach bus to event loop: %m");

        r = d->setup(d);
        if (r == -EBADMSG)
                return TG_EXIT_CONFIG; /* setup logged the offending file and line */
        if (r < 0)
                return EXIT_FAILURE;

        r = sd_bus_request_name_async(d->bus, NULL, d->bus_name, 0, on_name_acquired, d);
        if (r < 0)
                return log_error_errno(r, "Failed to request bus name %s: %m", d->bus_name);

        r = sd_event_loop(d->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return d->exit_code;
}

int tg_daemon_main(TgDaemon *d, int argc, char *argv[]) {
        int r;

        /* Long-running daemons with bursty buffers (batches, segments): blocks of
         * 128 KiB and more are mapped and given back when freed, and the heap is
         * trimmed, instead of glibc's dynamic threshold keeping every peak. */
        (void) mallopt(M_MMAP_THRESHOLD, 128 * 1024);
        (void) mallopt(M_TRIM_THRESHOLD, 256 * 1024);
        (void) mallopt(M_ARENA_MAX, 2);

        r = parse_argv(d, argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        r = run(d);
        if (d->free)
                d->free(d);
        if (d->bus) {
                sd_bus_flush(d->bus);
                d->bus = sd_bus_flush_close_unref(d->bus);
        }
        d->event = sd_event_unref(d->event);
        return r < 0 ? EXIT_FAILURE : r;
}
