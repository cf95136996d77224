/* SPDX-License-Identifier: MIT */
#pragma once

/* key-sync.conf: every key is documented in conf/key-sync.conf and
 * docs/key-sync.md. Paired keys come from [Key NAME] sections of the
 * configuration and from the pairings made over D-Bus, which key-sync keeps
 * in its state directory (pairing.conf, same syntax). */

#include "tg-conf.h"
#include "tg-tls.h"

/* Paired keys, configuration and D-Bus pairings together. */
#define KEYSYNC_KEYS_MAX 256

typedef struct PairedKey {
        char *id;             /* the key's certificate CN, or its PSK identity */
        bool certificate;     /* may authenticate with a certificate */
        bool has_psk;
        uint8_t psk[TG_TLS_PSK_SIZE];
        bool from_dbus;       /* paired over D-Bus (kept in the state directory) */
} PairedKey;

typedef struct KeySyncConfig {
        /* [KeySync] */
        char *listen;          /* ADDRESS:PORT, certificate keys */
        char *listen_psk;      /* ADDRESS:PORT, keys with a pre-shared key */
        char *gateway_id;
        char *ca_file, *cert_file, *key_file, *crl_file;
        uint64_t chunk_size;
        unsigned window;
        uint64_t ping_interval_usec;
        uint64_t handshake_timeout_usec;
        uint64_t max_item_size;
        char *state_dir;
        char *ota_inbox_dir;
        char *kb_dir;
        char *file_dir;

        PairedKey *keys;
        size_t n_keys;
} KeySyncConfig;

int keysync_config_load(const char *path, const char *pairing_path, KeySyncConfig *ret, TgConfError *err);
void keysync_config_done(KeySyncConfig *c);
const PairedKey *keysync_config_find_key(const KeySyncConfig *c, const char *id);

/* Rewrite the state directory's pairing file from the keys paired over D-Bus. */
int keysync_pairing_save(const KeySyncConfig *c, const char *pairing_path);
