/* SPDX-License-Identifier: MIT */
/*
 * Power holds. Hold() makes a pipe, hands the client the write end and
 * watches the read end: when the last copy of the write end is closed (the
 * holder closed it, or exited, or was killed — the kernel closes its fds)
 * the read end reports EPOLLHUP and the hold is gone at once. power-wake
 * cannot tell a release from a death, and need not.
 *
 * A wake takes a hold of its own (who "power-wake", why "wake: REASON")
 * that ends with AcknowledgeWake() or after WakeHoldTimeout=.
 */
#include <fcntl.h>
#include <stdio.h>

#include "powerwake.h"
#include "tg-event.h"
#include "tg-message-ids.h"
#include "tg-time.h"

/* 1…64 characters (UTF-8, which sd-bus has checked), none of them a control character. */
bool hold_text_valid(const char *s) {
        size_t chars = 0;

        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (*p < 0x20 || *p == 0x7f)
                        return false;
                if ((*p & 0xc0) != 0x80)
                        chars++;
        }
        return chars >= 1 && chars <= HOLD_TEXT_MAX;
}

static Hold *hold_free(Hold *h) {
        if (!h)
                return NULL;
        sd_event_source_disable_unref(h->io);
        sd_event_source_disable_unref(h->timer);
        safe_close(h->fd);
        free(h->who);
        free(h->why);
        free(h);
        return NULL;
}

static void hold_remove(Manager *m, Hold *h, const char *how) {
        uint64_t held = tg_now(CLOCK_MONOTONIC) - h->since_usec;
        char span[32];

        /* Milliseconds for short holds, whole seconds for the others. */
        held = held < 10 * USEC_PER_SEC ? held / USEC_PER_MSEC * USEC_PER_MSEC : held / USEC_PER_SEC * USEC_PER_SEC;
        log_event_fields(LOG_INFO, 0, TG_MID_POWER_HOLD_RELEASED, h->fields, "Hold of %s (%s) %s after %s; %zu left.",
                         h->who, h->why, how, held > 0 ? tg_format_timespan(span, sizeof span, held) : "<1ms",
                         m->n_holds - 1);
        for (size_t i = 0; i < m->n_holds; i++)
                if (m->holds[i] == h) {
                        memmove(m->holds + i, m->holds + i + 1, (m->n_holds - i - 1) * sizeof *m->holds);
                        m->n_holds--;
                        break;
                }
        hold_free(h);
        manager_changed(m, PROP_HOLDS);
        manager_flush(m);
}

static int on_hold_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Hold *h = userdata;
        char buf[256];

        if (revents & EPOLLIN) {
                /* A holder may write; nothing is meant by it. Drain, look for EOF. */
                for (;;) {
                        ssize_t n = read(fd, buf, sizeof buf);
                        if (n > 0)
                                continue;
                        if (n == 0)
                                break; /* every write end is closed */
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN && !(revents & (EPOLLHUP | EPOLLERR)))
                                return 0;
                        break;
                }
        }
        hold_remove(h->manager, h, "released");
        return 0;
}

static Hold *hold_alloc(Manager *m, const char *who, const char *why) {
        Hold *h;

        if (m->n_holds >= HOLDS_MAX)
                return NULL;
        h = calloc(1, sizeof *h);
        if (!h)
                return NULL;
        *h = (Hold) {
                .manager = m,
                .fd = -EBADF,
                .who = strdup(who),
                .why = strdup(why),
                .since_usec = tg_now(CLOCK_MONOTONIC),
        };
        if (!h->who || !h->why)
                return hold_free(h);
        snprintf(h->field_who, sizeof h->field_who, "HOLD_WHO=%s", who);
        snprintf(h->field_why, sizeof h->field_why, "HOLD_WHY=%s", why);
        h->fields[0] = h->field_who;
        h->fields[1] = h->field_why;
        return h;
}

static int hold_add(Manager *m, Hold *h) {
        Hold **a = realloc(m->holds, (m->n_holds + 1) * sizeof *a);

        if (!a)
                return -ENOMEM;
        m->holds = a;
        a[m->n_holds++] = h;
        /* A hold came: when it is gone, the next off-period may power down again. */
        m->powered_down = false;
        manager_changed(m, PROP_HOLDS);
        return 0;
}

int hold_new_pipe(Manager *m, const char *who, const char *why, pid_t pid, int *ret_fd) {
        _cleanup_close_ int wfd = -EBADF;
        int fds[2], r;
        Hold *h;

        if (m->n_holds >= HOLDS_MAX)
                return -ENOBUFS;
        h = hold_alloc(m, who, why);
        if (!h)
                return -ENOMEM;
        if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
                hold_free(h);
                return negative_errno();
        }
        h->fd = fds[0];
        wfd = fds[1];
        r = sd_event_add_io(m->event, &h->io, h->fd, EPOLLIN, on_hold_io, h);
        if (r >= 0) {
                (void) sd_event_source_set_description(h->io, "hold");
                r = hold_add(m, h);
        }
        if (r < 0) {
                hold_free(h);
                return r;
        }
        if (pid > 0)
                log_event_fields(LOG_INFO, 0, TG_MID_POWER_HOLD_TAKEN, h->fields, "Hold taken by %s (%s), pid %d; %zu holds.",
                                 who, why, (int) pid, m->n_holds);
        else
                log_event_fields(LOG_INFO, 0, TG_MID_POWER_HOLD_TAKEN, h->fields, "Hold taken by %s (%s); %zu holds.", who,
                                 why, m->n_holds);
        *ret_fd = TAKE_FD(wfd);
        return 0;
}

static Hold *find_wake_hold(Manager *m, uint64_t wake_id) {
        for (size_t i = 0; i < m->n_holds; i++)
                if (m->holds[i]->wake_id == wake_id)
                        return m->holds[i];
        return NULL;
}

static int on_wake_hold_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Hold *h = userdata;
        Manager *m = h->manager;
        char span[32], field[48];
        const char *fields[] = { field, NULL };

        snprintf(field, sizeof field, "WAKE_ID=%" PRIu64, h->wake_id);
        log_event_fields(LOG_WARNING, 0, TG_MID_POWER_WAKE_TIMED_OUT, fields,
                         "Wake %" PRIu64 " (%s) was not acknowledged within %s; its hold ends.", h->wake_id, h->why,
                         tg_format_timespan(span, sizeof span, m->config.wake_hold_timeout_usec));
        hold_remove(m, h, "timed out");
        return 0;
}

int hold_new_wake(Manager *m, uint64_t wake_id, const char *reason) {
        _cleanup_free_ char *why = NULL;
        Hold *h;
        int r;

        if (asprintf(&why, "wake: %s", reason) < 0)
                return -ENOMEM;
        h = hold_alloc(m, "power-wake", why);
        if (!h)
                return m->n_holds >= HOLDS_MAX ? -ENOBUFS : -ENOMEM;
        h->wake_id = wake_id;
        r = tg_event_arm(m->event, &h->timer, CLOCK_MONOTONIC,
                         tg_now(CLOCK_MONOTONIC) + m->config.wake_hold_timeout_usec, TG_TIMER_EXACT,
                         on_wake_hold_timeout, h, "wake-hold");
        if (r >= 0)
                r = hold_add(m, h);
        if (r < 0) {
                hold_free(h);
                return r;
        }
        log_event_fields(LOG_INFO, 0, TG_MID_POWER_HOLD_TAKEN, h->fields, "Hold taken by power-wake (%s) for wake %" PRIu64 "; %zu holds.",
                         why, wake_id, m->n_holds);
        return 0;
}

int hold_acknowledge_wake(Manager *m, uint64_t wake_id, bool accepted, const char *why) {
        Hold *h = find_wake_hold(m, wake_id);
        char f_id[48], f_why[288];
        const char *fields[] = { f_id, f_why, NULL };

        if (!h)
                return -ENOENT;
        snprintf(f_id, sizeof f_id, "WAKE_ID=%" PRIu64, wake_id);
        snprintf(f_why, sizeof f_why, "WAKE_ANSWER=%s", why);
        if (accepted)
                log_event_fields(LOG_INFO, 0, TG_MID_POWER_WAKE_ANSWERED, fields,
                                 "Wake %" PRIu64 " accepted by its job (%s); the job holds power now.", wake_id, why);
        else
                log_event_fields(LOG_NOTICE, 0, TG_MID_POWER_WAKE_ANSWERED, fields,
                                 "Wake %" PRIu64 " declined by its job: %s.", wake_id, why);
        hold_remove(m, h, accepted ? "handed over" : "dropped");
        return 0;
}

void holds_free(Manager *m) {
        for (size_t i = 0; i < m->n_holds; i++)
                hold_free(m->holds[i]);
        free(m->holds);
        m->holds = NULL;
        m->n_holds = 0;
}
