/* SPDX-License-Identifier: MIT */
/*
 * Where the vehicle signals come from:
 *
 *   can   a SocketCAN interface or tollgate-canhub ("unix:/path"), through
 *         lib/tg-can: every frame with a configured id is decoded, a signal
 *         that changed is announced. Datagrams that are no frame (and
 *         frames too short for a signal) are counted and reported at most
 *         once per 10 s; an error frame saying bus-off is logged and the
 *         interface restarted; a hub that went away, or an interface that
 *         failed, is opened again after 1 s, 2 s, 4 s … 30 s.
 *   file  a file holding a number, read at start and on every change:
 *         files in sysfs (a GPIO's value with its edge set) by EPOLLPRI on
 *         the open file, other files by inotify on their folder (so that a
 *         file written by rename, or created later, is seen too).
 *   dbus  SetVehicleState() (powerwake-bus.c); nothing to open.
 *
 * Idle (no frames, no changes) nothing here wakes the loop, except the
 * retries of a source that is down.
 */
#include <fcntl.h>
#include <linux/can.h>
#include <linux/can/error.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/inotify.h>

#include "powerwake.h"
#include "tg-event.h"
#include "tg-message-ids.h"
#include "tg-time.h"

#define RETRY_MIN_USEC USEC_PER_SEC
#define RETRY_MAX_USEC (30 * USEC_PER_SEC)
#define FRAMES_PER_WAKEUP 256 /* then the loop serves others before reading on */

static void source_garbage(Source *s, const char *format, ...) _printf_(2, 3);
static void source_garbage(Source *s, const char *format, ...) {
        unsigned suppressed = 0;
        char msg[256];
        va_list ap;

        s->garbage++;
        if (!tg_ratelimit_check(&s->garbage_ratelimit, &suppressed))
                return;
        va_start(ap, format);
        vsnprintf(msg, sizeof msg, format, ap);
        va_end(ap);
        log_event_fields(LOG_WARNING, 0, TG_MID_SOURCE_GARBAGE, s->fields,
                         "Source %s: %s; dropped (%" PRIu64 " bad inputs so far, at most one message per 10 s).",
                         s->conf->name, msg, s->garbage);
}

static void source_close(Source *s) {
        s->io = sd_event_source_disable_unref(s->io);
        s->can = tg_can_close(s->can);
        s->fd = safe_close(s->fd);
        s->inotify_fd = safe_close(s->inotify_fd);
        s->pollpri = false;
}

static int source_open(Source *s);

static int on_retry(sd_event_source *es, uint64_t usec, void *userdata) {
        (void) source_open(userdata);
        return 0;
}

static void source_lost(Source *s, int error, const char *what) {
        Manager *m = s->manager;
        char span[32];
        int r;

        source_close(s);
        s->backoff_usec = s->backoff_usec == 0 ? RETRY_MIN_USEC : MIN(2 * s->backoff_usec, RETRY_MAX_USEC);
        if (!s->lost)
                log_event_fields(LOG_WARNING, error, TG_MID_SOURCE_LOST, s->fields,
                                 "Source %s (%s): %s: %m. Retrying in %s, then at most every %s; the signals keep their "
                                 "last values.",
                                 s->conf->name, s->conf->type == PW_SOURCE_CAN ? s->conf->bus : s->conf->path, what,
                                 tg_format_timespan(span, sizeof span, s->backoff_usec), "30s");
        else
                log_debug_errno(error, "Source %s: %s: %m", s->conf->name, what);
        s->lost = true;
        r = tg_event_arm(m->event, &s->retry, CLOCK_MONOTONIC, tg_now(CLOCK_MONOTONIC) + s->backoff_usec,
                         100 * USEC_PER_MSEC, on_retry, s, "source-retry");
        if (r < 0)
                log_error_errno(r, "Cannot arm the retry of source %s: %m", s->conf->name);
}

static void source_connected(Source *s, const char *how) {
        if (s->lost)
                log_event_fields(LOG_NOTICE, 0, TG_MID_SOURCE_CONNECTED, s->fields, "Source %s: %s again.",
                                 s->conf->name, how);
        else
                log_event_fields(LOG_INFO, 0, TG_MID_SOURCE_CONNECTED, s->fields, "Source %s: %s.", s->conf->name, how);
        s->lost = false;
        s->backoff_usec = 0;
}

static int state_of(PowerWakeSignalId id, const char *state) {
        const char *const *states = powerwake_signal_states(id);

        for (int i = 0; state && states && states[i]; i++)
                if (states[i] == state)
                        return i;
        return -1;
}

static void source_apply(Source *s, PowerWakeSignalId id, const PowerWakeReading *reading) {
        Manager *m = s->manager;

        if (!powerwake_signal_is_enum(id)) {
                manager_set_signal(m, id, -1, reading->value);
                return;
        }
        if (!reading->state && m->signals[id].state >= 0)
                log_notice("Source %s: %s raw value %" PRIi64 " is not in its Values=; %s is unknown now.",
                           s->conf->name, powerwake_signal_to_string(id), reading->raw, powerwake_signal_to_string(id));
        manager_set_signal(m, id, state_of(id, reading->state), NAN);
}

/* ---- CAN ----------------------------------------------------------------------- */

static uint32_t frame_key(uint32_t id) {
        return id & CAN_EFF_FLAG ? id & (CAN_EFF_FLAG | CAN_EFF_MASK) : id & CAN_SFF_MASK;
}

static void can_error_frame(Source *s, const TgCanFrame *f) {
        unsigned suppressed;
        int r;

        if (!(f->id & CAN_ERR_BUSOFF)) {
                if (tg_ratelimit_check(&s->error_ratelimit, &suppressed))
                        log_debug("Source %s: CAN error frame %08X.", s->conf->name, f->id & CAN_ERR_MASK);
                return;
        }
        log_event_fields(LOG_WARNING, 0, TG_MID_CAN_BUS_OFF, s->fields,
                         "Source %s: CAN controller of %s is bus-off; restarting it.", s->conf->name, s->conf->bus);
        r = tg_can_link_restart(s->conf->bus);
        if (r < 0)
                log_warning_errno(r, "Source %s: cannot restart %s after bus-off: %m", s->conf->name, s->conf->bus);
}

static void can_frame(Source *s, const TgCanFrame *f) {
        Manager *m = s->manager;
        uint32_t key;

        if (f->id & CAN_ERR_FLAG) {
                can_error_frame(s, f);
                return;
        }
        if (f->id & CAN_RTR_FLAG)
                return;
        key = frame_key(f->id);
        for (int i = 0; i < _PW_SIGNAL_MAX; i++) {
                const PowerWakeSignal *sig = &m->config.signals[i];
                PowerWakeReading reading;
                char text[TG_CAN_FRAME_STRING_MAX];

                if (!sig->configured || sig->source != s->index || sig->can.frame_id != key)
                        continue;
                if (powerwake_signal_decode(sig, f, &reading) < 0) {
                        source_garbage(s, "frame %s is too short for %s", tg_can_frame_format(f, text, sizeof text),
                                       powerwake_signal_to_string(sig->id));
                        continue;
                }
                source_apply(s, sig->id, &reading);
        }
}

static int on_can_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        Source *s = userdata;

        for (unsigned i = 0; i < FRAMES_PER_WAKEUP; i++) {
                TgCanFrame f;
                int r = tg_can_recv(s->can, &f);

                if (r == -EAGAIN)
                        break;
                if (r == -EBADMSG) {
                        source_garbage(s, "a datagram that is not a CAN frame");
                        continue;
                }
                if (r < 0) {
                        source_lost(s, r, r == -ECONNRESET ? "the hub went away" : "receiving failed");
                        break;
                }
                can_frame(s, &f);
        }
        manager_flush(s->manager);
        return 0;
}

static int can_open(Source *s) {
        Manager *m = s->manager;
        TgCanOptions options = { .receive_errors = true };
        char what[160];
        int r;

        if (s->conf->bitrate > 0 && !startswith(s->conf->bus, "unix:")) {
                r = tg_can_link_up(s->conf->bus, s->conf->bitrate, 0, s->conf->restart_ms);
                if (r < 0 && !s->lost)
                        log_warning_errno(r, "Source %s: cannot bring %s up at %u bit/s: %m", s->conf->name, s->conf->bus,
                                          s->conf->bitrate);
        }
        options.filters = s->filters;
        options.n_filters = s->n_filters;
        r = tg_can_open(s->conf->bus, &options, &s->can);
        if (r < 0) {
                source_lost(s, r, "cannot open the CAN bus");
                return 0;
        }
        r = sd_event_add_io(m->event, &s->io, tg_can_fd(s->can), EPOLLIN, on_can_io, s);
        if (r < 0) {
                source_close(s);
                return log_error_errno(r, "Source %s: cannot watch the CAN socket: %m", s->conf->name);
        }
        (void) sd_event_source_set_description(s->io, "can");
        snprintf(what, sizeof what, "receiving %zu frame ids on %s", s->n_filters, s->conf->bus);
        source_connected(s, what);
        return 0;
}

static int can_prepare(Source *s) {
        Manager *m = s->manager;

        for (int i = 0; i < _PW_SIGNAL_MAX; i++) {
                const PowerWakeSignal *sig = &m->config.signals[i];
                bool seen = false;
                uint32_t *a;

                if (!sig->configured || sig->source != s->index)
                        continue;
                for (size_t j = 0; j < s->n_filters; j++)
                        seen = seen || s->filters[j] == sig->can.frame_id;
                if (seen)
                        continue;
                a = realloc(s->filters, (s->n_filters + 1) * sizeof *a);
                if (!a)
                        return -ENOMEM;
                s->filters = a;
                a[s->n_filters++] = sig->can.frame_id;
        }
        return 0;
}

/* ---- Files ---------------------------------------------------------------------- */

static void file_read(Source *s) {
        Manager *m = s->manager;
        char buf[64];
        ssize_t n;

        if (s->pollpri)
                n = pread(s->fd, buf, sizeof buf - 1, 0);
        else {
                _cleanup_close_ int fd = open(s->conf->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

                n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
        }
        if (n < 0) {
                if (errno == ENOENT)
                        log_debug("Source %s: %s does not exist (yet).", s->conf->name, s->conf->path);
                else
                        source_garbage(s, "cannot read %s: %s", s->conf->path, strerror(errno));
                return;
        }
        buf[n] = '\0';
        if (buf[strspn(buf, " \t\r\n")] == '\0')
                return; /* empty: a writer truncated it and writes next */
        if ((size_t) n == sizeof buf - 1) {
                source_garbage(s, "%s holds more than a number", s->conf->path);
                return;
        }
        for (int i = 0; i < _PW_SIGNAL_MAX; i++) {
                const PowerWakeSignal *sig = &m->config.signals[i];
                PowerWakeReading reading;

                if (!sig->configured || sig->source != s->index)
                        continue;
                if (powerwake_signal_parse_text(sig, buf, &reading) < 0) {
                        buf[strcspn(buf, "\r\n")] = '\0';
                        source_garbage(s, "\"%.32s\" in %s is not %s for %s", buf, s->conf->path,
                                       powerwake_signal_is_enum(sig->id) ? "an integer" : "a number",
                                       powerwake_signal_to_string(sig->id));
                        continue;
                }
                source_apply(s, sig->id, &reading);
        }
        manager_flush(m);
}

static int on_file_pri(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        /* sysfs says a change with EPOLLPRI|EPOLLERR until the file is read again. */
        file_read(userdata);
        return 0;
}

static int on_inotify(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        Source *s = userdata;
        const char *base = strrchr(s->conf->path, '/') + 1;
        union {
                struct inotify_event ev;
                char buf[4096];
        } u;
        bool changed = false, gone = false;

        for (;;) {
                ssize_t n = read(fd, u.buf, sizeof u.buf);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                for (char *p = u.buf; p < u.buf + n;) {
                        struct inotify_event *ev = (struct inotify_event *) p;

                        if (ev->mask & IN_Q_OVERFLOW)
                                changed = true;
                        else if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))
                                gone = true;
                        else if (ev->len > 0 && streq(ev->name, base))
                                changed = true;
                        p += sizeof *ev + ev->len;
                }
        }
        if (gone) {
                source_lost(s, -ENOENT, "the folder of the file went away");
                return 0;
        }
        if (changed)
                file_read(s);
        return 0;
}

static int file_open(Source *s) {
        Manager *m = s->manager;
        _cleanup_free_ char *dir = NULL;
        int r;

        /* sysfs first: an open file whose changes are EPOLLPRI (regular files
         * cannot be polled: epoll says EPERM, and inotify takes over). */
        s->fd = open(s->conf->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (s->fd >= 0) {
                r = sd_event_add_io(m->event, &s->io, s->fd, EPOLLPRI, on_file_pri, s);
                if (r >= 0) {
                        (void) sd_event_source_set_description(s->io, "file-pollpri");
                        s->pollpri = true;
                        source_connected(s, "reading the file, changes by POLLPRI (sysfs)");
                        file_read(s);
                        return 0;
                }
                s->fd = safe_close(s->fd);
                if (r != -EPERM)
                        return log_error_errno(r, "Source %s: cannot watch %s: %m", s->conf->name, s->conf->path);
        } else if (startswith(s->conf->path, "/sys/")) {
                /* No inotify in sysfs: a GPIO not exported yet shows up later. */
                source_lost(s, negative_errno(), "cannot open the file");
                return 0;
        }

        dir = strndup(s->conf->path, MAX(strrchr(s->conf->path, '/') - s->conf->path, 1));
        if (!dir)
                return log_error_errno(-ENOMEM, "Out of memory.");
        s->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (s->inotify_fd < 0)
                return log_error_errno(negative_errno(), "Source %s: inotify: %m", s->conf->name);
        if (inotify_add_watch(s->inotify_fd, dir,
                              IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF |
                                      IN_ONLYDIR) < 0) {
                source_lost(s, negative_errno(), "cannot watch the folder of the file");
                return 0;
        }
        r = sd_event_add_io(m->event, &s->io, s->inotify_fd, EPOLLIN, on_inotify, s);
        if (r < 0) {
                source_close(s);
                return log_error_errno(r, "Source %s: cannot watch %s: %m", s->conf->name, dir);
        }
        (void) sd_event_source_set_description(s->io, "file-inotify");
        source_connected(s, "reading the file, changes by inotify");
        file_read(s);
        return 0;
}

/* ---- All sources ------------------------------------------------------------------- */

static int source_open(Source *s) {
        switch (s->conf->type) {
        case PW_SOURCE_CAN:
                return can_open(s);
        case PW_SOURCE_FILE:
                return file_open(s);
        default:
                return 0;
        }
}

int sources_start(Manager *m) {
        int r;

        m->sources = calloc(MAX(m->config.n_sources, 1), sizeof *m->sources);
        if (!m->sources)
                return log_error_errno(-ENOMEM, "Out of memory.");
        m->n_sources = m->config.n_sources;
        for (size_t i = 0; i < m->n_sources; i++) {
                Source *s = &m->sources[i];

                *s = (Source) {
                        .manager = m,
                        .conf = &m->config.sources[i],
                        .index = (int) i,
                        .fd = -EBADF,
                        .inotify_fd = -EBADF,
                        .garbage_ratelimit = TG_RATELIMIT_INIT(10 * USEC_PER_SEC, 1),
                        .error_ratelimit = TG_RATELIMIT_INIT(10 * USEC_PER_SEC, 1),
                };
                snprintf(s->field, sizeof s->field, "SOURCE=%s", s->conf->name);
                s->fields[0] = s->field;
                if (s->conf->type == PW_SOURCE_CAN) {
                        r = can_prepare(s);
                        if (r < 0)
                                return log_error_errno(r, "Out of memory.");
                }
        }
        for (size_t i = 0; i < m->n_sources; i++) {
                r = source_open(&m->sources[i]);
                if (r < 0)
                        return r;
        }
        manager_flush(m);
        return 0;
}

void sources_stop(Manager *m) {
        m->command_timer = sd_event_source_disable_unref(m->command_timer);
        m->command_left = 0;
        m->command_source = -1;
        for (size_t i = 0; i < m->n_sources; i++) {
                Source *s = &m->sources[i];

                source_close(s);
                s->retry = sd_event_source_disable_unref(s->retry);
                free(s->filters);
        }
        free(m->sources);
        m->sources = NULL;
        m->n_sources = 0;
}

int sources_dbus(const Manager *m) {
        for (size_t i = 0; i < m->config.n_sources; i++)
                if (m->config.sources[i].type == PW_SOURCE_DBUS)
                        return (int) i;
        return -1;
}

/* ---- Commands ------------------------------------------------------------------------ */

static int on_command_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        Source *s;
        int r;

        if (m->command_left == 0 || m->command_source < 0 || (size_t) m->command_source >= m->n_sources)
                return 0;
        s = &m->sources[m->command_source];
        m->command_left--;
        if (s->can) {
                r = tg_can_send(s->can, &m->command_frame);
                if (r < 0)
                        log_debug_errno(r, "Source %s: a repeat of the command frame was not sent: %m", s->conf->name);
        }
        if (m->command_left > 0)
                (void) tg_event_arm(m->event, &m->command_timer, CLOCK_MONOTONIC,
                                    tg_now(CLOCK_MONOTONIC) + PW_COMMAND_REPEAT_USEC, USEC_PER_MSEC, on_command_timer, m,
                                    "command-repeat");
        return 0;
}

int source_send_command(Manager *m, PowerWakeCommandId id, const char *state) {
        const PowerWakeCommand *cmd = &m->config.commands[id];
        TgCanFrame frame;
        Source *s;
        int r;

        if (!cmd->configured || cmd->source < 0 || (size_t) cmd->source >= m->n_sources)
                return -ENOENT;
        s = &m->sources[cmd->source];
        r = powerwake_command_frame(cmd, state, &frame);
        if (r < 0)
                return r == -ENOENT ? -EINVAL : r;
        if (!s->can)
                return -ENOTCONN;
        r = tg_can_send(s->can, &frame);
        if (r < 0)
                return r;
        /* A newer request replaces the repeats of an older one. */
        m->command_frame = frame;
        m->command_source = cmd->source;
        m->command_left = cmd->repeat - 1;
        if (m->command_left > 0) {
                r = tg_event_arm(m->event, &m->command_timer, CLOCK_MONOTONIC,
                                 tg_now(CLOCK_MONOTONIC) + PW_COMMAND_REPEAT_USEC, USEC_PER_MSEC, on_command_timer, m,
                                 "command-repeat");
                if (r < 0)
                        log_warning_errno(r, "Cannot arm the repeats of the command frame: %m");
        } else if (m->command_timer)
                (void) sd_event_source_set_enabled(m->command_timer, SD_EVENT_OFF);
        return 0;
}
