/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <sys/stat.h>

#include "relay.h"
#include "tg-db.h"
#include "tg-log.h"

static const char *const store_migrations[] = {
        /* 1 */
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value);"
        /* From the car, for the cloud: telemetry segments (small), kept whole. */
        "CREATE TABLE car_items ("
        "  gateway TEXT NOT NULL, item_id INTEGER NOT NULL, kind INTEGER NOT NULL,"
        "  records INTEGER NOT NULL, size INTEGER NOT NULL, sha256 BLOB NOT NULL,"
        "  data BLOB NOT NULL, received_usec INTEGER NOT NULL,"
        "  PRIMARY KEY (gateway, item_id));"
        /* From the cloud, for the car: files under items/. state 0 = to deliver,
         * 1 = the car has it, report "delivered" to the cloud. */
        "CREATE TABLE cloud_items ("
        "  item_id INTEGER PRIMARY KEY, gateway TEXT NOT NULL, kind INTEGER NOT NULL,"
        "  name TEXT NOT NULL, size INTEGER NOT NULL, sha256 BLOB NOT NULL,"
        "  state INTEGER NOT NULL DEFAULT 0);",
        /* 2: whether the cloud has heard our ack (0: ask again). Rows of
         * version 1 were acked before they were stored. */
        "ALTER TABLE cloud_items ADD COLUMN acked INTEGER NOT NULL DEFAULT 1;",
};

int store_exec(Relay *r, const char *sql) {
        return tg_db_exec(r->db, sql);
}

int store_open(Relay *r) {
        _cleanup_free_ char *path = NULL, *aside = NULL;
        TgDbOptions opts = { .durable = true, .cache_kib = 512 };
        int k;

        if (mkdir(r->o.store, 0700) < 0 && errno != EEXIST)
                return log_error_errno(negative_errno(), "Cannot create %s: %m", r->o.store);
        if (asprintf(&r->partial_dir, "%s/partial", r->o.store) < 0 || asprintf(&r->items_dir, "%s/items", r->o.store) < 0 ||
            asprintf(&path, "%s/relay.db", r->o.store) < 0)
                return log_error_errno(-ENOMEM, "Out of memory.");
        if ((mkdir(r->partial_dir, 0700) < 0 && errno != EEXIST) || (mkdir(r->items_dir, 0700) < 0 && errno != EEXIST))
                return log_error_errno(negative_errno(), "Cannot create folders in %s: %m", r->o.store);
        k = tg_db_open(path, &opts, store_migrations, ELEMENTSOF(store_migrations), &r->db, &aside);
        if (k < 0)
                return log_error_errno(k, "Cannot open %s: %m", path);
        if (aside)
                log_warning("%s was not a readable database; kept it as %s and started a new one.", path, aside);
        return 0;
}

void store_close(Relay *r) {
        sqlite3_close_v2(r->db);
        r->db = NULL;
        free(r->partial_dir);
        free(r->items_dir);
}

char *store_partial_path(Relay *r, const char *side, uint64_t id) {
        char *p;

        if (asprintf(&p, "%s/%s-%016" PRIx64 ".part", r->partial_dir, side, id) < 0)
                return NULL;
        return p;
}
