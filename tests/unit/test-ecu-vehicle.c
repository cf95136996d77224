/* SPDX-License-Identifier: MIT */
/*
 * A whole simulated vehicle end to end (issue 6): the built tollgate-ecu-sim
 * (TG_ECU_SIM) configured from a file with 20 ECUs on the Ethernet (DoIP),
 * on a classic CAN bus and on a CAN FD bus (two tollgate-canhub processes,
 * TG_CANHUB), flashed with lib/tg-flash over lib/tg-diag's DoIP and ISO-TP
 * channels. Every fault the simulator injects ends in a named error, leaves
 * no bank that claims a mixed image, and a retry (and for A/B a rollback)
 * then works. The state dump (SIGUSR1) gives each bank's SHA-256.
 * Also: the configuration file's parser and its named errors.
 */

#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include "ecu-sim-conf.h"
#include "tg-diag.h"
#include "tg-flash.h"
#include "tg-keyproto.h"
#include "tg-test-proc.h"
#include "tg-uds.h"

#define TESTER 0x0E80

/* ---- the vehicle ---- */

typedef struct Vehicle {
        char *dir, *conf;
        TgTestHub hubs[2];
        TgTestProc sim;
        uint16_t port;
        sd_event *e;
        TgDiagChannel *doip, *body, *powertrain;
} Vehicle;

/* name, bus (NULL: Ethernet), address, request/response id, banks, extra keys */
typedef struct EcuDef {
        const char *name, *bus;
        uint16_t address;
        uint32_t req, resp;
        bool ab;
        const char *extra;
} EcuDef;

static const EcuDef ecus[] = {
        { "adas", NULL, 0x1001, 0, 0, true, "" },
        { "ivi", NULL, 0x1002, 0, 0, false, "" },
        { "eth-nrc", NULL, 0x1003, 0, 0, true, "FaultNrc=36:72\n" },
        { "eth-storm", NULL, 0x1004, 0, 0, true, "FaultPendingStorm=31:150\nPendingInterval=5\n" },
        { "eth-reset", NULL, 0x1005, 0, 0, true, "FaultResetAfterBlocks=5\n" },
        { "eth-powerloss", NULL, 0x1006, 0, 0, false, "FaultPowerLossAfterBlocks=7\n" },
        { "eth-corrupt", NULL, 0x1007, 0, 0, false, "FaultCorruptAfterBlocks=3\n" },
        { "door-fl", "body", 0x0701, 0x701, 0x709, true, "" },
        { "door-fr", "body", 0x0702, 0x702, 0x70A, true, "" },
        { "door-rl", "body", 0x0703, 0x703, 0x70B, false, "" },
        { "door-rr", "body", 0x0704, 0x704, 0x70C, false, "" },
        { "body-nrc", "body", 0x0710, 0x710, 0x718, false, "FaultNrc=36:72\n" },
        { "body-storm", "body", 0x0711, 0x711, 0x719, false, "FaultPendingStorm=34:150\nPendingInterval=5\n" },
        { "body-reset", "body", 0x0712, 0x712, 0x71A, true, "FaultResetAfterBlocks=3\n" },
        { "body-powerloss", "body", 0x0713, 0x713, 0x71B, true, "FaultPowerLossAfterBlocks=2\n" },
        { "body-corrupt", "body", 0x0714, 0x714, 0x71C, true, "FaultCorruptAfterBlocks=1\n" },
        { "bms", "powertrain", 0x07E0, 0x7E0, 0x7E8, true, "" },
        { "inverter", "powertrain", 0x07E1, 0x7E1, 0x7E9, false, "" },
        { "vcu", "powertrain", 0x07E2, 0x18DA10F1, 0x18DAF110, true, "" },
        { "obc", "powertrain", 0x07E3, 0x7E3, 0x7EB, false, "MaxBlockLength=1024\n" },
};

static const EcuDef *ecu_def(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(ecus); i++)
                if (streq(ecus[i].name, name))
                        return &ecus[i];
        assert_se(!"no such ECU");
        return NULL;
}

static char *vehicle_config(Vehicle *v) {
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);

        assert_se(f);
        fprintf(f, "# a test vehicle: 7 ECUs on the Ethernet, 9 on a classic bus, 4 on a CAN FD bus\n"
                   "[Vehicle]\nVIN=TOLLGATETEST00001\nEntityAddress=0x1000\nListen=127.0.0.1:0\n\n"
                   "[Bus body]\nSpec=unix:%s\nBlockSize=8\n\n"
                   "[Bus powertrain]\nSpec=unix:%s\nFD=yes\nBitRateSwitch=yes\nDataLength=64\nBlockSize=16\n\n",
                v->hubs[0].path, v->hubs[1].path);
        for (size_t i = 0; i < ELEMENTSOF(ecus); i++) {
                const EcuDef *d = &ecus[i];
                fprintf(f, "[Ecu %s]\nAddress=0x%04X\nBanks=%s\nBankSize=256K\nVersion=1.0.0\nEraseTime=20\n%s", d->name,
                        d->address, d->ab ? "ab" : "single", d->extra);
                if (d->bus)
                        fprintf(f, "Bus=%s\nRequestId=0x%X\nResponseId=0x%X\n", d->bus, d->req, d->resp);
                fprintf(f, "\n");
        }
        assert_se(fclose(f) == 0);
        return text;
}

static bool vehicle_start(Vehicle *v) {
        const char *sim = tg_test_binary("TG_ECU_SIM");

        if (!sim || !tg_test_binary("TG_CANHUB"))
                return false;
        *v = (Vehicle) {};
        v->dir = tg_test_mkdtemp();
        for (int i = 0; i < 2; i++)
                assert_se(tg_test_hub_start(&v->hubs[i], v->dir, i == 0 ? "body" : "powertrain", NULL));

        _cleanup_free_ char *text = vehicle_config(v);
        _cleanup_free_ char *config_arg = NULL;
        v->conf = tg_test_path(v->dir, "vehicle.conf");
        tg_test_write_file(v->conf, text, strlen(text));
        assert_ok(asprintf(&config_arg, "--config=%s", v->conf));
        const char *argv[] = { "tollgate-ecu-sim", config_arg, NULL };
        tg_test_proc_start(&v->sim, v->dir, "sim", sim, argv);
        v->port = tg_test_proc_wait_port(&v->sim, 10000);
        assert_se(tg_test_proc_wait_log(&v->sim, "Simulating", 10000)); /* the buses joined too */

        assert_ok(sd_event_default(&v->e));
        TgDiagDoipConfig dc = { .address = "127.0.0.1", .port = v->port, .tester_address = TESTER };
        assert_ok(tg_diag_doip_new(v->e, &dc, &v->doip));

        for (int b = 0; b < 2; b++) {
                const char *bus = b == 0 ? "body" : "powertrain";
                TgDiagIsotpEcu list[ELEMENTSOF(ecus)];
                TgIsotpConfig ic;
                size_t n = 0;

                for (size_t i = 0; i < ELEMENTSOF(ecus); i++)
                        if (ecus[i].bus && streq(ecus[i].bus, bus))
                                list[n++] = (TgDiagIsotpEcu) { .address = ecus[i].address,
                                                               .tx_id = ecus[i].req > 0x7FF ? ecus[i].req | 0x80000000u : ecus[i].req,
                                                               .rx_id = ecus[i].resp > 0x7FF ? ecus[i].resp | 0x80000000u : ecus[i].resp };
                tg_isotp_config_init(&ic, 0, 0, b == 1);
                ic.pad = true;
                ic.bs = 8; /* the hub is not paced: flow control keeps the sender in step */
                if (b == 1) {
                        ic.brs = true;
                        ic.tx_dl = 64;
                }
                TgDiagIsotpConfig cfg = { .bus = v->hubs[b].spec, .isotp = &ic, .ecus = list, .n_ecus = n,
                                          .functional_tx_id = 0x7DF };
                assert_ok(tg_diag_isotp_new(v->e, &cfg, b == 0 ? &v->body : &v->powertrain));
        }
        /* Sanitizer builds on a loaded CI machine answer slower than an
         * ECU's 50 ms P2; these tests are about behaviour, not timing. */
        v->doip->timing.p2_usec = v->body->timing.p2_usec = v->powertrain->timing.p2_usec = 2 * USEC_PER_SEC;
        return true;
}

static void vehicle_stop(Vehicle *v) {
        tg_diag_free(v->doip);
        tg_diag_free(v->body);
        tg_diag_free(v->powertrain);
        sd_event_unref(v->e);
        assert_eq(tg_test_proc_stop(&v->sim), 0);
        for (int i = 0; i < 2; i++)
                tg_test_hub_stop(&v->hubs[i]);
        free(v->conf);
        tg_test_rmdtemp(v->dir);
        *v = (Vehicle) {};
}

static TgDiagChannel *channel_of(Vehicle *v, const EcuDef *d) {
        if (!d->bus)
                return v->doip;
        return streq(d->bus, "body") ? v->body : v->powertrain;
}

/* ---- state dump ---- */

typedef struct BankState {
        bool valid;
        char version[32];
        char sha[65];
} BankState;

typedef struct EcuState {
        char active;
        unsigned n_banks;
        BankState banks[2];
} EcuState;

static void ecu_state(Vehicle *v, uint16_t address, EcuState *ret) {
        _cleanup_free_ char *text = tg_test_proc_state(&v->sim);
        char head[32];

        *ret = (EcuState) {};
        snprintf(head, sizeof head, "ecu 0x%04X ", address);
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
                unsigned banks;
                char active, bank, valid[4], version[32], sha[65];

                if (strncmp(line, head, strlen(head)) != 0)
                        continue;
                if (sscanf(line + strlen(head), "banks=%u active=%c", &banks, &active) == 2) {
                        ret->n_banks = banks;
                        ret->active = active;
                } else if (sscanf(line + strlen(head), "bank %c valid=%3s version=%31s written=%*u sha256=%64s", &bank,
                                  valid, version, sha) == 4 &&
                           bank >= 'A' && bank <= 'B') {
                        BankState *b = &ret->banks[bank - 'A'];
                        b->valid = streq(valid, "yes");
                        snprintf(b->version, sizeof b->version, "%s", streq(version, "sha256=") ? "" : version);
                        snprintf(b->sha, sizeof b->sha, "%s", sha);
                }
        }
        assert_se(ret->n_banks >= 1);
}

/* ---- images and flashing ---- */

typedef struct Image {
        uint8_t *data;
        size_t size;
        uint8_t sha[32];
        char hex[65];
        char version[16];
} Image;

static void image_make(Image *img, const char *version, size_t size, uint8_t salt) {
        *img = (Image) { .size = size };
        img->data = malloc(size);
        assert_se(img->data);
        int l = snprintf((char *) img->data, size, "TGV:%s\n", version);
        for (size_t i = (size_t) l; i < size; i++)
                img->data[i] = (uint8_t) ((i * 131) ^ (i >> 9) ^ salt);
        snprintf(img->version, sizeof img->version, "%s", version);
        assert_ok(tg_kp_sha256(img->data, size, img->sha));
        for (int k = 0; k < 32; k++)
                snprintf(img->hex + 2 * k, 3, "%02x", img->sha[k]);
}

static ssize_t image_read(void *userdata, uint64_t offset, uint8_t *buf, size_t len) {
        Image *img = userdata;

        assert_le(offset + len, img->size);
        memcpy(buf, img->data + offset, len);
        return (ssize_t) len;
}

typedef struct Run {
        bool done;
        TgFlashError err;
        uint64_t transferred;
} Run;

static void on_progress(TgFlash *f, uint64_t done, uint64_t total, const char *step, void *userdata) {
        Run *run = userdata;

        (void) f, (void) step;
        assert_le(done, total);
        assert_le(run->transferred, done);
        run->transferred = done;
}

static void on_finished(TgFlash *f, const TgFlashError *err, void *userdata) {
        Run *run = userdata;

        (void) f;
        run->done = true;
        run->err = *err;
}

static const TgFlashCallbacks callbacks = { .progress = on_progress, .finished = on_finished };

static TgFlashError run_flash(Vehicle *v, const EcuDef *d, Image *img, bool rollback) {
        TgFlashPlan p = {
                .read = image_read,
                .read_userdata = img,
                .size = img->size,
                .version = img->version,
                .key_fn = tg_uds_key_demo,
                .ab_banks = d->ab,
                .extended_session = true,
                .dtc_off = true,
                .comm_off = true, /* functional 28 on the DoIP entity or the bus */
                .retry_delay_usec = 20 * 1000,
                .max_retries = 100, /* an ECU still ending a pending storm answers 0x21 meanwhile */
        };
        TgDiagChannel *ch = channel_of(v, d);
        Run run = {};
        TgFlash *f = NULL;

        memcpy(p.sha256, img->sha, 32);
        if (rollback)
                assert_ok(tg_flash_rollback(ch, d->address, &p, &callbacks, &run, &f));
        else
                assert_ok(tg_flash_start(ch, d->address, &p, &callbacks, &run, &f));
        while (!run.done)
                assert_se(sd_event_run(v->e, UINT64_MAX) >= 0);
        tg_flash_free(f);
        return run.err;
}

static void read_version(Vehicle *v, const EcuDef *d, char *buf, size_t size) {
        const uint16_t did = TG_UDS_DID_SOFTWARE_VERSION;
        _cleanup_free_ uint8_t *resp = NULL;
        uint8_t req[8];
        TgDiagResult r;
        size_t rl, dl;
        const uint8_t *data;
        TgUdsError err;
        int n = tg_uds_encode_read_data(req, sizeof req, &did, 1);

        assert_se(n > 0);
        /* the ECU may still be busy ending a storm or resetting: retry a little */
        for (int i = 0; i < 50; i++) {
                free(resp);
                resp = NULL;
                if (tg_diag_request_wait(channel_of(v, d), d->address, req, (size_t) n, &r, &resp, &rl) == 0 &&
                    tg_uds_parse_read_data(resp, rl, did, &data, &dl, &err) == 0) {
                        tg_uds_did_to_string(data, dl, buf, size);
                        return;
                }
                usleep(100000);
        }
        assert_se(!"F189 could not be read");
}

/* The ECU runs img: 0x22 F189 says its version, the active bank is valid
 * and holds exactly its bytes. */
static void assert_runs(Vehicle *v, const EcuDef *d, const Image *img) {
        EcuState s;
        char version[64];

        read_version(v, d, version, sizeof version);
        assert_streq(version, img->version);
        ecu_state(v, d->address, &s);
        BankState *b = &s.banks[s.active - 'A'];
        assert_se(b->valid);
        assert_streq(b->sha, img->hex);
}

/* No bank claims to be valid with anything but a whole image: the one it
 * started with (empty), old or new. */
static void assert_no_mixed(Vehicle *v, const EcuDef *d, const Image *old, const Image *new) {
        static const char empty[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        EcuState s;

        ecu_state(v, d->address, &s);
        for (unsigned b = 0; b < s.n_banks; b++)
                if (s.banks[b].valid)
                        assert_se(streq(s.banks[b].sha, empty) || streq(s.banks[b].sha, old->hex) ||
                                  streq(s.banks[b].sha, new->hex));
}

/* ---- cases ---- */

/* One ECU over DoIP, one over ISO-TP on classic CAN, one on CAN FD with
 * 29-bit ids: each runs the new image after the flash, then the old again
 * (A/B: rollback by bank switch; single: re-flash). */
static void test_flash_each_transport(void) {
        static const char *const names[] = { "adas", "ivi", "door-fl", "door-rl", "bms", "vcu", "obc" };
        Vehicle v;
        Image old, new;

        if (!vehicle_start(&v))
                return;
        image_make(&old, "1.0.0", 40000, 1);
        image_make(&new, "2.0.0", 48000, 2);
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                const EcuDef *d = ecu_def(names[i]);
                TgFlashError e;

                fprintf(stderr, "  %s (%s)\n", d->name, d->bus ? d->bus : "ethernet");
                e = run_flash(&v, d, &new, false);
                if (e.error != 0)
                        fprintf(stderr, "  %s: %s\n", d->name, e.message);
                assert_eq(e.error, 0);
                assert_runs(&v, d, &new);
                e = run_flash(&v, d, &old, true);
                assert_eq(e.error, 0);
                if (d->ab) {
                        /* back on the bank it started on: version 1.0.0, no image bytes */
                        char version[64];
                        read_version(&v, d, version, sizeof version);
                        assert_streq(version, "1.0.0");
                } else
                        assert_runs(&v, d, &old);
        }
        free(old.data);
        free(new.data);
        vehicle_stop(&v);
}

typedef struct FaultCase {
        const char *ecu;
        TgFlashStep step;
        int error;
        uint8_t nrc;
        TgDiagError diag;
} FaultCase;

static void test_faults(void) {
        static const FaultCase cases[] = {
                { "eth-nrc", TG_FLASH_STEP_TRANSFER_DATA, -EREMOTEIO, 0x72, TG_DIAG_OK },
                { "eth-storm", TG_FLASH_STEP_PRECONDITIONS, -EIO, 0, TG_DIAG_PENDING_STORM },
                { "eth-reset", TG_FLASH_STEP_TRANSFER_DATA, -EIO, 0, TG_DIAG_CONNECTION_LOST },
                { "eth-powerloss", TG_FLASH_STEP_TRANSFER_DATA, -EIO, 0, TG_DIAG_CONNECTION_LOST },
                { "eth-corrupt", TG_FLASH_STEP_CHECK_DEPENDENCIES, -EREMOTEIO, 0x72, TG_DIAG_OK },
                { "body-nrc", TG_FLASH_STEP_TRANSFER_DATA, -EREMOTEIO, 0x72, TG_DIAG_OK },
                { "body-storm", TG_FLASH_STEP_REQUEST_DOWNLOAD, -EIO, 0, TG_DIAG_PENDING_STORM },
                { "body-reset", TG_FLASH_STEP_TRANSFER_DATA, -EIO, 0, TG_DIAG_TIMEOUT },
                { "body-powerloss", TG_FLASH_STEP_TRANSFER_DATA, -EIO, 0, TG_DIAG_TIMEOUT },
                { "body-corrupt", TG_FLASH_STEP_CHECK_DEPENDENCIES, -EREMOTEIO, 0x72, TG_DIAG_OK },
        };
        Vehicle v;
        Image old, new;

        if (!vehicle_start(&v))
                return;
        image_make(&old, "1.0.0", 40000, 1);
        image_make(&new, "2.0.0", 48000, 2);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const FaultCase *c = &cases[i];
                const EcuDef *d = ecu_def(c->ecu);
                TgFlashError e = run_flash(&v, d, &new, false);
                char buf[128];

                fprintf(stderr, "  %s: %s [%s]\n", d->name, e.message, tg_diag_result_format(&e.diag, buf, sizeof buf));
                assert_eq(e.step, c->step);
                assert_eq(e.error, c->error);
                assert_eq(e.nrc, c->nrc);
                assert_eq(e.diag.error, c->diag);
                assert_no_mixed(&v, d, &old, &new);
                if (d->ab) {
                        /* the old software still runs */
                        char version[64];
                        read_version(&v, d, version, sizeof version);
                        assert_streq(version, "1.0.0");
                }
                /* the fault fired once: a retry goes through */
                e = run_flash(&v, d, &new, false);
                if (e.error != 0)
                        fprintf(stderr, "  retry: %s\n", e.message);
                assert_eq(e.error, 0);
                assert_runs(&v, d, &new);
                /* and back */
                e = run_flash(&v, d, &old, true);
                assert_eq(e.error, 0);
                assert_no_mixed(&v, d, &old, &new);
        }

        /* SIGHUP re-arms the faults of the file */
        assert_se(kill(v.sim.pid, SIGHUP) == 0);
        assert_se(tg_test_proc_wait_log(&v.sim, "re-armed", 5000));
        TgFlashError e = run_flash(&v, ecu_def("body-nrc"), &new, false);
        assert_eq(e.nrc, 0x72);
        assert_contains(e.message, "transfer-data");

        free(old.data);
        free(new.data);
        vehicle_stop(&v);
}

/* A bad file: the simulator refuses to start and names file:line. */
static void test_bad_config(void) {
        const char *sim = getenv("TG_ECU_SIM");
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "bad.conf"), *log_path = tg_test_path(dir, "bad.log"),
                            *arg = NULL;
        static const char text[] = "[Vehicle]\nListen=127.0.0.1:0\n[Ecu a]\nAddress=0x1001\nBankSize=1M\nBanks=abc\n";
        TgTestProc p;

        if (!sim || !*sim)
                return;
        tg_test_write_file(path, text, strlen(text));
        assert_ok(asprintf(&arg, "--config=%s", path));
        const char *argv[] = { "tollgate-ecu-sim", arg, NULL };
        tg_test_proc_start(&p, dir, "bad", sim, argv);
        int status = tg_test_proc_wait(&p);
        assert_se(status != 0 && status < 128); /* exited (not killed), with an error */
        _cleanup_free_ char *log = tg_test_read_text(log_path);
        assert_contains(log, "bad.conf:6");
        assert_contains(log, "Banks");
}

/* ---- the parser alone ---- */

static int parse(const char *text, EcuSimConfig *c, TgConfError *err) {
        ecu_sim_config_init(c);
        *err = (TgConfError) {};
        return ecu_sim_config_parse(c, text, strlen(text), "test.conf", err);
}

static void expect_error(const char *text, const char *needle) {
        EcuSimConfig c;
        TgConfError err;

        assert_eq(parse(text, &c, &err), -EBADMSG);
        if (!strstr(err.text, needle))
                fprintf(stderr, "  error: %s (expected %s)\n", err.text, needle);
        assert_contains(err.text, needle);
        ecu_sim_config_done(&c);
}

static void test_conf(void) {
        EcuSimConfig c;
        TgConfError err;

        assert_ok(parse("[Vehicle]\nListen=[::1]:13400\nVIN=WVWZZZ1JZXW000001\n"
                        "[Bus chassis]\nSpec=can1\nFD=yes\nDataLength=32\nSTmin=0xF1\nBitRate=500k\nRestartMs=100\n"
                        "[Ecu abs]\nAddress=0x0720\nBus=chassis\nRequestId=0x18DA20F1\nResponseId=0x18DAF120\n"
                        "Banks=single\nBankSize=512K\nFaultNrc=36:72\nFaultPendingStorm=31:20\n"
                        "[Ecu gw]\nAddress=1001\nBankSize=1M\n",
                        &c, &err));
        assert_eq(c.n_buses, 1u);
        assert_eq(c.n_ecus, 2u);
        assert_se(c.buses[0].fd && c.buses[0].data_length == 32 && c.buses[0].stmin == 0xF1);
        assert_eq(c.buses[0].functional_id, 0x7DFu);
        assert_eq(c.buses[0].bitrate, 500000u);
        assert_eq(c.buses[0].restart_ms, 100u);
        assert_eq(c.ecus[0].request_id, 0x18DA20F1u | 0x80000000u);
        assert_eq(c.ecus[0].bus_index, 0);
        assert_eq(c.ecus[0].faults.nrc_sid, 0x36);
        assert_eq(c.ecus[0].faults.nrc, 0x72);
        assert_eq(c.ecus[0].faults.pending_storm_count, 20u);
        assert_eq(c.ecus[1].address, 0x1001u);
        assert_eq(c.ecus[1].bus_index, -1);
        assert_streq(c.vin, "WVWZZZ1JZXW000001");
        ecu_sim_config_done(&c);

        /* the reference vehicle that is installed */
        const char *reference = getenv("TG_ECU_SIM_VEHICLE");
        if (reference && *reference) {
                ecu_sim_config_init(&c);
                err = (TgConfError) {};
                int r = ecu_sim_config_load(&c, reference, &err);
                if (r < 0)
                        fprintf(stderr, "  %s\n", err.text);
                assert_ok(r);
                assert_eq(c.n_ecus, 20u);
                assert_eq(c.n_buses, 3u);
                ecu_sim_config_done(&c);
        }

        expect_error("[Ecu a]\nAddress=0xE400\n", "test.conf:2");
        expect_error("[Ecu a]\nAddress=0x10000\n", "Address");
        expect_error("[Ecu a]\nBankSize=1M\n", "Address= is missing");
        expect_error("[Ecu a]\nAddress=1\n", "BankSize= is missing");
        expect_error("[Ecu a]\nAddress=1\nBankSize=1K\n", "Listen= is not set");
        expect_error("[Vehicle]\nListen=x\n[Ecu a]\nAddress=1\nBankSize=1K\n[Ecu b]\nAddress=1\nBankSize=1K\n",
                     "has it already");
        expect_error("[Ecu a]\nAddress=1\nBankSize=1K\nBus=nope\nRequestId=1\nResponseId=2\n", "no [Bus nope]");
        expect_error("[Bus b]\nSpec=can0\n[Ecu a]\nAddress=1\nBankSize=1K\nBus=b\n", "RequestId=");
        expect_error("[Bus b]\nSpec=can0\n[Ecu a]\nAddress=1\nBankSize=1K\nBus=b\nRequestId=0x7DF\nResponseId=2\n",
                     "functional id");
        expect_error("[Bus b]\nSpec=can0\n[Ecu a]\nAddress=1\nBankSize=1K\nBus=b\nRequestId=1\nResponseId=2\n"
                     "[Ecu c]\nAddress=2\nBankSize=1K\nBus=b\nRequestId=2\nResponseId=3\n",
                     "collide");
        expect_error("[Bus b]\nDataLength=8\n", "Spec= is missing");
        expect_error("[Bus b]\nSpec=can0\nDataLength=64\n", "classic CAN frame");
        expect_error("[Bus b]\nDataLength=13\n", "test.conf:2");
        expect_error("[Bus b]\nSTmin=0x80\n", "STmin");
        expect_error("[Bus b]\nBitRate=5\n", "bit rate");
        expect_error("[Bus b]\nBitRate=9M\n", "bit rate");
        expect_error("[Bus b]\nSpec=unix:/x\nBitRate=500k\n", "SocketCAN");
        expect_error("[Bus ethernet]\nSpec=x\n", "DoIP entity");
        expect_error("[Ecu a]\nFaultNrc=36\n", "SID:NRC");
        expect_error("[Ecu a]\nFaultNrc=36:78\n", "FaultPendingStorm");
        expect_error("[Ecu a]\nFaultPendingStorm=31:x\n", "SID:COUNT");
        expect_error("[Ecu a/b]\n", "letters");
        expect_error("[Ecu a]\nRequestId=0x20000000\n", "0x1FFFFFFF");
        expect_error("[Vehicle]\nVIN=SHORT\n", "17 characters");
        expect_error("[Ecu a]\nBanks=ab\nColour=red\n", "Colour");
        expect_error("[Ecu a]\nVersion=0123456789012345678901234567890123456789\n", "at most");
}

TG_TEST_MAIN(TEST(conf), TEST(bad_config), TEST(flash_each_transport), TEST(faults))
