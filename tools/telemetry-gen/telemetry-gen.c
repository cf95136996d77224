/* SPDX-License-Identifier: MIT */

/*
 * tollgate-telemetry-gen: plays a car's telemetry into the classifier
 * through libtollgate-producer, for benchmarks and end-to-end tests.
 * Payloads are JSON whose values evolve like the signals they stand for
 * (gen-model.c, gen-topics.c), so compression figures measured downstream
 * are honest. See docs/telemetry-gen.md.
 */

#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>

#include "gen-topics.h"
#include "tg-macro.h"
#include "tg-record.h"
#include "tollgate-producer.h"

#define FLUSH_TIMEOUT_USEC (30 * USEC_PER_SEC)
/* Paced runs sleep to absolute deadlines on this grid: at 300k records/s a
 * burst is 300 records, not one sleep per record. */
#define BURST_NSEC UINT64_C(1000000)
/* Read ACK/ERROR frames after this many frames, so that the classifier (which
 * never blocks on a producer) does not drop an ERROR on a full socket. */
#define PROCESS_EVERY_FRAMES 16
/* Check the clock (for --duration) at least this often, in records. */
#define CLOCK_CHECK_MASK 1023
/* --timestamp=sim starts the simulated clock at 2024-05-01T08:00:00Z. */
#define SIM_EPOCH_USEC (UINT64_C(1714550400) * USEC_PER_SEC)
#define NSEC_PER_SEC UINT64_C(1000000000)
#define REJECTIONS_LOGGED_MAX 5

typedef struct Options {
        const char *socket;
        uint64_t records;  /* 0: no limit */
        double duration;   /* seconds, 0: no limit */
        double rate;       /* records/s, 0: as fast as possible */
        bool rate_set;
        GenMix mix;
        uint64_t seed;
        bool seed_set;
        uint64_t flush_every;
        bool json;
        bool dry_run;
        bool sim_timestamps;
        bool verbose;
        const char *dump;
} Options;

typedef struct Run {
        const Options *opts;
        Gen gen;
        TgProducer *producer;
        FILE *dump;
        uint64_t records;
        uint64_t record_bytes;
        uint64_t elapsed_ns;   /* start → final flush returned */
        uint64_t send_ns;      /* start → last record added */
        bool acknowledged;
        bool failed;
        unsigned rejections_logged;
        uint64_t rejected;
        const char *socket_path;
        uint16_t topic_len[_GEN_TOPIC_MAX];
        /* --dry-run: records are encoded here instead of into the producer's frame. */
        size_t sink_size;
        uint8_t sink[TG_PRODUCER_FRAME_SIZE];
} Run;

static volatile sig_atomic_t stop_requested;

static void on_signal(_unused_ int sig) {
        stop_requested = 1;
}

static int _printf_(2, 3) log_error_errno(int r, const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "%s: ", program_invocation_short_name);
        errno = r < 0 ? -r : r;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return r;
}

static uint64_t now_nsec(clockid_t clock) {
        struct timespec ts;

        (void) clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

static void help(void) {
        printf("%s [OPTIONS...]\n\n"
               "Play a car's telemetry into the Tollgate classifier.\n\n"
               "  -h --help               Show this help\n"
               "     --socket=PATH        Classifier socket (default: $TOLLGATE_TELEMETRY_SOCKET,\n"
               "                          else %s)\n"
               "  -n --records=N          Stop after N records\n"
               "  -d --duration=SECONDS   Stop after this long (with --records: whichever comes first;\n"
               "                          with neither, run until SIGINT/SIGTERM)\n"
               "  -r --rate=R             Records per second, 0 = as fast as possible (default 0;\n"
               "                          --mix=drive without --rate plays in real time)\n"
               "  -m --mix=MIX            reference: 20 %% real-time / 80 %% deferred by payload bytes\n"
               "                          drive: a drive at realistic per-topic frequencies\n"
               "                          (default: reference)\n"
               "  -s --seed=N             Seed for the payloads (default: random, printed)\n"
               "     --flush-every=N      Flush (wait for the classifier's ACK) every N records\n"
               "                          (default 0: only at the end)\n"
               "     --timestamp=now|sim  Record timestamps: CLOCK_REALTIME when added (default),\n"
               "                          or the simulated clock from 2024-05-01T08:00:00Z\n"
               "     --dry-run            Generate and encode records, but do not connect\n"
               "     --dump=PATH          Also write \"TOPIC<TAB>PAYLOAD\" lines to PATH (- = stdout)\n"
               "     --json               Print the summary as one JSON object\n"
               "  -v --verbose            Add per-topic lines to the summary table\n"
               "\nExits 1 if the classifier did not acknowledge every record within 30 s of the\n"
               "final flush, or rejected any.\n",
               program_invocation_short_name, TG_PRODUCER_DEFAULT_SOCKET);
}

static int parse_u64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_nonnegative(const char *s, double *ret) {
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_argv(int argc, char *argv[], Options *o) {
        enum {
                ARG_SOCKET = 0x100,
                ARG_FLUSH_EVERY,
                ARG_TIMESTAMP,
                ARG_DRY_RUN,
                ARG_DUMP,
                ARG_JSON,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "records", required_argument, NULL, 'n' },
                { "duration", required_argument, NULL, 'd' },
                { "rate", required_argument, NULL, 'r' },
                { "mix", required_argument, NULL, 'm' },
                { "seed", required_argument, NULL, 's' },
                { "flush-every", required_argument, NULL, ARG_FLUSH_EVERY },
                { "timestamp", required_argument, NULL, ARG_TIMESTAMP },
                { "dry-run", no_argument, NULL, ARG_DRY_RUN },
                { "dump", required_argument, NULL, ARG_DUMP },
                { "json", no_argument, NULL, ARG_JSON },
                { "verbose", no_argument, NULL, 'v' },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "hn:d:r:m:s:v", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_SOCKET:
                        o->socket = optarg;
                        break;
                case 'n':
                        if (parse_u64(optarg, &o->records) < 0)
                                return log_error_errno(-EINVAL, "Invalid --records=: %s", optarg);
                        break;
                case 'd':
                        if (parse_nonnegative(optarg, &o->duration) < 0)
                                return log_error_errno(-EINVAL, "Invalid --duration=: %s", optarg);
                        break;
                case 'r':
                        if (parse_nonnegative(optarg, &o->rate) < 0)
                                return log_error_errno(-EINVAL, "Invalid --rate=: %s", optarg);
                        o->rate_set = true;
                        break;
                case 'm':
                        o->mix = gen_mix_from_string(optarg);
                        if ((int) o->mix < 0)
                                return log_error_errno(-EINVAL, "Unknown --mix=%s (reference, drive).", optarg);
                        break;
                case 's':
                        if (parse_u64(optarg, &o->seed) < 0)
                                return log_error_errno(-EINVAL, "Invalid --seed=: %s", optarg);
                        o->seed_set = true;
                        break;
                case ARG_FLUSH_EVERY:
                        if (parse_u64(optarg, &o->flush_every) < 0)
                                return log_error_errno(-EINVAL, "Invalid --flush-every=: %s", optarg);
                        break;
                case ARG_TIMESTAMP:
                        if (streq(optarg, "now"))
                                o->sim_timestamps = false;
                        else if (streq(optarg, "sim"))
                                o->sim_timestamps = true;
                        else
                                return log_error_errno(-EINVAL, "Unknown --timestamp=%s (now, sim).", optarg);
                        break;
                case ARG_DRY_RUN:
                        o->dry_run = true;
                        break;
                case ARG_DUMP:
                        o->dump = optarg;
                        break;
                case ARG_JSON:
                        o->json = true;
                        break;
                case 'v':
                        o->verbose = true;
                        break;
                case '?':
                        return -EINVAL;
                default:
                        abort();
                }
        if (optind < argc)
                return log_error_errno(-EINVAL, "Unexpected argument: %s", argv[optind]);
        return 1;
}

/* When record n is due, in ns after the start; 0: now. */
static inline uint64_t due_nsec(const Run *run, uint64_t n) {
        const Options *o = run->opts;

        if (o->rate_set)
                return o->rate > 0 ? (uint64_t) ((double) n * (1e9 / o->rate)) : 0;
        if (o->mix == GEN_MIX_DRIVE)
                return (uint64_t) (gen_next_time(&run->gen) * 1e9);
        return 0;
}

/* --dry-run: what tg_producer_add() does, minus the socket. */
static int sink_add(Run *run, const char *topic, uint16_t topic_len, uint64_t ts, const char *payload, size_t size) {
        TgRecord rec = {
                .timestamp_usec = ts,
                .topic = topic,
                .topic_len = topic_len,
                .payload = (const uint8_t *) payload,
                .payload_len = (uint32_t) size,
        };

        if (tg_topic_validate(topic, strlen(topic)) != TG_RECORD_OK)
                return -EINVAL;
        if (run->sink_size + tg_record_size(&rec) > sizeof run->sink)
                run->sink_size = 0;
        run->sink_size += tg_record_encode(run->sink + run->sink_size, &rec);
        return 0;
}

/* The first few rejections are explained; the summary counts them all. */
static void log_rejection(Run *run) {
        run->failed = true;
        if (run->rejections_logged++ < REJECTIONS_LOGGED_MAX)
                log_error_errno(-EBADMSG, "Classifier rejected records: %s%s", tg_producer_last_error(run->producer),
                                run->rejections_logged == REJECTIONS_LOGGED_MAX ? " (further rejections not shown)" :
                                                                                  "");
}

static int process_replies(Run *run) {
        int r = tg_producer_process(run->producer);

        if (r == -EBADMSG) {
                log_rejection(run);
                return 0;
        }
        if (r < 0)
                return log_error_errno(r, "Cannot read from the classifier: %m");
        return 0;
}

static int flush(Run *run) {
        int r = tg_producer_flush(run->producer, FLUSH_TIMEOUT_USEC);

        if (r == -EBADMSG) {
                log_rejection(run);
                return 0;
        }
        if (r == -ETIMEDOUT)
                return log_error_errno(r, "Classifier did not acknowledge all records within %" PRIu64 " s.",
                                       FLUSH_TIMEOUT_USEC / USEC_PER_SEC);
        if (r < 0)
                return log_error_errno(r, "Flush failed: %m");
        return 0;
}

static int play(Run *run, uint64_t start) {
        const Options *o = run->opts;
        uint64_t duration_ns = (uint64_t) (o->duration * 1e9), now = 0, n = 0;
        uint32_t processed_seq = 0;
        char buf[GEN_BUFFER_SIZE];
        int r;

        for (;;) {
                GenTopicId id;
                uint64_t due, ts;
                size_t size;

                if (stop_requested || (o->records > 0 && n >= o->records))
                        break;
                due = due_nsec(run, n);
                if (due > now || (n & CLOCK_CHECK_MASK) == 0) {
                        now = now_nsec(CLOCK_MONOTONIC) - start;
                        if (duration_ns > 0 && now >= duration_ns)
                                break;
                        if (due > now) {
                                /* Sleep to the burst boundary after `due`, but not past the end. */
                                uint64_t wake = (due + BURST_NSEC - 1) / BURST_NSEC * BURST_NSEC;
                                struct timespec ts_wake;

                                if (duration_ns > 0)
                                        wake = MIN(wake, duration_ns);
                                wake += start;
                                ts_wake = (struct timespec) { .tv_sec = (time_t) (wake / NSEC_PER_SEC),
                                                              .tv_nsec = (long) (wake % NSEC_PER_SEC) };
                                /* Going idle: what is buffered goes out now, as a paced
                                 * producer must, or real-time data would wait for a full frame. */
                                if (run->producer) {
                                        r = tg_producer_send(run->producer);
                                        if (r < 0)
                                                return log_error_errno(r, "Cannot send to the classifier: %m");
                                }
                                (void) clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts_wake, NULL);
                                continue;
                        }
                }

                size = gen_next(&run->gen, &id, buf);
                if (run->dump)
                        fprintf(run->dump, "%s\t%.*s\n", gen_topics[id].name, (int) size, buf);

                /* Latency at the TSP is arrival − timestamp: take it last. */
                ts = o->sim_timestamps ? SIM_EPOCH_USEC + (uint64_t) (run->gen.t * 1e6)
                                       : now_nsec(CLOCK_REALTIME) / NSEC_PER_USEC;
                if (o->dry_run)
                        r = sink_add(run, gen_topics[id].name, run->topic_len[id], ts, buf, size);
                else
                        r = tg_producer_add(run->producer, gen_topics[id].name, ts, buf, size);
                if (r < 0)
                        return log_error_errno(r, "Cannot hand record to the classifier: %m");
                n++;
                run->records = n;
                run->record_bytes += TG_RECORD_HEADER_SIZE + run->topic_len[id] + size;

                if (o->dry_run)
                        continue;
                if (o->flush_every > 0 && n % o->flush_every == 0) {
                        r = flush(run);
                        if (r < 0)
                                return r;
                        processed_seq = tg_producer_sent_seq(run->producer);
                } else if (tg_producer_sent_seq(run->producer) - processed_seq >= PROCESS_EVERY_FRAMES) {
                        r = process_replies(run);
                        if (r < 0)
                                return r;
                        processed_seq = tg_producer_sent_seq(run->producer);
                }
        }
        return 0;
}

static void print_json(const Run *run) {
        const Options *o = run->opts;
        const Gen *g = &run->gen;
        double secs = (double) run->elapsed_ns / 1e9;

        printf("{\"mix\":\"%s\",\"seed\":%" PRIu64 ",\"dry_run\":%s,\"socket\":", gen_mix_to_string(o->mix), o->seed,
               o->dry_run ? "true" : "false");
        if (run->socket_path)
                printf("\"%s\"", run->socket_path);
        else
                printf("null");
        printf(",\"records\":%" PRIu64 ",\"payload_bytes\":%" PRIu64 ",\"record_bytes\":%" PRIu64,
               run->records, g->class_stats[GEN_REALTIME].bytes + g->class_stats[GEN_DEFERRED].bytes,
               run->record_bytes);
        for (unsigned c = 0; c < _GEN_CLASS_MAX; c++) {
                const GenStats *s = &g->class_stats[c];
                double share = c == GEN_REALTIME ? gen_realtime_share(g) : s->bytes > 0 ? 1 - gen_realtime_share(g) : 0;

                printf(",\"%s\":{\"records\":%" PRIu64 ",\"payload_bytes\":%" PRIu64 ",\"byte_share\":%.4f}",
                       gen_class_to_string(c), s->records, s->bytes, share);
        }
        printf(",\"elapsed_seconds\":%.6f,\"send_seconds\":%.6f,\"records_per_second\":%.1f,\"acknowledged\":%s,"
               "\"rejected_records\":%" PRIu64 ",\"topics\":{",
               secs, (double) run->send_ns / 1e9, secs > 0 ? (double) run->records / secs : 0,
               o->dry_run ? "null" : run->acknowledged ? "true" : "false", run->rejected);
        for (unsigned i = 0; i < _GEN_TOPIC_MAX; i++) {
                const GenStats *s = &g->stats[i];
                printf("%s\"%s\":{\"class\":\"%s\",\"weight\":%.6f,\"records\":%" PRIu64
                       ",\"payload_bytes\":%" PRIu64 ",\"min\":%u,\"max\":%u}",
                       i > 0 ? "," : "", gen_topics[i].name, gen_class_to_string(gen_topics[i].class),
                       gen_topic_weight(g, i), s->records, s->bytes, s->min, s->max);
        }
        printf("}}\n");
}

static void print_table(const Run *run) {
        const Options *o = run->opts;
        const Gen *g = &run->gen;
        double secs = (double) run->elapsed_ns / 1e9, rate;
        uint64_t bytes = g->class_stats[GEN_REALTIME].bytes + g->class_stats[GEN_DEFERRED].bytes;

        printf("%s mix, seed %" PRIu64 ", %s\n", gen_mix_to_string(o->mix), o->seed,
               o->dry_run ? "dry run" : run->socket_path);
        if (o->verbose) {
                printf("%-28s %8s %8s %10s %12s %5s %5s %5s\n", "TOPIC", "CLASS", "WEIGHT", "RECORDS", "PAYLOAD",
                       "MIN", "AVG", "MAX");
                for (unsigned i = 0; i < _GEN_TOPIC_MAX; i++) {
                        const GenStats *s = &g->stats[i];
                        printf("%-28s %8s %7.3f%% %10" PRIu64 " %12" PRIu64 " %5u %5.0f %5u\n", gen_topics[i].name,
                               gen_class_to_string(gen_topics[i].class), 100 * gen_topic_weight(g, i), s->records,
                               s->bytes, s->min, s->records > 0 ? (double) s->bytes / (double) s->records : 0, s->max);
                }
        }
        printf("%-10s %12s %14s %8s\n", "CLASS", "RECORDS", "PAYLOAD B", "SHARE");
        for (unsigned c = 0; c < _GEN_CLASS_MAX; c++) {
                const GenStats *s = &g->class_stats[c];
                printf("%-10s %12" PRIu64 " %14" PRIu64 " %7.2f%%\n", gen_class_to_string(c), s->records, s->bytes,
                       bytes > 0 ? 100.0 * (double) s->bytes / (double) bytes : 0);
        }
        printf("%-10s %12" PRIu64 " %14" PRIu64 "  (TGR1 record bytes %" PRIu64 ")\n", "total", run->records, bytes,
               run->record_bytes);
        rate = secs > 0 ? (double) run->records / secs : 0;
        printf("%.3f s, %.*f records/s %s, %" PRIu64 " rejected\n", secs, rate < 100 ? 2 : 0, rate,
               o->dry_run ? "generated" : run->acknowledged ? "acknowledged" : "(NOT all acknowledged)", run->rejected);
}

static int run_main(int argc, char *argv[]) {
        static Options o = { .mix = GEN_MIX_REFERENCE };
        static Run run; /* the dry-run sink makes it big */
        struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESETHAND };
        uint64_t start;
        int r;

        r = parse_argv(argc, argv, &o);
        if (r <= 0)
                return r;
        if (!o.seed_set && getrandom(&o.seed, sizeof o.seed, 0) != sizeof o.seed)
                o.seed = now_nsec(CLOCK_REALTIME);
        /* Keep seeds printable and re-typable as JSON numbers. */
        if (!o.seed_set)
                o.seed &= (UINT64_C(1) << 53) - 1;

        run.opts = &o;
        for (unsigned i = 0; i < _GEN_TOPIC_MAX; i++)
                run.topic_len[i] = (uint16_t) strlen(gen_topics[i].name);
        gen_init(&run.gen, o.mix, o.seed);

        if (o.dump) {
                run.dump = streq(o.dump, "-") ? stdout : fopen(o.dump, "we");
                if (!run.dump)
                        return log_error_errno(negative_errno(), "Cannot open %s: %m", o.dump);
        }
        if (!o.dry_run) {
                run.socket_path = o.socket ?: getenv("TOLLGATE_TELEMETRY_SOCKET") ?: TG_PRODUCER_DEFAULT_SOCKET;
                r = tg_producer_connect(run.socket_path, &run.producer);
                if (r < 0)
                        return log_error_errno(r, "Cannot connect to %s: %m", run.socket_path);
        }

        (void) sigaction(SIGINT, &sa, NULL);
        (void) sigaction(SIGTERM, &sa, NULL);

        start = now_nsec(CLOCK_MONOTONIC);
        r = play(&run, start);
        run.send_ns = now_nsec(CLOCK_MONOTONIC) - start;
        if (!o.dry_run) {
                /* Also after SIGINT: the summary says whether everything was committed. */
                if (r >= 0)
                        r = flush(&run);
                run.acknowledged = r >= 0 && !run.failed;
                run.rejected = tg_producer_rejected_records(run.producer);
                tg_producer_free(run.producer);
        }
        run.elapsed_ns = now_nsec(CLOCK_MONOTONIC) - start;

        if (run.dump && run.dump != stdout)
                fclose(run.dump);
        else if (run.dump)
                fflush(stdout);
        if (o.json)
                print_json(&run);
        else
                print_table(&run);
        if (r < 0)
                return r;
        return run.failed || run.rejected > 0 ? -EBADMSG : 0;
}

int main(int argc, char *argv[]) {
        return run_main(argc, argv) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
