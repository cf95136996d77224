/* SPDX-License-Identifier: MIT */
/*
 * Scheduled wakes. They live in StateDirectory/power-wake/wakes, a small
 * text file rewritten whole for every change (temporary file, fsync,
 * rename, fsync of the folder):
 *
 *   # comment
 *   next-id 8
 *   wake 6 1764201600000000 ota window
 *   wake 7 1764205200000000 telemetry upload
 *
 * Ids increase and are never reused (next-id is kept even when no wake is
 * left). One timer for the earliest wake on CLOCK_REALTIME_ALARM (it wakes
 * a suspended system; needs CAP_WAKE_ALARM) or CLOCK_REALTIME, and the RTC's
 * wakealarm for a powered-off one. A due wake is removed durably first and
 * then fires (a hold of its own, Woken), so it fires once even if the daemon
 * restarts in between; overdue ones fire once the daemon owns its name.
 */
#include <time.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "powerwake.h"
#include "tg-event.h"
#include "tg-message-ids.h"
#include "tg-time.h"

#define WAKES_FILE_MAX (64 * 1024)

static void wake_free_reason(Wake *w) {
        free(w->reason);
        w->reason = NULL;
}

void wakes_done(Manager *m) {
        m->wake_timer = sd_event_source_disable_unref(m->wake_timer);
        for (size_t i = 0; i < m->n_wakes; i++)
                wake_free_reason(&m->wakes[i]);
        free(m->wakes);
        m->wakes = NULL;
        m->n_wakes = 0;
        free(m->wakes_dir);
        free(m->wakes_path);
        m->wakes_dir = m->wakes_path = NULL;
}

static int fsync_dir(const char *dir) {
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0 || fsync(fd) < 0)
                return negative_errno();
        return 0;
}

static int wakes_save(Manager *m) {
        _cleanup_free_ char *tmp = NULL;
        FILE *f;
        int fd, r = 0;

        if (asprintf(&tmp, "%s.tmp", m->wakes_path) < 0)
                return -ENOMEM;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0)
                return negative_errno();
        f = fdopen(fd, "w");
        if (!f) {
                r = negative_errno();
                safe_close(fd);
                (void) unlink(tmp);
                return r;
        }
        fprintf(f, "# Scheduled wakes of tollgate-power-wake (org.tollgate.Power1.ScheduleWake).\n"
                   "# Written by the daemon; ids are never reused.\n"
                   "next-id %" PRIu64 "\n", m->next_wake_id);
        for (size_t i = 0; i < m->n_wakes; i++)
                fprintf(f, "wake %" PRIu64 " %" PRIu64 " %s\n", m->wakes[i].id, m->wakes[i].when_usec, m->wakes[i].reason);
        if (fflush(f) != 0 || fsync(fileno(f)) < 0)
                r = negative_errno();
        if (fclose(f) != 0 && r == 0)
                r = negative_errno();
        if (r == 0 && rename(tmp, m->wakes_path) < 0)
                r = negative_errno();
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        return fsync_dir(m->wakes_dir);
}

static int wake_insert(Manager *m, uint64_t id, uint64_t when, const char *reason) {
        Wake *a;
        size_t i;

        a = realloc(m->wakes, (m->n_wakes + 1) * sizeof *a);
        if (!a)
                return -ENOMEM;
        m->wakes = a;
        /* Earliest first; equal times in id order. */
        for (i = m->n_wakes; i > 0 && (a[i - 1].when_usec > when || (a[i - 1].when_usec == when && a[i - 1].id > id)); i--)
                ;
        memmove(a + i + 1, a + i, (m->n_wakes - i) * sizeof *a);
        a[i] = (Wake) { .id = id, .when_usec = when, .reason = strdup(reason) };
        if (!a[i].reason) {
                memmove(a + i, a + i + 1, (m->n_wakes - i) * sizeof *a);
                return -ENOMEM;
        }
        m->n_wakes++;
        return 0;
}

/* Take wake i out of the list (the caller owns the reason). */
static Wake wake_take(Manager *m, size_t i) {
        Wake w = m->wakes[i];

        memmove(m->wakes + i, m->wakes + i + 1, (m->n_wakes - i - 1) * sizeof *m->wakes);
        m->n_wakes--;
        return w;
}

static int wakes_load(Manager *m) {
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int fd = -EBADF;
        uint64_t max_id = 0;
        bool have_next = false;
        unsigned lineno = 0, bad = 0;
        ssize_t n;
        char *line, *next;

        fd = open(m->wakes_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                if (errno == ENOENT) {
                        m->next_wake_id = 1;
                        return 0;
                }
                return log_error_errno(negative_errno(), "Cannot read %s: %m", m->wakes_path);
        }
        text = malloc(WAKES_FILE_MAX + 1);
        if (!text)
                return -ENOMEM;
        n = read(fd, text, WAKES_FILE_MAX);
        if (n < 0)
                return log_error_errno(negative_errno(), "Cannot read %s: %m", m->wakes_path);
        text[n] = '\0';

        for (line = text; line && *line; line = next) {
                uint64_t id, when;
                int pos = 0;

                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                lineno++;
                if (*line == '#' || *line == '\0')
                        continue;
                if (sscanf(line, "next-id %" SCNu64 "%n", &id, &pos) == 1 && line[pos] == '\0' && id > 0) {
                        m->next_wake_id = id;
                        have_next = true;
                        continue;
                }
                if (sscanf(line, "wake %" SCNu64 " %" SCNu64 " %n", &id, &when, &pos) == 2 && pos > 0 && id > 0 &&
                    hold_text_valid(line + pos) && m->n_wakes < WAKES_MAX) {
                        bool dup = false;
                        for (size_t i = 0; i < m->n_wakes; i++)
                                dup = dup || m->wakes[i].id == id;
                        if (!dup) {
                                if (wake_insert(m, id, when, line + pos) < 0)
                                        return -ENOMEM;
                                max_id = MAX(max_id, id);
                                continue;
                        }
                }
                /* A damaged line loses that wake, not the others. */
                log_warning("%s:%u: not a wake, ignored: \"%.80s\"", m->wakes_path, lineno, line);
                bad++;
        }
        if (!have_next || m->next_wake_id <= max_id)
                m->next_wake_id = max_id + 1;
        if (bad > 0 || !have_next)
                (void) wakes_save(m);
        return 0;
}

static void rtc_program(Manager *m) {
        const char *path = m->config.rtc_wake_alarm;
        uint64_t now = tg_now(CLOCK_REALTIME), secs = 0;
        char buf[32];
        int fd;

        if (!path)
                return;
        /* The earliest wake still ahead, rounded up to the RTC's whole seconds. */
        for (size_t i = 0; i < m->n_wakes; i++)
                if (m->wakes[i].when_usec > now) {
                        secs = (m->wakes[i].when_usec + USEC_PER_SEC - 1) / USEC_PER_SEC;
                        break;
                }
        if (secs == m->rtc_programmed)
                return;
        fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                log_debug_errno(negative_errno(), "Cannot program the RTC wake alarm %s: %m", path);
                return;
        }
        /* An armed alarm must be cleared before a new one is accepted. */
        if (write(fd, "0", 1) < 0)
                log_debug_errno(negative_errno(), "Cannot clear the RTC wake alarm %s: %m", path);
        else if (secs > 0) {
                int k = snprintf(buf, sizeof buf, "%" PRIu64, secs);
                if (pwrite(fd, buf, (size_t) k, 0) < 0)
                        log_debug_errno(negative_errno(), "Cannot set the RTC wake alarm %s to %s: %m", path, buf);
                else {
                        m->rtc_programmed = secs;
                        log_debug("RTC wake alarm %s set to %s.", path, buf);
                }
        } else
                m->rtc_programmed = 0;
        safe_close(fd);
}

static int on_wake_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void wakes_rearm(Manager *m) {
        int r;

        if (!m->wakes_active)
                return;
        rtc_program(m);
        if (m->n_wakes == 0) {
                if (m->wake_timer)
                        (void) sd_event_source_set_enabled(m->wake_timer, SD_EVENT_OFF);
                return;
        }
        r = tg_event_arm(m->event, &m->wake_timer, m->wake_clock, m->wakes[0].when_usec, TG_TIMER_EXACT, on_wake_timer,
                         m, "wake");
        if (r < 0 && m->wake_clock == CLOCK_REALTIME_ALARM) {
                log_event_errno(LOG_NOTICE, r, TG_MID_POWER_NO_WAKE_ALARM,
                                "No alarm timer (CLOCK_REALTIME_ALARM needs CAP_WAKE_ALARM and an RTC): %m. Wakes use "
                                "CLOCK_REALTIME and fire only while the system runs%s.",
                                m->config.rtc_wake_alarm ? " (and through the RTC wake alarm, if it can be written)" : "");
                m->wake_timer = sd_event_source_disable_unref(m->wake_timer);
                m->wake_clock = CLOCK_REALTIME;
                r = tg_event_arm(m->event, &m->wake_timer, m->wake_clock, m->wakes[0].when_usec, TG_TIMER_EXACT,
                                 on_wake_timer, m, "wake");
        }
        if (r < 0)
                log_error_errno(r, "Cannot arm the wake timer: %m");
}

static void wake_fire(Manager *m, uint64_t id, const char *reason) {
        char f_id[48], f_reason[288];
        const char *fields[] = { f_id, f_reason, NULL };
        int r;

        snprintf(f_id, sizeof f_id, "WAKE_ID=%" PRIu64, id);
        snprintf(f_reason, sizeof f_reason, "WAKE_REASON=%s", reason);
        log_event_fields(LOG_NOTICE, 0, TG_MID_POWER_WAKE_FIRED, fields, "Wake %" PRIu64 " (%s): holding power for it.",
                         id, reason);
        r = hold_new_wake(m, id, reason);
        if (r < 0)
                log_error_errno(r, "Cannot take the hold of wake %" PRIu64 ": %m", id);
        manager_flush(m);
        bus_emit_woken(m, id, reason);
}

static int on_wake_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        uint64_t now = tg_now(CLOCK_REALTIME);
        Wake due[WAKES_MAX];
        size_t n_due = 0;
        int r;

        while (m->n_wakes > 0 && m->wakes[0].when_usec <= now && n_due < ELEMENTSOF(due))
                due[n_due++] = wake_take(m, 0);
        if (n_due > 0) {
                /* Gone from the file before anyone hears of them: once, across restarts. */
                r = wakes_save(m);
                if (r < 0)
                        log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED,
                                        "Cannot remove fired wakes from %s: %m. They fire now and may fire again after a "
                                        "restart.", m->wakes_path);
                manager_changed(m, PROP_WAKES);
        }
        for (size_t i = 0; i < n_due; i++) {
                wake_fire(m, due[i].id, due[i].reason);
                wake_free_reason(&due[i]);
        }
        wakes_rearm(m);
        manager_flush(m);
        return 0;
}

int wakes_setup(Manager *m) {
        int r;

        m->wake_clock = m->config.wake_alarm ? CLOCK_REALTIME_ALARM : CLOCK_REALTIME;
        if (asprintf(&m->wakes_dir, "%s/power-wake", m->config.state_dir) < 0 ||
            asprintf(&m->wakes_path, "%s/wakes", m->wakes_dir) < 0)
                return log_error_errno(-ENOMEM, "Out of memory.");
        if (mkdir(m->wakes_dir, 0750) < 0 && errno != EEXIST)
                return log_error_errno(negative_errno(), "Cannot create %s: %m", m->wakes_dir);
        r = wakes_load(m);
        if (r < 0)
                return r;
        if (m->n_wakes > 0)
                log_info("%zu scheduled wakes, the first at %" PRIu64 " (next id %" PRIu64 ").", m->n_wakes,
                         m->wakes[0].when_usec, m->next_wake_id);
        return 0;
}

void wakes_activate(Manager *m) {
        m->wakes_active = true;
        wakes_rearm(m);
}

void wakes_reconfigure(Manager *m) {
        m->wake_timer = sd_event_source_disable_unref(m->wake_timer);
        m->wake_clock = m->config.wake_alarm ? CLOCK_REALTIME_ALARM : CLOCK_REALTIME;
        m->rtc_programmed = UINT64_MAX; /* program the (maybe other) RTC again */
        wakes_rearm(m);
}

int wake_schedule(Manager *m, uint64_t when_usec, const char *reason, uint64_t *ret_id) {
        uint64_t id = m->next_wake_id;
        char f_id[48], f_reason[288];
        const char *fields[] = { f_id, f_reason, NULL };
        int r;

        if (m->n_wakes >= WAKES_MAX)
                return -ENOBUFS;
        r = wake_insert(m, id, when_usec, reason);
        if (r < 0)
                return r;
        m->next_wake_id++;
        r = wakes_save(m);
        if (r < 0) {
                /* Not saved: not scheduled (it would vanish at the next start). */
                for (size_t i = 0; i < m->n_wakes; i++)
                        if (m->wakes[i].id == id) {
                                Wake w = wake_take(m, i);
                                wake_free_reason(&w);
                                break;
                        }
                m->next_wake_id--;
                return log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED, "Cannot save %s: %m", m->wakes_path);
        }
        snprintf(f_id, sizeof f_id, "WAKE_ID=%" PRIu64, id);
        snprintf(f_reason, sizeof f_reason, "WAKE_REASON=%s", reason);
        {
                char at[64] = "?";
                time_t t = (time_t) (when_usec / USEC_PER_SEC);
                struct tm tm;

                if (gmtime_r(&t, &tm))
                        strftime(at, sizeof at, "%Y-%m-%d %H:%M:%S UTC", &tm);
                log_event_fields(LOG_INFO, 0, TG_MID_POWER_WAKE_SCHEDULED, fields,
                                 "Wake %" PRIu64 " scheduled for %s (in %" PRIi64 " s): %s.", id, at,
                                 ((int64_t) when_usec - (int64_t) tg_now(CLOCK_REALTIME)) / (int64_t) USEC_PER_SEC,
                                 reason);
        }
        manager_changed(m, PROP_WAKES);
        wakes_rearm(m);
        manager_flush(m);
        *ret_id = id;
        return 0;
}

int wake_cancel(Manager *m, uint64_t id) {
        for (size_t i = 0; i < m->n_wakes; i++) {
                Wake w;
                int r;

                if (m->wakes[i].id != id)
                        continue;
                w = wake_take(m, i);
                r = wakes_save(m);
                if (r < 0) {
                        /* Not saved: still scheduled (it would come back at the next start). */
                        if (wake_insert(m, w.id, w.when_usec, w.reason) < 0)
                                log_error("Wake %" PRIu64 " lost from memory; it is still in %s.", id, m->wakes_path);
                        wake_free_reason(&w);
                        return log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED, "Cannot save %s: %m", m->wakes_path);
                }
                log_info("Wake %" PRIu64 " (%s) cancelled.", id, w.reason);
                wake_free_reason(&w);
                manager_changed(m, PROP_WAKES);
                wakes_rearm(m);
                manager_flush(m);
                return 0;
        }
        return -ENOENT;
}

int wake_request(Manager *m, const char *reason, uint64_t *ret_id) {
        uint64_t id = m->next_wake_id++;
        int r;

        /* Only the id counter changes on disk: ids are never reused. */
        r = wakes_save(m);
        if (r < 0)
                log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED, "Cannot save %s: %m", m->wakes_path);
        log_info("Remote wake requested: %s.", reason);
        wake_fire(m, id, reason);
        *ret_id = id;
        return 0;
}
