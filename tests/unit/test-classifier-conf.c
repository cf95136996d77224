/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <sys/stat.h>

#include "classifier-conf.h"
#include "tg-test.h"

/* A config directory of its own per case: main file plus optional drop-ins. */
static int load_text(const char *text, ClassifierConfig *c, TgConfError *err) {
        TgTestConfDir d = {};
        int r;

        tg_test_confdir_init(&d, "classifier", text);
        *err = (TgConfError) {};
        r = classifier_config_load(d.path, c, err);
        tg_test_confdir_done(&d);
        return r;
}

static void expect_class(const ClassifierConfig *c, const char *topic, const char *rule, DataClass class) {
        const Rule *r = classifier_config_match(c, topic);

        if (!streq_ptr(r ? r->name : NULL, rule))
                fprintf(stderr, "topic %s\n", topic);
        assert_streq(r ? r->name : NULL, rule);
        assert_streq(data_class_to_string(r ? r->class : c->default_class), data_class_to_string(class));
}

static void clear_env(void) {
        assert_se(unsetenv("RUNTIME_DIRECTORY") == 0);
        assert_se(unsetenv("STATE_DIRECTORY") == 0);
}

/* The default file shipped in conf/, against SPEC C1: speed, position,
 * battery real-time data, fault alarms and request/response exchanges are
 * real-time; analytics, component life, user profile and HMI records wait. */
static void test_shipped_default(void) {
        const char *path = getenv("TG_CLASSIFIER_CONF");
        static const struct {
                const char *topic;
                DataClass class;
        } spec[] = {
                { "vehicle.speed", CLASS_REALTIME },
                { "vehicle.speed.wheel.fl", CLASS_REALTIME },
                { "vehicle.position", CLASS_REALTIME },
                { "vehicle.position.gnss", CLASS_REALTIME },
                { "battery.realtime", CLASS_REALTIME },
                { "battery.realtime.soc", CLASS_REALTIME },
                { "fault.engine.overheat", CLASS_REALTIME },
                { "voice.query", CLASS_REALTIME },
                { "request.route", CLASS_REALTIME },
                { "analytics.driving.harsh-braking", CLASS_DEFERRED },
                { "analytics.component.brake-pads", CLASS_DEFERRED },
                { "ops.user.profile", CLASS_DEFERRED },
                { "ops.preferences", CLASS_DEFERRED },
                { "ops.hmi.touch", CLASS_DEFERRED },
                { "something.unknown", CLASS_DEFERRED }, /* the default class */
        };
        ClassifierConfig c;
        TgConfError err = {};
        struct stat st;

        clear_env();
        if (!path || stat(path, &st) < 0) {
                fprintf(stderr, "No shipped classifier.conf (%s), skipping.\n", path ? path : "TG_CLASSIFIER_CONF unset");
                return;
        }
        assert_ok(classifier_config_load(path, &c, &err));
        assert_se(c.n_rules > 0);
        for (size_t i = 0; i < c.n_rules; i++) {
                assert_se(c.rules[i].patterns && c.rules[i].patterns[0]);
                assert_se(c.rules[i].priority <= TG_PRIORITY_MAX);
        }
        for (size_t i = 0; i < ELEMENTSOF(spec); i++) {
                const Rule *r = classifier_config_match(&c, spec[i].topic);
                DataClass got = r ? r->class : c.default_class;
                if (got != spec[i].class)
                        fprintf(stderr, "topic %s: %s\n", spec[i].topic, data_class_to_string(got));
                assert_eq(got, spec[i].class);
        }
        /* Fault alarms are the most important data of all. */
        assert_eq(classifier_config_match(&c, "fault.engine.overheat")->priority, 0u);
        assert_streq(c.socket_path, "/run/tollgate/telemetry.sock");
        classifier_config_done(&c);
}

/* The shipped file says "The commented values are the built-in defaults":
 * uncommenting every "#Key=Value" must not change the configuration. */
static void test_shipped_comments_are_defaults(void) {
        const char *path = getenv("TG_CLASSIFIER_CONF");
        _cleanup_free_ uint8_t *text = NULL;
        _cleanup_free_ char *out = NULL;
        ClassifierConfig def, unc;
        TgConfError err = {};
        size_t n, k = 0;
        TgTestConfDir d = {};
        int r;

        clear_env();
        if (!path || !(text = tg_test_read_file(path, &n))) {
                fprintf(stderr, "No shipped classifier.conf (%s), skipping.\n", path ? path : "TG_CLASSIFIER_CONF unset");
                return;
        }
        /* Drop the '#' of lines that look like "#Key=", keep everything else. */
        out = malloc(n + 1);
        assert_se(out);
        for (size_t i = 0; i < n; i++) {
                bool line_start = i == 0 || text[i - 1] == '\n';
                if (line_start && text[i] == '#' && i + 1 < n && text[i + 1] >= 'A' && text[i + 1] <= 'Z') {
                        size_t j = i + 1;
                        while (j < n && ((text[j] >= 'A' && text[j] <= 'Z') || (text[j] >= 'a' && text[j] <= 'z')))
                                j++;
                        if (j < n && text[j] == '=')
                                continue;
                }
                out[k++] = (char) text[i];
        }
        out[k] = '\0';

        tg_test_confdir_init(&d, "classifier", NULL);
        assert_ok(classifier_config_load(d.path, &def, &err)); /* no file: built-in defaults */
        tg_test_write_file(d.path, out, k);
        err = (TgConfError) {};
        r = classifier_config_load(d.path, &unc, &err);
        if (r < 0)
                fprintf(stderr, "%s\n", err.text);
        assert_ok(r);

        assert_streq(unc.socket_path, def.socket_path);
        assert_eq(unc.socket_mode, def.socket_mode);
        assert_eq(unc.max_payload, def.max_payload);
        assert_eq(unc.default_class, def.default_class);
        assert_eq(unc.default_priority, def.default_priority);
        assert_eq(unc.default_ttl_usec, def.default_ttl_usec);
        assert_eq(unc.commit_interval_usec, def.commit_interval_usec);
        assert_eq(unc.durable, def.durable);
        assert_eq(unc.max_pending_bytes, def.max_pending_bytes);
        assert_eq(unc.outbox_max_bytes, def.outbox_max_bytes);
        assert_memeq(unc.outbox_priority_max_bytes, def.outbox_priority_max_bytes, sizeof def.outbox_priority_max_bytes);
        assert_eq(unc.segment_max_bytes, def.segment_max_bytes);
        assert_eq(unc.backlog_max_bytes, def.backlog_max_bytes);
        assert_eq(unc.batch_window_usec, def.batch_window_usec);
        assert_eq(unc.batch_max_bytes, def.batch_max_bytes);
        assert_eq(unc.max_inflight, def.max_inflight);
        assert_eq(unc.compress, def.compress);
        assert_eq(unc.compression_level, def.compression_level);
        assert_eq(unc.connect_timeout_usec, def.connect_timeout_usec);
        assert_eq(unc.request_timeout_usec, def.request_timeout_usec);
        assert_eq(unc.backoff_min_usec, def.backoff_min_usec);
        assert_eq(unc.backoff_max_usec, def.backoff_max_usec);
        /* Directory= depends on the build's prefix; URL and the PKI files are examples. */
        classifier_config_done(&def);
        classifier_config_done(&unc);
        tg_test_confdir_done(&d);
}

static void test_every_key(void) {
        static const char text[] =
                "[Classifier]\n"
                "Socket=/run/test/t.sock\n"
                "SocketMode=0620\n"
                "MaxPayloadSize=64K\n"
                "DefaultClass=realtime\n"
                "DefaultPriority=9\n"
                "DefaultTimeToLive=infinity\n"
                "[Storage]\n"
                "Directory=/var/lib/test\n"
                "CommitInterval=20\n" /* ms */
                "Durable=no\n"
                "MaxPendingSize=1G\n"
                "OutboxMaxSize=0\n"
                "OutboxPriorityMaxSize=0:256M 3:64M\t9:1K\n"
                "SegmentMaxSize=16M\n"
                "BacklogMaxSize=1T\n"
                "[Uplink]\n"
                "URL=https://tsp.example.com/v1/telemetry\n"
                "CAFile=/etc/ca.pem\n"
                "CertificateFile=/etc/gw.pem\n"
                "KeyFile=/etc/gw.key\n"
                "BatchWindow=0\n"
                "BatchMaxSize=8M\n"
                "MaxInflight=16\n"
                "Compression=off\n"
                "CompressionLevel=1\n"
                "ConnectTimeout=100ms\n"
                "RequestTimeout=10min\n"
                "BackoffMin=1s\n"
                "BackoffMax=1h\n"
                "[Rule r]\n"
                "Match=a.* b.?\n"
                "Class=deferred\n"
                "Priority=0\n"
                "TimeToLive=1d\n";
        ClassifierConfig c;
        TgConfError err;

        clear_env();
        assert_ok(load_text(text, &c, &err));
        assert_streq(c.socket_path, "/run/test/t.sock");
        assert_eq(c.socket_mode, 0620u);
        assert_eq(c.max_payload, UINT64_C(65536));
        assert_eq(c.default_class, CLASS_REALTIME);
        assert_eq(c.default_priority, 9u);
        assert_eq(c.default_ttl_usec, USEC_INFINITY);
        assert_streq(c.state_dir, "/var/lib/test");
        assert_eq(c.commit_interval_usec, 20 * USEC_PER_MSEC);
        assert_se(!c.durable);
        assert_eq(c.max_pending_bytes, UINT64_C(1) << 30);
        assert_eq(c.outbox_max_bytes, UINT64_C(0));
        assert_eq(c.outbox_priority_max_bytes[0], UINT64_C(256) << 20);
        assert_eq(c.outbox_priority_max_bytes[3], UINT64_C(64) << 20);
        assert_eq(c.outbox_priority_max_bytes[9], UINT64_C(1024));
        assert_eq(c.outbox_priority_max_bytes[1], UINT64_C(0));
        assert_eq(c.segment_max_bytes, UINT64_C(16) << 20);
        assert_eq(c.backlog_max_bytes, UINT64_C(1) << 40);
        assert_streq(c.url, "https://tsp.example.com/v1/telemetry");
        assert_streq(c.ca_file, "/etc/ca.pem");
        assert_streq(c.cert_file, "/etc/gw.pem");
        assert_streq(c.key_file, "/etc/gw.key");
        assert_eq(c.batch_window_usec, UINT64_C(0));
        assert_eq(c.batch_max_bytes, UINT64_C(8) << 20);
        assert_eq(c.max_inflight, 16u);
        assert_se(!c.compress);
        assert_eq(c.compression_level, 1u);
        assert_eq(c.connect_timeout_usec, 100 * USEC_PER_MSEC);
        assert_eq(c.request_timeout_usec, 600 * USEC_PER_SEC);
        assert_eq(c.backoff_min_usec, USEC_PER_SEC);
        assert_eq(c.backoff_max_usec, 3600 * USEC_PER_SEC);
        assert_eq(c.n_rules, (size_t) 1);
        assert_streq(c.rules[0].name, "r");
        assert_streq(c.rules[0].patterns[0], "a.*");
        assert_streq(c.rules[0].patterns[1], "b.?");
        assert_se(c.rules[0].patterns[2] == NULL);
        assert_eq(c.rules[0].class, CLASS_DEFERRED);
        assert_eq(c.rules[0].priority, 0u);
        assert_eq(c.rules[0].ttl_usec, 86400 * USEC_PER_SEC);
        classifier_config_done(&c);
        assert_se(c.rules == NULL && c.n_rules == 0 && c.socket_path == NULL);
        classifier_config_done(&c); /* twice is harmless */
}

/* Without a file: built-in defaults; the unit's directories fill in paths. */
static void test_defaults_and_environment(void) {
        ClassifierConfig c;
        TgConfError err = {};

        assert_se(setenv("RUNTIME_DIRECTORY", "/run/x", 1) == 0);
        assert_se(setenv("STATE_DIRECTORY", "/var/lib/x", 1) == 0);
        assert_ok(classifier_config_load("/nonexistent/classifier.conf", &c, &err));
        assert_streq(c.socket_path, "/run/x/telemetry.sock");
        assert_streq(c.state_dir, "/var/lib/x");
        assert_eq(c.max_payload, UINT64_C(16384));
        assert_eq(c.default_class, CLASS_DEFERRED);
        assert_eq(c.default_priority, 5u);
        assert_eq(c.n_rules, (size_t) 0);
        assert_se(c.url == NULL && c.cert_file == NULL && c.key_file == NULL);
        assert_se(classifier_config_match(&c, "vehicle.speed") == NULL);
        classifier_config_done(&c);
        clear_env();
}

static void test_match_most_literal(void) {
        static const char text[] =
                "[Rule broad]\nMatch=vehicle.*\nClass=deferred\n"
                "[Rule exact]\nMatch=vehicle.speed\nClass=realtime\n"
                "[Rule prefix]\nMatch=vehicle.sp*\nClass=realtime\n"
                "[Rule anything]\nMatch=*\nClass=deferred\n"
                "[Rule multi]\nMatch=x.y fault.* fault.engine.?\nClass=realtime\n";
        ClassifierConfig c;
        TgConfError err;

        assert_ok(load_text(text, &c, &err));
        expect_class(&c, "vehicle.speed", "exact", CLASS_REALTIME);    /* 13 literal characters */
        expect_class(&c, "vehicle.spin", "prefix", CLASS_REALTIME);    /* 10 against 8 */
        expect_class(&c, "vehicle.sp", "prefix", CLASS_REALTIME);      /* '*' matches nothing too */
        expect_class(&c, "vehicle.door", "broad", CLASS_DEFERRED);
        expect_class(&c, "vehicle.speed.x", "prefix", CLASS_REALTIME); /* '*' spans dots */
        expect_class(&c, "other", "anything", CLASS_DEFERRED);
        expect_class(&c, "fault.engine.x", "multi", CLASS_REALTIME);   /* its best pattern counts */
        expect_class(&c, "x.y", "multi", CLASS_REALTIME);
        classifier_config_done(&c);

        /* No rule at all for a topic: NULL, the caller applies the defaults. */
        assert_ok(load_text("[Rule a]\nMatch=a.*\n", &c, &err));
        assert_se(classifier_config_match(&c, "b.c") == NULL);
        assert_se(classifier_config_match(&c, "a") == NULL);
        assert_se(classifier_config_match(&c, "a.") != NULL);
        classifier_config_done(&c);
}

static void test_match_ties(void) {
        ClassifierConfig c;
        TgConfError err;

        /* Both patterns have three literal characters: the first rule wins. */
        assert_ok(load_text("[Rule first]\nMatch=a.?c\n[Rule second]\nMatch=a.b?\n", &c, &err));
        expect_class(&c, "a.bc", "first", CLASS_DEFERRED);
        classifier_config_done(&c);
        assert_ok(load_text("[Rule second]\nMatch=a.b?\n[Rule first]\nMatch=a.?c\n", &c, &err));
        expect_class(&c, "a.bc", "second", CLASS_DEFERRED);
        classifier_config_done(&c);

        /* Defined first means first in the main file, even if a drop-in
         * touches the later rule. */
        {
                TgTestConfDir d = {};
                tg_test_confdir_init(&d, "classifier", "[Rule one]\nMatch=t.*\n[Rule two]\nMatch=*.x\n");
                tg_test_confdir_dropin(&d, "10.conf", "[Rule two]\nClass=realtime\n[Rule one]\nClass=deferred\n");
                assert_ok(classifier_config_load(d.path, &c, &err));
                expect_class(&c, "t.x", "one", CLASS_DEFERRED);
                classifier_config_done(&c);
                tg_test_confdir_done(&d);
        }
}

static void test_dropin_changes_one_key(void) {
        TgTestConfDir d = {};
        ClassifierConfig c;
        TgConfError err = {};
        const Rule *r;

        clear_env();
        tg_test_confdir_init(&d, "classifier",
                     "[Classifier]\nDefaultPriority=6\n"
                     "[Rule speed]\nMatch=vehicle.speed vehicle.speed.*\nClass=realtime\nPriority=1\nTimeToLive=1h\n"
                     "[Rule hmi]\nMatch=ops.hmi.*\n");
        tg_test_confdir_dropin(&d, "50-speed.conf", "[Rule speed]\nClass=deferred\n");
        tg_test_confdir_dropin(&d, "60-defaults.conf", "[Classifier]\nDefaultClass=realtime\nDefaultPriority=7\n");
        tg_test_confdir_dropin(&d, "70-new.conf", "[Rule new]\nMatch=new.*\nPriority=2\n");
        assert_ok(classifier_config_load(d.path, &c, &err));

        assert_eq(c.n_rules, (size_t) 3);
        r = classifier_config_match(&c, "vehicle.speed");
        assert_streq(r->name, "speed");
        assert_eq(r->class, CLASS_DEFERRED);        /* from the drop-in */
        assert_streq(r->patterns[0], "vehicle.speed"); /* kept */
        assert_streq(r->patterns[1], "vehicle.speed.*");
        assert_eq(r->priority, 1u);                 /* kept */
        assert_eq(r->ttl_usec, 3600 * USEC_PER_SEC); /* kept */

        /* A rule without its own Class=/Priority= takes the defaults in force
         * after every file was read, wherever they were set. */
        r = classifier_config_match(&c, "ops.hmi.touch");
        assert_streq(r->name, "hmi");
        assert_eq(r->class, CLASS_REALTIME);
        assert_eq(r->priority, 7u);
        assert_eq(r->ttl_usec, c.default_ttl_usec);
        r = classifier_config_match(&c, "new.thing");
        assert_eq(r->class, CLASS_REALTIME);
        assert_eq(r->priority, 2u);
        classifier_config_done(&c);

        /* A drop-in replacing the patterns of a rule. */
        tg_test_confdir_dropin(&d, "80-speed-match.conf", "[Rule speed]\nMatch=speed.*\n");
        assert_ok(classifier_config_load(d.path, &c, &err));
        assert_se(classifier_config_match(&c, "vehicle.speed") == NULL);
        assert_streq(classifier_config_match(&c, "speed.x")->name, "speed");
        classifier_config_done(&c);
        tg_test_confdir_done(&d);
}

static void test_rejected(void) {
        static const struct {
                const char *text;
                const char *expect[2];
        } cases[] = {
                { "[Rule x]\nClass=realtime\n", { "[Rule x]: Match= is required" } },
                { "[Uplink]\nBackoffMin=2min\nBackoffMax=1min\n", { "BackoffMin=", "BackoffMax=" } },
                { "[Uplink]\nCertificateFile=/etc/gw.pem\n", { "CertificateFile=", "KeyFile=" } },
                { "[Uplink]\nKeyFile=/etc/gw.key\n", { "CertificateFile=", "KeyFile=" } },
                { "[Classifier]\nDefaultClass=realtime\n\nColour=blue\n", { "classifier.conf:4:", "Colour=" } },
                { "[Rule x]\nMatch=a.*\nWeight=3\n", { "classifier.conf:3:", "Weight=" } },
                { "[Rule]\nMatch=a\n", { "classifier.conf:1:", "needs a name" } },
                { "[Rule x]\nMatch=\n", { "classifier.conf:2:", "at least one topic pattern" } },
                { "[Rule x]\nMatch=a b$c\n", { "classifier.conf:2:", "\"b$c\" is not a topic pattern" } },
                { "[Rule x]\nMatch=a\nClass=urgent\n", { "classifier.conf:3:", "\"realtime\" or \"deferred\"" } },
                { "[Rule x]\nMatch=a\nPriority=10\n", { "classifier.conf:3:", "Priority=10" } },
                { "[Rule x]\nMatch=a\nTimeToLive=500ms\n", { "classifier.conf:3:", "TimeToLive=500ms" } },
                { "[Classifier]\nSocket=relative.sock\n", { "classifier.conf:2:", "absolute path" } },
                { "[Classifier]\nSocketMode=0999\n", { "classifier.conf:2:", "octal" } },
                { "[Classifier]\nSocketMode=01777\n", { "classifier.conf:2:", "octal" } },
                { "[Classifier]\nMaxPayloadSize=65537\n", { "classifier.conf:2:", "MaxPayloadSize=" } },
                { "[Classifier]\nMaxPayloadSize=0\n", { "classifier.conf:2:", "MaxPayloadSize=" } },
                { "[Storage]\nCommitInterval=2s\n", { "classifier.conf:2:", "between 1ms and 1s" } },
                { "[Storage]\nOutboxPriorityMaxSize=10:1M\n", { "classifier.conf:2:", "priority \"10\"" } },
                { "[Storage]\nOutboxPriorityMaxSize=3:0\n", { "classifier.conf:2:", "size \"0\"" } },
                { "[Storage]\nOutboxPriorityMaxSize=3\n", { "classifier.conf:2:", "PRIORITY:SIZE" } },
                { "[Uplink]\nURL=ftp://example.com/\n", { "classifier.conf:2:", "URL" } },
                { "[Uplink]\nMaxInflight=0\n", { "classifier.conf:2:", "between 1 and 16" } },
                { "[Storage]\n[Uplink]\nBatchMaxSize=1\n", { "classifier.conf:3:", "BatchMaxSize=1" } },
        };

        clear_env();
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                ClassifierConfig c = { .n_rules = 12345 };
                TgConfError err;
                int r;

                r = load_text(cases[i].text, &c, &err);
                if (r != -EBADMSG)
                        fprintf(stderr, "input: %s\n", cases[i].text);
                assert_eq(r, -EBADMSG);
                for (size_t k = 0; k < ELEMENTSOF(cases[i].expect) && cases[i].expect[k]; k++)
                        assert_contains(err.text, cases[i].expect[k]);
                assert_eq(c.n_rules, (size_t) 12345); /* *ret untouched */
        }

        /* In a drop-in, the message names the drop-in. */
        {
                TgTestConfDir d = {};
                ClassifierConfig c;
                TgConfError err = {};

                tg_test_confdir_init(&d, "classifier", "[Rule x]\nMatch=a.*\n");
                tg_test_confdir_dropin(&d, "20-typo.conf", "[Rule x]\nClas=realtime\n");
                assert_eq(classifier_config_load(d.path, &c, &err), -EBADMSG);
                assert_contains(err.text, "classifier.conf.d/20-typo.conf:2:");
                assert_contains(err.text, "Clas=");
                tg_test_confdir_done(&d);
        }
}

/*
 * A bracket expression matches one character of a set: none of its members
 * is a literal character. Regression test: literal_chars() once counted them,
 * so "vehicle.[sS]peed" outscored "vehicle.speed*" (13 literal characters)
 * although it has only 12.
 */
static void test_match_bracket_not_literal(void) {
        ClassifierConfig c;
        TgConfError err;

        assert_ok(load_text("[Rule speed]\nMatch=vehicle.speed*\nClass=realtime\n"
                            "[Rule any-case]\nMatch=vehicle.[sS]peed\nClass=deferred\n",
                            &c, &err));
        expect_class(&c, "vehicle.Speed", "any-case", CLASS_DEFERRED);
        expect_class(&c, "vehicle.speed", "speed", CLASS_REALTIME);
        classifier_config_done(&c);

        /* "[!0-9]" and "[]x]" (a leading ']' is a member) weigh like '?': ties, the first wins. */
        assert_ok(load_text("[Rule q]\nMatch=a.?b\n[Rule neg]\nMatch=a.[!0-9]b\n[Rule bracket]\nMatch=a.[]x]b\n",
                            &c, &err));
        expect_class(&c, "a.xb", "q", CLASS_DEFERRED);
        classifier_config_done(&c);
        assert_ok(load_text("[Rule bracket]\nMatch=a.[]x]b\n[Rule q]\nMatch=a.?b\n", &c, &err));
        expect_class(&c, "a.xb", "bracket", CLASS_DEFERRED);
        expect_class(&c, "a.]b", "bracket", CLASS_DEFERRED);
        classifier_config_done(&c);
        /* Two literal characters ("ab*") beat one (the "." among brackets). */
        assert_ok(load_text("[Rule sets]\nMatch=[a-z][a-z].[a-z]*\n[Rule lit]\nMatch=ab*\n", &c, &err));
        expect_class(&c, "ab.c", "lit", CLASS_DEFERRED);
        classifier_config_done(&c);
}

TG_TEST_MAIN(TEST(shipped_default), TEST(shipped_comments_are_defaults), TEST(every_key),
             TEST(defaults_and_environment), TEST(match_most_literal), TEST(match_ties),
             TEST(dropin_changes_one_key), TEST(rejected), TEST(match_bracket_not_literal));
