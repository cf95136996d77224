/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>

#include "relay.h"
#include "tg-log.h"
#include "tg-parse.h"
#include "tg-tool.h"

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Relay *r = userdata;

        if (si->ssi_signo == SIGUSR1) {
                log_info("From the car %" PRIu64 ", to the cloud %" PRIu64 ", from the cloud %" PRIu64 ", to the car %" PRIu64
                         ".", r->from_car, r->to_cloud, r->from_cloud, r->to_car);
                return 0;
        }
        return sd_event_exit(r->event, 0);
}

static void help(void) {
        printf("%s [OPTIONS...]\n\n"
               "The car key's relay: carries the car's non-real-time data to the cloud and the\n"
               "cloud's data for the car back to it (docs/key-protocol.md).\n\n"
               "  -h --help                  Show this help\n"
               "     --version               Show the version\n"
               "     --key-id=ID             This key's id (its certificate CN, or PSK identity)\n"
               "     --gateway-id=ID         The car it is paired with (the gateway's certificate CN)\n"
               "     --store=DIR             Where it keeps what it carries\n"
               "     --car=HOST:PORT         Where the car listens when the key is with it\n"
               "     --ca=FILE --cert=FILE --key=FILE\n"
               "                             Pairing CA, this key's certificate and private key\n"
               "     --password=PASSWORD     Pairing password instead (TLS pre-shared key)\n"
               "     --cloud=URL             The cloud, https://HOST:PORT\n"
               "     --cloud-ca=FILE --cloud-cert=FILE --cloud-key=FILE\n"
               "                             For the cloud (default: the ones above)\n"
               "     --retry=SPAN            Between attempts to reach the car (default 1s)\n"
               "     --cloud-interval=SPAN   Between polls of the cloud (default 5s)\n"
               "     --chunk=SIZE            Largest DATA frame accepted (default 256K)\n"
               "     --window=N              Offers taken before acknowledging (default 16)\n"
               "     --log-level=LEVEL       err, warning, notice, info or debug\n",
               program_invocation_short_name);
}

static int parse_argv(int argc, char *argv[], RelayOptions *o) {
        enum {
                ARG_KEY_ID = 0x100, ARG_GATEWAY_ID, ARG_STORE, ARG_CAR, ARG_CA, ARG_CERT, ARG_KEY,
                ARG_PASSWORD, ARG_CLOUD, ARG_CLOUD_CA, ARG_CLOUD_CERT, ARG_CLOUD_KEY, ARG_RETRY, ARG_CLOUD_INTERVAL,
                ARG_CHUNK, ARG_WINDOW,
        };
        static const struct option options[] = {
                TG_TOOL_OPTIONS,
                { "key-id", required_argument, NULL, ARG_KEY_ID },
                { "gateway-id", required_argument, NULL, ARG_GATEWAY_ID },
                { "store", required_argument, NULL, ARG_STORE },
                { "car", required_argument, NULL, ARG_CAR },
                { "ca", required_argument, NULL, ARG_CA },
                { "cert", required_argument, NULL, ARG_CERT },
                { "key", required_argument, NULL, ARG_KEY },
                { "password", required_argument, NULL, ARG_PASSWORD },
                { "cloud", required_argument, NULL, ARG_CLOUD },
                { "cloud-ca", required_argument, NULL, ARG_CLOUD_CA },
                { "cloud-cert", required_argument, NULL, ARG_CLOUD_CERT },
                { "cloud-key", required_argument, NULL, ARG_CLOUD_KEY },
                { "retry", required_argument, NULL, ARG_RETRY },
                { "cloud-interval", required_argument, NULL, ARG_CLOUD_INTERVAL },
                { "chunk", required_argument, NULL, ARG_CHUNK },
                { "window", required_argument, NULL, ARG_WINDOW },
                {},
        };
        uint64_t v;
        unsigned u;
        int c, r;

        *o = (RelayOptions) { .retry_usec = USEC_PER_SEC, .cloud_interval_usec = 5 * USEC_PER_SEC,
                              .chunk = 256 * 1024, .window = 16 };
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case ARG_KEY_ID: o->key_id = optarg; break;
                case ARG_GATEWAY_ID: o->gateway_id = optarg; break;
                case ARG_STORE: o->store = optarg; break;
                case ARG_CAR: o->car = optarg; break;
                case ARG_CA: o->ca = optarg; break;
                case ARG_CERT: o->cert = optarg; break;
                case ARG_KEY: o->key = optarg; break;
                case ARG_PASSWORD: o->password = optarg; break;
                case ARG_CLOUD: o->cloud = optarg; break;
                case ARG_CLOUD_CA: o->cloud_ca = optarg; break;
                case ARG_CLOUD_CERT: o->cloud_cert = optarg; break;
                case ARG_CLOUD_KEY: o->cloud_key = optarg; break;
                case ARG_RETRY:
                case ARG_CLOUD_INTERVAL:
                        if (tg_parse_timespan(optarg, USEC_PER_SEC, &v) < 0 || v < 10 * USEC_PER_MSEC) {
                                fprintf(stderr, "Bad time span: %s\n", optarg);
                                return -EINVAL;
                        }
                        *(c == ARG_RETRY ? &o->retry_usec : &o->cloud_interval_usec) = v;
                        break;
                case ARG_CHUNK:
                        if (tg_parse_size(optarg, &v) < 0 || v < 16384 || v > 1048576) {
                                fprintf(stderr, "--chunk= takes 16K … 1M: %s\n", optarg);
                                return -EINVAL;
                        }
                        o->chunk = (uint32_t) v;
                        break;
                case ARG_WINDOW:
                        if (tg_parse_unsigned(optarg, &u) < 0 || u < 1 || u > TG_KP_WINDOW_MAX) {
                                fprintf(stderr, "--window= takes 1 … %d: %s\n", TG_KP_WINDOW_MAX, optarg);
                                return -EINVAL;
                        }
                        o->window = (uint16_t) u;
                        break;
                default:
                        r = tg_tool_option(c, optarg, "tollgate-key-relay", help);
                        if (r <= 0)
                                return r;
                }
        if (!o->key_id || !o->gateway_id || !o->store || !o->car || !o->cloud) {
                fprintf(stderr, "--key-id=, --gateway-id=, --store=, --car= and --cloud= are required.\n");
                return -EINVAL;
        }
        if (!o->password && (!o->ca || !o->cert || !o->key)) {
                fprintf(stderr, "Either --ca=, --cert= and --key=, or --password=.\n");
                return -EINVAL;
        }
        o->cloud_ca = o->cloud_ca ?: o->ca;
        o->cloud_cert = o->cloud_cert ?: o->cert;
        o->cloud_key = o->cloud_key ?: o->key;
        if (!o->cloud_cert || !o->cloud_key) {
                fprintf(stderr, "The cloud needs a client certificate: --cloud-cert= and --cloud-key=.\n");
                return -EINVAL;
        }
        return 1;
}

int main(int argc, char *argv[]) {
        static const int signals[] = { SIGTERM, SIGINT, SIGUSR1 };
        static Relay relay;
        Relay *r = &relay;
        int k;

        /* Before the options: a bad --log-level= is logged. */
        tg_log_open("key-relay", TG_LOG_TARGET_AUTO);
        k = parse_argv(argc, argv, &r->o);
        if (k <= 0)
                return k < 0 ? 2 : 0;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        (void) signal(SIGPIPE, SIG_IGN);
        if (tg_tool_event_new(&r->event, signals, ELEMENTSOF(signals), on_signal, r) < 0)
                return 1;
        k = store_open(r);
        if (k >= 0)
                k = car_setup(r);
        if (k >= 0)
                k = cloud_setup(r);
        if (k >= 0) {
                log_info("Key %s for car %s: store %s, car %s, cloud %s.", r->o.key_id, r->o.gateway_id, r->o.store,
                         r->o.car, r->o.cloud);
                k = sd_event_loop(r->event);
        }
        log_info("From the car %" PRIu64 ", to the cloud %" PRIu64 ", from the cloud %" PRIu64 ", to the car %" PRIu64 ".",
                 r->from_car, r->to_cloud, r->from_cloud, r->to_car);
        cloud_done(r);
        car_done(r);
        store_close(r);
        sd_event_unref(r->event);
        curl_global_cleanup();
        return k < 0 ? 1 : 0;
}
