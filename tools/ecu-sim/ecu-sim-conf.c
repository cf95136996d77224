/* SPDX-License-Identifier: MIT */
/*
 * tollgate-ecu-sim.conf: the table for lib/tg-conf, the value parsers of the
 * simulator's own value types (hex addresses, CAN ids, faults) and the
 * checks across sections. See ecu-sim-conf.h and tollgate-ecu-sim.conf(5).
 */

#include <errno.h>
#include <inttypes.h>
#include <linux/can.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecu-sim-conf.h"
#include "tg-isotp.h"
#include "tg-parse.h"

#define UNSET UINT32_MAX

void ecu_sim_config_init(EcuSimConfig *c) {
        *c = (EcuSimConfig) {
                .vin = "TOLLGATESIM000001",
                .entity_address = 0x1000,
        };
}

static void bus_done(EcuSimBus *b) {
        free(b->name);
        free(b->spec);
}

static void ecu_done(EcuSimEcu *e) {
        free(e->name);
        free(e->bus);
        free(e->version);
        free(e->part_number);
        free(e->serial);
}

void ecu_sim_config_done(EcuSimConfig *c) {
        for (size_t i = 0; i < c->n_buses; i++)
                bus_done(&c->buses[i]);
        for (size_t i = 0; i < c->n_ecus; i++)
                ecu_done(&c->ecus[i]);
        free(c->buses);
        free(c->ecus);
        free(c->listen);
        ecu_sim_config_init(c);
}

/* ---- value parsers ---- */

/* A hexadecimal number ("0x7E0" or "7E0") of at most max. */
static int parse_hex(const char *value, uint64_t max, uint64_t *ret) {
        const char *p = value;
        char *end;
        unsigned long long v;

        if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
                p += 2;
        if (!*p || strchr(p, '-') || strchr(p, '+') || strchr(p, ' '))
                return -EINVAL;
        errno = 0;
        v = strtoull(p, &end, 16);
        if (errno || *end)
                return -EINVAL;
        if (v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

static int parse_address(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        uint64_t v;

        (void) extra;
        if (parse_hex(value, 0xFFFF, &v) < 0) {
                snprintf(reason, reason_size, "expected a 16-bit logical address in hex (0x0E80)");
                return -EINVAL;
        }
        *(unsigned *) field = (unsigned) v;
        return 0;
}

static int parse_ecu_address(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        uint64_t v;

        (void) extra;
        if (parse_hex(value, 0xFFFF, &v) < 0) {
                snprintf(reason, reason_size, "expected a 16-bit logical address in hex (0x1001)");
                return -EINVAL;
        }
        if (v == ECU_SIM_FUNCTIONAL_ADDRESS) {
                snprintf(reason, reason_size, "0xE400 is the functional address of every ECU");
                return -EINVAL;
        }
        *(uint32_t *) field = (uint32_t) v;
        return 0;
}

/* A CAN id in hex: up to 0x7FF an 11-bit id, above a 29-bit one. */
static int parse_can_id(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        uint64_t v;

        (void) extra;
        if (parse_hex(value, CAN_EFF_MASK, &v) < 0) {
                snprintf(reason, reason_size, "expected a CAN id in hex, at most 0x1FFFFFFF (0x7E0, 0x18DA10F1)");
                return -EINVAL;
        }
        *(uint32_t *) field = v > CAN_SFF_MASK ? (uint32_t) v | CAN_EFF_FLAG : (uint32_t) v;
        return 0;
}

static int parse_banks(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        (void) extra;
        if (streq(value, "ab"))
                *(bool *) field = true;
        else if (streq(value, "single"))
                *(bool *) field = false;
        else {
                snprintf(reason, reason_size, "expected ab or single");
                return -EINVAL;
        }
        return 0;
}

static int parse_vin(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        (void) extra;
        if (strlen(value) != 17) {
                snprintf(reason, reason_size, "a VIN has 17 characters");
                return -EINVAL;
        }
        for (const char *p = value; *p; p++)
                if (*p < 0x21 || *p > 0x7E) {
                        snprintf(reason, reason_size, "a VIN is printable ASCII");
                        return -EINVAL;
                }
        memcpy(field, value, 18);
        return 0;
}

static int parse_preconditions(const char *value, void *field, const void *extra, char *reason,
                               size_t reason_size) {
        (void) extra;
        if (streq(value, "ok"))
                *(bool *) field = false;
        else if (streq(value, "fail"))
                *(bool *) field = true;
        else {
                snprintf(reason, reason_size, "expected ok or fail");
                return -EINVAL;
        }
        return 0;
}

static int parse_stmin(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        uint64_t v;

        (void) extra;
        if (parse_hex(value, 0xFF, &v) < 0 || (v > 0x7F && (v < 0xF1 || v > 0xF9))) {
                snprintf(reason, reason_size, "expected a raw STmin byte: 0x00…0x7F ms or 0xF1…0xF9 (100…900 µs)");
                return -EINVAL;
        }
        *(unsigned *) field = (unsigned) v;
        return 0;
}

static int parse_data_length(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        unsigned v;

        (void) extra;
        if (tg_parse_unsigned(value, &v) < 0 || v < 8 || v > 64 || !tg_can_len_valid(v, true)) {
                snprintf(reason, reason_size, "expected a CAN (FD) frame length: 8, 12, 16, 20, 24, 32, 48 or 64");
                return -EINVAL;
        }
        *(unsigned *) field = v;
        return 0;
}

/* 500000, 500k, 1M: 10 kbit/s … 8 Mbit/s. */
static int parse_bitrate(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        uint64_t v, mult = 1;
        _cleanup_free_ char *copy = strdup(value);
        size_t n;

        (void) extra;
        if (!copy)
                return -ENOMEM;
        n = strlen(copy);
        if (n > 0 && (copy[n - 1] == 'k' || copy[n - 1] == 'M')) {
                mult = copy[n - 1] == 'k' ? 1000 : 1000000;
                copy[n - 1] = '\0';
        }
        if (tg_parse_uint64(copy, &v) < 0 || v == 0 || v > 8000000 / mult || v * mult < 10000) {
                snprintf(reason, reason_size, "expected a bit rate of 10k…8M bit/s (500000, 500k, 1M)");
                return -EINVAL;
        }
        *(uint64_t *) field = v * mult;
        return 0;
}

/* Fault values: "SID:NRC" and "SID:COUNT" (SID and NRC in hex). */
static int parse_sid_pair(const char *value, uint8_t *sid, uint64_t *second, bool second_hex) {
        _cleanup_free_ char *copy = strdup(value);
        char *colon;
        uint64_t s;

        if (!copy)
                return -ENOMEM;
        colon = strchr(copy, ':');
        if (!colon)
                return -EINVAL;
        *colon = '\0';
        if (parse_hex(copy, 0xFF, &s) < 0)
                return -EINVAL;
        if (second_hex ? parse_hex(colon + 1, 0xFF, second) < 0 : tg_parse_uint64(colon + 1, second) < 0)
                return -EINVAL;
        *sid = (uint8_t) s;
        return 0;
}

static int parse_fault_nrc(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        EcuModelFaults *f = field;
        uint64_t nrc;
        uint8_t sid;

        (void) extra;
        if (!*value) {
                f->nrc_sid = f->nrc = 0;
                return 0;
        }
        if (parse_sid_pair(value, &sid, &nrc, true) < 0 || sid == 0 || nrc == 0 || nrc == 0x78) {
                snprintf(reason, reason_size,
                         "expected SID:NRC in hex, e.g. 36:72 (the next TransferData gets NRC 0x72; 0x78 is FaultPendingStorm=)");
                return -EINVAL;
        }
        f->nrc_sid = sid;
        f->nrc = (uint8_t) nrc;
        return 0;
}

static int parse_fault_storm(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        EcuModelFaults *f = field;
        uint64_t count;
        uint8_t sid;

        (void) extra;
        if (!*value) {
                f->pending_storm_sid = 0;
                f->pending_storm_count = 0;
                return 0;
        }
        if (parse_sid_pair(value, &sid, &count, false) < 0 || sid == 0 || count == 0 || count > 100000) {
                snprintf(reason, reason_size, "expected SID:COUNT, SID in hex, e.g. 31:50 (50 × NRC 0x78 first)");
                return -EINVAL;
        }
        f->pending_storm_sid = sid;
        f->pending_storm_count = (unsigned) count;
        return 0;
}

static int parse_name(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        if (strlen(value) > ECU_SIM_NAME_MAX) {
                snprintf(reason, reason_size, "a name has at most %d characters", ECU_SIM_NAME_MAX);
                return -EINVAL;
        }
        return tg_conf_parse_string(value, field, extra, reason, reason_size);
}

static int parse_short_string(const char *value, void *field, const void *extra, char *reason,
                              size_t reason_size) {
        if (strlen(value) >= ECU_MODEL_VERSION_MAX) {
                snprintf(reason, reason_size, "at most %d characters", ECU_MODEL_VERSION_MAX - 1);
                return -EINVAL;
        }
        return tg_conf_parse_string(value, field, extra, reason, reason_size);
}

/* ---- the table ---- */

static const TgConfRange range_bank_size = { .min = 1, .max = UINT64_C(1) << 32 };
static const TgConfRange range_block_size = { .min = 0, .max = 255 };
static const TgConfRange range_erase = { .min = 0, .max = 600000 };
static const TgConfRange range_restart = { .min = 0, .max = 60000 };
static const TgConfRange range_pending = { .min = 1, .max = 60000 };
static const TgConfRange range_max_block = { .min = 3, .max = 64 * 1024 * 1024 };
static const TgConfRange range_level = { .min = 1, .max = 0x41 };
static const TgConfRange range_seed = { .min = 1, .max = 16 };
static const TgConfRange range_blocks = { .min = 0, .max = UINT32_MAX };

#define V(key, fn, member, extra) { "Vehicle", key, fn, offsetof(EcuSimConfig, member), extra }
#define B(key, fn, member, extra) { "Bus", key, fn, offsetof(EcuSimBus, member), extra }
#define E(key, fn, member, extra) { "Ecu", key, fn, offsetof(EcuSimEcu, member), extra }

static const TgConfItem items[] = {
        V("VIN", parse_vin, vin, NULL),
        V("EntityAddress", parse_address, entity_address, NULL),
        V("Listen", tg_conf_parse_string, listen, NULL),

        B("Spec", tg_conf_parse_string, spec, NULL),
        B("FD", tg_conf_parse_bool, fd, NULL),
        B("BitRateSwitch", tg_conf_parse_bool, brs, NULL),
        B("DataLength", parse_data_length, data_length, NULL),
        B("Padding", tg_conf_parse_bool, padding, NULL),
        B("BlockSize", tg_conf_parse_unsigned, block_size, &range_block_size),
        B("STmin", parse_stmin, stmin, NULL),
        B("FunctionalId", parse_can_id, functional_id, NULL),
        B("BitRate", parse_bitrate, bitrate, NULL),
        B("RestartMs", tg_conf_parse_unsigned, restart_ms, &range_restart),

        E("Address", parse_ecu_address, address, NULL),
        E("Bus", parse_name, bus, NULL),
        E("RequestId", parse_can_id, request_id, NULL),
        E("ResponseId", parse_can_id, response_id, NULL),
        E("Banks", parse_banks, ab_banks, NULL),
        E("BankSize", tg_conf_parse_size, bank_size, &range_bank_size),
        E("MemoryAddress", tg_conf_parse_uint64, memory_address, NULL),
        E("Version", parse_short_string, version, NULL),
        E("PartNumber", parse_short_string, part_number, NULL),
        E("Serial", parse_short_string, serial, NULL),
        E("WriteSpeed", tg_conf_parse_size, write_speed, NULL),
        E("EraseTime", tg_conf_parse_unsigned, erase_time_ms, &range_erase),
        E("CheckSpeed", tg_conf_parse_size, check_speed, NULL),
        E("PendingInterval", tg_conf_parse_unsigned, pending_interval_ms, &range_pending),
        E("MaxBlockLength", tg_conf_parse_size, max_block_length, &range_max_block),
        E("SecurityLevel", tg_conf_parse_unsigned, security_level, &range_level),
        E("SeedLength", tg_conf_parse_unsigned, seed_length, &range_seed),
        E("Preconditions", parse_preconditions, preconditions_fail, NULL),
        E("FaultNrc", parse_fault_nrc, faults, NULL),
        E("FaultPendingStorm", parse_fault_storm, faults, NULL),
        E("FaultResetAfterBlocks", tg_conf_parse_unsigned, faults.reset_after_blocks, &range_blocks),
        E("FaultPowerLossAfterBlocks", tg_conf_parse_unsigned, faults.power_loss_after_blocks, &range_blocks),
        E("FaultCorruptAfterBlocks", tg_conf_parse_unsigned, faults.corrupt_after_blocks, &range_blocks),
};

static void location(char *buf, size_t size) {
        const char *file;
        unsigned line;

        tg_conf_location(&file, &line);
        if (file)
                snprintf(buf, size, "%s:%u", file, line);
        else
                snprintf(buf, size, "command line");
}

static bool name_ok(const char *name, char *reason, size_t reason_size) {
        if (!*name || strlen(name) > ECU_SIM_NAME_MAX) {
                snprintf(reason, reason_size, "a name has 1…%d characters", ECU_SIM_NAME_MAX);
                return false;
        }
        for (const char *p = name; *p; p++)
                if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') && !(*p >= '0' && *p <= '9') &&
                    !strchr("-_.", *p)) {
                        snprintf(reason, reason_size, "a name is made of letters, digits, '-', '_' and '.'");
                        return false;
                }
        return true;
}

EcuSimEcu *ecu_sim_config_add_ecu(EcuSimConfig *c, const char *name) {
        EcuSimEcu *ecus, *e;

        for (size_t i = 0; i < c->n_ecus; i++)
                if (streq(c->ecus[i].name, name)) {
                        errno = EEXIST;
                        return NULL;
                }
        if (c->n_ecus >= ECU_SIM_MAX_ECUS) {
                errno = E2BIG;
                return NULL;
        }
        ecus = realloc(c->ecus, (c->n_ecus + 1) * sizeof *ecus);
        if (!ecus)
                return NULL;
        c->ecus = ecus;
        e = &ecus[c->n_ecus];
        *e = (EcuSimEcu) {
                .address = UNSET,
                .request_id = UNSET,
                .response_id = UNSET,
                .bus_index = -1,
                .name = strdup(name),
        };
        if (!e->name)
                return NULL;
        location(e->where, sizeof e->where);
        c->n_ecus++;
        return e;
}

static void *lookup(void *userdata, const char *section, const char *arg, char *reason, size_t reason_size) {
        EcuSimConfig *c = userdata;

        if (!name_ok(arg, reason, reason_size))
                return NULL;
        if (streq(section, "Ecu")) {
                EcuSimEcu *e;

                for (size_t i = 0; i < c->n_ecus; i++)
                        if (streq(c->ecus[i].name, arg))
                                return &c->ecus[i];
                e = ecu_sim_config_add_ecu(c, arg);
                if (!e)
                        snprintf(reason, reason_size, "%s",
                                 errno == E2BIG ? "too many ECUs (at most 64)" : "out of memory");
                return e;
        }

        /* [Bus NAME] */
        EcuSimBus *buses, *b;
        for (size_t i = 0; i < c->n_buses; i++)
                if (streq(c->buses[i].name, arg))
                        return &c->buses[i];
        if (streq(arg, "ethernet")) {
                snprintf(reason, reason_size, "\"ethernet\" names the DoIP entity, not a CAN bus");
                return NULL;
        }
        if (c->n_buses >= ECU_SIM_MAX_BUSES) {
                snprintf(reason, reason_size, "too many buses (at most %d)", ECU_SIM_MAX_BUSES);
                return NULL;
        }
        buses = realloc(c->buses, (c->n_buses + 1) * sizeof *buses);
        if (!buses)
                return NULL;
        c->buses = buses;
        b = &buses[c->n_buses];
        *b = (EcuSimBus) {
                .name = strdup(arg),
                .padding = true,
                .block_size = 8,
                .functional_id = 0x7DF,
        };
        if (!b->name)
                return NULL;
        location(b->where, sizeof b->where);
        c->n_buses++;
        return b;
}

static const char *const arg_sections[] = { "Bus", "Ecu", NULL };

static const TgConfTable table = {
        .items = items,
        .n_items = ELEMENTSOF(items),
        .arg_sections = arg_sections,
        .lookup = lookup,
};

/* ---- checks across sections ---- */

static int fail(TgConfError *err, const char *where, const char *format, ...) _printf_(3, 4);
static int fail(TgConfError *err, const char *where, const char *format, ...) {
        char text[400];
        va_list ap;

        va_start(ap, format);
        vsnprintf(text, sizeof text, format, ap);
        va_end(ap);
        snprintf(err->text, sizeof err->text, "%s: %s", where, text);
        return -EBADMSG;
}

static const char *id_str(uint32_t id, char *buf, size_t size) {
        snprintf(buf, size, "0x%" PRIX32, id & CAN_EFF_MASK);
        return buf;
}

int ecu_sim_config_check(EcuSimConfig *c, TgConfError *err) {
        char a[16], b[16];

        for (size_t i = 0; i < c->n_buses; i++) {
                EcuSimBus *bus = &c->buses[i];
                if (!bus->spec)
                        return fail(err, bus->where, "[Bus %s]: Spec= is missing (a CAN interface or unix:PATH of a hub)",
                                    bus->name);
                if (!bus->fd && bus->data_length > 8)
                        return fail(err, bus->where, "[Bus %s] DataLength=%u: a classic CAN frame has 8 bytes (set FD=yes)",
                                    bus->name, bus->data_length);
                if (!bus->fd && bus->brs)
                        return fail(err, bus->where, "[Bus %s] BitRateSwitch=yes needs FD=yes", bus->name);
                if (bus->bitrate && startswith(bus->spec, "unix:"))
                        return fail(err, bus->where,
                                    "[Bus %s] BitRate= is for SocketCAN interfaces; a hub's pace is its --bitrate=",
                                    bus->name);
        }
        for (size_t i = 0; i < c->n_ecus; i++) {
                EcuSimEcu *e = &c->ecus[i];

                if (e->address == UNSET)
                        return fail(err, e->where, "[Ecu %s]: Address= is missing", e->name);
                if (e->bank_size == 0)
                        return fail(err, e->where, "[Ecu %s]: BankSize= is missing", e->name);
                for (size_t k = 0; k < i; k++)
                        if (c->ecus[k].address == e->address)
                                return fail(err, e->where, "[Ecu %s] Address=0x%04" PRIX32 ": [Ecu %s] has it already",
                                            e->name, e->address, c->ecus[k].name);
                e->bus_index = -1;
                if (!e->bus || streq(e->bus, "ethernet")) {
                        if (!c->listen)
                                return fail(err, e->where,
                                            "[Ecu %s] is on the Ethernet (DoIP), but [Vehicle] Listen= is not set",
                                            e->name);
                        continue;
                }
                for (size_t k = 0; k < c->n_buses; k++)
                        if (streq(c->buses[k].name, e->bus))
                                e->bus_index = (int) k;
                if (e->bus_index < 0)
                        return fail(err, e->where, "[Ecu %s] Bus=%s: there is no [Bus %s] (or say ethernet)", e->name,
                                    e->bus, e->bus);
                if (e->request_id == UNSET || e->response_id == UNSET)
                        return fail(err, e->where, "[Ecu %s]: an ECU on a CAN bus needs RequestId= and ResponseId=",
                                    e->name);
                if (e->request_id == e->response_id)
                        return fail(err, e->where, "[Ecu %s]: RequestId= and ResponseId= are the same id", e->name);
                EcuSimBus *bus = &c->buses[e->bus_index];
                if (e->request_id == bus->functional_id || e->response_id == bus->functional_id)
                        return fail(err, e->where, "[Ecu %s]: %s is the functional id of [Bus %s]", e->name,
                                    id_str(bus->functional_id, a, sizeof a), bus->name);
                for (size_t k = 0; k < i; k++) {
                        EcuSimEcu *o = &c->ecus[k];
                        if (o->bus_index != e->bus_index)
                                continue;
                        if (o->request_id == e->request_id || o->request_id == e->response_id ||
                            o->response_id == e->request_id || o->response_id == e->response_id)
                                return fail(err, e->where, "[Ecu %s]: ids %s/%s collide with [Ecu %s] on [Bus %s]",
                                            e->name, id_str(e->request_id, a, sizeof a),
                                            id_str(e->response_id, b, sizeof b), o->name, bus->name);
                }
        }
        return 0;
}

int ecu_sim_config_load(EcuSimConfig *c, const char *path, TgConfError *err) {
        int r = tg_conf_load(path, true, &table, c, err);
        if (r < 0)
                return r == -ENOMEM ? r : -EBADMSG;
        return ecu_sim_config_check(c, err);
}

int ecu_sim_config_parse(EcuSimConfig *c, const char *text, size_t size, const char *name, TgConfError *err) {
        int r = tg_conf_parse_buffer(text, size, name, &table, c, err);
        if (r < 0)
                return r == -ENOMEM ? r : -EBADMSG;
        return ecu_sim_config_check(c, err);
}

void ecu_sim_ecu_model_config(const EcuSimEcu *e, EcuModelConfig *ret) {
        *ret = (EcuModelConfig) {
                .ab_banks = e->ab_banks,
                .bank_size = (size_t) e->bank_size,
                .memory_address = e->memory_address,
                .initial_version = e->version,
                .part_number = e->part_number ? e->part_number : "TG-SIM",
                .serial = e->serial ? e->serial : "0000",
                .erase_time_ms = e->erase_time_ms,
                .write_speed = e->write_speed,
                .check_speed = e->check_speed,
                .max_block_length = (uint32_t) e->max_block_length,
                .pending_interval_ms = e->pending_interval_ms,
                .security_level = (uint8_t) e->security_level,
                .seed_len = (uint8_t) e->seed_length,
                .prng_seed = 0x5eed0000u + e->address,
                .preconditions_fail = e->preconditions_fail,
        };
}
