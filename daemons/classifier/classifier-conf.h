/* SPDX-License-Identifier: MIT */
#pragma once

/* classifier.conf: every key is documented in conf/classifier.conf and
 * docs/classifier.md. */

#include "tg-conf.h"
#include "tg-queue.h"

typedef enum DataClass {
        CLASS_REALTIME,
        CLASS_DEFERRED,
        _CLASS_MAX,
} DataClass;

const char *data_class_to_string(DataClass c);

typedef struct Rule {
        char *name;
        char **patterns;   /* NULL-terminated; fnmatch(3) globs over the topic */
        DataClass class;
        unsigned priority;
        uint64_t ttl_usec;
        bool has_class, has_priority, has_ttl;
} Rule;

typedef struct ClassifierConfig {
        /* [Classifier] */
        char *socket_path;
        unsigned socket_mode;
        uint64_t max_payload;
        DataClass default_class;
        unsigned default_priority;
        uint64_t default_ttl_usec;

        /* [Storage] */
        char *state_dir;
        uint64_t commit_interval_usec;
        bool durable;
        uint64_t max_pending_bytes;
        uint64_t outbox_max_bytes;
        uint64_t outbox_priority_max_bytes[TG_PRIORITIES];
        uint64_t segment_max_bytes;
        uint64_t backlog_max_bytes;
        uint64_t downlink_max_bytes;
        uint64_t downlink_ttl_usec;

        /* [Uplink] */
        char *url;
        char *ca_file;
        char *cert_file;
        char *key_file;
        uint64_t batch_window_usec;
        uint64_t batch_max_bytes;
        unsigned max_inflight;
        bool compress;
        unsigned compression_level;
        uint64_t connect_timeout_usec;
        uint64_t request_timeout_usec;
        uint64_t backoff_min_usec;
        uint64_t backoff_max_usec;
        uint64_t spill_after_usec;

        /* [Rule NAME] */
        Rule *rules;
        size_t n_rules;
} ClassifierConfig;

/* Built-in defaults, then `path` and its drop-ins. -EBADMSG: rejected, err says why. */
int classifier_config_load(const char *path, ClassifierConfig *ret, TgConfError *err);
void classifier_config_done(ClassifierConfig *c);

/* The rule a topic falls under (NULL: the defaults). Most literal characters win; ties go to
 * the rule defined first. */
const Rule *classifier_config_match(const ClassifierConfig *c, const char *topic);
