/* SPDX-License-Identifier: MIT */
/*
 * tollgate-ecu-sim.conf through the real parser (ecu_sim_config_parse():
 * lib/tg-conf with the simulator's table, value parsers, section lookup and
 * the checks across sections). A rejected file names where; an accepted one
 * is what the simulator builds its vehicle from without checking again, and
 * every ECU's model configuration is accepted by the model's own checks'
 * preconditions (bank size, names, bus references, unique ids).
 */
#include <errno.h>
#include <linux/can.h>
#include <string.h>

#include "ecu-sim-conf.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        EcuSimConfig c;
        TgConfError err = {};
        int r;

        if (size > 64 * 1024)
                return 0;
        ecu_sim_config_init(&c);
        r = ecu_sim_config_parse(&c, (const char *) data, size, "fuzz.conf", &err);
        if (r < 0) {
                FUZZ_ASSERT(r == -EBADMSG || r == -ENOMEM);
                FUZZ_ASSERT(memchr(err.text, '\0', sizeof err.text) != NULL);
                if (r == -EBADMSG)
                        FUZZ_ASSERT(strncmp(err.text, "fuzz.conf", 9) == 0);
                ecu_sim_config_done(&c);
                return 0;
        }

        FUZZ_ASSERT(strlen(c.vin) == 17);
        FUZZ_ASSERT(c.entity_address <= 0xFFFF);
        FUZZ_ASSERT(c.n_buses <= ECU_SIM_MAX_BUSES && c.n_ecus <= ECU_SIM_MAX_ECUS);
        for (size_t i = 0; i < c.n_buses; i++) {
                const EcuSimBus *b = &c.buses[i];
                FUZZ_ASSERT(b->name && b->spec);
                FUZZ_ASSERT(b->fd || (b->data_length <= 8 && !b->brs));
                FUZZ_ASSERT(b->block_size <= 255 && (b->stmin <= 0x7F || (b->stmin >= 0xF1 && b->stmin <= 0xF9)));
                FUZZ_ASSERT(!b->bitrate || !startswith(b->spec, "unix:"));
        }
        for (size_t i = 0; i < c.n_ecus; i++) {
                const EcuSimEcu *e = &c.ecus[i];
                EcuModelConfig mc;

                FUZZ_ASSERT(e->name && e->address <= 0xFFFF && e->address != ECU_SIM_FUNCTIONAL_ADDRESS);
                FUZZ_ASSERT(e->bank_size > 0);
                FUZZ_ASSERT(e->bus_index < (int) c.n_buses);
                if (e->bus_index < 0)
                        FUZZ_ASSERT(c.listen);
                else {
                        const EcuSimBus *b = &c.buses[e->bus_index];
                        FUZZ_ASSERT(e->request_id != e->response_id);
                        FUZZ_ASSERT(e->request_id != b->functional_id && e->response_id != b->functional_id);
                        FUZZ_ASSERT((e->request_id & ~(CAN_EFF_FLAG | CAN_EFF_MASK)) == 0);
                }
                for (size_t k = 0; k < i; k++) {
                        const EcuSimEcu *o = &c.ecus[k];
                        FUZZ_ASSERT(o->address != e->address);
                        FUZZ_ASSERT(!streq(o->name, e->name));
                        if (e->bus_index >= 0 && o->bus_index == e->bus_index)
                                FUZZ_ASSERT(o->request_id != e->request_id && o->response_id != e->response_id &&
                                            o->request_id != e->response_id && o->response_id != e->request_id);
                }
                ecu_sim_ecu_model_config(e, &mc);
                FUZZ_ASSERT(mc.bank_size == e->bank_size);
                FUZZ_ASSERT(!mc.initial_version || strlen(mc.initial_version) < ECU_MODEL_VERSION_MAX);
        }
        ecu_sim_config_done(&c);
        return 0;
}
