/* SPDX-License-Identifier: MIT */

/*
 * tollgatectl's side of org.tollgate.KeySync1 (docs/key-sync.md): the
 * key-sync status section, its view of the outbox, reload, the SyncFinished
 * signal for watch, and the commands sync, keys, pair, pair-password and
 * unpair.
 */

#include <limits.h>
#include <termios.h>

#include "tollgatectl.h"

/* PairKeyWithPassword() wants at least this many characters; checked here too
 * so that a typo at the prompt does not need a round trip. */
#define PASSWORD_MIN 8
#define PASSWORD_MAX 1024

static void keysync_status(const Context *c, const Service *s, const PropertyList *p) {
        char b1[FORMAT_BYTES_MAX], t1[FORMAT_TIMESTAMP_MAX];
        const Property *paired = property_find(p, "PairedKeys");

        if (property_u64(p, "KeyConnected"))
                print_field("Key", "present (%s)", property_str(p, "KeyId"));
        else
                print_field("Key", "absent");
        print_field("Outbox", "%" PRIu64 " items, %s", property_u64(p, "OutboxItems"),
                    format_bytes(b1, sizeof b1, property_u64(p, "OutboxBytes")));
        print_field("Last sync", "%s", property_u64(p, "LastSyncUsec") == 0
                                               ? "never"
                                               : format_timestamp(t1, sizeof t1, property_u64(p, "LastSyncUsec")));
        print_field("Items", "%" PRIu64 " sent to keys, %" PRIu64 " received", property_u64(p, "ItemsSent"),
                    property_u64(p, "ItemsReceived"));
        print_field("Paired keys", "%s", paired && paired->text ? paired->text : "[]");
}

static int on_sync_finished(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Context *c = userdata;
        uint64_t sent, received;
        Json j = { .f = stdout };

        if (sd_bus_message_read(m, "tt", &sent, &received) < 0)
                return 0; /* not the signal the interface promises: ignore it */
        watch_event_begin(c, &service_keysync, "sync-finished", &j);
        if (c->json) {
                json_u64(&j, "sent", sent);
                json_u64(&j, "received", received);
        } else
                printf("sync finished: %" PRIu64 " items sent to the key, %" PRIu64 " received", sent, received);
        watch_event_end(c, &j);
        return 0;
}

static int keysync_watch(Context *c, const Service *s) {
        return sd_bus_match_signal(c->bus, NULL, s->bus_name, s->path, s->interface, "SyncFinished",
                                   on_sync_finished, c);
}

/* Print {"key_id": …, "<what>": true} or a sentence. */
static void print_done(const Context *c, const char *key_id, const char *what, const char *sentence) {
        if (c->json) {
                Json j = { .f = stdout, .pretty = c->json_pretty };
                json_object_open(&j, NULL);
                json_string(&j, "key_id", key_id);
                json_bool(&j, what, true);
                json_object_close(&j);
                json_finish(&j);
        } else
                printf("%s\n", sentence);
}

/* --- sync ----------------------------------------------------------------------- */

static int verb_sync(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        /* Answered at once: the exchange runs on the key's connection. Its end
         * is the SyncFinished signal (tollgatectl watch key-sync). */
        r = service_call(c, &service_keysync, "SyncNow", &error, NULL, NULL);
        if (r < 0)
                return ctl_bus_failure(&error, r, "SyncNow()");
        if (c->json) {
                Json j = { .f = stdout, .pretty = c->json_pretty };
                json_object_open(&j, NULL);
                json_bool(&j, "started", true);
                json_object_close(&j);
                json_finish(&j);
        } else
                printf("Sync with the present key started.\n");
        return CTL_EXIT_SUCCESS;
}

/* --- keys ----------------------------------------------------------------------- */

static int verb_keys(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(property_list_done) PropertyList props = {};
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        _cleanup_table_ Table *t = NULL;
        Json j = { .f = stdout, .pretty = c->json_pretty };
        const char *present = NULL;
        size_t n = 0;
        int r;

        r = service_get_all(c, &service_keysync, &props, &error);
        if (r < 0)
                return ctl_bus_failure(&error, r, "GetAll()");
        if (property_u64(&props, "KeyConnected"))
                present = property_str(&props, "KeyId");

        /* Reading never starts the daemon (like status). */
        r = sd_bus_message_new_method_call(c->bus, &call, service_keysync.bus_name, service_keysync.path,
                                           "org.freedesktop.DBus.Properties", "Get");
        if (r >= 0)
                r = sd_bus_message_append(call, "ss", service_keysync.interface, "PairedKeys");
        if (r >= 0)
                r = sd_bus_message_set_auto_start(call, false);
        if (r < 0)
                return ctl_error_errno(r, "Cannot build the Get() call: %m");
        r = service_call_message(c, call, &error, &reply);
        if (r < 0)
                return ctl_bus_failure(&error, r, "Get(PairedKeys)");
        r = sd_bus_message_enter_container(reply, 'v', "as");
        if (r < 0)
                return ctl_reply_failure(r, "Get(PairedKeys)");

        t = table_new("KEY", "STATE", NULL);
        if (!t)
                return ctl_error_errno(-ENOMEM, "Out of memory.");
        if (c->json)
                json_array_open(&j, NULL);
        r = sd_bus_message_enter_container(reply, 'a', "s");
        for (const char *id; r >= 0 && (r = sd_bus_message_read(reply, "s", &id)) > 0;) {
                bool here = present && streq(id, present);

                n++;
                if (c->json) {
                        json_object_open(&j, NULL);
                        json_string(&j, "key_id", id);
                        json_bool(&j, "present", here);
                        json_object_close(&j);
                } else if (table_add(t, id) < 0 || table_add(t, here ? "present" : "-") < 0)
                        return ctl_error_errno(-ENOMEM, "Out of memory.");
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return ctl_reply_failure(r, "Get(PairedKeys)");

        if (c->json) {
                json_array_close(&j);
                json_finish(&j);
                return CTL_EXIT_SUCCESS;
        }
        if (n > 0)
                table_print(t, stdout, c->legend);
        if (c->legend)
                printf("%s%zu paired key%s.\n", n > 0 ? "\n" : "", n, n == 1 ? "" : "s");
        return CTL_EXIT_SUCCESS;
}

/* --- pair KEY-ID / pair-password KEY-ID / unpair KEY-ID ------------------------- */

static int verb_pair(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = service_call(c, &service_keysync, "PairKey", &error, NULL, "s", argv[1]);
        if (r < 0)
                return ctl_bus_failure(&error, r, "PairKey()");
        print_done(c, argv[1], "paired",
                   "Paired. The key is let in with a certificate of the pairing CA for this id.");
        return CTL_EXIT_SUCCESS;
}

/* One line from standard input; at a terminal, asked for without echo. */
static int read_password(const char *key_id, char *buf, size_t size) {
        struct termios old, quiet;
        bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
        size_t n = 0;
        int r = 0;

        if (tty) {
                fprintf(stderr, "Password for key %s: ", key_id);
                fflush(stderr);
                quiet = old;
                quiet.c_lflag &= ~(tcflag_t) ECHO;
                (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        }
        for (;;) {
                char ch;
                ssize_t k = read(STDIN_FILENO, &ch, 1);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        r = -errno;
                        break;
                }
                if (k == 0 || ch == '\n')
                        break;
                if (n + 1 >= size) {
                        r = -E2BIG;
                        break;
                }
                buf[n++] = ch;
        }
        if (n > 0 && buf[n - 1] == '\r')
                n--;
        buf[n] = '\0';
        if (tty) {
                (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
                fputc('\n', stderr);
        }
        return r;
}

static int verb_pair_password(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        char password[PASSWORD_MAX + 1];
        int r;

        r = read_password(argv[1], password, sizeof password);
        if (r == -E2BIG) {
                ctl_error("The password is longer than %d characters.", PASSWORD_MAX);
                return CTL_EXIT_USAGE;
        }
        if (r < 0)
                return ctl_error_errno(r, "Cannot read the password from standard input: %m");
        if (strlen(password) < PASSWORD_MIN) {
                explicit_bzero(password, sizeof password);
                ctl_error("The password needs at least %d characters.", PASSWORD_MIN);
                return CTL_EXIT_USAGE;
        }
        r = service_call(c, &service_keysync, "PairKeyWithPassword", &error, NULL, "ss", argv[1], password);
        explicit_bzero(password, sizeof password);
        if (r < 0)
                return ctl_bus_failure(&error, r, "PairKeyWithPassword()");
        print_done(c, argv[1], "paired",
                   "Paired. The key is let in with a pre-shared key derived from this password.");
        return CTL_EXIT_SUCCESS;
}

static int verb_unpair(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = service_call(c, &service_keysync, "UnpairKey", &error, NULL, "s", argv[1]);
        if (r < 0)
                return ctl_bus_failure(&error, r, "UnpairKey()");
        print_done(c, argv[1], "unpaired", "Unpaired; had that key been connected, it is now disconnected.");
        return CTL_EXIT_SUCCESS;
}

static const Verb keysync_verbs[] = {
        { "sync", "", "Exchange with the present car key now", 0, 0, verb_sync },
        { "keys", "", "List the paired car keys and which is present", 0, 0, verb_keys },
        { "pair", "KEY-ID", "Pair a car key that holds a certificate of the pairing CA", 1, 1, verb_pair },
        { "pair-password", "KEY-ID", "Pair a car key by password (read from standard input)", 1, 1,
          verb_pair_password },
        { "unpair", "KEY-ID", "Unpair a car key", 1, 1, verb_unpair },
        {},
};

static const char *const keysync_byte_properties[] = { "OutboxBytes", NULL };

const Service service_keysync = {
        .name = "key-sync",
        .title = "Key sync",
        .bus_name = "org.tollgate.KeySync1",
        .path = "/org/tollgate/KeySync1",
        .interface = "org.tollgate.KeySync1",
        .byte_properties = keysync_byte_properties,
        .status = keysync_status,
        /* No .outbox: key-sync counts items (segments of records), the
         * classifier records; `outbox` shows the records, status both. */
        .reload = service_reload,
        .watch = keysync_watch,
        .verbs = keysync_verbs,
};
