/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "tg-log.h"
#include "tg-time.h"

static const char *log_ident = "tollgate";
static TgLogTarget log_target = TG_LOG_TARGET_CONSOLE;
static int log_max_level = LOG_INFO;

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg",  [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit",
        [LOG_ERR] = "err",      [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info",    [LOG_DEBUG] = "debug",
};

static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == dev && st.st_ino == ino;
}

void tg_log_open(const char *ident, TgLogTarget target) {
        if (ident)
                log_ident = ident;
        if (target == TG_LOG_TARGET_AUTO)
                target = stderr_is_journal() ? TG_LOG_TARGET_JOURNAL : TG_LOG_TARGET_CONSOLE;
        log_target = target;
}

void tg_log_set_max_level(int level) {
        log_max_level = level;
}

int tg_log_get_max_level(void) {
        return log_max_level;
}

int tg_log_target_from_string(const char *s, TgLogTarget *ret) {
        static const char *const names[] = { "auto", "journal", "console" };

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (streq(s, names[i])) {
                        *ret = (TgLogTarget) i;
                        return 0;
                }
        return -EINVAL;
}

int tg_log_level_from_string(const char *s, int *ret) {
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (streq(s, level_names[i])) {
                        *ret = (int) i;
                        return 0;
                }
        return -EINVAL;
}

const char *tg_strerror(int error, char *buf, size_t size) {
        /* GNU strerror_r may return a static string instead of filling buf. */
        return strerror_r(abs(error), buf, size);
}

static void log_console(int level, int error, const char *message_id, const char *const *fields,
                        const char *msg) {
        char errbuf[128];
        FILE *f = stderr;

        flockfile(f);
        fprintf(f, "%s[%d]: <%s> %s", log_ident, (int) getpid(), level_names[level & 7], msg);
        if (error != 0)
                fprintf(f, " (ERRNO=%d %s)", abs(error), tg_strerror(error, errbuf, sizeof errbuf));
        if (message_id)
                fprintf(f, " [MESSAGE_ID=%s]", message_id);
        for (const char *const *p = fields; p && *p; p++)
                fprintf(f, " [%s]", *p);
        fputc('\n', f);
        funlockfile(f);
        fflush(f);
}

static void log_journal(int level, int error, const char *message_id, const char *const *fields,
                        const char *file, int line, const char *func, const char *msg) {
        char prio[32], errnobuf[32], idbuf[64], filebuf[256], linebuf[32], funcbuf[128], ident[64];
        _cleanup_free_ char *message = NULL;
        struct iovec iov[16 + 16];
        size_t n = 0;

#define ADD(s) iov[n++] = (struct iovec) { .iov_base = (void *) (s), .iov_len = strlen(s) }
        if (asprintf(&message, "MESSAGE=%s", msg) < 0)
                return;
        ADD(message);
        snprintf(prio, sizeof prio, "PRIORITY=%d", level);
        ADD(prio);
        snprintf(ident, sizeof ident, "SYSLOG_IDENTIFIER=%s", log_ident);
        ADD(ident);
        if (error != 0) {
                snprintf(errnobuf, sizeof errnobuf, "ERRNO=%d", abs(error));
                ADD(errnobuf);
        }
        if (message_id) {
                snprintf(idbuf, sizeof idbuf, "MESSAGE_ID=%s", message_id);
                ADD(idbuf);
        }
        snprintf(filebuf, sizeof filebuf, "CODE_FILE=%s", file);
        ADD(filebuf);
        snprintf(linebuf, sizeof linebuf, "CODE_LINE=%d", line);
        ADD(linebuf);
        snprintf(funcbuf, sizeof funcbuf, "CODE_FUNC=%s", func);
        ADD(funcbuf);
        for (const char *const *p = fields; p && *p && n < ELEMENTSOF(iov); p++)
                ADD(*p);
#undef ADD
        (void) sd_journal_sendv(iov, (int) n);
}

int tg_log_full(int level, int error, const char *message_id, const char *const *fields,
                const char *file, int line, const char *func, const char *format, ...) {
        int saved_errno = errno;
        char msg[2048];
        va_list ap;

        if (error < 0)
                error = -error;
        if (level > log_max_level)
                goto finish;

        /* "%m" in the format shows the error passed in, as in systemd. */
        errno = error;
        va_start(ap, format);
        vsnprintf(msg, sizeof msg, format, ap);
        va_end(ap);

        if (log_target == TG_LOG_TARGET_JOURNAL)
                log_journal(level, error, message_id, fields, file, line, func, msg);
        else
                log_console(level, error, message_id, fields, msg);
finish:
        errno = saved_errno;
        return -error;
}

bool tg_ratelimit_check(TgRateLimit *rl, unsigned *ret_suppressed) {
        uint64_t now = tg_now(CLOCK_MONOTONIC);

        if (rl->begin_usec == 0 || now - rl->begin_usec >= rl->interval_usec) {
                if (ret_suppressed)
                        *ret_suppressed = rl->suppressed;
                rl->begin_usec = now;
                rl->num = 1;
                rl->suppressed = 0;
                return true;
        }
        if (rl->num < rl->burst) {
                rl->num++;
                if (ret_suppressed)
                        *ret_suppressed = 0;
                return true;
        }
        rl->suppressed++;
        return false;
}
