/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The simulated car behind tollgate-telemetry-gen: a deterministic random
 * number generator and a small vehicle model (driving phases, longitudinal
 * and lateral dynamics, GNSS, traction battery) advanced in simulated time.
 * Topic writers (gen-topics.c) read its state, so every signal evolves like
 * the real one — speed follows traffic, position integrates speed and
 * heading, state of charge follows the current drawn.
 *
 * No libm: the tool links with the producer library only, and the few
 * functions needed here are cheap to approximate.
 */

#include <stdbool.h>
#include <stdint.h>

#define GEN_CELLS 96
#define GEN_TEMP_SENSORS 12

/* splitmix64: one multiply-xorshift chain per draw, any seed is fine. */
typedef struct GenRng {
        uint64_t s;
} GenRng;

static inline uint64_t gen_rng_next(GenRng *r) {
        uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline double gen_rng_unit(GenRng *r) {
        return (double) (gen_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform integer in [0, n). */
static inline uint32_t gen_rng_below(GenRng *r, uint32_t n) {
        return (uint32_t) (((gen_rng_next(r) >> 32) * n) >> 32);
}

/* Approximately standard normal: the sum of four 16-bit uniforms, centred and
 * scaled (Irwin–Hall). Tails end at ±3.46, which suits sensor noise. */
static inline double gen_rng_normal(GenRng *r) {
        uint64_t x = gen_rng_next(r);
        uint32_t sum = (uint32_t) (x & 0xffff) + (uint32_t) (x >> 16 & 0xffff) + (uint32_t) (x >> 32 & 0xffff) +
                       (uint32_t) (x >> 48);
        return ((double) sum * (1.0 / 65536.0) - 2.0) * 1.7320508075688772;
}

static inline double gen_clamp(double v, double lo, double hi) {
        return v < lo ? lo : v > hi ? hi : v;
}

/* Natural logarithm for x > 0, relative error below 1e-6. */
double gen_ln(double x);

/* An exponentially distributed interval with the given mean. */
static inline double gen_rng_exp(GenRng *r, double mean) {
        return -gen_ln(1.0 - gen_rng_unit(r)) * mean;
}

typedef enum GenPhase {
        GEN_PHASE_PARKED,  /* ignition on, standing */
        GEN_PHASE_URBAN,   /* 0–60 km/h with traffic lights */
        GEN_PHASE_HIGHWAY, /* 90–125 km/h */
        GEN_PHASE_CHARGING, /* at a DC charger until the pack is full enough */
} GenPhase;

typedef struct GenCar {
        uint64_t steps; /* model steps taken */
        double t;       /* simulated seconds since the start: steps · 100 ms */

        /* Driving. */
        GenPhase phase;
        double phase_end;  /* t at which the phase changes */
        double next_event; /* t of the next target change or traffic light */
        double stop_until; /* standing at a light until this t */
        double target;     /* m/s the driver aims for */
        double speed;      /* m/s */
        double accel;      /* m/s², longitudinal */
        double throttle;   /* % */
        double brake;      /* % */
        double steer;      /* steering-wheel angle, degrees */
        double yaw_rate;   /* degrees/s */
        double lat_accel;  /* m/s² */
        double heading;    /* degrees, 0 = north, clockwise */
        double dir_n, dir_e; /* unit vector of the heading */
        double lat, lon, alt;
        double home_lat, home_lon;
        double cos_lat;
        double odo_km;
        unsigned brake_applications;
        unsigned stops;

        /* GNSS. */
        int sats;
        double hdop;
        double next_sat_change;

        /* Traction battery: 96s pack, 200 Ah. */
        double soc;      /* % */
        double soh;      /* % */
        double pack_v;   /* V */
        double pack_i;   /* A, positive = discharge */
        double power_kw;
        double isolation_kohm;
        double coolant_c;
        double cell_offset_mv[GEN_CELLS]; /* fixed imbalance of each cell */
        double temp_c[GEN_TEMP_SENSORS];
        double temp_offset[GEN_TEMP_SENSORS];
        double ambient_c;
        double energy_kwh; /* drawn since the start */
        double charge_below, charge_until; /* SOC window between charging stops */
        unsigned charges;
} GenCar;

void gen_car_init(GenCar *c, GenRng *rng);

/* Advance the model to simulated time t, in 100 ms steps (no-op if t is not later). */
void gen_car_advance(GenCar *c, GenRng *rng, double t);

static inline double gen_car_kmh(const GenCar *c) {
        return c->speed * 3.6;
}

/* Voltage of cell i (0-based) in volts, with measurement noise. */
static inline double gen_car_cell_v(const GenCar *c, GenRng *rng, unsigned i) {
        return c->pack_v / GEN_CELLS + (c->cell_offset_mv[i % GEN_CELLS] + 0.8 * gen_rng_normal(rng)) * 0.001;
}
