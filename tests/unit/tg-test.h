/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A tiny test harness: assertions that name file:line and the failed
 * expression (plus the values compared, where that helps), then abort; a
 * table of named cases per test program; private temporary directories.
 *
 * Every test program runs all its ordinary cases when started without
 * arguments. Cases marked .known_bug document a defect in lib/ or daemons/
 * that is not fixed yet: they run only when named on the command line, and
 * meson registers each one with should_fail, so the suite stays green while
 * the bug exists and reports "UNEXPECTEDPASS" once it is fixed.
 */

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "tg-macro.h"

#define TG_TEST_MAX_TMPDIRS 16

/* Temporary directories created by tg_test_mkdtemp(), removed on failure too
 * so a failing (or expected-to-fail) case leaves nothing behind in $TMPDIR. */
static char *tg_test_tmpdirs[TG_TEST_MAX_TMPDIRS];

static inline int tg_test_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st, (void) flag, (void) ftw;
        (void) remove(path);
        return 0;
}

/* Remove a tree; for test directories only, never follows symlinks. */
static inline void tg_test_rm_rf(const char *path) {
        if (path)
                (void) nftw(path, tg_test_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void tg_test_cleanup_all(void) {
        for (size_t i = 0; i < TG_TEST_MAX_TMPDIRS; i++)
                if (tg_test_tmpdirs[i]) {
                        tg_test_rm_rf(tg_test_tmpdirs[i]);
                        free(tg_test_tmpdirs[i]);
                        tg_test_tmpdirs[i] = NULL;
                }
}

__attribute__((noreturn)) static inline void tg_test_fail(const char *file, int line, const char *func,
                                                         const char *expr, const char *detail) {
        fprintf(stderr, "%s:%d: %s: assertion failed: %s%s%s\n", file, line, func, expr, detail ? "\n    " : "",
                detail ? detail : "");
        fflush(stderr);
        tg_test_cleanup_all();
        abort();
}

#define assert_se(expr)                                                                 \
        do {                                                                            \
                if (_unlikely_(!(expr)))                                                \
                        tg_test_fail(__FILE__, __LINE__, __func__, #expr, NULL);        \
        } while (0)

/* Integers of any signedness up to 64 bits (enums too), compared by value:
 * widened to 128 bits so -1 never equals UINT64_MAX. */
#define assert_eq(a, b)                                                                         \
        do {                                                                                    \
                __typeof__(a) _a_ = (a);                                                        \
                __typeof__(b) _b_ = (b);                                                        \
                if (_unlikely_((__int128) _a_ != (__int128) _b_)) {                             \
                        char _d_[128];                                                          \
                        snprintf(_d_, sizeof _d_, "left: %lld (0x%llx), right: %lld (0x%llx)",  \
                                 (long long) _a_, (unsigned long long) _a_, (long long) _b_,    \
                                 (unsigned long long) _b_);                                     \
                        tg_test_fail(__FILE__, __LINE__, __func__, #a " == " #b, _d_);          \
                }                                                                               \
        } while (0)

/* a <= b, for limits: sizes that must stay within a bound. */
#define assert_le(a, b)                                                                         \
        do {                                                                                    \
                __typeof__(a) _a_ = (a);                                                        \
                __typeof__(b) _b_ = (b);                                                        \
                if (_unlikely_((__int128) _a_ > (__int128) _b_)) {                              \
                        char _d_[128];                                                          \
                        snprintf(_d_, sizeof _d_, "left: %lld, right: %lld", (long long) _a_,   \
                                 (long long) _b_);                                              \
                        tg_test_fail(__FILE__, __LINE__, __func__, #a " <= " #b, _d_);          \
                }                                                                               \
        } while (0)

#define assert_streq(a, b)                                                                      \
        do {                                                                                    \
                const char *_a_ = (a), *_b_ = (b);                                              \
                if (_unlikely_(!streq_ptr(_a_, _b_))) {                                         \
                        char _d_[1024];                                                         \
                        snprintf(_d_, sizeof _d_, "left: \"%s\", right: \"%s\"", _a_ ? _a_ : "(null)", \
                                 _b_ ? _b_ : "(null)");                                         \
                        tg_test_fail(__FILE__, __LINE__, __func__, #a " == " #b, _d_);          \
                }                                                                               \
        } while (0)

/* haystack contains needle: for error texts, which may gain words over time. */
#define assert_contains(haystack, needle)                                                       \
        do {                                                                                    \
                const char *_h_ = (haystack), *_n_ = (needle);                                  \
                if (_unlikely_(!_h_ || !strstr(_h_, _n_))) {                                    \
                        char _d_[1024];                                                         \
                        snprintf(_d_, sizeof _d_, "\"%s\" does not contain \"%s\"", _h_ ? _h_ : "(null)", _n_); \
                        tg_test_fail(__FILE__, __LINE__, __func__, #haystack " contains " #needle, _d_); \
                }                                                                               \
        } while (0)

/* A call returning a negative errno must succeed. */
#define assert_ok(expr)                                                                         \
        do {                                                                                    \
                long long _r_ = (long long) (expr);                                             \
                if (_unlikely_(_r_ < 0)) {                                                      \
                        char _d_[128];                                                          \
                        snprintf(_d_, sizeof _d_, "returned %lld (%s)", _r_, strerror((int) -_r_)); \
                        tg_test_fail(__FILE__, __LINE__, __func__, #expr " >= 0", _d_);         \
                }                                                                               \
        } while (0)

#define assert_memeq(a, b, n)                                                                   \
        do {                                                                                    \
                const uint8_t *_a_ = (const uint8_t *) (a), *_b_ = (const uint8_t *) (b);       \
                size_t _n_ = (n);                                                               \
                for (size_t _i_ = 0; _i_ < _n_; _i_++)                                          \
                        if (_unlikely_(_a_[_i_] != _b_[_i_])) {                                 \
                                char _d_[128];                                                  \
                                snprintf(_d_, sizeof _d_, "first difference at byte %zu: 0x%02x != 0x%02x", \
                                         _i_, _a_[_i_], _b_[_i_]);                              \
                                tg_test_fail(__FILE__, __LINE__, __func__, "memcmp(" #a ", " #b ", " #n ") == 0", _d_); \
                        }                                                                       \
        } while (0)

/* A private directory under $TMPDIR (or /tmp), removed by tg_test_rmdtemp()
 * or, if the case fails, by the failure handler. */
static inline char *tg_test_mkdtemp(void) {
        const char *tmp = getenv("TMPDIR");
        char *path;

        if (!tmp || !*tmp)
                tmp = "/tmp";
        if (asprintf(&path, "%s/tollgate-test.XXXXXX", tmp) < 0)
                abort();
        if (!mkdtemp(path)) {
                fprintf(stderr, "mkdtemp(%s): %m\n", path);
                abort();
        }
        for (size_t i = 0; i < TG_TEST_MAX_TMPDIRS; i++)
                if (!tg_test_tmpdirs[i]) {
                        tg_test_tmpdirs[i] = path;
                        return path;
                }
        abort(); /* more directories alive at once than any case needs */
}

static inline void tg_test_rmdtemp(char *path) {
        if (!path)
                return;
        tg_test_rm_rf(path);
        for (size_t i = 0; i < TG_TEST_MAX_TMPDIRS; i++)
                if (tg_test_tmpdirs[i] == path)
                        tg_test_tmpdirs[i] = NULL;
        free(path);
}

static inline void tg_test_rmdtempp(char **p) {
        tg_test_rmdtemp(*p);
}
#define _cleanup_tmpdir_ _cleanup_(tg_test_rmdtempp)

/* Write a whole file (for configs, corrupt databases); aborts on failure. */
static inline void tg_test_write_file(const char *path, const void *data, size_t size) {
        FILE *f = fopen(path, "we");

        if (!f || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
                fprintf(stderr, "cannot write %s: %m\n", path);
                abort();
        }
}

static inline char *tg_test_path(const char *dir, const char *name) {
        char *p;

        if (asprintf(&p, "%s/%s", dir, name) < 0)
                abort();
        return p;
}

/* Read a whole file into a malloc'ed buffer; NULL if it cannot be read. */
/* A daemon's configuration in a private directory: NAME.conf (with
 * main_text, if not NULL) and its NAME.conf.d/ drop-in folder. */
typedef struct TgTestConfDir {
        char *dir;
        char *path;
        char *dropins;
} TgTestConfDir;

static inline void tg_test_confdir_init(TgTestConfDir *d, const char *name, const char *main_text) {
        char file[256];

        d->dir = tg_test_mkdtemp();
        snprintf(file, sizeof file, "%s.conf", name);
        d->path = tg_test_path(d->dir, file);
        snprintf(file, sizeof file, "%s.conf.d", name);
        d->dropins = tg_test_path(d->dir, file);
        if (main_text)
                tg_test_write_file(d->path, main_text, strlen(main_text));
}

static inline void tg_test_confdir_dropin(TgTestConfDir *d, const char *name, const char *text) {
        char *p = tg_test_path(d->dropins, name);

        (void) mkdir(d->dropins, 0755);
        tg_test_write_file(p, text, strlen(text));
        free(p);
}

static inline void tg_test_confdir_done(TgTestConfDir *d) {
        free(d->path);
        free(d->dropins);
        tg_test_rmdtemp(d->dir);
}

static inline uint8_t *tg_test_read_file(const char *path, size_t *ret_size) {
        FILE *f = fopen(path, "re");
        uint8_t *buf = NULL;
        size_t n = 0, allocated = 0;

        if (!f)
                return NULL;
        for (;;) {
                size_t k;
                if (n == allocated) {
                        uint8_t *b = realloc(buf, allocated = allocated * 2 + 4096);
                        if (!b)
                                abort();
                        buf = b;
                }
                k = fread(buf + n, 1, allocated - n, f);
                if (k == 0)
                        break;
                n += k;
        }
        fclose(f);
        *ret_size = n;
        return buf;
}

typedef struct TgTest {
        const char *name;
        void (*func)(void);
        bool known_bug;
} TgTest;

#define TEST(f) { #f, test_##f, false }
#define TEST_KNOWN_BUG(f) { #f, test_##f, true }

/* No arguments: every ordinary case. Otherwise: the named cases, known bugs included. */
static inline int tg_test_main(int argc, char **argv, const TgTest *tests, size_t n) {
        size_t run = 0;

        for (size_t i = 0; i < n; i++) {
                bool wanted = argc <= 1 ? !tests[i].known_bug : false;

                for (int a = 1; a < argc; a++)
                        if (streq(argv[a], tests[i].name))
                                wanted = true;
                if (!wanted)
                        continue;
                fprintf(stderr, "== %s%s\n", tests[i].name, tests[i].known_bug ? " (known bug)" : "");
                tests[i].func();
                run++;
        }
        if (run == 0 || (argc > 1 && run != (size_t) argc - 1)) {
                fprintf(stderr, "No such test case among the arguments.\n");
                return EXIT_FAILURE;
        }
        fprintf(stderr, "%zu case(s) passed.\n", run);
        tg_test_cleanup_all();
        return EXIT_SUCCESS;
}

#define TG_TEST_MAIN(...)                                                               \
        int main(int argc, char **argv) {                                               \
                static const TgTest tests[] = { __VA_ARGS__ };                          \
                return tg_test_main(argc, argv, tests, ELEMENTSOF(tests));              \
        }
