/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "keysync.h"
#include "tg-bus.h"
#include "tg-log.h"

#define OBJECT_PATH "/org/tollgate/KeySync1"
#define INTERFACE "org.tollgate.KeySync1"

static int property_get_connected(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "b", m->link && m->link->present);
}

static int property_get_key_id(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "s", m->link && m->link->present ? m->link->peer : "");
}

static int property_get_paired(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "s");
        for (size_t i = 0; r >= 0 && i < m->config.n_keys; i++)
                r = sd_bus_message_append(reply, "s", m->config.keys[i].id);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int method_sync_now(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        if (!m->link || !m->link->present)
                return sd_bus_error_set(error, TG_ERROR_NOT_FOUND, "No key is present.");
        (void) outbox_refresh(m);
        link_sync_now(m);
        return sd_bus_reply_method_return(msg, NULL);
}

static int valid_key_id(const char *id) {
        size_t n = strlen(id);

        if (n == 0 || n > TG_TLS_PSK_IDENTITY_MAX)
                return false;
        for (const char *p = id; *p; p++)
                /* What a [Key ID] section of the configuration can name. */
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      strchr("._-:", *p)))
                        return false;
        return true;
}

/* Pair (or update) a key from D-Bus; kept in the state directory. */
static int pair(Manager *m, sd_bus_message *msg, const char *id, bool certificate, const uint8_t *psk,
                sd_bus_error *error) {
        KeySyncConfig *c = &m->config;
        PairedKey *k = NULL;
        int r;

        for (size_t i = 0; i < c->n_keys; i++)
                if (streq(c->keys[i].id, id))
                        k = &c->keys[i];
        if (k && !k->from_dbus)
                return sd_bus_error_setf(error, TG_ERROR_INVALID_ARGUMENT,
                                         "Key %s is paired in the configuration files; change it there.", id);
        if (!k && c->n_keys >= KEYSYNC_KEYS_MAX)
                return sd_bus_error_setf(error, TG_ERROR_INVALID_ARGUMENT,
                                         "Too many paired keys (at most %d); unpair one first.", KEYSYNC_KEYS_MAX);
        PairedKey old = k ? *k : (PairedKey) {};
        bool added = !k;
        if (!k) {
                PairedKey *a = realloc(c->keys, (c->n_keys + 1) * sizeof *a);
                if (!a)
                        return -ENOMEM;
                c->keys = a;
                k = &c->keys[c->n_keys];
                *k = (PairedKey) { .id = strdup(id), .from_dbus = true };
                if (!k->id)
                        return -ENOMEM;
                c->n_keys++;
        }
        if (certificate)
                k->certificate = true;
        if (psk) {
                memcpy(k->psk, psk, TG_TLS_PSK_SIZE);
                k->has_psk = true;
        }
        r = keysync_pairing_save(c, m->pairing_path);
        if (r < 0) {
                /* Not saved: not paired either (it would vanish at the next start). */
                if (added) {
                        free(k->id);
                        c->n_keys--;
                } else
                        *k = old;
                explicit_bzero(&old, sizeof old);
                return sd_bus_error_set_errnof(error, r, "Cannot save the pairing: %m");
        }
        explicit_bzero(&old, sizeof old);
        log_notice("Key %s paired (%s%s).", id, k->certificate ? "certificate" : "",
                   k->has_psk ? (k->certificate ? ", pre-shared key" : "pre-shared key") : "");
        manager_properties_changed(m, "PairedKeys", NULL);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_pair_key(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        const char *id;
        int r;

        r = sd_bus_message_read(msg, "s", &id);
        if (r < 0)
                return r;
        if (!valid_key_id(id))
                return sd_bus_error_setf(error, TG_ERROR_INVALID_ARGUMENT, "\"%.64s\" is not a key id.", id);
        return pair(userdata, msg, id, true, NULL, error);
}

static int method_pair_key_password(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *id, *password;
        uint8_t psk[TG_TLS_PSK_SIZE];
        int r;

        r = sd_bus_message_read(msg, "ss", &id, &password);
        if (r < 0)
                return r;
        if (!valid_key_id(id))
                return sd_bus_error_setf(error, TG_ERROR_INVALID_ARGUMENT, "\"%.64s\" is not a key id.", id);
        if (strlen(password) < 8)
                return sd_bus_error_set(error, TG_ERROR_INVALID_ARGUMENT, "The password needs at least 8 characters.");
        r = tg_tls_psk_derive(password, m->config.gateway_id, id, psk);
        if (r < 0)
                return r;
        r = pair(m, msg, id, false, psk, error);
        explicit_bzero(psk, sizeof psk);
        return r;
}

static int method_unpair_key(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        KeySyncConfig *c = &m->config;
        const char *id;
        int r;

        r = sd_bus_message_read(msg, "s", &id);
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n_keys; i++) {
                if (!streq(c->keys[i].id, id))
                        continue;
                if (!c->keys[i].from_dbus)
                        return sd_bus_error_setf(error, TG_ERROR_INVALID_ARGUMENT,
                                                 "Key %s is paired in the configuration files; remove it there.", id);
                PairedKey gone = c->keys[i];

                c->keys[i] = c->keys[--c->n_keys];
                r = keysync_pairing_save(c, m->pairing_path);
                if (r < 0) {
                        /* Not saved: still paired (it would come back at the next start). */
                        c->keys[c->n_keys++] = c->keys[i];
                        c->keys[i] = gone;
                        return sd_bus_error_set_errnof(error, r, "Cannot save the pairing: %m");
                }
                explicit_bzero(gone.psk, sizeof gone.psk);
                free(gone.id);
                log_notice("Key %s unpaired.", id);
                if (m->link && m->link->peer && streq(m->link->peer, id))
                        link_drop(m->link, "unpaired");
                manager_properties_changed(m, "PairedKeys", NULL);
                return sd_bus_reply_method_return(msg, NULL);
        }
        return sd_bus_error_setf(error, TG_ERROR_NOT_FOUND, "Key %.64s is not paired.", id);
}

static int method_reload(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = m->daemon->reload(m->daemon);
        if (r == -EBADMSG)
                return sd_bus_error_set(error, TG_ERROR_INVALID_CONFIG,
                                        "Configuration rejected, the running one is kept (see the journal).");
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

#define PROP(name, field) \
        SD_BUS_PROPERTY(name, "t", NULL, offsetof(Manager, field), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)

static const sd_bus_vtable keysync_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("KeyConnected", "b", property_get_connected, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("KeyId", "s", property_get_key_id, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        PROP("OutboxItems", outbox_counts.items),
        PROP("OutboxBytes", outbox_counts.bytes),
        PROP("LastSyncUsec", last_sync_usec),
        PROP("ItemsSent", items_sent),
        PROP("ItemsReceived", items_received),
        SD_BUS_PROPERTY("PairedKeys", "as", property_get_paired, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD("SyncNow", NULL, NULL, method_sync_now, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("PairKey", SD_BUS_ARGS("s", key_id), SD_BUS_NO_RESULT, method_pair_key,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("PairKeyWithPassword", SD_BUS_ARGS("s", key_id, "s", password), SD_BUS_NO_RESULT,
                                method_pair_key_password, SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_SENSITIVE),
        SD_BUS_METHOD_WITH_ARGS("UnpairKey", SD_BUS_ARGS("s", key_id), SD_BUS_NO_RESULT, method_unpair_key,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Reload", NULL, NULL, method_reload, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("SyncFinished", SD_BUS_ARGS("t", sent, "t", received), 0),
        SD_BUS_VTABLE_END,
};

int bus_setup(Manager *m) {
        int r;

        r = sd_bus_add_object_vtable(m->bus, NULL, OBJECT_PATH, INTERFACE, keysync_vtable, m);
        if (r < 0)
                return log_error_errno(r, "Cannot register %s: %m", OBJECT_PATH);
        return 0;
}
