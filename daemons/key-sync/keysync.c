/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>

#include "keysync.h"
#include "tg-log.h"
#include "tg-message-ids.h"

void manager_properties_changed(Manager *m, const char *property, ...) {
        char *names[8];
        size_t n = 0;
        va_list ap;

        if (!m->bus || !m->daemon->ready)
                return;
        va_start(ap, property);
        for (const char *p = property; p && n < ELEMENTSOF(names) - 1; p = va_arg(ap, const char *))
                names[n++] = (char *) p;
        va_end(ap);
        names[n] = NULL;
        (void) sd_bus_emit_properties_changed_strv(m->bus, "/org/tollgate/KeySync1", "org.tollgate.KeySync1", names);
}

/* New deferred data: the classifier says so with PropertiesChanged; a
 * present key gets it offered at once. */
static int on_classifier_changed(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        (void) outbox_refresh(m);
        link_kick(m);
        return 0;
}

static int load_config(Manager *m, KeySyncConfig *ret) {
        TgConfError err = {};
        int r;

        r = keysync_config_load(m->daemon->config_path, m->pairing_path, ret, &err);
        if (r < 0)
                log_event_errno(LOG_ERR, r, TG_MID_CONFIG_REJECTED, "Configuration rejected: %s", err.text);
        return r;
}

static int manager_setup(TgDaemon *d) {
        Manager *m = d->userdata;
        const char *statedir = getenv("STATE_DIRECTORY");
        KeySyncConfig probe;
        TgConfError err = {};
        int r;

        m->daemon = d;
        m->power_fd = -EBADF;
        m->event = d->event;
        m->bus = d->bus;

        /* Where the pairing file lives depends on the configuration itself. */
        r = keysync_config_load(d->config_path, NULL, &probe, &err);
        if (r < 0)
                return log_event_errno(LOG_ERR, r, TG_MID_CONFIG_REJECTED, "Configuration rejected: %s", err.text);
        r = asprintf(&m->pairing_path, "%s/key-sync/pairing.conf", probe.state_dir ? probe.state_dir : statedir);
        keysync_config_done(&probe);
        if (r < 0)
                return log_error_errno(-ENOMEM, "Out of memory.");
        r = load_config(m, &m->config);
        if (r < 0)
                return r;
        log_info("Gateway id %s, %zu paired keys.", m->config.gateway_id, m->config.n_keys);

        r = inbox_setup(m);
        if (r < 0)
                return r;
        r = outbox_setup(m);
        if (r < 0)
                return r;
        r = bus_setup(m);
        if (r < 0)
                return r;
        r = sd_bus_match_signal_async(m->bus, NULL, "org.tollgate.Classifier1", "/org/tollgate/Classifier1",
                                      "org.freedesktop.DBus.Properties", "PropertiesChanged", on_classifier_changed,
                                      NULL, m);
        if (r < 0)
                return log_error_errno(r, "Cannot watch the classifier: %m");
        return link_setup(m);
}

static int manager_reload(TgDaemon *d) {
        Manager *m = d->userdata;
        KeySyncConfig c;
        int r;

        r = load_config(m, &c);
        if (r < 0)
                return r;
        /* Certificates first: if they do not load, the running configuration stays whole. */
        r = link_reload_tls(m, &c);
        if (r < 0) {
                keysync_config_done(&c);
                return r;
        }
        if (!streq(c.listen, m->config.listen) || !streq(c.listen_psk, m->config.listen_psk) ||
            !streq(c.state_dir, m->config.state_dir) || !c.cert_file != !m->config.cert_file)
                log_notice("Listen=, ListenPreSharedKey=, StateDirectory= and turning certificate pairing on or off "
                           "take effect at the next start.");
        keysync_config_done(&m->config);
        m->config = c;
        r = inbox_make_dirs(m);
        if (r < 0)
                return r;
        log_event(LOG_INFO, TG_MID_CONFIG_RELOADED, "Configuration reloaded from %s (%zu paired keys).",
                  d->config_path, m->config.n_keys);
        manager_properties_changed(m, "PairedKeys", NULL);
        return 0;
}

static void manager_free(TgDaemon *d) {
        Manager *m = d->userdata;

        link_done(m);
        power_hold_release(m);
        outbox_done(m);
        inbox_done(m);
        keysync_config_done(&m->config);
        free(m->pairing_path);
}

int main(int argc, char *argv[]) {
        static Manager manager;
        TgDaemon d = {
                .name = "key-sync",
                .bus_name = "org.tollgate.KeySync1",
                .description = "Tollgate key-sync: moves the outbox to the car key and takes what the key brings.",
                .userdata = &manager,
                .setup = manager_setup,
                .reload = manager_reload,
                .free = manager_free,
        };

        return tg_daemon_main(&d, argc, argv);
}
