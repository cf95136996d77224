/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "gen-model.h"

/* The model runs on a fixed 100 ms grid, like the CAN signals it stands for:
 * at 300k records/s most records find it already up to date, and writers add
 * their own measurement noise on top. */
#define STEP 0.1
#define SQRT_STEP 0.31622776601683794

/* Start in Shanghai (the seeds are Chinese patent documents). */
#define START_LAT 31.230416
#define START_LON 121.473701
#define METERS_PER_DEG_LAT 111320.0
#define DEG_PER_RAD 57.29577951308232
#define WHEELBASE_M 2.8
#define STEERING_RATIO 15.0
#define MASS_KG 1950.0
#define PACK_AH 200.0
#define HOME_RADIUS_DEG 0.2 /* about 20 km */

double gen_ln(double x) {
        uint64_t bits;
        int e;
        double m, s, s2;

        /* x = m · 2^e with m in [√½, √2); ln m = 2 atanh((m−1)/(m+1)). */
        memcpy(&bits, &x, sizeof bits);
        e = (int) (bits >> 52 & 0x7ff) - 1023;
        bits = (bits & UINT64_C(0x000fffffffffffff)) | UINT64_C(0x3ff0000000000000);
        memcpy(&m, &bits, sizeof m);
        if (m > 1.4142135623730951) {
                m *= 0.5;
                e++;
        }
        s = (m - 1.0) / (m + 1.0);
        s2 = s * s;
        return e * 0.6931471805599453 +
               2.0 * s * (1.0 + s2 * (1.0 / 3 + s2 * (1.0 / 5 + s2 * (1.0 / 7 + s2 * (1.0 / 9 + s2 / 11)))));
}

/* tan for |a| < 0.8 rad (road-wheel angles), error below 1 %. */
static double small_tan(double a) {
        double a2 = a * a;
        return a * (1.0 + a2 * (1.0 / 3 + a2 * (2.0 / 15 + a2 * 17.0 / 315)));
}

static void enter_phase(GenCar *c, GenRng *rng, GenPhase phase) {
        c->phase = phase;
        switch (phase) {
        case GEN_PHASE_PARKED:
                c->phase_end = c->t + 15 + 15 * gen_rng_unit(rng);
                c->target = 0;
                break;
        case GEN_PHASE_URBAN:
                c->phase_end = c->t + 180 + 240 * gen_rng_unit(rng);
                break;
        case GEN_PHASE_HIGHWAY:
                c->phase_end = c->t + 300 + 420 * gen_rng_unit(rng);
                break;
        case GEN_PHASE_CHARGING:
                c->phase_end = c->t + 7200; /* or until charge_until, whichever comes first */
                c->target = 0;
                c->charges++;
                c->charge_until = 80 + 10 * gen_rng_unit(rng);
                break;
        }
        c->next_event = c->t;
}

/* The driver: phases, traffic lights, cruising targets, charging stops. */
static void drive(GenCar *c, GenRng *rng) {
        if (c->phase == GEN_PHASE_CHARGING) {
                if (c->soc >= c->charge_until || c->t >= c->phase_end) {
                        c->charge_below = 10 + 10 * gen_rng_unit(rng);
                        enter_phase(c, rng, GEN_PHASE_URBAN);
                }
                return;
        }
        if (c->soc < c->charge_below) {
                /* Pull in at the next charger: stop, then charge. */
                c->target = 0;
                if (c->speed == 0)
                        enter_phase(c, rng, GEN_PHASE_CHARGING);
                return;
        }
        if (c->t >= c->phase_end) {
                if (c->phase == GEN_PHASE_URBAN && gen_rng_unit(rng) < 0.6)
                        enter_phase(c, rng, GEN_PHASE_HIGHWAY);
                else
                        enter_phase(c, rng, GEN_PHASE_URBAN);
        }
        if (c->t < c->next_event)
                return;
        switch (c->phase) {
        case GEN_PHASE_PARKED:
        case GEN_PHASE_CHARGING:
                c->next_event = c->phase_end;
                break;
        case GEN_PHASE_URBAN:
                if (c->target > 0 && gen_rng_unit(rng) < 0.35) {
                        /* A red light: brake to a stop and wait. */
                        c->target = 0;
                        c->next_event = c->t + 20 + 40 * gen_rng_unit(rng);
                        c->stops++;
                } else {
                        c->target = (25 + 30 * gen_rng_unit(rng)) / 3.6;
                        c->next_event = c->t + 15 + 45 * gen_rng_unit(rng);
                }
                break;
        case GEN_PHASE_HIGHWAY:
                c->target = (95 + 30 * gen_rng_unit(rng)) / 3.6;
                c->next_event = c->t + 20 + 40 * gen_rng_unit(rng);
                break;
        }
}

/* Far from home the driver heads back, turning at 3°/s: keeps days-long
 * simulated runs within a city's reach (and away from the poles). */
static double homing_steer(const GenCar *c) {
        double to_n = c->home_lat - c->lat, to_e = (c->home_lon - c->lon) * c->cos_lat;
        double dist2 = to_n * to_n + to_e * to_e;
        double cross = c->dir_n * to_e - c->dir_e * to_n; /* > 0: home is clockwise */
        double dot = c->dir_n * to_n + c->dir_e * to_e, road;

        if (dist2 < HOME_RADIUS_DEG * HOME_RADIUS_DEG)
                return 0;
        if (dot > 0 && cross * cross < 0.01 * dist2)
                return 0; /* within 6° of home's bearing */
        road = 3 / DEG_PER_RAD * WHEELBASE_M / (c->speed > 3 ? c->speed : 3);
        return (cross > 0 ? 1 : -1) * road * DEG_PER_RAD * STEERING_RATIO;
}

static void step_motion(GenCar *c, GenRng *rng, double h, double sqrt_h) {
        double cmd, sigma, road, yaw, dth, n, e, norm;
        bool braking = c->brake > 0;

        /* Longitudinal: a proportional driver with noisy feet. */
        cmd = gen_clamp(0.35 * (c->target - c->speed), -3.5, 2.2);
        c->accel += (cmd - c->accel) * gen_clamp(1.5 * h, 0, 1) + 0.25 * sqrt_h * gen_rng_normal(rng);
        c->speed += c->accel * h;
        if (c->speed <= 0 || (c->target == 0 && c->speed < 0.3)) {
                /* Standing, foot on the brake. */
                c->speed = 0;
                c->accel = 0;
        }
        c->throttle = c->accel > 0.05 ? gen_clamp(8 + 22 * c->accel + 0.35 * c->speed, 0, 100) : c->speed > 1 ? 3 : 0;
        c->brake = c->accel < -0.4 ? gen_clamp(-22 * c->accel, 0, 100) : 0;
        if (c->brake > 0 && !braking)
                c->brake_applications++;

        /* Lateral: the steering wheel wanders more in town than on the highway. */
        sigma = c->phase == GEN_PHASE_URBAN ? 35 : c->phase == GEN_PHASE_HIGHWAY ? 2 : 0;
        if (c->speed > 0.5)
                c->steer += 0.6 * (homing_steer(c) - c->steer) * h + sigma * sqrt_h * gen_rng_normal(rng);
        c->steer = gen_clamp(c->steer, -450, 450);
        road = c->steer / STEERING_RATIO / DEG_PER_RAD;
        yaw = c->speed * small_tan(gen_clamp(road, -0.7, 0.7)) / WHEELBASE_M; /* rad/s */
        c->yaw_rate = yaw * DEG_PER_RAD;
        c->lat_accel = c->speed * yaw;

        /* Heading and its unit vector, rotated by a small angle and renormalised. */
        dth = yaw * h;
        c->heading += dth * DEG_PER_RAD;
        if (c->heading >= 360)
                c->heading -= 360;
        else if (c->heading < 0)
                c->heading += 360;
        n = c->dir_n - dth * c->dir_e;
        e = c->dir_e + dth * c->dir_n;
        norm = 1.5 - 0.5 * (n * n + e * e); /* first-order 1/|v|, |v| ≈ 1 */
        c->dir_n = n * norm;
        c->dir_e = e * norm;

        c->lat += c->speed * c->dir_n * h / METERS_PER_DEG_LAT;
        c->lon += c->speed * c->dir_e * h / (METERS_PER_DEG_LAT * c->cos_lat);
        c->alt += (14 - c->alt) * 0.01 * h + 0.4 * sqrt_h * gen_rng_normal(rng);
        c->odo_km += c->speed * h / 1000;

        if (c->t >= c->next_sat_change) {
                c->sats = (int) gen_clamp(c->sats + (gen_rng_unit(rng) < 0.5 ? -1 : 1), 6, 16);
                c->next_sat_change = c->t + gen_rng_exp(rng, 12);
        }
        c->hdop += (0.5 + 5.0 / c->sats - c->hdop) * gen_clamp(0.5 * h, 0, 1) + 0.03 * sqrt_h * gen_rng_normal(rng);
        c->hdop = gen_clamp(c->hdop, 0.5, 9.9);
}

static void step_battery(GenCar *c, GenRng *rng, double h, double sqrt_h) {
        double v = c->speed, force, wheel_w, batt_w, i_target;

        force = MASS_KG * c->accel + 0.5 * 1.2 * 0.27 * 2.4 * v * v + (v > 0.1 ? 0.011 * MASS_KG * 9.81 : 0);
        wheel_w = force * v;
        batt_w = wheel_w > 0 ? wheel_w / 0.9 : wheel_w * 0.65; /* regeneration recovers less */
        batt_w += 1900;                                        /* low-voltage loads and climate */
        c->power_kw = batt_w / 1000;
        if (c->phase == GEN_PHASE_CHARGING) {
                /* DC charging: 220 A, tapering above 70 % state of charge. */
                batt_w -= 220 * c->pack_v * (c->soc < 70 ? 1 : (100 - c->soc) / 30);
                c->power_kw = batt_w / 1000;
        }
        i_target = batt_w / c->pack_v;
        c->pack_i += (i_target - c->pack_i) * gen_clamp(5 * h, 0, 1) + 0.6 * sqrt_h * gen_rng_normal(rng);
        c->soc = gen_clamp(c->soc - c->pack_i * h / (PACK_AH * 3600) * 100, 0, 100);
        c->pack_v = 332 + 0.72 * c->soc - 0.06 * c->pack_i;
        c->energy_kwh += c->power_kw * h / 3600;

        for (unsigned i = 0; i < GEN_TEMP_SENSORS; i++) {
                double target = c->ambient_c + 6 + 0.04 * (c->pack_i < 0 ? -c->pack_i : c->pack_i) + c->temp_offset[i];
                c->temp_c[i] += (target - c->temp_c[i]) * h / 600 + 0.02 * sqrt_h * gen_rng_normal(rng);
        }
        c->coolant_c += (c->ambient_c + 9 + 0.03 * (c->pack_i < 0 ? -c->pack_i : c->pack_i) - c->coolant_c) * h / 300 +
                        0.03 * sqrt_h * gen_rng_normal(rng);
        c->isolation_kohm += (2200 - c->isolation_kohm) * 0.02 * h + 15 * sqrt_h * gen_rng_normal(rng);
}

void gen_car_init(GenCar *c, GenRng *rng) {
        *c = (GenCar) {
                .heading = 360 * gen_rng_unit(rng),
                .lat = START_LAT + 0.05 * (gen_rng_unit(rng) - 0.5),
                .lon = START_LON + 0.05 * (gen_rng_unit(rng) - 0.5),
                .alt = 14,
                .cos_lat = 0.85509, /* cos(31.23°): the car stays within a few degrees */
                .odo_km = 8000 + 40000 * gen_rng_unit(rng),
                .sats = 10,
                .hdop = 1.0,
                .soc = 55 + 40 * gen_rng_unit(rng),
                .soh = 93 + 6 * gen_rng_unit(rng),
                .isolation_kohm = 2200,
                .charge_below = 10 + 10 * gen_rng_unit(rng),
                .ambient_c = 12 + 18 * gen_rng_unit(rng),
        };
        /* The heading's unit vector, from the heading by rotating north in small steps. */
        c->dir_n = 1;
        for (double a = 0; a < c->heading; a += 1) {
                double d = (c->heading - a < 1 ? c->heading - a : 1) / DEG_PER_RAD;
                double n = c->dir_n - d * c->dir_e, e = c->dir_e + d * c->dir_n, norm;
                norm = 1.5 - 0.5 * (n * n + e * e);
                c->dir_n = n * norm;
                c->dir_e = e * norm;
        }
        c->home_lat = c->lat;
        c->home_lon = c->lon;
        c->pack_v = 332 + 0.72 * c->soc;
        c->coolant_c = c->ambient_c + 5;
        for (unsigned i = 0; i < GEN_CELLS; i++)
                c->cell_offset_mv[i] = 4 * gen_rng_normal(rng);
        for (unsigned i = 0; i < GEN_TEMP_SENSORS; i++) {
                c->temp_offset[i] = 1.5 * gen_rng_normal(rng);
                c->temp_c[i] = c->ambient_c + 3 + c->temp_offset[i];
        }
        enter_phase(c, rng, GEN_PHASE_PARKED);
}

void gen_car_advance(GenCar *c, GenRng *rng, double t) {
        /* Integer step count, so that records due on the grid (10 Hz) see every step. */
        uint64_t target = (uint64_t) (t / STEP + 1e-6);

        while (c->steps < target) {
                drive(c, rng);
                step_motion(c, rng, STEP, SQRT_STEP);
                step_battery(c, rng, STEP, SQRT_STEP);
                c->steps++;
                c->t = (double) c->steps * STEP;
        }
}
