/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>

#include "tg-macro.h"

/* sd-event treats accuracy 0 as "default", which is 250 ms: timers that must
 * fire on time say so explicitly. */
#define TG_TIMER_EXACT 1

/* Arm the one-shot timer *s for `usec` on `clock`, creating it on first use.
 * Re-arming an armed timer moves it. */
int tg_event_arm(sd_event *e, sd_event_source **s, clockid_t clock, uint64_t usec, uint64_t accuracy,
                 sd_event_time_handler_t handler, void *userdata, const char *description);

/* True if *s exists and is armed. */
bool tg_event_armed(sd_event_source *s);
