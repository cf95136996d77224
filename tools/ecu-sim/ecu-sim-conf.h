/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * tollgate-ecu-sim.conf, parsed (docs/man/tollgate-ecu-sim.conf.5): a whole
 * simulated vehicle, its DoIP entity, its CAN buses and its ECUs. The syntax
 * and the policy are lib/tg-conf.h's: the main file, then the FILE.d drop-ins;
 * anything unknown or invalid rejects the whole load, naming file:line.
 *
 *   [Vehicle]      VIN=, EntityAddress=, Listen=
 *   [Bus NAME]     Spec=, FD=, BitRateSwitch=, DataLength=, Padding=,
 *                  BlockSize=, STmin=, FunctionalId=, BitRate=, RestartMs=
 *   [Ecu NAME]     Address=, Bus=, RequestId=, ResponseId=, Banks=,
 *                  BankSize=, MemoryAddress=, Version=, PartNumber=,
 *                  Serial=, WriteSpeed=, EraseTime=, CheckSpeed=,
 *                  PendingInterval=, MaxBlockLength=, SecurityLevel=, SeedLength=,
 *                  Preconditions=, FaultNrc=, FaultPendingStorm=,
 *                  FaultResetAfterBlocks=, FaultPowerLossAfterBlocks=,
 *                  FaultCorruptAfterBlocks=
 *
 * What a load accepted is consistent: every ECU has an address of its own
 * (not the functional 0xE400) and banks of a size; an ECU on a CAN bus names
 * an existing [Bus] and has request and response ids that no other ECU of
 * that bus uses and that are not the bus's functional id; ECUs on the
 * Ethernet need [Vehicle] Listen=.
 */

#include <stdbool.h>
#include <stdint.h>

#include "ecu-model.h"
#include "tg-conf.h"

#define ECU_SIM_NAME_MAX 32
#define ECU_SIM_MAX_ECUS 64
#define ECU_SIM_MAX_BUSES 16
#define ECU_SIM_FUNCTIONAL_ADDRESS 0xE400

typedef struct EcuSimBus {
        char *name;
        char *spec;              /* tg_can_open() spec: "can0", "unix:/run/…/bus.sock" */
        bool fd;                 /* CAN FD frames */
        bool brs;                /* FD: bit rate switch */
        unsigned data_length;    /* TX_DL: 8 classic, FD 8…64; 0 = 8 / 64 */
        bool padding;            /* pad frames (default yes) */
        unsigned block_size;     /* BS the ECUs ask of the tester (default 8) */
        unsigned stmin;          /* raw STmin byte the ECUs ask for */
        uint32_t functional_id;  /* default 0x7DF */
        uint64_t bitrate;        /* SocketCAN: bring the interface up at this rate (0: as it is) */
        unsigned restart_ms;     /* SocketCAN: automatic restart after bus-off (with bitrate) */
        char where[80];          /* "file:line" of the section, for messages */
} EcuSimBus;

typedef struct EcuSimEcu {
        char *name;
        uint32_t address;        /* UINT32_MAX until set */
        char *bus;               /* NULL or "ethernet": DoIP */
        int bus_index;           /* filled by the checks: -1 for DoIP */
        uint32_t request_id;     /* with CAN_EFF_FLAG above 0x7FF; UINT32_MAX until set */
        uint32_t response_id;
        bool ab_banks;
        uint64_t bank_size;
        uint64_t memory_address;
        char *version;           /* NULL: the bank starts empty */
        char *part_number;
        char *serial;
        uint64_t write_speed;
        unsigned erase_time_ms;
        uint64_t check_speed;
        unsigned pending_interval_ms;
        uint64_t max_block_length;
        unsigned security_level;
        unsigned seed_length;
        bool preconditions_fail;
        EcuModelFaults faults;
        char where[80];
} EcuSimEcu;

typedef struct EcuSimConfig {
        char vin[18];
        unsigned entity_address;
        char *listen;            /* NULL: no DoIP entity */
        EcuSimBus *buses;
        size_t n_buses;
        EcuSimEcu *ecus;
        size_t n_ecus;
} EcuSimConfig;

/* An empty configuration with the defaults. */
void ecu_sim_config_init(EcuSimConfig *c);
void ecu_sim_config_done(EcuSimConfig *c);

/* Load path (must exist) and its drop-ins into c (initialized), then check
 * it. -EBADMSG with err naming file:line, -ENOMEM. */
int ecu_sim_config_load(EcuSimConfig *c, const char *path, TgConfError *err);
/* The same for a buffer (tests, fuzzing); name stands for the file. */
int ecu_sim_config_parse(EcuSimConfig *c, const char *text, size_t size, const char *name, TgConfError *err);

/* Add an ECU by name (the command line's --ecu=): NULL with errno set
 * (EEXIST, E2BIG, ENOMEM). */
EcuSimEcu *ecu_sim_config_add_ecu(EcuSimConfig *c, const char *name);
/* The checks a load does, for a configuration built by hand. */
int ecu_sim_config_check(EcuSimConfig *c, TgConfError *err);

/* The model configuration of an ECU (strings point into e). */
void ecu_sim_ecu_model_config(const EcuSimEcu *e, EcuModelConfig *ret);
