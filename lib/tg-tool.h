/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the command-line tools and simulators (tools/) share around their own
 * code: the options every one of them takes and the signal-driven sd-event
 * loop. The daemons have lib/tg-daemon.h instead.
 *
 * The options: put TG_TOOL_OPTIONS in the getopt_long() table ("h" in the
 * short options) and hand whatever the tool's own cases do not know to
 * tg_tool_option():
 *
 *         default:
 *                 r = tg_tool_option(c, optarg, "tollgate-foo", help);
 *                 if (r <= 0)
 *                         return r;
 *         }
 *         r = tg_tool_no_arguments(argc, argv);
 *
 * Unlike the rest of lib/, these functions log their errors at error level:
 * they speak for the tool to the person who ran it.
 */

#include <getopt.h>
#include <systemd/sd-event.h>

#include "tg-macro.h"

/* Far above the tools' own option values (which start at 0x100). */
#define TG_TOOL_ARG_LOG_LEVEL 0x7F00
#define TG_TOOL_ARG_VERSION 0x7F01

/* --log-level=LEVEL, -h/--help and --version, for an option table. */
#define TG_TOOL_OPTIONS                                                     \
        { "log-level", required_argument, NULL, TG_TOOL_ARG_LOG_LEVEL },   \
        { "help", no_argument, NULL, 'h' },                                \
        { "version", no_argument, NULL, TG_TOOL_ARG_VERSION }

/* Handle getopt_long()'s answer c (with its optarg in arg) when it is one of
 * TG_TOOL_OPTIONS: --log-level= sets the maximum log level, -h/--help calls
 * help(), --version prints "PROGRAM VERSION" on stdout.
 * Returns 1 for --log-level= (parsing goes on); 0 once help or the version
 * is printed (the tool exits successfully); -EINVAL for an unknown log level
 * (logged) and for any other c, such as '?' (getopt_long() has already said
 * what is wrong). */
int tg_tool_option(int c, const char *arg, const char *program, void (*help)(void));

/* After the getopt_long() loop, for a tool that takes no positional
 * arguments: 0 if optind reached argc, else logs "Unexpected argument: ARG
 * (see --help)" and returns -EINVAL. */
int tg_tool_no_arguments(int argc, char *argv[]);

/* Block the n_signals signals (sigprocmask()) so that only the event loop
 * sees them, get the thread's default event loop and have it call
 * handler(userdata) for each of them.
 * Returns 0 with the loop in *ret; on failure logs ("Cannot set up the event
 * loop: ..."), leaves *ret alone and returns negative errno. */
int tg_tool_event_new(sd_event **ret, const int *signals, size_t n_signals, sd_event_signal_handler_t handler,
                      void *userdata);
