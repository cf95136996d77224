/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#if __has_include("tg-config.h")
#include "tg-config.h"
#endif
#include "tg-log.h"
#include "tg-parse.h"
#include "tg-tool.h"
#include "tsp-sim.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define DEFAULT_LISTEN "127.0.0.1:8443"
#define DEFAULT_CONTROL "127.0.0.1:8444"
/* Control requests are small; a downlink payload is at most TG_PAYLOAD_MAX. */
#define CONTROL_MAX_BODY ((size_t) TG_PAYLOAD_MAX + 4096)
#define CONTROL_MAX_CONNECTIONS 16

static const char *const mode_names[_TSP_MODE_MAX] = {
        [TSP_MODE_NORMAL] = "normal",   [TSP_MODE_HANG] = "hang",         [TSP_MODE_GARBAGE] = "garbage",
        [TSP_MODE_ERROR] = "error",     [TSP_MODE_REJECT] = "reject",     [TSP_MODE_CLOSE] = "close",
        [TSP_MODE_LOSE_REPLY] = "lose-reply", [TSP_MODE_SLOW] = "slow",
};

typedef struct Options {
        const char *listen;
        const char *control;
        const char *cert;
        const char *key;
        const char *ca;
        const char *db;
        const char *pidfile;
        TspMode mode;
        char *pki_cert, *pki_key, *pki_ca; /* owned, from --pki */
} Options;

static void options_done(Options *o) {
        free(o->pki_cert);
        free(o->pki_key);
        free(o->pki_ca);
}

int tsp_mode_from_string(const char *s, TspMode *ret) {
        uint64_t msec;

        if (startswith(s, "slow:")) {
                if (tg_parse_uint64(s + 5, &msec) < 0 || msec > TSP_MODE_SLOW_MAX_MSEC)
                        return -EINVAL;
                *ret = (TspMode) { TSP_MODE_SLOW, msec };
                return 0;
        }
        for (size_t i = 0; i < _TSP_MODE_MAX; i++)
                if (i != TSP_MODE_SLOW && streq(s, mode_names[i])) {
                        *ret = (TspMode) { (TspModeKind) i, 0 };
                        return 0;
                }
        return -EINVAL;
}

const char *tsp_mode_to_string(const TspMode *m, char buf[static TSP_MODE_STRING_MAX]) {
        if (m->kind == TSP_MODE_SLOW)
                snprintf(buf, TSP_MODE_STRING_MAX, "slow:%" PRIu64, m->slow_msec);
        else
                snprintf(buf, TSP_MODE_STRING_MAX, "%s", mode_names[m->kind]);
        return buf;
}

TspMode tsp_sim_get_mode(TspSim *sim) {
        TspMode m;

        pthread_mutex_lock(&sim->lock);
        m = sim->mode;
        pthread_mutex_unlock(&sim->lock);
        return m;
}

void tsp_sim_set_mode(TspSim *sim, const TspMode *mode) {
        pthread_mutex_lock(&sim->lock);
        sim->mode = *mode;
        pthread_mutex_unlock(&sim->lock);
}

void tsp_sim_log_peer(TspSim *sim, int level, const char *format, ...) {
        char msg[1024];
        unsigned suppressed = 0;
        bool ok;
        va_list ap;

        /* A client sending garbage in a loop must not flood the log. */
        pthread_mutex_lock(&sim->lock);
        ok = tg_ratelimit_check(&sim->log_limit, &suppressed);
        pthread_mutex_unlock(&sim->lock);
        if (!ok)
                return;

        va_start(ap, format);
        vsnprintf(msg, sizeof msg, format, ap);
        va_end(ap);
        if (suppressed > 0)
                tg_log(level, 0, NULL, NULL, "%s (%u similar messages suppressed)", msg, suppressed);
        else
                tg_log(level, 0, NULL, NULL, "%s", msg);
}

static void help(void) {
        printf("Usage: tollgate-tsp-sim [OPTIONS]\n\n"
               "Simulate the telematics service platform (TSP) for the Tollgate real-time uplink:\n"
               "HTTPS with mutual TLS, batches of TGR1 records stored in SQLite, plus a plain-HTTP\n"
               "control API on loopback. See docs/tsp-simulator.md.\n\n"
               "  --listen=ADDR:PORT   TLS listener (default " DEFAULT_LISTEN "; port 0 picks one)\n"
               "  --cert=FILE          server certificate (chain), PEM\n"
               "  --key=FILE           server private key, PEM\n"
               "  --ca=FILE            CA that client certificates must chain to, PEM\n"
               "  --pki=DIR            shorthand for DIR/tsp.pem, DIR/tsp.key, DIR/ca.pem (tollgate-pki)\n"
               "  --db=PATH            SQLite database to store into (created if missing)\n"
               "  --control=ADDR:PORT  control API, loopback only (default " DEFAULT_CONTROL ")\n"
               "  --mode=MODE          normal, hang, garbage, error, reject, close, lose-reply, slow:MS\n"
               "  --pidfile=PATH       write the process id here once both listeners are bound\n"
               "  --log-level=LEVEL    debug, info (default), notice, warning, err\n"
               "  -h, --help           show this help\n"
               "      --version        show the version\n");
}

static char *path_join(const char *dir, const char *file) {
        char *p;

        if (asprintf(&p, "%s/%s", dir, file) < 0)
                return NULL;
        return p;
}

static int parse_argv(int argc, char *argv[], Options *o) {
        enum {
                ARG_LISTEN = 0x100,
                ARG_CERT,
                ARG_KEY,
                ARG_CA,
                ARG_PKI,
                ARG_DB,
                ARG_CONTROL,
                ARG_MODE,
                ARG_PIDFILE,
        };
        static const struct option options[] = {
                { "listen", required_argument, NULL, ARG_LISTEN },
                { "cert", required_argument, NULL, ARG_CERT },
                { "key", required_argument, NULL, ARG_KEY },
                { "ca", required_argument, NULL, ARG_CA },
                { "pki", required_argument, NULL, ARG_PKI },
                { "db", required_argument, NULL, ARG_DB },
                { "control", required_argument, NULL, ARG_CONTROL },
                { "mode", required_argument, NULL, ARG_MODE },
                { "pidfile", required_argument, NULL, ARG_PIDFILE },
                TG_TOOL_OPTIONS,
                {},
        };
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case ARG_LISTEN:
                        o->listen = optarg;
                        break;
                case ARG_CERT:
                        o->cert = optarg;
                        break;
                case ARG_KEY:
                        o->key = optarg;
                        break;
                case ARG_CA:
                        o->ca = optarg;
                        break;
                case ARG_PKI:
                        options_done(o);
                        o->pki_cert = path_join(optarg, "tsp.pem");
                        o->pki_key = path_join(optarg, "tsp.key");
                        o->pki_ca = path_join(optarg, "ca.pem");
                        if (!o->pki_cert || !o->pki_key || !o->pki_ca)
                                return log_error_errno(-ENOMEM, "out of memory");
                        break;
                case ARG_DB:
                        o->db = optarg;
                        break;
                case ARG_CONTROL:
                        o->control = optarg;
                        break;
                case ARG_MODE:
                        if (tsp_mode_from_string(optarg, &o->mode) < 0)
                                return log_error_errno(-EINVAL, "invalid --mode '%s' (see --help)", optarg);
                        break;
                case ARG_PIDFILE:
                        o->pidfile = optarg;
                        break;
                default:
                        r = tg_tool_option(c, optarg, "tollgate-tsp-sim", help);
                        if (r <= 0)
                                return r;
                }

        r = tg_tool_no_arguments(argc, argv);
        if (r < 0)
                return r;

        /* Explicit options win over --pki, whatever their order. */
        o->cert = o->cert ?: o->pki_cert;
        o->key = o->key ?: o->pki_key;
        o->ca = o->ca ?: o->pki_ca;
        if (!o->cert || !o->key || !o->ca)
                return log_error_errno(-EINVAL, "--cert, --key and --ca (or --pki=DIR) are required");
        if (!o->db)
                return log_error_errno(-EINVAL, "--db=PATH is required");
        return 1;
}

/* Write the pid under a temporary name and rename it, so a reader never
 * sees an empty file. */
static int write_pidfile(const char *path) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        char buf[32];
        int n;

        if (asprintf(&tmp, "%s.tmp.%d", path, (int) getpid()) < 0)
                return -ENOMEM;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return negative_errno();
        n = snprintf(buf, sizeof buf, "%d\n", (int) getpid());
        if (write(fd, buf, (size_t) n) != n || rename(tmp, path) < 0) {
                int r = negative_errno();
                (void) unlink(tmp);
                return r;
        }
        return 0;
}

static int run(int argc, char *argv[]) {
        _cleanup_(options_done) Options o = {
                .listen = DEFAULT_LISTEN,
                .control = DEFAULT_CONTROL,
        };
        TspSim sim = {
                .lock = PTHREAD_MUTEX_INITIALIZER,
                .log_limit = TG_RATELIMIT_INIT(USEC_PER_SEC, 50),
        };
        _cleanup_(tsp_store_freep) TspStore *store = NULL;
        _cleanup_(sim_httpd_freep) SimHttpd *uplink = NULL, *control = NULL;
        char mode[TSP_MODE_STRING_MAX];
        sigset_t mask;
        int r, sig;

        r = parse_argv(argc, argv, &o);
        if (r <= 0)
                return r;

        /* Every thread inherits this mask; only sigwait() below takes
         * SIGTERM/SIGINT, so no thread is ever interrupted by them. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        r = pthread_sigmask(SIG_BLOCK, &mask, NULL);
        if (r != 0)
                return log_error_errno(r, "cannot block signals");
        (void) signal(SIGPIPE, SIG_IGN);

        r = tsp_store_open(o.db, &store);
        if (r < 0)
                return r;
        sim.store = store;
        sim.mode = o.mode;

        r = sim_httpd_new(&(SimHttpdConfig) {
                                  .name = "tsp",
                                  .listen = o.listen,
                                  .tls_cert = o.cert,
                                  .tls_key = o.key,
                                  .tls_ca = o.ca,
                                  .server_header = "tollgate-tsp-sim/" PACKAGE_VERSION,
                                  .require_content_length = true,
                                  .handler = tsp_uplink_handle,
                                  .on_request_error = tsp_uplink_request_error,
                                  .on_tls_failure = tsp_uplink_tls_failure,
                                  .userdata = &sim,
                          },
                          &uplink);
        if (r < 0)
                return r;
        sim.uplink = uplink;

        r = sim_httpd_new(&(SimHttpdConfig) {
                                  .name = "control",
                                  .listen = o.control,
                                  .loopback_only = true,
                                  .server_header = "tollgate-tsp-sim/" PACKAGE_VERSION,
                                  .max_connections = CONTROL_MAX_CONNECTIONS,
                                  .max_body_size = CONTROL_MAX_BODY,
                                  .handler = tsp_control_handle,
                                  .userdata = &sim,
                          },
                          &control);
        if (r < 0)
                return r;
        sim.control = control;

        r = sim_httpd_start(uplink);
        if (r < 0)
                return r;
        r = sim_httpd_start(control);
        if (r < 0)
                return r;

        if (o.pidfile) {
                r = write_pidfile(o.pidfile);
                if (r < 0)
                        return log_error_errno(r, "cannot write pidfile %s", o.pidfile);
        }

        log_info("database %s, mode %s", o.db, tsp_mode_to_string(&o.mode, mode));
        (void) sd_notifyf(0, "READY=1\nSTATUS=Listening on %s, control on %s", sim_httpd_address(uplink),
                          sim_httpd_address(control));
        printf("tsp-sim: listening on %s, control on %s\n", sim_httpd_address(uplink), sim_httpd_address(control));
        fflush(stdout);

        for (;;) {
                r = sigwait(&mask, &sig);
                if (r == 0)
                        break;
                if (r != EINTR)
                        return log_error_errno(r, "sigwait failed");
        }

        log_info("received %s, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        (void) sd_notify(0, "STOPPING=1");
        /* Connections first (they use the store), then the store. */
        sim.control = control = sim_httpd_free(control);
        sim.uplink = uplink = sim_httpd_free(uplink);
        if (o.pidfile)
                (void) unlink(o.pidfile);
        return 0;
}

int main(int argc, char *argv[]) {
        int r;

        tg_log_open("tsp-sim", TG_LOG_TARGET_AUTO);
        r = run(argc, argv);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
