/* SPDX-License-Identifier: MIT */
#include <fnmatch.h>
#include <stdio.h>

#include "classifier-conf.h"
#include "tg-config.h"
#include "tg-parse.h"
#include "tg-record.h"

static const char *const class_names[_CLASS_MAX] = {
        [CLASS_REALTIME] = "realtime",
        [CLASS_DEFERRED] = "deferred",
};

const char *data_class_to_string(DataClass c) {
        return (unsigned) c < _CLASS_MAX ? class_names[c] : "unknown";
}

static int parse_class(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        for (unsigned i = 0; i < _CLASS_MAX; i++)
                if (streq(value, class_names[i])) {
                        *(DataClass *) field = (DataClass) i;
                        return 0;
                }
        snprintf(reason, reason_size, "expected \"realtime\" or \"deferred\"");
        return -EINVAL;
}

static int parse_mode(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        char *end;
        unsigned long m;

        errno = 0;
        m = strtoul(value, &end, 8);
        if (errno != 0 || *end != '\0' || end == value || m > 0777) {
                snprintf(reason, reason_size, "expected an octal file mode such as 0660");
                return -EINVAL;
        }
        *(unsigned *) field = (unsigned) m;
        return 0;
}

static int parse_absolute_path(const char *value, void *field, const void *extra, char *reason,
                               size_t reason_size) {
        if (*value && *value != '/') {
                snprintf(reason, reason_size, "expected an absolute path");
                return -EINVAL;
        }
        return tg_conf_parse_string(value, field, extra, reason, reason_size);
}

static int parse_url(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        if (*value && !startswith(value, "https://") && !startswith(value, "http://")) {
                snprintf(reason, reason_size, "expected an https:// URL");
                return -EINVAL;
        }
        return tg_conf_parse_string(value, field, extra, reason, reason_size);
}

/* "0:256M 3:64M": per-priority quotas. */
static int parse_priority_sizes(const char *value, void *field, const void *extra, char *reason,
                                size_t reason_size) {
        uint64_t sizes[TG_PRIORITIES] = {};
        _cleanup_free_ char *copy = strdup(value);
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (char *tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
                char *colon = strchr(tok, ':');
                unsigned p;
                uint64_t size;

                if (!colon) {
                        snprintf(reason, reason_size, "expected PRIORITY:SIZE pairs such as \"0:256M 5:64M\"");
                        return -EINVAL;
                }
                *colon = '\0';
                if (tg_parse_unsigned(tok, &p) < 0 || p > TG_PRIORITY_MAX) {
                        snprintf(reason, reason_size, "priority \"%s\" is not 0..%d", tok, TG_PRIORITY_MAX);
                        return -EINVAL;
                }
                if (tg_parse_size(colon + 1, &size) < 0 || size == 0) {
                        snprintf(reason, reason_size, "size \"%s\" is not a positive size", colon + 1);
                        return -EINVAL;
                }
                sizes[p] = size;
        }
        memcpy(field, sizes, sizeof sizes);
        return 0;
}

static void rule_done(Rule *r) {
        free(r->name);
        for (char **p = r->patterns; p && *p; p++)
                free(*p);
        free(r->patterns);
}

static bool pattern_valid(const char *p) {
        /* Topic characters plus the glob characters fnmatch understands. */
        if (*p == '\0' || strlen(p) > TG_TOPIC_MAX)
                return false;
        for (; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      strchr("_-/.*?[]!", *p)))
                        return false;
        return true;
}

static int parse_patterns(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        _cleanup_free_ char *copy = strdup(value);
        char **list = NULL, *save = NULL;
        size_t n = 0;

        if (!copy)
                return -ENOMEM;
        for (char *tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
                char **l;
                if (!pattern_valid(tok)) {
                        snprintf(reason, reason_size, "\"%.64s\" is not a topic pattern ([A-Za-z0-9_./-] and * ? [ ])", tok);
                        goto fail;
                }
                l = realloc(list, (n + 2) * sizeof *list);
                if (!l)
                        goto oom;
                list = l;
                list[n] = strdup(tok);
                if (!list[n])
                        goto oom;
                list[++n] = NULL;
        }
        if (n == 0) {
                snprintf(reason, reason_size, "needs at least one topic pattern");
                goto fail;
        }
        for (char **p = *(char ***) field; p && *p; p++)
                free(*p);
        free(*(char ***) field);
        *(char ***) field = list;
        return 0;
oom:
        for (size_t i = 0; i < n; i++)
                free(list[i]);
        free(list);
        return -ENOMEM;
fail:
        for (size_t i = 0; i < n; i++)
                free(list[i]);
        free(list);
        return -EINVAL;
}

/* Keys of [Rule NAME] also mark themselves as set, so a drop-in can change one
 * field of a rule defined in the main file. */
static int parse_rule_class(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        Rule *rule = (Rule *) ((uint8_t *) field - offsetof(Rule, class));
        int r = parse_class(value, field, extra, reason, reason_size);
        if (r >= 0)
                rule->has_class = true;
        return r;
}

static int parse_rule_priority(const char *value, void *field, const void *extra, char *reason,
                               size_t reason_size) {
        Rule *rule = (Rule *) ((uint8_t *) field - offsetof(Rule, priority));
        int r = tg_conf_parse_unsigned(value, field, extra, reason, reason_size);
        if (r >= 0)
                rule->has_priority = true;
        return r;
}

static int parse_rule_ttl(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        Rule *rule = (Rule *) ((uint8_t *) field - offsetof(Rule, ttl_usec));
        int r = tg_conf_parse_timespan(value, field, extra, reason, reason_size);
        if (r >= 0)
                rule->has_ttl = true;
        return r;
}

static const TgConfRange range_priority = { .min = 0, .max = TG_PRIORITY_MAX };
static const TgConfRange range_payload = { .min = 1, .max = TG_PAYLOAD_MAX };
static const TgConfRange range_commit = { .min = USEC_PER_MSEC, .max = USEC_PER_SEC, .unit_usec = USEC_PER_MSEC };
static const TgConfRange range_window = { .min = 0, .max = USEC_PER_SEC, .unit_usec = USEC_PER_MSEC };
static const TgConfRange range_ttl = { .min = USEC_PER_SEC, .max = USEC_INFINITY };
static const TgConfRange range_pending = { .min = 64 * 1024, .max = UINT64_C(1) << 30 };
static const TgConfRange range_queue = { .min = 0, .max = UINT64_MAX };
static const TgConfRange range_segment = { .min = 4096, .max = 16 << 20 };
static const TgConfRange range_batch = { .min = 1024, .max = 8 << 20 };
static const TgConfRange range_inflight = { .min = 1, .max = 16 };
static const TgConfRange range_level = { .min = 1, .max = 9 };
static const TgConfRange range_timeout = { .min = 100 * USEC_PER_MSEC, .max = 600 * USEC_PER_SEC };
static const TgConfRange range_spill = { .min = 0, .max = 60 * USEC_PER_SEC, .unit_usec = USEC_PER_MSEC };
static const TgConfRange range_backoff = { .min = 10 * USEC_PER_MSEC, .max = 3600 * USEC_PER_SEC };

#define C(sec, key, fn, field, extra) { sec, key, fn, offsetof(ClassifierConfig, field), extra }
#define R(key, fn, field, extra) { "Rule", key, fn, offsetof(Rule, field), extra }

static const TgConfItem config_items[] = {
        C("Classifier", "Socket", parse_absolute_path, socket_path, NULL),
        C("Classifier", "SocketMode", parse_mode, socket_mode, NULL),
        C("Classifier", "MaxPayloadSize", tg_conf_parse_size, max_payload, &range_payload),
        C("Classifier", "DefaultClass", parse_class, default_class, NULL),
        C("Classifier", "DefaultPriority", tg_conf_parse_unsigned, default_priority, &range_priority),
        C("Classifier", "DefaultTimeToLive", tg_conf_parse_timespan, default_ttl_usec, &range_ttl),

        C("Storage", "Directory", parse_absolute_path, state_dir, NULL),
        C("Storage", "CommitInterval", tg_conf_parse_timespan, commit_interval_usec, &range_commit),
        C("Storage", "Durable", tg_conf_parse_bool, durable, NULL),
        C("Storage", "MaxPendingSize", tg_conf_parse_size, max_pending_bytes, &range_pending),
        C("Storage", "OutboxMaxSize", tg_conf_parse_size, outbox_max_bytes, &range_queue),
        C("Storage", "OutboxPriorityMaxSize", parse_priority_sizes, outbox_priority_max_bytes, NULL),
        C("Storage", "SegmentMaxSize", tg_conf_parse_size, segment_max_bytes, &range_segment),
        C("Storage", "BacklogMaxSize", tg_conf_parse_size, backlog_max_bytes, &range_queue),
        C("Storage", "DownlinkMaxSize", tg_conf_parse_size, downlink_max_bytes, &range_queue),
        C("Storage", "DownlinkTimeToLive", tg_conf_parse_timespan, downlink_ttl_usec, &range_ttl),

        C("Uplink", "URL", parse_url, url, NULL),
        C("Uplink", "CAFile", parse_absolute_path, ca_file, NULL),
        C("Uplink", "CertificateFile", parse_absolute_path, cert_file, NULL),
        C("Uplink", "KeyFile", parse_absolute_path, key_file, NULL),
        C("Uplink", "BatchWindow", tg_conf_parse_timespan, batch_window_usec, &range_window),
        C("Uplink", "BatchMaxSize", tg_conf_parse_size, batch_max_bytes, &range_batch),
        C("Uplink", "MaxInflight", tg_conf_parse_unsigned, max_inflight, &range_inflight),
        C("Uplink", "Compression", tg_conf_parse_bool, compress, NULL),
        C("Uplink", "CompressionLevel", tg_conf_parse_unsigned, compression_level, &range_level),
        C("Uplink", "ConnectTimeout", tg_conf_parse_timespan, connect_timeout_usec, &range_timeout),
        C("Uplink", "RequestTimeout", tg_conf_parse_timespan, request_timeout_usec, &range_timeout),
        C("Uplink", "BackoffMin", tg_conf_parse_timespan, backoff_min_usec, &range_backoff),
        C("Uplink", "BackoffMax", tg_conf_parse_timespan, backoff_max_usec, &range_backoff),
        C("Uplink", "SpillAfter", tg_conf_parse_timespan, spill_after_usec, &range_spill),

        R("Match", parse_patterns, patterns, NULL),
        R("Class", parse_rule_class, class, NULL),
        R("Priority", parse_rule_priority, priority, &range_priority),
        R("TimeToLive", parse_rule_ttl, ttl_usec, &range_ttl),
};

static void *lookup_rule(void *userdata, const char *section, const char *arg, char *reason, size_t reason_size) {
        ClassifierConfig *c = userdata;
        Rule *rules;

        for (size_t i = 0; i < c->n_rules; i++)
                if (streq(c->rules[i].name, arg))
                        return &c->rules[i];
        if (c->n_rules >= 4096) {
                snprintf(reason, reason_size, "too many rules (at most 4096)");
                return NULL;
        }
        rules = realloc(c->rules, (c->n_rules + 1) * sizeof *rules);
        if (!rules)
                return NULL;
        c->rules = rules;
        c->rules[c->n_rules] = (Rule) { .name = strdup(arg) };
        if (!c->rules[c->n_rules].name)
                return NULL;
        return &c->rules[c->n_rules++];
}

static const char *const arg_sections[] = { "Rule", NULL };

static const TgConfTable config_table = {
        .items = config_items,
        .n_items = ELEMENTSOF(config_items),
        .arg_sections = arg_sections,
        .lookup = lookup_rule,
};

static void config_defaults(ClassifierConfig *c) {
        *c = (ClassifierConfig) {
                .socket_mode = 0660,
                .max_payload = 16 * 1024,
                .default_class = CLASS_DEFERRED,
                .default_priority = 5,
                .default_ttl_usec = 30 * 86400 * USEC_PER_SEC,
                .commit_interval_usec = 10 * USEC_PER_MSEC,
                .durable = true,
                .max_pending_bytes = 4 << 20,
                .outbox_max_bytes = UINT64_C(1) << 30,
                .segment_max_bytes = 256 * 1024,
                .backlog_max_bytes = 256 << 20,
                .downlink_max_bytes = 16 << 20,
                .downlink_ttl_usec = 7 * 86400 * USEC_PER_SEC,
                .batch_window_usec = 5 * USEC_PER_MSEC,
                .batch_max_bytes = 64 * 1024,
                .max_inflight = 4,
                .compress = true,
                .compression_level = 6,
                .connect_timeout_usec = 10 * USEC_PER_SEC,
                .request_timeout_usec = 15 * USEC_PER_SEC,
                .backoff_min_usec = 250 * USEC_PER_MSEC,
                .backoff_max_usec = 60 * USEC_PER_SEC,
                .spill_after_usec = 200 * USEC_PER_MSEC,
        };
}

static int set_default_string(char **field, const char *value) {
        if (*field)
                return 0;
        *field = strdup(value);
        return *field ? 0 : -ENOMEM;
}

static int config_finish(ClassifierConfig *c, TgConfError *err) {
        const char *rundir = getenv("RUNTIME_DIRECTORY"), *statedir = getenv("STATE_DIRECTORY");
        _cleanup_free_ char *sock = NULL;
        int r;

        /* $RUNTIME_DIRECTORY/$STATE_DIRECTORY come from the unit (RuntimeDirectory=, StateDirectory=). */
        if (asprintf(&sock, "%s/telemetry.sock", rundir ? rundir : TG_RUNDIR) < 0)
                return -ENOMEM;
        r = set_default_string(&c->socket_path, sock);
        if (r >= 0)
                r = set_default_string(&c->state_dir, statedir ? statedir : TG_STATEDIR);
        if (r < 0)
                return r;

        for (size_t i = 0; i < c->n_rules; i++) {
                Rule *rule = &c->rules[i];
                if (!rule->patterns) {
                        snprintf(err->text, sizeof err->text, "[Rule %s]: Match= is required", rule->name);
                        return -EBADMSG;
                }
                if (!rule->has_class)
                        rule->class = c->default_class;
                if (!rule->has_priority)
                        rule->priority = c->default_priority;
                if (!rule->has_ttl)
                        rule->ttl_usec = c->default_ttl_usec;
        }
        if (c->backoff_min_usec > c->backoff_max_usec) {
                snprintf(err->text, sizeof err->text, "[Uplink] BackoffMin= is larger than BackoffMax=");
                return -EBADMSG;
        }
        if ((c->cert_file != NULL) != (c->key_file != NULL)) {
                snprintf(err->text, sizeof err->text, "[Uplink] CertificateFile= and KeyFile= go together");
                return -EBADMSG;
        }
        return 0;
}

int classifier_config_load(const char *path, ClassifierConfig *ret, TgConfError *err) {
        ClassifierConfig c;
        int r;

        config_defaults(&c);
        r = tg_conf_load(path, false, &config_table, &c, err);
        if (r >= 0)
                r = config_finish(&c, err);
        if (r < 0) {
                classifier_config_done(&c);
                return r == -ENOMEM ? r : -EBADMSG;
        }
        *ret = c;
        return 0;
}

void classifier_config_done(ClassifierConfig *c) {
        free(c->socket_path);
        free(c->state_dir);
        free(c->url);
        free(c->ca_file);
        free(c->cert_file);
        free(c->key_file);
        for (size_t i = 0; i < c->n_rules; i++)
                rule_done(&c->rules[i]);
        free(c->rules);
        *c = (ClassifierConfig) {};
}

/* Specificity of a pattern: characters that match only themselves. '*', '?'
 * and a bracket expression ("[sS]", "[!0-9]") count for nothing. */
static unsigned literal_chars(const char *p) {
        unsigned n = 0;

        for (; *p; p++) {
                if (*p == '*' || *p == '?')
                        continue;
                if (*p == '[') {
                        const char *q = p + 1;
                        if (*q == '!')
                                q++;
                        if (*q == ']')
                                q++; /* a leading ']' is a member, not the end */
                        q = strchr(q, ']');
                        if (q) {
                                p = q;
                                continue;
                        }
                }
                n++;
        }
        return n;
}

const Rule *classifier_config_match(const ClassifierConfig *c, const char *topic) {
        const Rule *best = NULL;
        unsigned best_score = 0;

        for (size_t i = 0; i < c->n_rules; i++)
                for (char **p = c->rules[i].patterns; *p; p++) {
                        unsigned score;
                        if (fnmatch(*p, topic, 0) != 0)
                                continue;
                        score = literal_chars(*p) + 1;
                        if (score > best_score) {
                                best = &c->rules[i];
                                best_score = score;
                        }
                }
        return best;
}
