/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "classifier.h"
#include "tg-log.h"
#include "tg-message-ids.h"
#include "tg-time.h"

static uint64_t topic_hash(const char *s, size_t len) {
        uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a */
        for (size_t i = 0; i < len; i++) {
                h ^= (uint8_t) s[i];
                h *= UINT64_C(1099511628211);
        }
        return h;
}

static void cache_flush(Manager *m) {
        for (size_t i = 0; i < ELEMENTSOF(m->cache); i++) {
                free(m->cache[i].topic);
                m->cache[i].topic = NULL;
                m->cache[i].rule = NULL;
        }
}

const Rule *manager_classify(Manager *m, const char *topic, size_t len, DataClass *ret_class,
                             unsigned *ret_priority, uint64_t *ret_ttl) {
        size_t slot = topic_hash(topic, len) % ELEMENTSOF(m->cache);
        const Rule *rule;
        char key[TG_TOPIC_MAX + 1];

        /* Producers use a few hundred distinct topics; fnmatch over every rule
         * once per topic, then a hash probe per record. */
        if (m->cache[slot].topic && strlen(m->cache[slot].topic) == len &&
            memcmp(m->cache[slot].topic, topic, len) == 0)
                rule = m->cache[slot].rule;
        else {
                memcpy(key, topic, len);
                key[len] = '\0';
                rule = classifier_config_match(&m->config, key);
                free(m->cache[slot].topic);
                m->cache[slot].topic = strdup(key); /* on OOM the slot simply stays empty */
                m->cache[slot].rule = rule;
        }
        if (ret_class)
                *ret_class = rule ? rule->class : m->config.default_class;
        if (ret_priority)
                *ret_priority = rule ? rule->priority : m->config.default_priority;
        if (ret_ttl)
                *ret_ttl = rule ? rule->ttl_usec : m->config.default_ttl_usec;
        return rule;
}

uint64_t manager_new_id(Manager *m) {
        return m->run << ID_RUN_SHIFT | m->next_seq++;
}

int manager_accept_record(Manager *m, const TgRecord *in, DataClass *ret_class, uint64_t *ret_id) {
        TgRecord rec = *in;
        DataClass class;
        unsigned priority;
        uint64_t ttl;
        int r;

        manager_classify(m, rec.topic, rec.topic_len, &class, &priority, &ttl);
        rec.id = manager_new_id(m);
        if (class == CLASS_REALTIME)
                r = uplink_add_record(m, &rec, ttl);
        else
                r = store_add_deferred(m, &rec, priority, ttl);
        if (r < 0)
                return r;
        m->counters.accepted++;
        m->counters.accepted_bytes += tg_record_size(&rec);
        m->pending_bytes += tg_record_size(&rec);
        if (m->pending_bytes >= m->config.max_pending_bytes)
                store_schedule_commit(m, true);
        else
                store_schedule_commit(m, false);
        if (ret_class)
                *ret_class = class;
        if (ret_id)
                *ret_id = rec.id;
        return 0;
}

void manager_acknowledge(Manager *m) {
        ingest_ack_all(m);
        store_reply_resolved(m);
}

static int manager_reload(TgDaemon *d) {
        Manager *m = d->userdata;
        ClassifierConfig c;
        TgConfError err = {};
        int r;

        r = classifier_config_load(d->config_path, &c, &err);
        if (r < 0) {
                snprintf(m->config_error, sizeof m->config_error, "%s", err.text);
                log_event_errno(LOG_ERR, r, TG_MID_CONFIG_REJECTED,
                                "Configuration rejected, keeping the running one: %s", err.text);
                return r;
        }
        /* Where things live is fixed for the life of the process. */
        if (!streq(c.socket_path, m->config.socket_path) || !streq(c.state_dir, m->config.state_dir) ||
            c.durable != m->config.durable)
                log_notice("Socket=, Directory= and Durable= changes take effect at the next start.");
        free(c.socket_path);
        free(c.state_dir);
        c.socket_path = TAKE_PTR(m->config.socket_path);
        c.state_dir = TAKE_PTR(m->config.state_dir);
        c.durable = m->config.durable;

        /* Single-threaded: records in flight keep the class they were given; new
         * ones use the new rules from here on. */
        cache_flush(m);
        classifier_config_done(&m->config);
        m->config = c;
        log_event(LOG_INFO, TG_MID_CONFIG_RELOADED, "Configuration reloaded from %s (%zu rules).",
                  d->config_path, m->config.n_rules);
        uplink_kick(m);
        return 0;
}

static int manager_setup(TgDaemon *d) {
        Manager *m = d->userdata;
        TgConfError err = {};
        int r;

        m->daemon = d;
        m->event = d->event;
        m->bus = d->bus;
        m->listen_fd = -EBADF;
        m->replies_tail = &m->replies;
        m->frame_ratelimit = (TgRateLimit) TG_RATELIMIT_INIT(10 * USEC_PER_SEC, 20);

        r = classifier_config_load(d->config_path, &m->config, &err);
        if (r < 0)
                return log_event_errno(LOG_ERR, r, TG_MID_CONFIG_REJECTED, "Configuration rejected: %s", err.text);
        if (!m->config.url)
                log_warning("No [Uplink] URL= configured: real-time records wait in the backlog.");

        r = store_setup(m);
        if (r < 0)
                return r;
        r = downlink_setup(m);
        if (r < 0)
                return r;
        r = uplink_setup(m);
        if (r < 0)
                return r;
        r = ingest_setup(m);
        if (r < 0)
                return r;
        return bus_setup(m);
}

static void manager_commit_then_exit(Manager *m) {
        int r;

        uplink_close_collecting(m);
        r = store_commit(m);
        if (r < 0)
                log_error_errno(r, "Final commit failed; records accepted since the last commit are lost: %m");
        tg_daemon_exit(m->daemon, r < 0 ? EXIT_FAILURE : EXIT_SUCCESS);
}

static int manager_stop(TgDaemon *d) {
        Manager *m = d->userdata;

        /* Stop taking records, commit what was accepted, acknowledge, exit. HTTP
         * requests in flight are abandoned: their batches are in the backlog
         * after this commit and go out (idempotently) after the next start. */
        ingest_pause(m, true);
        manager_commit_then_exit(m);
        return 1;
}

static void manager_free(TgDaemon *d) {
        Manager *m = d->userdata;

        ingest_done(m);
        uplink_done(m);
        store_done(m);
        downlink_done(m);
        cache_flush(m);
        m->props_timer = sd_event_source_disable_unref(m->props_timer);
        classifier_config_done(&m->config);
}

int main(int argc, char *argv[]) {
        static Manager manager;
        TgDaemon d = {
                .name = "classifier",
                .bus_name = "org.tollgate.Classifier1",
                .description = "Tollgate classifier: splits telemetry between the real-time uplink and the outbox.",
                .userdata = &manager,
                .setup = manager_setup,
                .reload = manager_reload,
                .stop = manager_stop,
                .free = manager_free,
        };

        curl_global_init(CURL_GLOBAL_DEFAULT);
        int r = tg_daemon_main(&d, argc, argv);
        curl_global_cleanup();
        return r;
}
