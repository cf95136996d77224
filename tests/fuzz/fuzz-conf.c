/* SPDX-License-Identifier: MIT */
/*
 * classifier.conf through the real loader: the input becomes the main file
 * and classifier_config_load() reads it with the classifier's own table,
 * value parsers, rule lookup and final checks. The file is a memfd opened by
 * its /proc path, so nothing is written to disk and no drop-in folder
 * ("<path>.d") exists.
 */
#include <sys/mman.h>
#include <unistd.h>

#include "classifier-conf.h"
#include "fuzz.h"
#include "tg-record.h"

static int conf_fd = -1;
static char conf_path[64];

static bool has_glob(const char *p) {
        return strpbrk(p, "*?[]!") != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        ClassifierConfig c;
        TgConfError err = {};
        int r;

        /* Past the size limit the loader only says "too large"; covered by the unit tests. */
        if (size > 64 * 1024)
                return 0;
        if (conf_fd < 0) {
                conf_fd = memfd_create("fuzz-classifier.conf", MFD_CLOEXEC);
                FUZZ_ASSERT(conf_fd >= 0);
                snprintf(conf_path, sizeof conf_path, "/proc/self/fd/%d", conf_fd);
        }
        FUZZ_ASSERT(ftruncate(conf_fd, 0) == 0);
        FUZZ_ASSERT(pwrite(conf_fd, data, size, 0) == (ssize_t) size);

        r = classifier_config_load(conf_path, &c, &err);
        if (r < 0) {
                /* Rejected: always with a reason, never half-loaded. */
                FUZZ_ASSERT(r == -EBADMSG || r == -ENOMEM);
                if (r == -EBADMSG)
                        FUZZ_ASSERT(err.text[0] != '\0');
                FUZZ_ASSERT(memchr(err.text, '\0', sizeof err.text) != NULL);
                return 0;
        }

        /* Accepted: what the daemon relies on without checking again. */
        FUZZ_ASSERT(c.socket_path && c.socket_path[0] == '/');
        FUZZ_ASSERT(c.state_dir);
        FUZZ_ASSERT(c.max_payload >= 1 && c.max_payload <= TG_PAYLOAD_MAX);
        FUZZ_ASSERT(c.default_priority <= TG_PRIORITY_MAX);
        FUZZ_ASSERT((unsigned) c.default_class < _CLASS_MAX);
        FUZZ_ASSERT(c.backoff_min_usec <= c.backoff_max_usec);
        FUZZ_ASSERT((c.cert_file == NULL) == (c.key_file == NULL));
        for (size_t i = 0; i < c.n_rules; i++) {
                const Rule *rule = &c.rules[i];

                FUZZ_ASSERT(rule->name && rule->name[0]);
                FUZZ_ASSERT(rule->patterns && rule->patterns[0]);
                FUZZ_ASSERT(rule->priority <= TG_PRIORITY_MAX);
                FUZZ_ASSERT((unsigned) rule->class < _CLASS_MAX);
                for (size_t j = 0; j < i; j++)
                        FUZZ_ASSERT(strcmp(c.rules[j].name, rule->name) != 0);
                for (char **p = rule->patterns; *p; p++) {
                        /* A literal pattern that is a valid topic is matched by some rule. */
                        if (!has_glob(*p) && tg_topic_validate(*p, strlen(*p)) == TG_RECORD_OK)
                                FUZZ_ASSERT(classifier_config_match(&c, *p) != NULL);
                        else
                                /* Globs as topics: every pattern is scored, brackets and all. */
                                (void) classifier_config_match(&c, *p);
                }
        }
        classifier_config_done(&c);
        return 0;
}
