/* SPDX-License-Identifier: MIT */
/*
 * The key's side of the cloud leg (docs/key-protocol.md §5), one request at
 * a time, driven by libcurl on the loop: upload what the car gave us
 * (deleting each item only after the cloud's 200/201), report what the car
 * confirmed, then list and download what the cloud holds for the car —
 * resuming a download with Range where it stopped — and acknowledge each
 * once it is stored, so the cloud can drop it (SPEC C5).
 */

#include <limits.h>
#include <fcntl.h>
#include <stdarg.h>
#include <json-c/json.h>
#include <stdio.h>
#include <sys/stat.h>

#include "relay.h"
#include "tg-db.h"
#include "tg-event.h"
#include "tg-kplink.h"
#include "tg-log.h"
#include "tg-time.h"

enum {
        STEP_IDLE,
        STEP_UPLOAD,
        STEP_DELIVERED,
        STEP_LIST,
        STEP_DOWNLOAD,
        STEP_ACK,
};

/* What the listing said about the item being downloaded. */
static struct {
        uint8_t kind;
        uint64_t size;
        uint8_t sha256[TG_KP_SHA256_SIZE];
        char name[128];
} dl;

static void step_next(Relay *r);

static int on_cloud_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        step_next(userdata);
        return 0;
}

static void cloud_later(Relay *r, uint64_t delay) {
        (void) tg_event_arm(r->event, &r->cloud_timer, CLOCK_MONOTONIC, tg_now(CLOCK_MONOTONIC) + delay,
                            10 * USEC_PER_MSEC, on_cloud_timer, r, "cloud");
}

void cloud_kick(Relay *r) {
        if (r->cloud_step == STEP_IDLE)
                cloud_later(r, 0);
}

static uint8_t kind_from_string(const char *s) {
        for (uint8_t k = TG_KP_KIND_TELEMETRY; k <= TG_KP_KIND_FILE; k++)
                if (streq(s, tg_kp_kind_to_string(k)))
                        return k;
        return 0;
}

static int hex_decode(const char *hex, uint8_t *out, size_t n) {
        if (!hex || strlen(hex) != 2 * n)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                unsigned b;
                if (sscanf(hex + 2 * i, "%2x", &b) != 1)
                        return -EINVAL;
                out[i] = (uint8_t) b;
        }
        return 0;
}

static void hex_encode(const uint8_t *in, size_t n, char *out) {
        for (size_t i = 0; i < n; i++)
                sprintf(out + 2 * i, "%02x", in[i]);
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Relay *r = userdata;
        size_t n = size * nmemb;

        if (r->cloud_step == STEP_DOWNLOAD) {
                /* Straight to the partial file: a package may be larger than memory. */
                size_t done = 0;
                while (done < n) {
                        ssize_t k = write(r->cloud_fd, ptr + done, n - done);
                        if (k < 0) {
                                if (errno == EINTR)
                                        continue;
                                return 0;
                        }
                        done += (size_t) k;
                }
                return n;
        }
        if (r->response.size + n > 4 * 1024 * 1024 || tg_buf_append(&r->response, ptr, n) < 0)
                return 0;
        return n;
}

static void request_free(Relay *r) {
        if (r->easy)
                curl_easy_cleanup(r->easy);
        r->easy = NULL;
        curl_slist_free_all(r->headers);
        r->headers = NULL;
        tg_buf_reset(&r->response);
        tg_buf_reset(&r->body);
}

static void on_done(CURL *easy, CURLcode result, void *userdata);

/* method on {cloud}/v1/gateways/{gw}/{what}[/{id}[/{tail}]] */
static int request(Relay *r, const char *method, const char *what, uint64_t id, const char *tail) {
        char url[1024];

        if (id > 0)
                snprintf(url, sizeof url, "%s/v1/gateways/%s/%s/%" PRIu64 "%s%s", r->o.cloud, r->o.gateway_id, what, id,
                         tail ? "/" : "", tail ? tail : "");
        else
                snprintf(url, sizeof url, "%s/v1/gateways/%s/%s", r->o.cloud, r->o.gateway_id, what);
        r->easy = curl_easy_init();
        if (!r->easy)
                return -ENOMEM;
        curl_easy_setopt(r->easy, CURLOPT_URL, url);
        curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
        curl_easy_setopt(r->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(r->easy, CURLOPT_LOW_SPEED_TIME, 30L); /* a stalled transfer is given up */
        curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYHOST, 2L);
        curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "https");
        if (r->o.cloud_ca)
                curl_easy_setopt(r->easy, CURLOPT_CAINFO, r->o.cloud_ca);
        curl_easy_setopt(r->easy, CURLOPT_SSLCERT, r->o.cloud_cert);
        curl_easy_setopt(r->easy, CURLOPT_SSLKEY, r->o.cloud_key);
        curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
        if (streq(method, "PUT") || streq(method, "POST")) {
                curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body.data ? (char *) r->body.data : "");
                curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) r->body.size);
                r->headers = curl_slist_append(r->headers, "Expect:");
        }
        if (r->headers)
                curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
        return tg_http_start(r->http, r->easy, on_done, r);
}

static int add_header(Relay *r, const char *fmt, ...) _printf_(2, 3);
static int add_header(Relay *r, const char *fmt, ...) {
        struct curl_slist *l;
        char buf[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        l = curl_slist_append(r->headers, buf);
        if (!l)
                return -ENOMEM;
        r->headers = l;
        return 0;
}

static bool upload_held_back(Relay *r, uint64_t id) {
        if (r->n_held_back > 0 && tg_now(CLOCK_MONOTONIC) >= r->held_back_until)
                r->n_held_back = 0; /* time to try them again */
        for (size_t i = 0; i < r->n_held_back; i++)
                if (r->held_back[i] == id)
                        return true;
        return false;
}

/* The cloud refused an upload: the others go first, it is tried again later.
 * False if too many are held back already (then everything waits). */
static bool hold_back_upload(Relay *r, uint64_t id) {
        if (r->n_held_back == 0)
                r->held_back_until = tg_now(CLOCK_MONOTONIC) + 12 * r->o.cloud_interval_usec;
        if (r->n_held_back >= ELEMENTSOF(r->held_back))
                return false;
        r->held_back[r->n_held_back++] = id;
        return true;
}

/* 1: a request started; 0: nothing of this kind to do; < 0: error. */
static int start_upload(Relay *r) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;
        char sha[2 * TG_KP_SHA256_SIZE + 1];
        int k, rc;

        k = tg_db_prepare(r->db, "SELECT item_id, kind, records, sha256, data FROM car_items WHERE gateway = ? "
                                 "ORDER BY item_id", &s);
        if (k < 0)
                return k;
        sqlite3_bind_text(s, 1, r->o.gateway_id, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW && upload_held_back(r, (uint64_t) sqlite3_column_int64(s, 0)))
                ;
        if (rc == SQLITE_DONE)
                return 0;
        if (rc != SQLITE_ROW || sqlite3_column_bytes(s, 3) != TG_KP_SHA256_SIZE)
                return tg_db_errno(rc) ?: -EIO;
        r->cloud_item = (uint64_t) sqlite3_column_int64(s, 0);
        hex_encode(sqlite3_column_blob(s, 3), TG_KP_SHA256_SIZE, sha);
        tg_buf_reset(&r->body);
        k = tg_buf_append(&r->body, sqlite3_column_blob(s, 4), (size_t) sqlite3_column_bytes(s, 4));
        if (k >= 0)
                k = add_header(r, "Tollgate-Kind: %s", tg_kp_kind_to_string((uint8_t) sqlite3_column_int(s, 1)));
        if (k >= 0)
                k = add_header(r, "Tollgate-Records: %lld", (long long) sqlite3_column_int64(s, 2));
        if (k >= 0)
                k = add_header(r, "Tollgate-SHA256: %s", sha);
        if (k >= 0)
                k = add_header(r, "Content-Type: application/octet-stream");
        if (k < 0)
                return k;
        r->cloud_step = STEP_UPLOAD;
        k = request(r, "PUT", "items", r->cloud_item, NULL);
        return k < 0 ? k : 1;
}

/* A POST about a download we hold: the first item_id `where` selects in
 * cloud_items gets `action` ("ack", "delivered"). 1: started; 0: none. */
static int start_download_report(Relay *r, const char *where, int step, const char *action) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;
        _cleanup_free_ char *sql = NULL;
        int k, rc;

        if (asprintf(&sql, "SELECT item_id FROM cloud_items WHERE %s LIMIT 1", where) < 0)
                return -ENOMEM;
        k = tg_db_prepare(r->db, sql, &s);
        if (k < 0)
                return k;
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
                return 0;
        if (rc != SQLITE_ROW)
                return tg_db_errno(rc) ?: -EIO;
        r->cloud_item = (uint64_t) sqlite3_column_int64(s, 0);
        r->cloud_step = step;
        k = request(r, "POST", "downloads", r->cloud_item, action);
        return k < 0 ? k : 1;
}

/* An ack the cloud has not confirmed yet (its answer was lost or refused). */
static int start_ack(Relay *r) {
        return start_download_report(r, "acked = 0", STEP_ACK, "ack");
}

/* The car has it: tell the cloud. */
static int start_delivered(Relay *r) {
        return start_download_report(r, "state = 1", STEP_DELIVERED, "delivered");
}

/* One statement on one row: ?1 the item id, ?2 our gateway if the SQL names it. */
static int exec_row(Relay *r, const char *sql, uint64_t id) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;
        int k, rc;

        k = tg_db_prepare(r->db, sql, &s);
        if (k < 0)
                return k;
        if (strstr(sql, "gateway"))
                sqlite3_bind_text(s, 2, r->o.gateway_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 1, (sqlite3_int64) id);
        rc = sqlite3_step(s);
        return rc == SQLITE_DONE ? 0 : (tg_db_errno(rc) ?: -EIO);
}

static int have_cloud_item(Relay *r, uint64_t id) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;
        int k, rc;

        k = tg_db_prepare(r->db, "SELECT 1 FROM cloud_items WHERE item_id = ?", &s);
        if (k < 0)
                return k;
        sqlite3_bind_int64(s, 1, (sqlite3_int64) id);
        rc = sqlite3_step(s);
        return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : (tg_db_errno(rc) ?: -EIO);
}

/* The listing: pick the first item we do not hold yet. 1: found (dl filled). */
static int pick_download(Relay *r) {
        json_tokener *tok = json_tokener_new();
        json_object *arr = NULL;
        int found = 0;

        /* The body as received: not NUL-terminated, and a NUL inside is garbage. */
        if (!tok)
                return -ENOMEM;
        if (r->response.size <= INT_MAX && !memchr(r->response.data ?: (const uint8_t *) "", 0, r->response.size)) {
                arr = json_tokener_parse_ex(tok, r->response.data ? (const char *) r->response.data : "",
                                            (int) r->response.size);
                if (json_tokener_get_error(tok) != json_tokener_success) {
                        json_object_put(arr);
                        arr = NULL;
                }
        }
        json_tokener_free(tok);
        if (!arr || !json_object_is_type(arr, json_type_array)) {
                json_object_put(arr);
                return -EBADMSG;
        }
        for (size_t i = 0; i < json_object_array_length(arr) && !found; i++) {
                json_object *o = json_object_array_get_idx(arr, i), *v;
                uint64_t id;
                int k;

                if (!json_object_object_get_ex(o, "id", &v))
                        continue;
                id = (uint64_t) json_object_get_int64(v);
                k = have_cloud_item(r, id);
                if (k != 0)
                        continue; /* held (to deliver, or delivered and not yet reported) */
                dl.kind = json_object_object_get_ex(o, "kind", &v) ? kind_from_string(json_object_get_string(v)) : 0;
                dl.size = json_object_object_get_ex(o, "size", &v) ? (uint64_t) json_object_get_int64(v) : 0;
                snprintf(dl.name, sizeof dl.name, "%s",
                         json_object_object_get_ex(o, "name", &v) ? json_object_get_string(v) : "");
                if (dl.kind == 0 || dl.kind == TG_KP_KIND_TELEMETRY || !json_object_object_get_ex(o, "sha256", &v) ||
                    hex_decode(json_object_get_string(v), dl.sha256, TG_KP_SHA256_SIZE) < 0) {
                        log_warning("The cloud lists item %" PRIu64 " with an unknown kind or no SHA-256; skipped.", id);
                        continue;
                }
                r->cloud_item = id;
                found = 1;
        }
        json_object_put(arr);
        return found;
}

static int start_download(Relay *r) {
        _cleanup_free_ char *path = store_partial_path(r, "cloud", r->cloud_item);
        struct stat st;
        int k;

        if (!path)
                return -ENOMEM;
        r->cloud_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (r->cloud_fd < 0)
                return negative_errno();
        if (fstat(r->cloud_fd, &st) < 0)
                return negative_errno();
        if ((uint64_t) st.st_size > dl.size) {
                if (ftruncate(r->cloud_fd, 0) < 0)
                        return negative_errno();
                st.st_size = 0;
        }
        if (st.st_size > 0) {
                k = add_header(r, "Range: bytes=%lld-", (long long) st.st_size);
                if (k < 0)
                        return k;
                log_info("Resuming the download of item %" PRIu64 " at byte %lld.", r->cloud_item, (long long) st.st_size);
        }
        r->cloud_step = STEP_DOWNLOAD;
        k = request(r, "GET", "downloads", r->cloud_item, NULL);
        return k < 0 ? k : 1;
}

/* The whole item is in the partial file: check it, keep it, then tell the cloud. */
static int finish_download(Relay *r) {
        _cleanup_free_ char *partial = store_partial_path(r, "cloud", r->cloud_item), *dest = NULL;
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;
        uint8_t sha[TG_KP_SHA256_SIZE];
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int k, rc;

        if (!partial || asprintf(&dest, "%s/%016" PRIx64, r->items_dir, r->cloud_item) < 0)
                return -ENOMEM;
        fd = open(partial, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return negative_errno();
        if ((uint64_t) st.st_size != dl.size)
                return -EAGAIN; /* shorter: the next round resumes it */
        k = tg_kp_sha256_fd(fd, sha);
        if (k < 0)
                return k;
        if (memcmp(sha, dl.sha256, sizeof sha) != 0) {
                log_warning("Item %" PRIu64 " from the cloud does not match its SHA-256; downloading it again.",
                            r->cloud_item);
                (void) unlink(partial);
                return -EBADMSG;
        }
        if (fsync(fd) < 0 || rename(partial, dest) < 0)
                return negative_errno();
        k = tg_db_prepare(r->db, "INSERT OR REPLACE INTO cloud_items (item_id, gateway, kind, name, size, sha256, "
                                 "state, acked) VALUES (?, ?, ?, ?, ?, ?, 0, 0)", &s);
        if (k < 0)
                return k;
        sqlite3_bind_int64(s, 1, (sqlite3_int64) r->cloud_item);
        sqlite3_bind_text(s, 2, r->o.gateway_id, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, dl.kind);
        sqlite3_bind_text(s, 4, dl.name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, (sqlite3_int64) dl.size);
        sqlite3_bind_blob(s, 6, dl.sha256, sizeof dl.sha256, SQLITE_STATIC);
        rc = sqlite3_step(s);
        if (rc != SQLITE_DONE)
                return tg_db_errno(rc) ?: -EIO;
        r->from_cloud++;
        car_kick(r);
        log_info("Stored %s %s (%" PRIu64 " bytes) from the cloud for the car.", tg_kp_kind_to_string(dl.kind), dl.name,
                 dl.size);
        return 0;
}

static void on_done(CURL *easy, CURLcode result, void *userdata) {
        Relay *r = userdata;
        long status = 0;
        int step = r->cloud_step, k = 0;
        bool failed = false; /* an answer that did not move anything: not again at once */

        (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        if (step == STEP_DOWNLOAD)
                r->cloud_fd = safe_close(r->cloud_fd);
        if (result != CURLE_OK || status >= 500 || status == 0) {
                if (r->cloud_online)
                        log_info("Cloud not reachable (%s%s%ld); retrying.", curl_easy_strerror(result),
                                 result == CURLE_OK ? ", HTTP " : "", result == CURLE_OK ? status : 0L);
                r->cloud_online = false;
                request_free(r);
                r->cloud_step = STEP_IDLE;
                cloud_later(r, r->o.cloud_interval_usec);
                return;
        }
        if (!r->cloud_online)
                log_info("Cloud reachable.");
        r->cloud_online = true;

        switch (step) {
        case STEP_UPLOAD:
                if (status == 200 || status == 201) {
                        /* The cloud has it (201 new, 200 already): our copy goes (SPEC C5). */
                        k = exec_row(r, "DELETE FROM car_items WHERE item_id = ? AND gateway = ?", r->cloud_item);
                        if (k >= 0 && status == 201)
                                r->to_cloud++;
                } else {
                        log_warning("The cloud refused item %016" PRIx64 " with HTTP %ld: %.*s; trying the others first.",
                                    r->cloud_item, status, (int) MIN(r->response.size, (size_t) 200),
                                    (const char *) r->response.data);
                        failed = !hold_back_upload(r, r->cloud_item);
                }
                break;
        case STEP_DELIVERED:
                if (status / 100 == 2 || status == 404)
                        k = exec_row(r, "DELETE FROM cloud_items WHERE item_id = ?", r->cloud_item);
                else
                        failed = true;
                break;
        case STEP_LIST:
                if (status == 200) {
                        k = pick_download(r);
                        if (k > 0) {
                                request_free(r);
                                k = start_download(r);
                                if (k >= 0)
                                        return;
                        } else if (k == -EBADMSG)
                                log_warning("The cloud's download list is not JSON as expected.");
                        if (k == 0) {
                                /* Nothing more: the next round after the interval. */
                                request_free(r);
                                r->cloud_step = STEP_IDLE;
                                cloud_later(r, r->o.cloud_interval_usec);
                                return;
                        }
                } else
                        failed = true;
                break;
        case STEP_DOWNLOAD:
                if (status == 200 || status == 206) {
                        k = finish_download(r);
                        if (k >= 0) {
                                request_free(r);
                                r->cloud_step = STEP_ACK;
                                k = request(r, "POST", "downloads", r->cloud_item, "ack");
                                if (k >= 0)
                                        return;
                        }
                } else if (status == 416) {
                        _cleanup_free_ char *p = store_partial_path(r, "cloud", r->cloud_item);
                        if (p)
                                (void) unlink(p); /* our partial copy does not fit: start again */
                } else
                        failed = true;
                break;
        case STEP_ACK:
                /* 404: the cloud does not know it any more, nothing to confirm. */
                if (status / 100 == 2 || status == 404)
                        k = exec_row(r, "UPDATE cloud_items SET acked = 1 WHERE item_id = ?", r->cloud_item);
                else {
                        log_warning("The cloud answered HTTP %ld to our ack of item %016" PRIx64 "; asking again later.",
                                    status, r->cloud_item);
                        failed = true;
                }
                break;
        default:
                break;
        }
        if (k < 0 && k != -EAGAIN)
                log_warning_errno(k, "Cloud step %d for item %" PRIu64 " failed: %m", step, r->cloud_item);
        request_free(r);
        r->cloud_step = STEP_IDLE;
        cloud_later(r, k < 0 || failed ? r->o.cloud_interval_usec : 0);
}

static void step_next(Relay *r) {
        int k;

        if (r->cloud_step != STEP_IDLE)
                return;
        k = start_upload(r);
        if (k == 0)
                k = start_ack(r);
        if (k == 0)
                k = start_delivered(r);
        if (k == 0) {
                r->cloud_step = STEP_LIST;
                k = request(r, "GET", "downloads", 0, NULL);
                if (k >= 0)
                        k = 1;
        }
        if (k < 0) {
                log_warning_errno(k, "Cannot start a cloud request: %m");
                request_free(r);
                r->cloud_step = STEP_IDLE;
                cloud_later(r, r->o.cloud_interval_usec);
        }
}

int cloud_setup(Relay *r) {
        int k;

        r->cloud_fd = -EBADF;
        k = tg_http_new(r->event, &r->http);
        if (k < 0)
                return log_error_errno(k, "Cannot set up HTTP: %m");
        cloud_later(r, 0);
        return 0;
}

void cloud_done(Relay *r) {
        if (r->easy)
                tg_http_cancel(r->http, r->easy);
        request_free(r);
        r->cloud_fd = safe_close(r->cloud_fd);
        r->cloud_timer = sd_event_source_disable_unref(r->cloud_timer);
        r->http = tg_http_free(r->http);
        tg_buf_free(&r->body);
        tg_buf_free(&r->response);
}
