/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <sys/stat.h>

#include "tg-conf.h"
#include "tg-test.h"

/* A configuration shaped like a daemon's: one plain section with every
 * standard value type, and "[Rule NAME]" sections created on demand. */
typedef struct TestRule {
        char *name;
        char *target;
        uint64_t limit;
} TestRule;

typedef struct TestConfig {
        char *name;
        bool enabled;
        uint64_t count;
        unsigned level;
        uint64_t size;
        uint64_t timeout_usec;
        uint64_t interval_usec;
        TestRule rules[8];
        size_t n_rules;
        unsigned lookups;
} TestConfig;

static const TgConfRange range_count = { .min = 1, .max = 100 };
static const TgConfRange range_size = { .min = 1024, .max = UINT64_C(1) << 30 };
static const TgConfRange range_interval = { .min = USEC_PER_MSEC, .max = USEC_PER_SEC, .unit_usec = USEC_PER_MSEC };

static const TgConfItem items[] = {
        { "Main", "Name", tg_conf_parse_string, offsetof(TestConfig, name), NULL },
        { "Main", "Enabled", tg_conf_parse_bool, offsetof(TestConfig, enabled), NULL },
        { "Main", "Count", tg_conf_parse_uint64, offsetof(TestConfig, count), &range_count },
        { "Main", "Level", tg_conf_parse_unsigned, offsetof(TestConfig, level), NULL },
        { "Main", "Size", tg_conf_parse_size, offsetof(TestConfig, size), &range_size },
        { "Main", "Timeout", tg_conf_parse_timespan, offsetof(TestConfig, timeout_usec), NULL },
        { "Main", "Interval", tg_conf_parse_timespan, offsetof(TestConfig, interval_usec), &range_interval },
        { "Rule", "Target", tg_conf_parse_string, offsetof(TestRule, target), NULL },
        { "Rule", "Limit", tg_conf_parse_size, offsetof(TestRule, limit), NULL },
};

static void *lookup(void *userdata, const char *section, const char *arg, char *reason, size_t reason_size) {
        TestConfig *c = userdata;

        c->lookups++;
        assert_streq(section, "Rule");
        if (streq(arg, "forbidden")) {
                snprintf(reason, reason_size, "this rule name is reserved");
                return NULL;
        }
        for (size_t i = 0; i < c->n_rules; i++)
                if (streq(c->rules[i].name, arg))
                        return &c->rules[i];
        assert_se(c->n_rules < ELEMENTSOF(c->rules));
        c->rules[c->n_rules].name = strdup(arg);
        assert_se(c->rules[c->n_rules].name);
        return &c->rules[c->n_rules++];
}

static const char *const arg_sections[] = { "Rule", NULL };

static const TgConfTable table = {
        .items = items,
        .n_items = ELEMENTSOF(items),
        .arg_sections = arg_sections,
        .lookup = lookup,
};

static void config_done(TestConfig *c) {
        free(c->name);
        for (size_t i = 0; i < c->n_rules; i++) {
                free(c->rules[i].name);
                free(c->rules[i].target);
        }
        *c = (TestConfig) {};
}

static const TestRule *find_rule(const TestConfig *c, const char *name) {
        for (size_t i = 0; i < c->n_rules; i++)
                if (streq(c->rules[i].name, name))
                        return &c->rules[i];
        return NULL;
}

static int parse_string(const char *text, TestConfig *c, TgConfError *err) {
        *err = (TgConfError) {};
        return tg_conf_parse_buffer(text, strlen(text), "test.conf", &table, c, err);
}

static void test_every_type(void) {
        static const char text[] =
                "# A comment with # and ; and = in it\n"
                "; another comment = still a comment\n"
                "\n"
                "   \t\n"
                "[Main]\n"
                "Name = hello world \n"
                "\tEnabled=yes\n"
                "Count=42\n"
                "Level=4294967295\n"
                "Size=64K\n"
                "Timeout=1h 30min\n"
                "Interval=250\n" /* bare number in this key's unit: ms */
                "  # indented comment\n"
                "[Rule speed]\n"
                "Target=vehicle.speed\n"
                "Limit=1M\n"
                "[ Rule   other ]\n"
                "Target=x=y\n"
                "[Rule speed]\n"
                "Limit=2M\n";
        TestConfig c = {};
        TgConfError err;

        assert_ok(parse_string(text, &c, &err));
        assert_streq(c.name, "hello world");
        assert_se(c.enabled);
        assert_eq(c.count, UINT64_C(42));
        assert_eq(c.level, 4294967295u);
        assert_eq(c.size, UINT64_C(65536));
        assert_eq(c.timeout_usec, 5400 * USEC_PER_SEC);
        assert_eq(c.interval_usec, 250 * USEC_PER_MSEC);
        assert_eq(c.n_rules, (size_t) 2);
        assert_eq(c.lookups, 3u);
        assert_streq(find_rule(&c, "speed")->target, "vehicle.speed");
        assert_eq(find_rule(&c, "speed")->limit, UINT64_C(2) << 20); /* reopened section updates the same rule */
        assert_streq(find_rule(&c, "other")->target, "x=y");
        assert_eq(find_rule(&c, "other")->limit, UINT64_C(0));
        config_done(&c);

        /* A later assignment wins; an empty string value resets to the default (NULL). */
        assert_ok(parse_string("[Main]\nName=a\nName=b\n", &c, &err));
        assert_streq(c.name, "b");
        assert_ok(parse_string("[Main]\nName=\n", &c, &err));
        assert_se(c.name == NULL);
        config_done(&c);

        /* An empty buffer and one without a final newline are fine. */
        assert_ok(tg_conf_parse_buffer("", 0, "empty.conf", &table, &c, &err));
        assert_ok(parse_string("[Main]\nCount=7", &c, &err));
        assert_eq(c.count, UINT64_C(7));
        config_done(&c);
}

static void test_crlf_and_long_lines(void) {
        char long_value[301], long_comment[5001], *text;
        TestConfig c = {};
        TgConfError err;

        assert_ok(parse_string("[Main]\r\nName=dos\r\nEnabled=off\r\n\r\n; c\r\n[Rule r1]\r\nTarget=t\r\n", &c, &err));
        assert_streq(c.name, "dos");
        assert_se(!c.enabled);
        assert_streq(find_rule(&c, "r1")->target, "t");
        config_done(&c);

        memset(long_value, 'v', sizeof long_value - 1);
        long_value[sizeof long_value - 1] = '\0';
        memset(long_comment, 'c', sizeof long_comment - 1);
        long_comment[0] = '#';
        long_comment[sizeof long_comment - 1] = '\0';
        assert_se(asprintf(&text, "%s\n[Main]\nName=%s\r\nCount=3\n", long_comment, long_value) > 0);
        assert_ok(parse_string(text, &c, &err));
        assert_eq(strlen(c.name), (size_t) 300);
        assert_streq(c.name, long_value);
        assert_eq(c.count, UINT64_C(3));
        config_done(&c);
        free(text);
}

/* Each rejected input: its errno and the pieces the message must name. */
static void test_errors(void) {
        static const struct {
                const char *text;
                int r;
                const char *expect[3];
        } cases[] = {
                { "[Main]\nName=x\n[Bogus]\n", -EINVAL, { "test.conf:3:", "unknown section [Bogus]" } },
                { "[Main]\n\nNope=1\n", -EINVAL, { "test.conf:3:", "unknown key Nope=", "[Main]" } },
                { "[Rule r]\nName=x\n", -EINVAL, { "test.conf:2:", "unknown key Name=", "[Rule r]" } },
                { "# first\nName=x\n", -EINVAL, { "test.conf:2:", "Name= outside of any [Section]" } },
                { "[Main]\nName\n", -EINVAL, { "test.conf:2:", "expected Key=Value", "\"Name\"" } },
                { "[Main]\nEnabled=maybe\n", -EINVAL, { "test.conf:2:", "Enabled=maybe", "expected a boolean" } },
                { "[Main]\nCount=ten\n", -EINVAL, { "test.conf:2:", "Count=ten", "non-negative integer" } },
                { "[Main]\nCount=-1\n", -EINVAL, { "test.conf:2:", "Count=-1" } },
                { "[Main]\nSize=12X\n", -EINVAL, { "test.conf:2:", "Size=12X", "expected a size" } },
                { "[Main]\nTimeout=5 parsecs\n", -EINVAL, { "test.conf:2:", "Timeout=5 parsecs", "time span" } },
                { "[Main]\nCount=101\n", -ERANGE, { "test.conf:2:", "[Main] Count=101", "between 1 and 100" } },
                { "[Main]\nCount=0\n", -ERANGE, { "test.conf:2:", "Count=0", "between 1 and 100" } },
                { "[Main]\nCount=18446744073709551616\n", -ERANGE, { "test.conf:2:", "Count=" } },
                { "[Main]\nLevel=4294967296\n", -ERANGE, { "test.conf:2:", "Level=4294967296" } },
                { "[Main]\nSize=512\n", -ERANGE, { "test.conf:2:", "Size=512", "between 1024 and 1073741824" } },
                { "[Main]\nInterval=2s\n", -ERANGE, { "test.conf:2:", "Interval=2s", "between 1ms and 1s" } },
                { "[Rule]\nTarget=x\n", -EINVAL, { "test.conf:1:", "section [Rule] needs a name" } },
                { "[Rule bad name]\n", -EINVAL, { "test.conf:1:", "section [Rule] needs a name" } },
                { "[Rule b@d]\n", -EINVAL, { "test.conf:1:", "needs a name" } },
                { "[Main extra]\n", -EINVAL, { "test.conf:1:", "section [Main] takes no name" } },
                { "[Main\n", -EINVAL, { "test.conf:1:", "without closing ']'" } },
                { "[Main]\n[Rule forbidden]\n", -EINVAL, { "test.conf:2:", "[Rule forbidden]", "this rule name is reserved" } },
                { "\n\n\n[Main]\nName=ok\r\nEnabled=2\r\n", -EINVAL, { "test.conf:6:", "Enabled=2" } },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                TestConfig c = {};
                TgConfError err;
                int r;

                r = parse_string(cases[i].text, &c, &err);
                if (r != cases[i].r)
                        fprintf(stderr, "input: %s\n", cases[i].text);
                assert_eq(r, cases[i].r);
                for (size_t k = 0; k < ELEMENTSOF(cases[i].expect) && cases[i].expect[k]; k++)
                        assert_contains(err.text, cases[i].expect[k]);
                config_done(&c);
        }

        /* A NULL error pointer is allowed. */
        {
                TestConfig c = {};
                assert_eq(tg_conf_parse_buffer("[X]\n", 4, "n", &table, &c, NULL), -EINVAL);
        }

        /* A bad value is quoted, but only its first 128 bytes. */
        {
                char value[400], *text;
                TestConfig c = {};
                TgConfError err;

                memset(value, '9', sizeof value - 1);
                value[sizeof value - 1] = '\0';
                assert_se(asprintf(&text, "[Main]\nCount=%s\n", value) > 0);
                assert_eq(parse_string(text, &c, &err), -ERANGE);
                assert_contains(err.text, "test.conf:2: [Main] Count=999999");
                assert_se(strstr(err.text, value) == NULL);
                free(text);
        }
}

static void test_nul_byte(void) {
        static const char text[] = "[Main]\nName=a\0b\n";
        TestConfig c = {};
        TgConfError err = {};

        assert_eq(tg_conf_parse_buffer(text, sizeof text - 1, "nul.conf", &table, &c, &err), -EINVAL);
        assert_contains(err.text, "nul.conf");
        assert_contains(err.text, "NUL byte");
        assert_se(c.name == NULL);
}

static void write_conf(const char *dir, const char *name, const char *text) {
        _cleanup_free_ char *p = tg_test_path(dir, name);
        tg_test_write_file(p, text, strlen(text));
}

static void test_load_dropins(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "x.conf"), *d = tg_test_path(dir, "x.conf.d");
        TestConfig c = {};
        TgConfError err = {};

        write_conf(dir, "x.conf", "[Main]\nName=main\nCount=1\nLevel=1\n[Rule r]\nTarget=main\nLimit=1K\n");
        assert_se(mkdir(d, 0755) == 0);
        /* Written out of order: lexical order must decide, not creation order. */
        write_conf(d, "20-b.conf", "[Main]\nCount=20\nLevel=20\n");
        write_conf(d, "10-a.conf", "[Main]\nName=a\nCount=10\n[Rule r]\nTarget=dropin\n");
        write_conf(d, "30-c.conf", "[Main]\nLevel=30\n[Rule new]\nTarget=n\n");
        /* Not drop-ins: other suffixes, hidden files. */
        write_conf(d, "99-z.conf.bak", "garbage\n");
        write_conf(d, "README", "garbage\n");
        write_conf(d, ".hidden.conf", "garbage\n");

        assert_ok(tg_conf_load(path, true, &table, &c, &err));
        assert_streq(c.name, "a");              /* main, then 10-a */
        assert_eq(c.count, UINT64_C(20));       /* 10-a, then 20-b */
        assert_eq(c.level, 30u);                /* 20-b, then 30-c */
        assert_eq(c.n_rules, (size_t) 2);
        assert_streq(find_rule(&c, "r")->target, "dropin");
        assert_eq(find_rule(&c, "r")->limit, UINT64_C(1024)); /* kept from the main file */
        assert_streq(find_rule(&c, "new")->target, "n");
        config_done(&c);

        /* An error in a drop-in names the drop-in and its line. */
        write_conf(d, "25-bad.conf", "# bad\n[Main]\nCount=1000\n");
        assert_eq(tg_conf_load(path, true, &table, &c, &err), -ERANGE);
        assert_contains(err.text, "x.conf.d/25-bad.conf:3:");
        assert_contains(err.text, "Count=1000");
        config_done(&c);
}

static void test_load_missing(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "none.conf"), *d = tg_test_path(dir, "none.conf.d");
        TestConfig c = {};
        TgConfError err = {};

        /* A missing main file is fine unless required ... */
        assert_ok(tg_conf_load(path, false, &table, &c, &err));
        assert_se(c.name == NULL);
        assert_eq(tg_conf_load(path, true, &table, &c, &err), -ENOENT);
        assert_contains(err.text, "none.conf: cannot read");

        /* ... and its drop-ins still apply without it. */
        assert_se(mkdir(d, 0755) == 0);
        write_conf(d, "50-only.conf", "[Main]\nName=only-dropin\n");
        assert_ok(tg_conf_load(path, false, &table, &c, &err));
        assert_streq(c.name, "only-dropin");
        config_done(&c);
}

static void test_load_nul_and_size(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *nul = tg_test_path(dir, "nul.conf"), *big = tg_test_path(dir, "big.conf"),
                            *max = tg_test_path(dir, "max.conf");
        static const char nul_text[] = "[Main]\nName=x\n\0\n";
        _cleanup_free_ char *buf = NULL;
        TestConfig c = {};
        TgConfError err = {};
        size_t n = TG_CONF_MAX_FILE_SIZE;

        tg_test_write_file(nul, nul_text, sizeof nul_text - 1);
        assert_eq(tg_conf_load(nul, true, &table, &c, &err), -EINVAL);
        assert_contains(err.text, nul);
        assert_contains(err.text, "NUL byte");
        config_done(&c);

        /* Exactly the limit: a comment filling the file, then one setting. */
        buf = malloc(n + 1);
        assert_se(buf);
        memset(buf, '#', n);
        memcpy(buf + n - 16, "\n[Main]\nCount=5\n", 16);
        tg_test_write_file(max, buf, n);
        assert_ok(tg_conf_load(max, true, &table, &c, &err));
        assert_eq(c.count, UINT64_C(5));
        config_done(&c);

        /* One byte more is refused before parsing. */
        buf[n] = '\n';
        tg_test_write_file(big, buf, n + 1);
        assert_eq(tg_conf_load(big, true, &table, &c, &err), -EFBIG);
        assert_contains(err.text, big);
        assert_contains(err.text, "larger than 1048576 bytes");
        assert_eq(c.count, UINT64_C(0));
}

TG_TEST_MAIN(TEST(every_type), TEST(crlf_and_long_lines), TEST(errors), TEST(nul_byte), TEST(load_dropins),
             TEST(load_missing), TEST(load_nul_and_size));
