/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The one run() every Tollgate daemon shares (systemd's hostnamed shape):
 *
 *   parse argv → log → sd-event loop with watchdog and SIGTERM/SIGINT/SIGHUP →
 *   system bus (honours $DBUS_SYSTEM_BUS_ADDRESS) → daemon setup → request
 *   the bus name → READY=1 once it is owned → loop → shutdown hook → exit.
 *
 * A daemon fills a TgDaemon with its names and hooks and calls
 * tg_daemon_main(). Hooks return negative errno; a failing setup ends the
 * process with EXIT_FAILURE (or 78, EX_CONFIG, for -EBADMSG: bad config).
 */

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "tg-macro.h"

#define TG_EXIT_CONFIG 78 /* EX_CONFIG */

typedef struct TgDaemon TgDaemon;

struct TgDaemon {
        /* Filled by the daemon */
        const char *name;         /* "classifier": log identifier, /etc/tollgate/<name>.conf */
        const char *bus_name;     /* "org.tollgate.Classifier1" */
        const char *description;  /* one line for --help */
        void *userdata;
        int (*setup)(TgDaemon *d);     /* objects, sockets; before the name is requested */
        int (*reload)(TgDaemon *d);    /* SIGHUP */
        /* Called once when asked to stop; return > 0 to delay the exit until
         * the daemon calls tg_daemon_exit() (e.g. after a last commit). */
        int (*stop)(TgDaemon *d);
        void (*free)(TgDaemon *d);
        /* Optional: once the bus name is owned and READY=1 sent, so that
         * what it emits reaches clients that match on the name. */
        void (*on_ready)(TgDaemon *d);

        /* Filled by tg_daemon_main() */
        sd_event *event;
        sd_bus *bus;
        const char *config_path;  /* --config or /etc/tollgate/<name>.conf */
        bool ready;
        bool stopping;
        int exit_code;
};

int tg_daemon_main(TgDaemon *d, int argc, char *argv[]);

/* STATUS= for systemctl status; cheap, deduplicated. */
void tg_daemon_status(TgDaemon *d, const char *format, ...) _printf_(2, 3);

/* Leave the loop with the given code (0 = success). */
void tg_daemon_exit(TgDaemon *d, int code);
