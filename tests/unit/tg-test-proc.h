/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Helper processes for the end-to-end tests: the built daemons and tools
 * (tollgate-canhub, tollgate-ecu-sim, tollgate-uds), started from the paths
 * meson passes in the environment, with their output in files of a test
 * directory.
 *
 *   TgTestProc      a child running a binary: stdout to DIR/NAME.out,
 *                   stderr (the log) to DIR/NAME.log
 *   TgTestHub       tollgate-canhub on DIR/NAME.sock, up and idle
 *
 * A process that outlives its test is killed with it (PR_SET_PDEATHSIG);
 * JOURNAL_STREAM is unset so that it logs as text to its stderr file.
 * Every wait polls every 10 ms up to a timeout and fails the case if the
 * process exits meanwhile (its log is printed then).
 */

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tg-test.h"

/* The binary named by the environment variable env (meson test sets it);
 * NULL, with a "skipped" line, when it is not set. */
static inline const char *tg_test_binary(const char *env) {
        const char *p = getenv(env);

        if (!p || !*p) {
                fprintf(stderr, "  %s not set (run through meson test): skipped\n", env);
                return NULL;
        }
        return p;
}

/* A whole text file, NUL-terminated (malloc'ed); "" if it cannot be read. */
static inline char *tg_test_read_text(const char *path) {
        size_t size = 0;
        char *text = (char *) tg_test_read_file(path, &size);

        if (!text) {
                text = strdup("");
                assert_se(text);
                return text;
        }
        text = realloc(text, size + 1);
        assert_se(text);
        text[size] = '\0';
        return text;
}

typedef struct TgTestProc {
        pid_t pid;
        char *out; /* its stdout: DIR/NAME.out */
        char *log; /* its stderr: DIR/NAME.log */
} TgTestProc;

/* Run bin with argv (argv[0] the name it runs as; NULL-terminated). Both
 * files are created empty and opened with O_APPEND: a writer then always
 * writes at the end, so tg_test_proc_state() can truncate the stdout file
 * under a running process. */
static inline void tg_test_proc_start(TgTestProc *p, const char *dir, const char *name, const char *bin,
                                      const char *const *argv) {
        *p = (TgTestProc) {};
        assert_ok(asprintf(&p->out, "%s/%s.out", dir, name));
        assert_ok(asprintf(&p->log, "%s/%s.log", dir, name));
        p->pid = fork();
        assert_se(p->pid >= 0);
        if (p->pid == 0) {
                int fd = open(p->out, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);

                (void) prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test leaves nothing running */
                if (fd >= 0)
                        (void) dup2(fd, STDOUT_FILENO);
                fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
                if (fd >= 0)
                        (void) dup2(fd, STDERR_FILENO);
                (void) unsetenv("JOURNAL_STREAM");
                execv(bin, (char *const *) argv);
                _exit(127);
        }
}

/* A sanitizer report in a helper's log fails the case, as it does for the
 * daemons of the integration tests: the helpers are built with ASan and
 * UBSan too, and a report there is a bug there even when the case passes. */
static inline void tg_test_proc_check_sanitizers(const TgTestProc *p) {
        static const char *const marks[] = { "runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer" };
        _cleanup_free_ char *log = tg_test_read_text(p->log);

        for (size_t i = 0; i < ELEMENTSOF(marks); i++)
                if (strstr(log, marks[i])) {
                        fprintf(stderr, "%s has a sanitizer report:\n%s", p->log, log);
                        assert_se(!"sanitizer report in a helper process's log");
                }
}

/* Wait for the process to end by itself; its exit status, or 128 + the
 * signal that ended it (as the shell says). Fails the case on a sanitizer
 * report in its log. Frees p. */
static inline int tg_test_proc_wait(TgTestProc *p) {
        int status = 0;

        assert_se(waitpid(p->pid, &status, 0) == p->pid);
        tg_test_proc_check_sanitizers(p);
        free(p->out);
        free(p->log);
        *p = (TgTestProc) {};
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* SIGTERM, then as tg_test_proc_wait(): 0 when it ended cleanly. */
static inline int tg_test_proc_stop(TgTestProc *p) {
        assert_se(kill(p->pid, SIGTERM) == 0);
        return tg_test_proc_wait(p);
}

/* Fails the case, with the process's log, if it is no longer running. */
static inline void tg_test_proc_assert_running(const TgTestProc *p) {
        if (waitpid(p->pid, NULL, WNOHANG) == 0)
                return;
        _cleanup_free_ char *log = tg_test_read_text(p->log);
        fprintf(stderr, "%s:\n%s", p->log, log);
        assert_se(!"the process exited");
}

/* Until its log contains needle: true; false (with the log printed) if
 * timeout_ms passes first. */
static inline bool tg_test_proc_wait_log(const TgTestProc *p, const char *needle, unsigned timeout_ms) {
        for (unsigned i = 0; i < timeout_ms / 10; i++) {
                _cleanup_free_ char *log = tg_test_read_text(p->log);

                if (strstr(log, needle))
                        return true;
                tg_test_proc_assert_running(p);
                usleep(10000);
        }
        _cleanup_free_ char *log = tg_test_read_text(p->log);
        fprintf(stderr, "%s (no \"%s\" in %u ms):\n%s", p->log, needle, timeout_ms, log);
        return false;
}

/* The port a daemon that was told to listen on port 0 logged as "(port N)". */
static inline uint16_t tg_test_proc_wait_port(const TgTestProc *p, unsigned timeout_ms) {
        for (unsigned i = 0; i < timeout_ms / 10; i++) {
                _cleanup_free_ char *log = tg_test_read_text(p->log);
                const char *s = strstr(log, "(port ");
                unsigned port;
                char close;

                if (s && sscanf(s, "(port %u%c", &port, &close) == 2 && close == ')' && port > 0 && port < 65536)
                        return (uint16_t) port;
                tg_test_proc_assert_running(p);
                usleep(10000);
        }
        assert_se(!"the process did not log its port");
        return 0;
}

/* The state dump of a daemon that writes one to stdout on SIGUSR1, ending
 * in an "end" line (malloc'ed). The stdout file is emptied first, so this
 * is the newest dump only. */
static inline char *tg_test_proc_state(const TgTestProc *p) {
        assert_se(truncate(p->out, 0) == 0);
        assert_se(kill(p->pid, SIGUSR1) == 0);
        for (unsigned i = 0; i < 500; i++) {
                char *text = tg_test_read_text(p->out);

                if (strstr(text, "end\n"))
                        return text;
                free(text);
                usleep(10000);
        }
        assert_se(!"no state dump");
        return NULL;
}

typedef struct TgTestHub {
        TgTestProc proc; /* its log: DIR/NAME.log */
        char *path;      /* the socket: DIR/NAME.sock */
        char *spec;      /* "unix:" path, for tg_can_open() and the daemons' configurations */
} TgTestHub;

/* tollgate-canhub ($TG_CANHUB) on DIR/NAME.sock with extra (one more
 * argument, such as "--bitrate=125k"; NULL for none). Returns once a
 * connect() succeeded and the hub logged that this probe left again, so
 * the test's members are #2, #3, … (the hub logs at info level, its
 * default: extra must not lower it). false, with a "skipped" line, when
 * TG_CANHUB is not set. */
static inline bool tg_test_hub_start(TgTestHub *h, const char *dir, const char *name, const char *extra) {
        const char *bin = tg_test_binary("TG_CANHUB");
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_free_ char *socket_arg = NULL;

        if (!bin)
                return false;
        *h = (TgTestHub) {};
        assert_ok(asprintf(&h->path, "%s/%s.sock", dir, name));
        assert_ok(asprintf(&h->spec, "unix:%s", h->path));
        assert_ok(asprintf(&socket_arg, "--socket=%s", h->path));
        tg_test_proc_start(&h->proc, dir, name, bin,
                           (const char *const[]) { "tollgate-canhub", socket_arg, extra, NULL });
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", h->path);
        for (unsigned i = 0; i < 500; i++) {
                int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), r;

                assert_se(fd >= 0);
                r = connect(fd, (struct sockaddr *) &sa, sizeof sa);
                close(fd);
                if (r == 0) {
                        assert_se(tg_test_proc_wait_log(&h->proc, "left (closed)", 5000));
                        return true;
                }
                tg_test_proc_assert_running(&h->proc);
                usleep(10000);
        }
        assert_se(!"the hub did not come up");
        return false;
}

/* SIGTERM; its exit status as tg_test_proc_wait() gives it. Frees h. */
static inline int tg_test_hub_stop(TgTestHub *h) {
        int r = tg_test_proc_stop(&h->proc);

        free(h->path);
        free(h->spec);
        *h = (TgTestHub) {};
        return r;
}
