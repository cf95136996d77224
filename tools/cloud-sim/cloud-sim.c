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
#include "cloud-sim.h"
#include "tg-log.h"
#include "tg-parse.h"
#include "tg-tool.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define DEFAULT_LISTEN "127.0.0.1:8445"
#define DEFAULT_CONTROL "127.0.0.1:8446"
/* Uploads are car items: a telemetry segment or a file, at most 64 MiB. */
#define API_MAX_BODY ((size_t) 64 * 1024 * 1024)
/* A download queued with its bytes in the request body is held in memory
 * once; larger files are queued with source=PATH, copied in pieces. */
#define CONTROL_MAX_BODY ((size_t) 256 * 1024 * 1024)
#define CONTROL_MAX_CONNECTIONS 16
/* An upload of 64 MiB over a slow link must not hit the request timeout. */
#define API_REQUEST_TIMEOUT_USEC (600 * USEC_PER_SEC)

static const char *const mode_names[_CLOUD_MODE_MAX] = {
        [CLOUD_MODE_NORMAL] = "normal",
        [CLOUD_MODE_HANG] = "hang",
        [CLOUD_MODE_GARBAGE] = "garbage",
        [CLOUD_MODE_ERROR] = "error",
        [CLOUD_MODE_REJECT] = "reject",
        [CLOUD_MODE_CLOSE] = "close",
        [CLOUD_MODE_LOSE_REPLY] = "lose-reply",
        [CLOUD_MODE_SLOW] = "slow",
        [CLOUD_MODE_TRUNCATE] = "truncate",
};

typedef struct Options {
        const char *listen;
        const char *control;
        const char *cert;
        const char *key;
        const char *ca;
        const char *db;
        const char *download_dir;
        const char *pidfile;
        CloudMode mode;
        char *pki_cert, *pki_key, *pki_ca; /* owned, from --pki */
        char *default_download_dir;        /* owned, DB.downloads */
} Options;

static void options_done(Options *o) {
        free(o->pki_cert);
        free(o->pki_key);
        free(o->pki_ca);
        free(o->default_download_dir);
}

bool cloud_id_valid(const char *s, size_t len) {
        if (len < 1 || len > CLOUD_ID_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
                      s[i] == '.' || s[i] == '_' || s[i] == '-'))
                        return false;
        return true;
}

/* ---- modes -------------------------------------------------------------- */

int cloud_mode_from_string(const char *s, CloudMode *ret) {
        uint64_t v;

        if (startswith(s, "slow:")) {
                if (tg_parse_uint64(s + 5, &v) < 0 || v > CLOUD_MODE_SLOW_MAX_MSEC)
                        return -EINVAL;
                *ret = (CloudMode) { CLOUD_MODE_SLOW, v };
                return 0;
        }
        if (startswith(s, "truncate:")) {
                if (tg_parse_uint64(s + 9, &v) < 0)
                        return -EINVAL;
                *ret = (CloudMode) { CLOUD_MODE_TRUNCATE, v };
                return 0;
        }
        for (size_t i = 0; i < _CLOUD_MODE_MAX; i++)
                if (i != CLOUD_MODE_SLOW && i != CLOUD_MODE_TRUNCATE && streq(s, mode_names[i])) {
                        *ret = (CloudMode) { (CloudModeKind) i, 0 };
                        return 0;
                }
        return -EINVAL;
}

const char *cloud_mode_to_string(const CloudMode *m, char buf[static CLOUD_MODE_STRING_MAX]) {
        if (m->kind == CLOUD_MODE_SLOW || m->kind == CLOUD_MODE_TRUNCATE)
                snprintf(buf, CLOUD_MODE_STRING_MAX, "%s:%" PRIu64, mode_names[m->kind], m->arg);
        else
                snprintf(buf, CLOUD_MODE_STRING_MAX, "%s", mode_names[m->kind]);
        return buf;
}

CloudMode cloud_sim_get_mode(CloudSim *sim) {
        CloudMode m;

        pthread_mutex_lock(&sim->lock);
        m = sim->mode;
        pthread_mutex_unlock(&sim->lock);
        return m;
}

void cloud_sim_set_mode(CloudSim *sim, const CloudMode *mode) {
        pthread_mutex_lock(&sim->lock);
        sim->mode = *mode;
        pthread_mutex_unlock(&sim->lock);
}

/* ---- pairs ---------------------------------------------------------------- */

/* Under the lock. */
static ssize_t pair_find(CloudSim *sim, const char *key, const char *gateway) {
        for (size_t i = 0; i < sim->n_pairs; i++)
                if (streq(sim->pairs[i].key, key) && streq(sim->pairs[i].gateway, gateway))
                        return (ssize_t) i;
        return -1;
}

bool cloud_sim_is_paired(CloudSim *sim, const char *key, const char *gateway) {
        bool found;

        pthread_mutex_lock(&sim->lock);
        found = pair_find(sim, key, gateway) >= 0;
        pthread_mutex_unlock(&sim->lock);
        return found;
}

int cloud_sim_pair(CloudSim *sim, const char *key, const char *gateway) {
        CloudPair *grown;
        int r = 1;

        pthread_mutex_lock(&sim->lock);
        if (pair_find(sim, key, gateway) >= 0)
                r = 0;
        else {
                grown = realloc(sim->pairs, (sim->n_pairs + 1) * sizeof *sim->pairs);
                if (grown) {
                        sim->pairs = grown;
                        grown[sim->n_pairs] = (CloudPair) { strdup(key), strdup(gateway) };
                        if (grown[sim->n_pairs].key && grown[sim->n_pairs].gateway)
                                sim->n_pairs++;
                        else {
                                free(grown[sim->n_pairs].key);
                                free(grown[sim->n_pairs].gateway);
                                r = -ENOMEM;
                        }
                } else
                        r = -ENOMEM;
        }
        pthread_mutex_unlock(&sim->lock);
        return r;
}

int cloud_sim_unpair(CloudSim *sim, const char *key, const char *gateway) {
        ssize_t i;

        pthread_mutex_lock(&sim->lock);
        i = pair_find(sim, key, gateway);
        if (i >= 0) {
                free(sim->pairs[i].key);
                free(sim->pairs[i].gateway);
                sim->pairs[i] = sim->pairs[--sim->n_pairs];
        }
        pthread_mutex_unlock(&sim->lock);
        return i >= 0;
}

int cloud_sim_pairs_json(CloudSim *sim, TgBuf *out) {
        int r;

        pthread_mutex_lock(&sim->lock);
        r = tg_buf_append(out, "[", 1);
        for (size_t i = 0; r >= 0 && i < sim->n_pairs; i++)
                /* Both are ids of [A-Za-z0-9._-]: nothing to escape. */
                r = cloud_json_append(out, "%s{\"key\":\"%s\",\"gateway\":\"%s\"}", i > 0 ? "," : "",
                                      sim->pairs[i].key, sim->pairs[i].gateway);
        if (r >= 0)
                r = tg_buf_append(out, "]", 1);
        pthread_mutex_unlock(&sim->lock);
        return r;
}

static void pairs_free(CloudSim *sim) {
        for (size_t i = 0; i < sim->n_pairs; i++) {
                free(sim->pairs[i].key);
                free(sim->pairs[i].gateway);
        }
        free(sim->pairs);
        sim->pairs = NULL;
        sim->n_pairs = 0;
}

/* "KEYID:GATEWAYID" */
static int parse_pair(CloudSim *sim, const char *s) {
        const char *colon = strchr(s, ':');
        _cleanup_free_ char *key = NULL;

        if (!colon || !cloud_id_valid(s, (size_t) (colon - s)) || !cloud_id_valid(colon + 1, strlen(colon + 1)))
                return -EINVAL;
        key = strndup(s, (size_t) (colon - s));
        if (!key)
                return -ENOMEM;
        return cloud_sim_pair(sim, key, colon + 1);
}

/* ---- logging ------------------------------------------------------------- */

void cloud_sim_log_peer(CloudSim *sim, int level, const char *format, ...) {
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

/* ---- command line --------------------------------------------------------- */

static void help(void) {
        printf("Usage: tollgate-cloud-sim [OPTIONS]\n\n"
               "Simulate the carmaker's cloud for the car key's relay (key <-> cloud REST API,\n"
               "docs/key-protocol.md section 5): HTTPS with mutual TLS, uploads and their TGR1\n"
               "records stored in SQLite, downloads served from files, plus a plain-HTTP control\n"
               "API on loopback. See docs/cloud-simulator.md.\n\n"
               "  --listen=ADDR:PORT   TLS listener (default " DEFAULT_LISTEN "; port 0 picks one)\n"
               "  --cert=FILE          server certificate (chain), PEM\n"
               "  --key=FILE           server private key, PEM\n"
               "  --ca=FILE            CA that client (key) certificates must chain to, PEM\n"
               "  --pki=DIR            shorthand for DIR/tsp.pem, DIR/tsp.key, DIR/ca.pem (tollgate-pki)\n"
               "  --db=PATH            SQLite database to store into (created if missing)\n"
               "  --download-dir=DIR   where the bytes of downloads are kept (default PATH.downloads)\n"
               "  --pair=KEYID:GWID    key KEYID may act for gateway GWID (repeatable)\n"
               "  --control=ADDR:PORT  control API, loopback only (default " DEFAULT_CONTROL ")\n"
               "  --mode=MODE          normal, hang, garbage, error, reject, close, lose-reply,\n"
               "                       slow:MS, truncate:BYTES\n"
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

static int parse_argv(int argc, char *argv[], Options *o, CloudSim *sim) {
        enum {
                ARG_LISTEN = 0x100,
                ARG_CERT,
                ARG_KEY,
                ARG_CA,
                ARG_PKI,
                ARG_DB,
                ARG_DOWNLOAD_DIR,
                ARG_PAIR,
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
                { "download-dir", required_argument, NULL, ARG_DOWNLOAD_DIR },
                { "pair", required_argument, NULL, ARG_PAIR },
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
                        free(o->pki_cert);
                        free(o->pki_key);
                        free(o->pki_ca);
                        o->pki_cert = path_join(optarg, "tsp.pem");
                        o->pki_key = path_join(optarg, "tsp.key");
                        o->pki_ca = path_join(optarg, "ca.pem");
                        if (!o->pki_cert || !o->pki_key || !o->pki_ca)
                                return log_error_errno(-ENOMEM, "out of memory");
                        break;
                case ARG_DB:
                        o->db = optarg;
                        break;
                case ARG_DOWNLOAD_DIR:
                        o->download_dir = optarg;
                        break;
                case ARG_PAIR:
                        r = parse_pair(sim, optarg);
                        if (r == -ENOMEM)
                                return log_error_errno(r, "out of memory");
                        if (r < 0)
                                return log_error_errno(r, "invalid --pair '%s' (want KEYID:GATEWAYID, each 1-%d "
                                                          "characters of [A-Za-z0-9._-])", optarg, CLOUD_ID_MAX);
                        break;
                case ARG_CONTROL:
                        o->control = optarg;
                        break;
                case ARG_MODE:
                        if (cloud_mode_from_string(optarg, &o->mode) < 0)
                                return log_error_errno(-EINVAL, "invalid --mode '%s' (see --help)", optarg);
                        break;
                case ARG_PIDFILE:
                        o->pidfile = optarg;
                        break;
                default:
                        r = tg_tool_option(c, optarg, "tollgate-cloud-sim", help);
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
        if (!o->download_dir) {
                if (asprintf(&o->default_download_dir, "%s.downloads", o->db) < 0)
                        return log_error_errno(-ENOMEM, "out of memory");
                o->download_dir = o->default_download_dir;
        }
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

/* ---- run ------------------------------------------------------------------- */

static int start_listeners(CloudSim *sim, const Options *o, SimHttpd **ret_api, SimHttpd **ret_control) {
        int r;

        r = sim_httpd_new(&(SimHttpdConfig) {
                                  .name = "cloud",
                                  .listen = o->listen,
                                  .tls_cert = o->cert,
                                  .tls_key = o->key,
                                  .tls_ca = o->ca,
                                  .server_header = "tollgate-cloud-sim/" PACKAGE_VERSION,
                                  /* POSTs to .../ack carry no body; the PUT
                                   * handler requires Content-Length itself. */
                                  .require_content_length = false,
                                  .max_body_size = API_MAX_BODY,
                                  .request_timeout_usec = API_REQUEST_TIMEOUT_USEC,
                                  .handler = cloud_api_handle,
                                  .on_request_error = cloud_api_request_error,
                                  .on_tls_failure = cloud_api_tls_failure,
                                  .userdata = sim,
                          },
                          ret_api);
        if (r < 0)
                return r;

        r = sim_httpd_new(&(SimHttpdConfig) {
                                  .name = "control",
                                  .listen = o->control,
                                  .loopback_only = true,
                                  .server_header = "tollgate-cloud-sim/" PACKAGE_VERSION,
                                  .max_connections = CONTROL_MAX_CONNECTIONS,
                                  .max_body_size = CONTROL_MAX_BODY,
                                  .request_timeout_usec = API_REQUEST_TIMEOUT_USEC,
                                  .handler = cloud_control_handle,
                                  .userdata = sim,
                          },
                          ret_control);
        if (r < 0)
                return r;

        r = sim_httpd_start(*ret_api);
        if (r < 0)
                return r;
        return sim_httpd_start(*ret_control);
}

static int run(int argc, char *argv[]) {
        _cleanup_(options_done) Options o = {
                .listen = DEFAULT_LISTEN,
                .control = DEFAULT_CONTROL,
        };
        _cleanup_(pairs_free) CloudSim sim = {
                .lock = PTHREAD_MUTEX_INITIALIZER,
                .log_limit = TG_RATELIMIT_INIT(USEC_PER_SEC, 50),
        };
        _cleanup_(cloud_store_freep) CloudStore *store = NULL;
        _cleanup_(sim_httpd_freep) SimHttpd *api = NULL, *control = NULL;
        char mode[CLOUD_MODE_STRING_MAX];
        sigset_t mask;
        int r, sig;

        r = parse_argv(argc, argv, &o, &sim);
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

        r = cloud_store_open(o.db, o.download_dir, &store);
        if (r < 0)
                return r;
        sim.store = store;
        sim.mode = o.mode;

        r = start_listeners(&sim, &o, &api, &control);
        if (r < 0)
                return r;
        sim.api = api;
        sim.control = control;

        if (o.pidfile) {
                r = write_pidfile(o.pidfile);
                if (r < 0)
                        return log_error_errno(r, "cannot write pidfile %s", o.pidfile);
        }

        log_info("database %s, downloads in %s, %zu pairs, mode %s", o.db, cloud_store_files_dir(store),
                 sim.n_pairs, cloud_mode_to_string(&o.mode, mode));
        (void) sd_notifyf(0, "READY=1\nSTATUS=Listening on %s, control on %s", sim_httpd_address(api),
                          sim_httpd_address(control));
        printf("cloud-sim: listening on %s, control on %s\n", sim_httpd_address(api), sim_httpd_address(control));
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
        /* Connections first (they use the store and the pairs), then the rest. */
        sim.control = control = sim_httpd_free(control);
        sim.api = api = sim_httpd_free(api);
        if (o.pidfile)
                (void) unlink(o.pidfile);
        return 0;
}

int main(int argc, char *argv[]) {
        int r;

        tg_log_open("cloud-sim", TG_LOG_TARGET_AUTO);
        r = run(argc, argv);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
