/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The topics tollgate-telemetry-gen plays, their payload writers, and the two
 * mixes that choose which topic comes next:
 *
 *   reference  20 % real-time / 80 % deferred by payload bytes (SPEC C1's
 *              estimate), for benchmarks: topic weights computed from the
 *              payload sizes the writers produce;
 *   drive      a drive scenario in simulated time, each topic at its own
 *              frequency (speed 10 Hz, position 5 Hz, alarms now and then).
 *
 * Everything here is deterministic for a given seed, and does not allocate.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen-model.h"

#define GEN_PAYLOAD_MIN 32
#define GEN_PAYLOAD_MAX 512
#define GEN_BUFFER_SIZE 1024 /* what gen_next() may touch; payloads stay ≤ GEN_PAYLOAD_MAX */

#define GEN_REFERENCE_REALTIME_SHARE 0.20

typedef enum GenClass {
        GEN_REALTIME,
        GEN_DEFERRED,
        _GEN_CLASS_MAX,
} GenClass;

typedef enum GenMix {
        GEN_MIX_REFERENCE,
        GEN_MIX_DRIVE,
        _GEN_MIX_MAX,
} GenMix;

typedef enum GenTopicId {
        GEN_TOPIC_SPEED,
        GEN_TOPIC_POSITION,
        GEN_TOPIC_BATTERY,
        GEN_TOPIC_FAULT,
        GEN_TOPIC_VOICE,
        GEN_TOPIC_BEHAVIOUR,
        GEN_TOPIC_COMPONENT,
        GEN_TOPIC_PROFILE,
        GEN_TOPIC_PREFERENCES,
        GEN_TOPIC_HMI,
        _GEN_TOPIC_MAX,
} GenTopicId;

typedef struct Gen Gen;

typedef struct GenTopic {
        const char *name;
        GenClass class;    /* as SPEC C1 and the shipped classifier.conf classify it */
        double drive_hz;   /* mean records per simulated second */
        bool irregular;    /* exponential intervals (events) rather than a fixed period */
        uint16_t min_size; /* payload size range the writer keeps to (tested) */
        uint16_t max_size;
        char *(*write)(Gen *g, char *p); /* appends the payload at p, returns its end */
} GenTopic;

extern const GenTopic gen_topics[_GEN_TOPIC_MAX];

const char *gen_class_to_string(GenClass c);
const char *gen_mix_to_string(GenMix m);
GenMix gen_mix_from_string(const char *s); /* -1 if unknown */

typedef struct GenStats {
        uint64_t records;
        uint64_t bytes; /* payload bytes */
        uint32_t min, max;
} GenStats;

/* Per-group wear counters of analytics.component.life. */
#define GEN_COMPONENT_GROUPS 4
#define GEN_COMPONENT_ITEMS 10

/* User profiles (ops.user.profile, ops.preferences). */
#define GEN_USERS 3

typedef struct GenUser {
        char id[16];
        const char *name, *lang, *units, *drive_mode, *light;
        double slide_mm, height_mm, recline_deg, temp_c;
        int lumbar, fan, regen, volume;
        int mirror[4];
        bool climate_auto;
} GenUser;

struct Gen {
        GenMix mix;
        GenRng rng;
        GenCar car;
        double t; /* simulated time of the record being written */

        /* Reference mix: the class first (by p_realtime), then the topic within the
         * class by its drive frequency. Thresholds compare with 32 random bits. */
        double ref_dt;
        double p_realtime;
        uint32_t realtime_threshold;
        uint32_t topic_cum[_GEN_CLASS_MAX][_GEN_TOPIC_MAX];
        uint8_t topic_of[_GEN_CLASS_MAX][_GEN_TOPIC_MAX];
        unsigned n_topics[_GEN_CLASS_MAX];
        uint64_t next_reweigh;
        GenStats prior[_GEN_CLASS_MAX]; /* class sizes measured on a calibration drive */

        /* Drive mix: when each topic is next due. */
        double due[_GEN_TOPIC_MAX];

        /* Writer state. */
        unsigned cell_cursor;
        double cell_min_mv, cell_max_mv;
        uint32_t fault_count[16];
        uint32_t voice_session;
        unsigned voice_turn;
        double voice_session_end;
        unsigned component_group;
        double component_value[GEN_COMPONENT_GROUPS][GEN_COMPONENT_ITEMS];
        double component_odo[GEN_COMPONENT_GROUPS], component_t[GEN_COMPONENT_GROUPS];
        GenUser users[GEN_USERS];
        unsigned user;
        unsigned hmi_screen;

        GenStats stats[_GEN_TOPIC_MAX];
        GenStats class_stats[_GEN_CLASS_MAX];
};

void gen_init(Gen *g, GenMix mix, uint64_t seed);

/* Simulated time (seconds) at which the next record is due: for pacing the
 * drive mix in real time. */
double gen_next_time(const Gen *g);

/* Write the next record's payload into buf (GEN_BUFFER_SIZE bytes); returns
 * its size, and its topic in *ret_topic. */
size_t gen_next(Gen *g, GenTopicId *ret_topic, char *buf);

/* Probability that a record is of this topic: the weights the reference mix
 * computed (as they stand now), or the drive's frequency share. */
double gen_topic_weight(const Gen *g, GenTopicId id);

/* Share of real-time payload bytes so far (0 when nothing was written). */
double gen_realtime_share(const Gen *g);
