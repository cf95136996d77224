/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>
#include <stdio.h>
#include <sys/stat.h>

#include "keysync-conf.h"
#include "tg-keyproto.h"
#include "tg-config.h"
#include "tg-parse.h"

static int parse_listen(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        const char *colon = strrchr(value, ':');
        unsigned port;

        if (!colon || colon == value || tg_parse_unsigned(colon + 1, &port) < 0 || port == 0 || port > 65535) {
                snprintf(reason, reason_size, "expected ADDRESS:PORT, e.g. 0.0.0.0:47410 or [::]:47410");
                return -EINVAL;
        }
        return tg_conf_parse_string(value, field, extra, reason, reason_size);
}

static int parse_path(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        if (*value && *value != '/') {
                snprintf(reason, reason_size, "expected an absolute path");
                return -EINVAL;
        }
        return tg_conf_parse_string(value, field, extra, reason, reason_size);
}

static int parse_id(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        size_t n = strlen(value);

        for (const char *p = value; *p; p++)
                if (*p < 0x21 || *p > 0x7e) {
                        snprintf(reason, reason_size, "expected printable ASCII without spaces");
                        return -EINVAL;
                }
        if (n > TG_TLS_PSK_IDENTITY_MAX) {
                snprintf(reason, reason_size, "at most %d characters", TG_TLS_PSK_IDENTITY_MAX);
                return -EINVAL;
        }
        return tg_conf_parse_string(value, field, extra, reason, reason_size);
}

/* [Key NAME] PreSharedKey=<64 hex digits> */
static int parse_psk(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        PairedKey *k = (PairedKey *) ((uint8_t *) field - offsetof(PairedKey, psk));

        if (*value == '\0') {
                k->has_psk = false;
                return 0;
        }
        if (strlen(value) != 2 * TG_TLS_PSK_SIZE) {
                snprintf(reason, reason_size, "expected %d hexadecimal digits", 2 * TG_TLS_PSK_SIZE);
                return -EINVAL;
        }
        for (size_t i = 0; i < TG_TLS_PSK_SIZE; i++) {
                unsigned b;
                if (sscanf(value + 2 * i, "%2x", &b) != 1 || !strchr("0123456789abcdefABCDEF", value[2 * i]) ||
                    !strchr("0123456789abcdefABCDEF", value[2 * i + 1])) {
                        snprintf(reason, reason_size, "expected %d hexadecimal digits", 2 * TG_TLS_PSK_SIZE);
                        return -EINVAL;
                }
                k->psk[i] = (uint8_t) b;
        }
        k->has_psk = true;
        return 0;
}

static const TgConfRange range_chunk = { .min = 16384, .max = 1048576 };
static const TgConfRange range_window = { .min = 1, .max = TG_KP_WINDOW_MAX };
static const TgConfRange range_ping = { .min = USEC_PER_SEC, .max = 600 * USEC_PER_SEC };
static const TgConfRange range_handshake = { .min = USEC_PER_SEC, .max = 300 * USEC_PER_SEC };
static const TgConfRange range_item = { .min = 1024, .max = UINT64_C(1) << 40 };

#define S(key, fn, field, extra) { "KeySync", key, fn, offsetof(KeySyncConfig, field), extra }
#define K(key, fn, field, extra) { "Key", key, fn, offsetof(PairedKey, field), extra }

static const TgConfItem config_items[] = {
        S("Listen", parse_listen, listen, NULL),
        S("ListenPreSharedKey", parse_listen, listen_psk, NULL),
        S("GatewayId", parse_id, gateway_id, NULL),
        S("CAFile", parse_path, ca_file, NULL),
        S("CertificateFile", parse_path, cert_file, NULL),
        S("KeyFile", parse_path, key_file, NULL),
        S("RevocationList", parse_path, crl_file, NULL),
        S("ChunkSize", tg_conf_parse_size, chunk_size, &range_chunk),
        S("Window", tg_conf_parse_unsigned, window, &range_window),
        S("PingInterval", tg_conf_parse_timespan, ping_interval_usec, &range_ping),
        S("HandshakeTimeout", tg_conf_parse_timespan, handshake_timeout_usec, &range_handshake),
        S("MaxItemSize", tg_conf_parse_size, max_item_size, &range_item),
        S("StateDirectory", parse_path, state_dir, NULL),
        S("OtaInboxDirectory", parse_path, ota_inbox_dir, NULL),
        S("KnowledgeBaseDirectory", parse_path, kb_dir, NULL),
        S("FileDirectory", parse_path, file_dir, NULL),
        K("Certificate", tg_conf_parse_bool, certificate, NULL),
        K("PreSharedKey", parse_psk, psk, NULL),
};

static void *lookup_key(void *userdata, const char *section, const char *arg, char *reason, size_t reason_size) {
        KeySyncConfig *c = userdata;
        PairedKey *keys;

        if (strlen(arg) > TG_TLS_PSK_IDENTITY_MAX) {
                snprintf(reason, reason_size, "a key id has at most %d characters", TG_TLS_PSK_IDENTITY_MAX);
                return NULL;
        }
        for (size_t i = 0; i < c->n_keys; i++)
                if (streq(c->keys[i].id, arg))
                        return &c->keys[i];
        if (c->n_keys >= KEYSYNC_KEYS_MAX) {
                snprintf(reason, reason_size, "too many paired keys (at most %d)", KEYSYNC_KEYS_MAX);
                return NULL;
        }
        keys = realloc(c->keys, (c->n_keys + 1) * sizeof *keys);
        if (!keys)
                return NULL;
        c->keys = keys;
        /* A key paired by name authenticates with its certificate unless told otherwise. */
        c->keys[c->n_keys] = (PairedKey) { .id = strdup(arg), .certificate = true };
        if (!c->keys[c->n_keys].id)
                return NULL;
        return &c->keys[c->n_keys++];
}

static const char *const arg_sections[] = { "Key", NULL };

static const TgConfTable config_table = {
        .items = config_items,
        .n_items = ELEMENTSOF(config_items),
        .arg_sections = arg_sections,
        .lookup = lookup_key,
};

static int set_default(char **field, const char *a, const char *b) {
        if (*field)
                return 0;
        if (asprintf(field, "%s%s", a, b ? b : "") < 0) {
                *field = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* Certificate pairing by default when the operator put the files where the
 * shipped configuration says: all of CA, certificate and key, or none. */
static int default_pki(KeySyncConfig *c) {
        static const char *const names[] = { "/pki/pairing-ca.pem", "/pki/gateway.pem", "/pki/gateway.key" };
        char **fields[] = { &c->ca_file, &c->cert_file, &c->key_file };
        char path[PATH_MAX];
        int r;

        if (c->ca_file || c->cert_file || c->key_file)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                snprintf(path, sizeof path, "%s%s", TG_SYSCONFDIR, names[i]);
                if (access(path, F_OK) < 0)
                        return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                r = set_default(fields[i], TG_SYSCONFDIR, names[i]);
                if (r < 0)
                        return r;
        }
        snprintf(path, sizeof path, "%s/pki/pairing-ca.crl", TG_SYSCONFDIR);
        if (!c->crl_file && access(path, F_OK) == 0)
                return set_default(&c->crl_file, path, NULL);
        return 0;
}

static int read_machine_id(char **ret) {
        char buf[64] = "";
        FILE *f = fopen("/etc/machine-id", "re");

        if (!f)
                return -ENOENT;
        if (!fgets(buf, sizeof buf, f)) {
                fclose(f);
                return -EIO;
        }
        fclose(f);
        buf[strcspn(buf, "\n")] = '\0';
        if (!*buf)
                return -EIO;
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}

int keysync_config_load(const char *path, const char *pairing_path, KeySyncConfig *ret, TgConfError *err) {
        const char *statedir = getenv("STATE_DIRECTORY");
        KeySyncConfig c = {
                .chunk_size = 256 * 1024,
                .window = 8,
                .ping_interval_usec = 15 * USEC_PER_SEC,
                .handshake_timeout_usec = 10 * USEC_PER_SEC,
                .max_item_size = UINT64_C(4) << 30,
        };
        size_t n_config_keys;
        int r;

        r = tg_conf_load(path, false, &config_table, &c, err);
        if (r < 0)
                goto fail;
        n_config_keys = c.n_keys;
        if (pairing_path) {
                r = tg_conf_load(pairing_path, false, &config_table, &c, err);
                if (r < 0)
                        goto fail;
                for (size_t i = n_config_keys; i < c.n_keys; i++)
                        c.keys[i].from_dbus = true;
        }
        r = set_default(&c.listen, "0.0.0.0:47410", NULL);
        if (r >= 0)
                r = set_default(&c.listen_psk, "0.0.0.0:47411", NULL);
        if (r >= 0)
                r = set_default(&c.state_dir, statedir ? statedir : TG_STATEDIR, NULL);
        if (r >= 0)
                r = set_default(&c.ota_inbox_dir, c.state_dir, "/ota-inbox");
        if (r >= 0)
                r = set_default(&c.kb_dir, c.state_dir, "/knowledge-base");
        if (r >= 0)
                r = set_default(&c.file_dir, c.state_dir, "/inbox");
        if (r >= 0)
                r = default_pki(&c);
        if (r >= 0 && !c.gateway_id)
                r = read_machine_id(&c.gateway_id);
        if (r == -ENOENT || r == -EIO) {
                snprintf(err->text, sizeof err->text, "[KeySync] GatewayId= is not set and /etc/machine-id is unreadable");
                r = -EBADMSG;
        }
        if (r < 0)
                goto fail;
        if (!c.ca_file != !c.cert_file || !c.cert_file != !c.key_file) {
                snprintf(err->text, sizeof err->text,
                         "[KeySync] CAFile=, CertificateFile= and KeyFile= go together (certificate pairing)");
                r = -EBADMSG;
                goto fail;
        }
        *ret = c;
        return 0;
fail:
        keysync_config_done(&c);
        return r == -ENOMEM ? r : -EBADMSG;
}

void keysync_config_done(KeySyncConfig *c) {
        free(c->listen);
        free(c->listen_psk);
        free(c->gateway_id);
        free(c->ca_file);
        free(c->cert_file);
        free(c->key_file);
        free(c->crl_file);
        free(c->state_dir);
        free(c->ota_inbox_dir);
        free(c->kb_dir);
        free(c->file_dir);
        for (size_t i = 0; i < c->n_keys; i++) {
                explicit_bzero(c->keys[i].psk, sizeof c->keys[i].psk);
                free(c->keys[i].id);
        }
        free(c->keys);
        *c = (KeySyncConfig) {};
}

const PairedKey *keysync_config_find_key(const KeySyncConfig *c, const char *id) {
        for (size_t i = 0; i < c->n_keys; i++)
                if (streq(c->keys[i].id, id))
                        return &c->keys[i];
        return NULL;
}

int keysync_pairing_save(const KeySyncConfig *c, const char *pairing_path) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        FILE *f;
        int r = 0;

        if (asprintf(&tmp, "%s.tmp", pairing_path) < 0)
                return -ENOMEM;
        /* PSKs are secrets: 0600, written beside and renamed into place. */
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return negative_errno();
        f = fdopen(fd, "w");
        if (!f)
                return negative_errno();
        TAKE_FD(fd);
        fprintf(f, "# Keys paired over D-Bus (org.tollgate.KeySync1.PairKey). Written by key-sync.\n");
        for (size_t i = 0; i < c->n_keys; i++) {
                const PairedKey *k = &c->keys[i];
                if (!k->from_dbus)
                        continue;
                fprintf(f, "\n[Key %s]\nCertificate=%s\n", k->id, k->certificate ? "yes" : "no");
                if (k->has_psk) {
                        fputs("PreSharedKey=", f);
                        for (size_t j = 0; j < TG_TLS_PSK_SIZE; j++)
                                fprintf(f, "%02x", k->psk[j]);
                        fputc('\n', f);
                }
        }
        if (fflush(f) != 0 || fsync(fileno(f)) < 0)
                r = negative_errno();
        if (fclose(f) != 0 && r == 0)
                r = negative_errno();
        if (r == 0 && rename(tmp, pairing_path) < 0)
                r = negative_errno();
        if (r < 0)
                (void) unlink(tmp);
        return r;
}
