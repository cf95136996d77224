/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>

#include "gen-json.h"
#include "gen-topics.h"
#include "tg-macro.h"

/* Records generated for the first estimate of each class's mean payload size,
 * about 18 simulated minutes of driving (town and highway). */
#define CALIBRATION_RECORDS 30000
/* How often the reference mix re-derives its class probability from the
 * sizes written so far. */
#define REWEIGH_EVERY 4096

static inline double noisy(Gen *g, double v, double sigma) {
        return v + sigma * gen_rng_normal(&g->rng);
}

static inline const char *pick(Gen *g, const char *const *table, size_t n) {
        return table[gen_rng_below(&g->rng, (uint32_t) n)];
}
#define PICK(g, table) pick((g), (table), ELEMENTSOF(table))

static inline uint64_t trip_ms(const Gen *g) {
        return (uint64_t) (g->t * 1000);
}

/* ---- real-time ---------------------------------------------------------- */

/* 49–53 bytes: {"kmh":57.32,"accel":-0.42,"gear":"D","brake":false} */
static char *write_speed(Gen *g, char *p) {
        const GenCar *c = &g->car;
        double kmh = gen_car_kmh(c);

        p = J(p, "{\"kmh\":");
        p = json_fixed(p, kmh > 0 ? gen_clamp(noisy(g, kmh, 0.04), 0, 250) : 0, 2);
        p = J(p, ",\"accel\":");
        p = json_fixed(p, noisy(g, c->accel, 0.02), 2);
        p = c->phase == GEN_PHASE_PARKED || c->phase == GEN_PHASE_CHARGING ? J(p, ",\"gear\":\"P\",\"brake\":") :
                                                                              J(p, ",\"gear\":\"D\",\"brake\":");
        p = json_bool(p, c->brake > 0 || c->speed == 0);
        *p++ = '}';
        return p;
}

/* 100–106 bytes. GNSS noise grows with HDOP. */
static char *write_position(Gen *g, char *p) {
        const GenCar *c = &g->car;
        double err_deg = 1.2 * c->hdop / 111320.0;

        p = J(p, "{\"lat\":");
        p = json_fixed(p, noisy(g, c->lat, err_deg), 6);
        p = J(p, ",\"lon\":");
        p = json_fixed(p, noisy(g, c->lon, err_deg / c->cos_lat), 6);
        p = J(p, ",\"alt\":");
        p = json_fixed(p, noisy(g, c->alt, 1.5 * c->hdop), 1);
        p = J(p, ",\"heading\":");
        p = json_fixed(p, c->heading, 1);
        p = J(p, ",\"kmh\":");
        p = json_fixed(p, gen_car_kmh(c), 1);
        p = J(p, ",\"sats\":");
        p = json_u64(p, (uint64_t) c->sats);
        p = J(p, ",\"hdop\":");
        p = json_fixed(p, c->hdop, 2);
        p = c->sats >= 8 ? J(p, ",\"fix\":\"3d\"}") : J(p, ",\"fix\":\"2d\"}");
        return p;
}

#define BATTERY_CELLS_PER_RECORD 8
#define BATTERY_TEMPS_PER_RECORD 6

/* 270–280 bytes: pack values, a window of cell voltages that walks round the
 * pack (as a BMS multiplexes its cell monitors), temperatures. */
static char *write_battery(Gen *g, char *p) {
        const GenCar *c = &g->car;
        double cell = c->pack_v / GEN_CELLS;
        unsigned first = g->cell_cursor, tfirst = (first / BATTERY_CELLS_PER_RECORD) % 2 * BATTERY_TEMPS_PER_RECORD;

        p = J(p, "{\"soc\":");
        p = json_fixed(p, c->soc, 2);
        p = J(p, ",\"soh\":");
        p = json_fixed(p, c->soh, 1);
        p = J(p, ",\"pack_v\":");
        p = json_fixed(p, noisy(g, c->pack_v, 0.05), 2);
        p = J(p, ",\"pack_i\":");
        p = json_fixed(p, noisy(g, c->pack_i, 0.3), 1);
        p = J(p, ",\"power_kw\":");
        p = json_fixed(p, c->power_kw, 2);
        p = J(p, ",\"iso_kohm\":");
        p = json_u64(p, (uint64_t) gen_clamp(c->isolation_kohm, 0, 99999));
        p = J(p, ",\"cells\":{\"first\":");
        p = json_u64(p, first + 1);
        p = J(p, ",\"v\":[");
        for (unsigned i = 0; i < BATTERY_CELLS_PER_RECORD; i++) {
                if (i > 0)
                        *p++ = ',';
                p = json_fixed(p, gen_car_cell_v(c, &g->rng, first + i), 3);
        }
        p = J(p, "]},\"cell_v_min\":");
        p = json_fixed(p, cell + (g->cell_min_mv + 0.8 * gen_rng_normal(&g->rng)) * 0.001, 3);
        p = J(p, ",\"cell_v_max\":");
        p = json_fixed(p, cell + (g->cell_max_mv + 0.8 * gen_rng_normal(&g->rng)) * 0.001, 3);
        p = J(p, ",\"temp_c\":[");
        for (unsigned i = 0; i < BATTERY_TEMPS_PER_RECORD; i++) {
                if (i > 0)
                        *p++ = ',';
                p = json_fixed(p, noisy(g, c->temp_c[tfirst + i], 0.05), 1);
        }
        p = J(p, "],\"coolant_c\":");
        p = json_fixed(p, c->coolant_c, 1);
        p = c->phase == GEN_PHASE_CHARGING ? J(p, ",\"state\":\"charging\"}") :
            c->pack_i < -1                 ? J(p, ",\"state\":\"regen\"}") :
                                             J(p, ",\"state\":\"discharge\"}");

        g->cell_cursor = (first + BATTERY_CELLS_PER_RECORD) % GEN_CELLS;
        return p;
}

static const struct {
        const char *dtc, *ecu, *desc;
} faults[16] = {
        { "P0AA6", "BMS", "hybrid battery voltage isolation fault" },
        { "P0A80", "BMS", "replace hybrid battery pack" },
        { "P0A7F", "BMS", "battery pack deterioration" },
        { "P0AFA", "BMS", "battery system voltage low" },
        { "P0C73", "VCU", "motor electronics coolant pump control" },
        { "P0A3F", "MCU", "drive motor position sensor circuit" },
        { "P0A2C", "MCU", "drive motor temperature sensor circuit" },
        { "P0D27", "OBC", "battery charger input voltage low" },
        { "U0100", "GW", "lost communication with ECM/PCM" },
        { "U0121", "GW", "lost communication with ABS module" },
        { "U0293", "GW", "lost communication with hybrid control" },
        { "C0035", "ESC", "left front wheel speed sensor circuit" },
        { "C0040", "ESC", "right front wheel speed sensor circuit" },
        { "C0545", "EPS", "steering torque sensor signal" },
        { "B1318", "BCM", "battery voltage low" },
        { "B0001", "SRS", "driver frontal stage 1 deployment" },
};

/* 195–235 bytes: a diagnostic trouble code with its freeze frame. */
static char *write_fault(Gen *g, char *p) {
        static const char *const severity[] = { "info", "warning", "warning", "critical" };
        const GenCar *c = &g->car;
        unsigned f = gen_rng_below(&g->rng, ELEMENTSOF(faults));
        uint32_t status = gen_rng_below(&g->rng, 10);
        double tmax = c->temp_c[0];

        for (unsigned i = 1; i < GEN_TEMP_SENSORS; i++)
                tmax = c->temp_c[i] > tmax ? c->temp_c[i] : tmax;
        g->fault_count[f]++;

        p = J(p, "{\"dtc\":");
        p = json_str(p, faults[f].dtc);
        p = J(p, ",\"desc\":");
        p = json_str(p, faults[f].desc);
        p = J(p, ",\"ecu\":");
        p = json_str(p, faults[f].ecu);
        p = J(p, ",\"severity\":");
        p = json_str(p, PICK(g, severity));
        p = status < 7 ? J(p, ",\"status\":\"active\"") : status < 9 ? J(p, ",\"status\":\"intermittent\"") :
                                                                          J(p, ",\"status\":\"cleared\"");
        p = J(p, ",\"count\":");
        p = json_u64(p, g->fault_count[f]);
        p = J(p, ",\"freeze\":{\"kmh\":");
        p = json_fixed(p, gen_car_kmh(c), 1);
        p = J(p, ",\"soc\":");
        p = json_fixed(p, c->soc, 1);
        p = J(p, ",\"pack_v\":");
        p = json_fixed(p, c->pack_v, 1);
        p = J(p, ",\"pack_i\":");
        p = json_fixed(p, c->pack_i, 1);
        p = J(p, ",\"cell_t_max\":");
        p = json_fixed(p, tmax, 1);
        p = J(p, ",\"odo_km\":");
        p = json_fixed(p, c->odo_km, 1);
        p = J(p, "}}");
        return p;
}

static const char *const queries_zh[] = {
        "导航到最近的充电站",
        "今天天气怎么样",
        "把空调调到二十二度",
        "播放周杰伦的歌",
        "附近有什么好吃的",
        "还能开多少公里",
        "打电话给妈妈",
        "明天早上八点提醒我去保养",
};

static const char *const queries_en[] = {
        "navigate to the nearest fast charger",
        "what is the weather at my destination",
        "how far can I drive on the current charge",
        "find a parking garage near the office",
        "play the news",
        "is the road to the airport congested",
        "book a service appointment for next week",
        "what does the orange battery light mean",
};

/* 130–155 bytes: a spoken request the cloud must answer now. */
static char *write_voice(Gen *g, char *p) {
        const GenUser *u = &g->users[g->user];
        const GenCar *c = &g->car;
        bool zh = u->lang[0] == 'z';

        if (g->t >= g->voice_session_end) {
                g->voice_session = (uint32_t) gen_rng_next(&g->rng);
                g->voice_turn = 0;
        }
        g->voice_turn++;
        g->voice_session_end = g->t + 30;

        p = J(p, "{\"session\":\"");
        for (int shift = 28; shift >= 0; shift -= 4)
                *p++ = "0123456789abcdef"[g->voice_session >> shift & 0xf];
        p = J(p, "\",\"turn\":");
        p = json_u64(p, g->voice_turn);
        p = J(p, ",\"lang\":");
        p = json_str(p, u->lang);
        p = J(p, ",\"text\":");
        p = json_str(p, zh ? PICK(g, queries_zh) : PICK(g, queries_en));
        p = J(p, ",\"asr_conf\":");
        p = json_fixed(p, gen_clamp(noisy(g, 0.9, 0.03), 0.5, 0.99), 2);
        p = J(p, ",\"kmh\":");
        p = json_fixed(p, gen_car_kmh(c), 1);
        p = J(p, ",\"lat\":");
        p = json_fixed(p, c->lat, 5);
        p = J(p, ",\"lon\":");
        p = json_fixed(p, c->lon, 5);
        *p++ = '}';
        return p;
}

/* ---- deferred ----------------------------------------------------------- */

#define BEHAVIOUR_SAMPLES 10
#define BEHAVIOUR_HZ 100

static inline __attribute__((always_inline)) char *write_samples(Gen *g, char *p, double v, double sigma, double lo,
                                                                  double hi, unsigned decimals) {
        *p++ = '[';
        for (unsigned i = 0; i < BEHAVIOUR_SAMPLES; i++) {
                if (i > 0)
                        *p++ = ',';
                p = json_fixed(p, gen_clamp(noisy(g, v, sigma), lo, hi), decimals);
        }
        *p++ = ']';
        return p;
}

/* 320–425 bytes: 100 ms of IMU and pedal samples at 100 Hz. */
static char *write_behaviour(Gen *g, char *p) {
        const GenCar *c = &g->car;
        const char *event = "none";
        bool moving = c->speed > 0.1;

        if (c->accel < -3)
                event = "harsh_brake";
        else if (c->accel > 2)
                event = "harsh_accel";
        else if (c->lat_accel > 3 || c->lat_accel < -3)
                event = "sharp_turn";

        p = J(p, "{\"trip_ms\":");
        p = json_u64(p, trip_ms(g));
        p = J(p, ",\"hz\":100,\"ax\":");
        /* Road and drivetrain vibration only while rolling. */
        p = write_samples(g, p, c->accel, moving ? 0.12 : 0.01, -12, 12, 2);
        p = J(p, ",\"ay\":");
        p = write_samples(g, p, c->lat_accel, moving ? 0.08 : 0.01, -12, 12, 2);
        p = J(p, ",\"yaw\":");
        p = write_samples(g, p, c->yaw_rate, moving ? 0.15 : 0.02, -90, 90, 1);
        p = J(p, ",\"steer\":");
        p = write_samples(g, p, c->steer, 0.3, -540, 540, 1);
        p = J(p, ",\"thr\":");
        p = write_samples(g, p, c->throttle, c->throttle > 0 ? 0.8 : 0, 0, 100, 0);
        p = J(p, ",\"brk\":");
        p = write_samples(g, p, c->brake, c->brake > 0 ? 0.8 : 0, 0, 100, 0);
        p = J(p, ",\"kmh\":");
        p = json_fixed(p, gen_car_kmh(c), 1);
        p = J(p, ",\"event\":");
        p = json_str(p, event);
        *p++ = '}';
        return p;
}

typedef enum ItemKind {
        COUNTER, /* grows (or wears down) with distance and time */
        GAUGE,   /* wanders round its initial value */
} ItemKind;

typedef struct ComponentItem {
        const char *name;
        ItemKind kind;
        double start_lo, start_hi;
        double per_km, per_hour; /* COUNTER: mean increase; GAUGE: per_km is the noise */
        unsigned decimals;
} ComponentItem;

static const struct {
        const char *ecu;
        ComponentItem items[GEN_COMPONENT_ITEMS];
} component_groups[GEN_COMPONENT_GROUPS] = {
        { "BCM", {
                { "door_fl_cycles", COUNTER, 4000, 20000, 0.08, 0, 0 },
                { "door_fr_cycles", COUNTER, 2000, 12000, 0.05, 0, 0 },
                { "door_rl_cycles", COUNTER, 500, 6000, 0.02, 0, 0 },
                { "door_rr_cycles", COUNTER, 500, 6000, 0.02, 0, 0 },
                { "tailgate_cycles", COUNTER, 300, 3000, 0.01, 0, 0 },
                { "wiper_cycles", COUNTER, 20000, 200000, 0, 45, 0 },
                { "window_fl_cycles", COUNTER, 3000, 15000, 0.1, 0, 0 },
                { "mirror_fold_cycles", COUNTER, 2000, 9000, 0.03, 0, 0 },
                { "seat_motor_s", COUNTER, 1000, 8000, 0, 1.5, 1 },
                { "lowbeam_h", COUNTER, 200, 2000, 0, 0.6, 2 },
        } },
        { "EDU", {
                { "motor_op_h", COUNTER, 300, 2500, 0, 1, 3 },
                { "inverter_op_h", COUNTER, 300, 2500, 0, 1, 3 },
                { "motor_revs_m", COUNTER, 20, 200, 0.0045, 0, 3 },
                { "park_lock_cycles", COUNTER, 3000, 30000, 0.05, 0, 0 },
                { "gear_shifts", COUNTER, 6000, 60000, 0.12, 0, 0 },
                { "coolant_pump_h", COUNTER, 300, 2500, 0, 1, 2 },
                { "propulsion_kwh", COUNTER, 1500, 9000, 0.16, 0, 1 },
                { "regen_kwh", COUNTER, 300, 2000, 0.03, 0, 1 },
                { "inverter_t_max_c", GAUGE, 55, 70, 0.3, 0, 1 },
                { "bearing_vib_g", GAUGE, 0.08, 0.2, 0.004, 0, 3 },
        } },
        { "BMS", {
                { "throughput_kwh", COUNTER, 1500, 9000, 0.17, 0, 1 },
                { "charge_cycles", COUNTER, 50, 600, 0.0025, 0, 0 },
                { "fast_charges", COUNTER, 10, 200, 0.0008, 0, 0 },
                { "contactor_cycles", COUNTER, 1000, 12000, 0.05, 0, 0 },
                { "precharge_cycles", COUNTER, 1000, 12000, 0.05, 0, 0 },
                { "balancing_h", COUNTER, 50, 900, 0, 0.3, 2 },
                { "cell_dv_max_mv", GAUGE, 12, 30, 0.5, 0, 0 },
                { "cell_t_max_c", GAUGE, 32, 42, 0.2, 0, 1 },
                { "capacity_ah", GAUGE, 185, 198, 0.02, 0, 2 },
                { "resistance_mohm", GAUGE, 55, 75, 0.1, 0, 1 },
        } },
        { "ESC", {
                { "brake_applications", COUNTER, 20000, 150000, 1.5, 0, 0 },
                { "pad_fl_mm", COUNTER, 6, 11, -0.00004, 0, 2 },
                { "pad_fr_mm", COUNTER, 6, 11, -0.00004, 0, 2 },
                { "pad_rl_mm", COUNTER, 7, 11, -0.00002, 0, 2 },
                { "pad_rr_mm", COUNTER, 7, 11, -0.00002, 0, 2 },
                { "epb_cycles", COUNTER, 2000, 20000, 0.05, 0, 0 },
                { "abs_events", COUNTER, 10, 500, 0.01, 0, 0 },
                { "tire_fl_kpa", GAUGE, 235, 250, 0.4, 0, 0 },
                { "tire_rr_kpa", GAUGE, 235, 250, 0.4, 0, 0 },
                { "esc_interventions", COUNTER, 5, 300, 0.005, 0, 0 },
        } },
};

static void components_init(Gen *g) {
        for (unsigned k = 0; k < GEN_COMPONENT_GROUPS; k++)
                for (unsigned i = 0; i < GEN_COMPONENT_ITEMS; i++) {
                        const ComponentItem *it = &component_groups[k].items[i];
                        g->component_value[k][i] = it->start_lo + (it->start_hi - it->start_lo) * gen_rng_unit(&g->rng);
                        g->component_t[k] = -1;
                }
}

/* 245–290 bytes: the wear counters one ECU keeps, ECUs in turn. */
static char *write_component(Gen *g, char *p) {
        unsigned k = g->component_group;
        double dkm = g->car.odo_km - g->component_odo[k], dh = (g->t - g->component_t[k]) / 3600;

        if (g->component_t[k] < 0)
                dkm = dh = 0; /* first report of this ECU */
        g->component_odo[k] = g->car.odo_km;
        g->component_t[k] = g->t;
        g->component_group = (k + 1) % GEN_COMPONENT_GROUPS;

        p = J(p, "{\"ecu\":");
        p = json_str(p, component_groups[k].ecu);
        p = J(p, ",\"odo_km\":");
        p = json_fixed(p, g->car.odo_km, 1);
        p = J(p, ",\"op_h\":");
        p = json_fixed(p, g->t / 3600, 3);
        p = J(p, ",\"items\":{");
        for (unsigned i = 0; i < GEN_COMPONENT_ITEMS; i++) {
                const ComponentItem *it = &component_groups[k].items[i];
                double *v = &g->component_value[k][i];

                if (it->kind == COUNTER)
                        *v += (it->per_km * dkm + it->per_hour * dh) * 2 * gen_rng_unit(&g->rng);
                else
                        *v += it->per_km * gen_rng_normal(&g->rng);
                if (i > 0)
                        *p++ = ',';
                p = json_str(p, it->name);
                *p++ = ':';
                /* Counters report whole units once they have moved on; wear in mm keeps two places. */
                p = json_fixed(p, *v, it->decimals);
        }
        p = J(p, "}}");
        return p;
}

/* ~300 bytes: the active driver's profile, as synchronised to the cloud. */
static char *write_profile(Gen *g, char *p) {
        const GenUser *u = &g->users[g->user];

        p = J(p, "{\"user\":");
        p = json_str(p, u->id);
        p = J(p, ",\"name\":");
        p = json_str(p, u->name);
        p = J(p, ",\"lang\":");
        p = json_str(p, u->lang);
        p = J(p, ",\"units\":");
        p = json_str(p, u->units);
        p = J(p, ",\"seat\":{\"slide_mm\":");
        p = json_fixed(p, u->slide_mm, 0);
        p = J(p, ",\"height_mm\":");
        p = json_fixed(p, u->height_mm, 0);
        p = J(p, ",\"recline_deg\":");
        p = json_fixed(p, u->recline_deg, 1);
        p = J(p, ",\"lumbar\":");
        p = json_u64(p, (uint64_t) u->lumbar);
        p = J(p, "},\"mirror\":{\"l\":[");
        p = json_i64(p, u->mirror[0]);
        *p++ = ',';
        p = json_i64(p, u->mirror[1]);
        p = J(p, "],\"r\":[");
        p = json_i64(p, u->mirror[2]);
        *p++ = ',';
        p = json_i64(p, u->mirror[3]);
        p = J(p, "]},\"climate\":{\"temp_c\":");
        p = json_fixed(p, u->temp_c, 1);
        p = J(p, ",\"fan\":");
        p = json_u64(p, (uint64_t) u->fan);
        p = J(p, ",\"auto\":");
        p = json_bool(p, u->climate_auto);
        p = J(p, "},\"drive_mode\":");
        p = json_str(p, u->drive_mode);
        p = J(p, ",\"regen\":");
        p = json_u64(p, (uint64_t) u->regen);
        p = J(p, ",\"ambient_light\":");
        p = json_str(p, u->light);
        p = J(p, ",\"volume\":");
        p = json_u64(p, (uint64_t) u->volume);
        p = J(p, ",\"trip_ms\":");
        p = json_u64(p, trip_ms(g));
        *p++ = '}';
        return p;
}

static const char *const drive_modes[] = { "eco", "comfort", "sport" };
static const char *const lights[] = { "white", "blue", "amber", "red", "purple" };
static const char *const pref_sources[] = { "hmi", "hmi", "hmi", "voice", "app" };

static int step_int(Gen *g, int v, int lo, int hi) {
        v += gen_rng_unit(&g->rng) < 0.5 ? -1 : 1;
        return v < lo ? lo + 1 : v > hi ? hi - 1 : v;
}

/* 80–100 bytes: one setting the driver changed; the profile follows. */
static char *write_preferences(Gen *g, char *p) {
        GenUser *u = &g->users[g->user];
        unsigned key = gen_rng_below(&g->rng, 7);

        p = J(p, "{\"user\":");
        p = json_str(p, u->id);
        switch (key) {
        case 0: {
                double prev = u->temp_c;
                u->temp_c = gen_clamp(u->temp_c + (gen_rng_unit(&g->rng) < 0.5 ? -0.5 : 0.5), 16, 30);
                p = J(p, ",\"key\":\"climate.temp_c\",\"value\":");
                p = json_fixed(p, u->temp_c, 1);
                p = J(p, ",\"prev\":");
                p = json_fixed(p, prev, 1);
                break;
        }
        case 1: {
                int prev = u->fan;
                u->fan = step_int(g, u->fan, 1, 7);
                p = J(p, ",\"key\":\"climate.fan\",\"value\":");
                p = json_u64(p, (uint64_t) u->fan);
                p = J(p, ",\"prev\":");
                p = json_u64(p, (uint64_t) prev);
                break;
        }
        case 2: {
                int prev = u->volume;
                u->volume = step_int(g, u->volume, 0, 30);
                p = J(p, ",\"key\":\"media.volume\",\"value\":");
                p = json_u64(p, (uint64_t) u->volume);
                p = J(p, ",\"prev\":");
                p = json_u64(p, (uint64_t) prev);
                break;
        }
        case 3: {
                const char *prev = u->drive_mode;
                u->drive_mode = PICK(g, drive_modes);
                p = J(p, ",\"key\":\"drive.mode\",\"value\":");
                p = json_str(p, u->drive_mode);
                p = J(p, ",\"prev\":");
                p = json_str(p, prev);
                break;
        }
        case 4: {
                int prev = u->regen;
                u->regen = step_int(g, u->regen, 0, 3);
                p = J(p, ",\"key\":\"drive.regen\",\"value\":");
                p = json_u64(p, (uint64_t) u->regen);
                p = J(p, ",\"prev\":");
                p = json_u64(p, (uint64_t) prev);
                break;
        }
        case 5: {
                const char *prev = u->light;
                u->light = PICK(g, lights);
                p = J(p, ",\"key\":\"ambient.color\",\"value\":");
                p = json_str(p, u->light);
                p = J(p, ",\"prev\":");
                p = json_str(p, prev);
                break;
        }
        default: {
                double prev = u->recline_deg;
                u->recline_deg = gen_clamp(noisy(g, u->recline_deg, 1.5), 10, 40);
                p = J(p, ",\"key\":\"seat.recline_deg\",\"value\":");
                p = json_fixed(p, u->recline_deg, 1);
                p = J(p, ",\"prev\":");
                p = json_fixed(p, prev, 1);
                break;
        }
        }
        p = J(p, ",\"src\":");
        p = json_str(p, PICK(g, pref_sources));
        p = J(p, ",\"kmh\":");
        p = json_fixed(p, gen_car_kmh(&g->car), 1);
        *p++ = '}';
        return p;
}

static const struct {
        const char *name;
        const char *targets[4];
} screens[] = {
        { "home", { "tile_nav", "tile_media", "tile_climate", "tile_phone" } },
        { "nav", { "search_box", "btn_zoom_in", "btn_recenter", "route_option" } },
        { "media", { "btn_next", "btn_play_pause", "source_bt", "playlist_item" } },
        { "climate", { "temp_up", "temp_down", "fan_speed", "seat_heat_left" } },
        { "phone", { "contact_item", "btn_dial", "btn_hangup", "recent_calls" } },
        { "vehicle", { "tpms_view", "drive_mode", "regen_level", "lights_menu" } },
        { "charging", { "charge_limit", "schedule", "btn_stop_charge", "station_list" } },
        { "settings", { "display_brightness", "language", "sound_eq", "profile_switch" } },
};

static const char *const wheel_buttons[] = {
        "swc_vol_up", "swc_vol_down", "swc_next", "swc_prev", "swc_voice", "swc_ok", "swc_back",
};

/* 100–210 bytes: touches, swipes, steering-wheel buttons, screen changes. */
static char *write_hmi(Gen *g, char *p) {
        unsigned s = g->hmi_screen, kind = gen_rng_below(&g->rng, 20);
        double kmh = gen_car_kmh(&g->car);

        p = J(p, "{\"screen\":");
        p = json_str(p, screens[s].name);
        if (kind < 11) {
                p = J(p, ",\"event\":\"touch\",\"target\":");
                p = json_str(p, screens[s].targets[gen_rng_below(&g->rng, 4)]);
                p = J(p, ",\"x\":");
                p = json_u64(p, gen_rng_below(&g->rng, 1920));
                p = J(p, ",\"y\":");
                p = json_u64(p, gen_rng_below(&g->rng, 720));
                p = J(p, ",\"dur_ms\":");
                p = json_u64(p, 40 + gen_rng_below(&g->rng, 260));
        } else if (kind < 14) {
                uint32_t x = gen_rng_below(&g->rng, 1920), y = gen_rng_below(&g->rng, 720);
                p = J(p, ",\"event\":\"swipe\",\"x\":");
                p = json_u64(p, x);
                p = J(p, ",\"y\":");
                p = json_u64(p, y);
                p = J(p, ",\"x2\":");
                p = json_u64(p, (x + 1920 - 200 - gen_rng_below(&g->rng, 600)) % 1920);
                p = J(p, ",\"y2\":");
                p = json_u64(p, (y + gen_rng_below(&g->rng, 80)) % 720);
                p = J(p, ",\"vel_px_s\":");
                p = json_u64(p, 800 + gen_rng_below(&g->rng, 3000));
        } else if (kind < 18) {
                p = J(p, ",\"event\":\"button\",\"button\":");
                p = json_str(p, PICK(g, wheel_buttons));
                p = J(p, ",\"hold_ms\":");
                p = json_u64(p, 60 + gen_rng_below(&g->rng, 600));
                p = J(p, ",\"repeat\":");
                p = json_u64(p, 1 + gen_rng_below(&g->rng, 3));
        } else {
                unsigned to = gen_rng_below(&g->rng, ELEMENTSOF(screens));
                p = J(p, ",\"event\":\"navigate\",\"to\":");
                p = json_str(p, screens[to].name);
                p = J(p, ",\"latency_ms\":");
                p = json_u64(p, 90 + gen_rng_below(&g->rng, 250));
                p = J(p, ",\"frames_dropped\":");
                p = json_u64(p, gen_rng_below(&g->rng, 4) == 0 ? gen_rng_below(&g->rng, 6) : 0);
                g->hmi_screen = to;
        }
        if (gen_rng_below(&g->rng, 3) == 0) {
                p = J(p, ",\"ctx\":{\"route_active\":");
                p = json_bool(p, g->car.phase == GEN_PHASE_HIGHWAY || s == 1);
                p = J(p, ",\"media_src\":\"bt\",\"call_active\":");
                p = json_bool(p, s == 4);
                p = J(p, ",\"passengers\":");
                p = json_u64(p, 1 + (g->user == 2));
                *p++ = '}';
        }
        p = J(p, ",\"kmh\":");
        p = json_fixed(p, kmh, 1);
        p = J(p, ",\"trip_ms\":");
        p = json_u64(p, trip_ms(g));
        *p++ = '}';
        return p;
}

const GenTopic gen_topics[_GEN_TOPIC_MAX] = {
        [GEN_TOPIC_SPEED] = { "vehicle.speed", GEN_REALTIME, 10, false, 40, 60, write_speed },
        [GEN_TOPIC_POSITION] = { "vehicle.position", GEN_REALTIME, 5, false, 90, 130, write_position },
        [GEN_TOPIC_BATTERY] = { "battery.realtime", GEN_REALTIME, 1, false, 200, 400, write_battery },
        [GEN_TOPIC_FAULT] = { "fault.alarm", GEN_REALTIME, 1.0 / 120, true, 100, 250, write_fault },
        [GEN_TOPIC_VOICE] = { "voice.query", GEN_REALTIME, 1.0 / 180, true, 32, 250, write_voice },
        [GEN_TOPIC_BEHAVIOUR] = { "analytics.driving.behaviour", GEN_DEFERRED, 10, false, 300, 512, write_behaviour },
        [GEN_TOPIC_COMPONENT] = { "analytics.component.life", GEN_DEFERRED, 0.2, false, 200, 450, write_component },
        [GEN_TOPIC_PROFILE] = { "ops.user.profile", GEN_DEFERRED, 1.0 / 300, true, 250, 350, write_profile },
        [GEN_TOPIC_PREFERENCES] = { "ops.preferences", GEN_DEFERRED, 1.0 / 45, true, 70, 130, write_preferences },
        [GEN_TOPIC_HMI] = { "ops.hmi.interaction", GEN_DEFERRED, 0.5, true, 80, 250, write_hmi },
};

const char *gen_class_to_string(GenClass c) {
        return c == GEN_REALTIME ? "realtime" : "deferred";
}

static const char *const mix_names[_GEN_MIX_MAX] = {
        [GEN_MIX_REFERENCE] = "reference",
        [GEN_MIX_DRIVE] = "drive",
};

const char *gen_mix_to_string(GenMix m) {
        return mix_names[m];
}

GenMix gen_mix_from_string(const char *s) {
        for (unsigned i = 0; i < _GEN_MIX_MAX; i++)
                if (strcmp(s, mix_names[i]) == 0)
                        return (GenMix) i;
        return (GenMix) -1;
}

static void users_init(Gen *g) {
        static const struct {
                const char *name, *lang, *mode, *light;
        } who[GEN_USERS] = {
                { "Driver 1", "zh-CN", "comfort", "blue" },
                { "Driver 2", "zh-CN", "sport", "red" },
                { "Guest", "en-US", "eco", "white" },
        };

        for (unsigned i = 0; i < GEN_USERS; i++) {
                GenUser *u = &g->users[i];
                *u = (GenUser) {
                        .name = who[i].name,
                        .lang = who[i].lang,
                        .units = "metric",
                        .drive_mode = who[i].mode,
                        .light = who[i].light,
                        .slide_mm = 150 + gen_rng_below(&g->rng, 120),
                        .height_mm = 10 + gen_rng_below(&g->rng, 50),
                        .recline_deg = 18 + 10 * gen_rng_unit(&g->rng),
                        .temp_c = 19 + 0.5 * gen_rng_below(&g->rng, 10),
                        .lumbar = (int) gen_rng_below(&g->rng, 5),
                        .fan = 2 + (int) gen_rng_below(&g->rng, 4),
                        .regen = (int) gen_rng_below(&g->rng, 4),
                        .volume = 8 + (int) gen_rng_below(&g->rng, 14),
                        .climate_auto = gen_rng_below(&g->rng, 4) != 0,
                };
                snprintf(u->id, sizeof u->id, "u-%06x", (unsigned) (gen_rng_next(&g->rng) & 0xffffff));
                for (unsigned m = 0; m < 4; m++)
                        u->mirror[m] = (int) gen_rng_below(&g->rng, 30) - 15;
        }
        g->user = gen_rng_below(&g->rng, GEN_USERS);
}

/* P(real-time) such that real-time records carry `share` of the payload bytes,
 * given the mean payload size of each class: p·m_rt / (p·m_rt + (1−p)·m_d) = share. */
static void set_realtime_probability(Gen *g, double mean_rt, double mean_d) {
        const double s = GEN_REFERENCE_REALTIME_SHARE;

        g->p_realtime = s * mean_d / (s * mean_d + (1 - s) * mean_rt);
        g->realtime_threshold = (uint32_t) gen_clamp(g->p_realtime * 4294967296.0, 0, 4294967295.0);
}

static void reweigh(Gen *g) {
        const GenStats *rt = &g->class_stats[GEN_REALTIME], *d = &g->class_stats[GEN_DEFERRED];

        /* The calibration run stays in as a prior, so early estimates are steady. */
        set_realtime_probability(g, (double) (g->prior[GEN_REALTIME].bytes + rt->bytes) /
                                            (double) (g->prior[GEN_REALTIME].records + rt->records),
                                 (double) (g->prior[GEN_DEFERRED].bytes + d->bytes) /
                                         (double) (g->prior[GEN_DEFERRED].records + d->records));
        g->next_reweigh += REWEIGH_EVERY;
}

/* Within each class, topics keep their drive-scenario proportions. */
static void reference_init(Gen *g, uint64_t seed) {
        char buf[GEN_BUFFER_SIZE];
        double hz[_GEN_CLASS_MAX] = {};
        GenTopicId id;
        Gen cal;

        for (unsigned i = 0; i < _GEN_TOPIC_MAX; i++)
                hz[gen_topics[i].class] += gen_topics[i].drive_hz;
        for (unsigned i = 0; i < _GEN_TOPIC_MAX; i++) {
                GenClass c = gen_topics[i].class;
                unsigned k = g->n_topics[c]++;
                double cum = (k > 0 ? g->topic_cum[c][k - 1] : 0) + gen_topics[i].drive_hz / hz[c] * 4294967296.0;

                g->topic_of[c][k] = (uint8_t) i;
                g->topic_cum[c][k] = cum >= 4294967295.0 ? UINT32_MAX : (uint32_t) cum;
        }

        /* Mean payload size per class, measured on a drive with its own seed. */
        gen_init(&cal, GEN_MIX_DRIVE, seed ^ UINT64_C(0x5eed5eed5eed5eed));
        for (unsigned n = 0; n < CALIBRATION_RECORDS; n++)
                (void) gen_next(&cal, &id, buf);
        memcpy(g->prior, cal.class_stats, sizeof g->prior);
        g->next_reweigh = 0;
        reweigh(g);

        /* Simulated time runs so that deferred topics keep their drive frequencies. */
        g->ref_dt = (1 - g->p_realtime) / hz[GEN_DEFERRED];
}

static void drive_init(Gen *g) {
        for (unsigned i = 0; i < _GEN_TOPIC_MAX; i++) {
                const GenTopic *t = &gen_topics[i];
                g->due[i] = t->irregular ? gen_rng_exp(&g->rng, 1 / t->drive_hz) : gen_rng_unit(&g->rng) / t->drive_hz;
        }
}

void gen_init(Gen *g, GenMix mix, uint64_t seed) {
        *g = (Gen) { .mix = mix, .rng = { seed } };
        gen_car_init(&g->car, &g->rng);
        /* The weakest and strongest cells, for the pack-wide minimum and maximum. */
        g->cell_min_mv = g->cell_max_mv = g->car.cell_offset_mv[0];
        for (unsigned i = 1; i < GEN_CELLS; i++) {
                g->cell_min_mv = MIN(g->cell_min_mv, g->car.cell_offset_mv[i]);
                g->cell_max_mv = MAX(g->cell_max_mv, g->car.cell_offset_mv[i]);
        }
        components_init(g);
        users_init(g);
        g->hmi_screen = 0;
        if (mix == GEN_MIX_REFERENCE)
                reference_init(g, seed);
        else
                drive_init(g);
}

static GenTopicId drive_pick(Gen *g) {
        unsigned best = 0;

        for (unsigned i = 1; i < _GEN_TOPIC_MAX; i++)
                if (g->due[i] < g->due[best])
                        best = i;
        g->t = g->due[best];
        if (gen_topics[best].irregular)
                g->due[best] += gen_rng_exp(&g->rng, 1 / gen_topics[best].drive_hz);
        else
                g->due[best] += 1 / gen_topics[best].drive_hz;
        return (GenTopicId) best;
}

static GenTopicId reference_pick(Gen *g) {
        uint64_t x = gen_rng_next(&g->rng);
        GenClass c = (uint32_t) (x >> 32) < g->realtime_threshold ? GEN_REALTIME : GEN_DEFERRED;
        uint32_t u = (uint32_t) x;
        unsigned k = 0;

        while (k + 1 < g->n_topics[c] && u >= g->topic_cum[c][k])
                k++;
        g->t += g->ref_dt;
        return (GenTopicId) g->topic_of[c][k];
}

double gen_next_time(const Gen *g) {
        double t;

        if (g->mix == GEN_MIX_REFERENCE)
                return g->t + g->ref_dt;
        t = g->due[0];
        for (unsigned i = 1; i < _GEN_TOPIC_MAX; i++)
                t = g->due[i] < t ? g->due[i] : t;
        return t;
}

static inline void stats_add(GenStats *s, uint32_t n) {
        if (s->records == 0 || n < s->min)
                s->min = n;
        if (n > s->max)
                s->max = n;
        s->records++;
        s->bytes += n;
}

size_t gen_next(Gen *g, GenTopicId *ret_topic, char *buf) {
        GenTopicId id = g->mix == GEN_MIX_DRIVE ? drive_pick(g) : reference_pick(g);
        size_t n;

        gen_car_advance(&g->car, &g->rng, g->t);
        n = (size_t) (gen_topics[id].write(g, buf) - buf);
        stats_add(&g->stats[id], (uint32_t) n);
        stats_add(&g->class_stats[gen_topics[id].class], (uint32_t) n);
        if (g->mix == GEN_MIX_REFERENCE &&
            g->class_stats[GEN_REALTIME].records + g->class_stats[GEN_DEFERRED].records >= g->next_reweigh)
                reweigh(g);
        *ret_topic = id;
        return n;
}

double gen_topic_weight(const Gen *g, GenTopicId id) {
        GenClass c = gen_topics[id].class;
        double class_hz = 0, all_hz = 0;

        for (unsigned i = 0; i < _GEN_TOPIC_MAX; i++) {
                all_hz += gen_topics[i].drive_hz;
                if (gen_topics[i].class == c)
                        class_hz += gen_topics[i].drive_hz;
        }
        if (g->mix == GEN_MIX_DRIVE)
                return gen_topics[id].drive_hz / all_hz;
        return (c == GEN_REALTIME ? g->p_realtime : 1 - g->p_realtime) * gen_topics[id].drive_hz / class_hz;
}

double gen_realtime_share(const Gen *g) {
        uint64_t rt = g->class_stats[GEN_REALTIME].bytes, all = rt + g->class_stats[GEN_DEFERRED].bytes;

        return all > 0 ? (double) rt / (double) all : 0;
}
