/* SPDX-License-Identifier: MIT */
#include <signal.h>
#include <stdio.h>

#include "tg-config.h"
#include "tg-log.h"
#include "tg-tool.h"

int tg_tool_option(int c, const char *arg, const char *program, void (*help)(void)) {
        int level;

        switch (c) {
        case TG_TOOL_ARG_LOG_LEVEL:
                if (tg_log_level_from_string(arg, &level) < 0)
                        return log_error_errno(EINVAL, "Unknown log level: %s", arg);
                tg_log_set_max_level(level);
                return 1;
        case 'h':
                help();
                return 0;
        case TG_TOOL_ARG_VERSION:
                printf("%s %s\n", program, PACKAGE_VERSION);
                return 0;
        default:
                return -EINVAL;
        }
}

int tg_tool_no_arguments(int argc, char *argv[]) {
        if (optind < argc)
                return log_error_errno(EINVAL, "Unexpected argument: %s (see --help)", argv[optind]);
        return 0;
}

int tg_tool_event_new(sd_event **ret, const int *signals, size_t n_signals, sd_event_signal_handler_t handler,
                      void *userdata) {
        sd_event *e = NULL;
        sigset_t mask;
        int r;

        sigemptyset(&mask);
        for (size_t i = 0; i < n_signals; i++)
                sigaddset(&mask, signals[i]);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "sigprocmask: %m");

        r = sd_event_default(&e);
        for (size_t i = 0; r >= 0 && i < n_signals; i++)
                r = sd_event_add_signal(e, NULL, signals[i], handler, userdata);
        if (r < 0) {
                sd_event_unref(e);
                return log_error_errno(r, "Cannot set up the event loop: %m");
        }
        *ret = e;
        return 0;
}
