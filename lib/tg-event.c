/* SPDX-License-Identifier: MIT */
#include "tg-event.h"

int tg_event_arm(sd_event *e, sd_event_source **s, clockid_t clock, uint64_t usec, uint64_t accuracy,
                 sd_event_time_handler_t handler, void *userdata, const char *description) {
        int r;

        if (*s) {
                r = sd_event_source_set_time(*s, usec);
                if (r >= 0)
                        r = sd_event_source_set_time_accuracy(*s, accuracy);
                if (r >= 0)
                        r = sd_event_source_set_enabled(*s, SD_EVENT_ONESHOT);
                return r;
        }
        r = sd_event_add_time(e, s, clock, usec, accuracy, handler, userdata);
        if (r >= 0 && description)
                (void) sd_event_source_set_description(*s, description);
        return r;
}

bool tg_event_armed(sd_event_source *s) {
        int enabled = SD_EVENT_OFF;

        if (s)
                (void) sd_event_source_get_enabled(s, &enabled);
        return enabled != SD_EVENT_OFF;
}
