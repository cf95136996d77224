/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A small HTTP/1.1 server for the simulators: one listener, one thread per
 * connection, optional TLS with wolfSSL (mutual authentication when a CA is
 * given), keep-alive, strict request parsing with fixed limits, and a
 * handler callback that sees a whole request (body included) and fills in a
 * response — or asks for misbehaviour (no answer, a late answer, garbage),
 * which is what a simulator of a flaky backend needs.
 *
 * It is a test tool, not a web server: bodies need Content-Length (no
 * chunked requests), responses always carry Content-Length, and requests
 * on one connection are served strictly one after another.
 */

#include <stdint.h>

#include "tg-macro.h"
#include "tg-record.h"

typedef struct SimHttpd SimHttpd;

typedef struct SimHeader {
        const char *name;
        const char *value; /* leading and trailing whitespace removed */
} SimHeader;

typedef struct SimRequest {
        const char *method;
        const char *target; /* as received: path and query */
        const char *path;   /* target up to '?', not decoded */
        const char *query;  /* after '?', not decoded; "" when absent */
        int version_minor;  /* HTTP/1.x */
        const SimHeader *headers;
        size_t n_headers;
        const uint8_t *body;
        size_t body_size;
        uint64_t received_usec; /* CLOCK_REALTIME when the body was complete */

        const char *peer_address; /* "ADDR:PORT" of the client */
        const char *peer_cn;      /* subject CN of the client certificate; NULL without TLS */
        const char *tls_version;  /* "TLSv1.3", ...; NULL without TLS */
} SimRequest;

typedef enum SimAction {
        SIM_ACTION_REPLY,       /* send the response; keep the connection as the client asked */
        SIM_ACTION_REPLY_CLOSE, /* send the response with "Connection: close", then close */
        SIM_ACTION_CLOSE,       /* close without answering */
        SIM_ACTION_HANG,        /* never answer; keep the connection until the peer or the server ends it */
        SIM_ACTION_RAW_CLOSE,   /* send the body bytes as they are, without HTTP framing, then close */
} SimAction;

typedef struct SimResponse {
        int status;
        const char *content_type; /* NULL: no Content-Type header */
        TgBuf headers;            /* extra "Name: value\r\n" lines */
        TgBuf body;
        SimAction action;
        uint64_t delay_usec; /* wait this long before acting (cut short when the server stops) */
} SimResponse;

/* Fill in the response. A negative errno makes the server answer 500 and
 * close the connection. */
typedef int (*SimHandler)(const SimRequest *req, SimResponse *resp, void *userdata);

/* The server refused a request itself (malformed, too large, ...), before
 * the handler saw it. `reason` is a short token such as "header-too-large". */
typedef void (*SimRequestErrorHook)(const char *peer_address, const char *peer_cn, int status,
                                    const char *reason, void *userdata);

/* A TLS handshake failed; `reason` names why (unknown issuer, expired, no
 * certificate, ...). */
typedef void (*SimTlsFailureHook)(const char *peer_address, const char *reason, void *userdata);

typedef struct SimHttpdConfig {
        const char *name;   /* for log lines: "tsp", "control" */
        const char *listen; /* "ADDR:PORT", "[ADDR]:PORT"; port 0 picks a free one */
        bool loopback_only; /* refuse to bind anything but a loopback address */

        /* TLS: all NULL for plain HTTP. With tls_ca the client must present a
         * certificate that chains to it. */
        const char *tls_cert;
        const char *tls_key;
        const char *tls_ca;

        const char *server_header; /* value of "Server:", NULL for none */
        /* POST/PUT/PATCH without Content-Length: 411. Otherwise such a
         * request has an empty body (RFC 9112 6.3). */
        bool require_content_length;

        unsigned max_connections;     /* 0: 128 */
        size_t max_header_size;       /* whole header block; 0: 16 KiB */
        size_t max_body_size;         /* 0: 8 MiB */
        uint64_t idle_timeout_usec;   /* waiting for a request on an open connection; 0: 30 s */
        uint64_t request_timeout_usec; /* from a request's first byte to its last; 0: 60 s */
        uint64_t handshake_timeout_usec; /* 0: 10 s */

        SimHandler handler;
        SimRequestErrorHook on_request_error;
        SimTlsFailureHook on_tls_failure;
        void *userdata;
} SimHttpdConfig;

typedef struct SimHttpdStats {
        uint64_t connections_total;
        uint64_t connections_open;
        uint64_t connections_rejected; /* closed at accept because of max_connections */
        uint64_t tls_failures;
        uint64_t requests; /* every request read, including those refused by the server */
        uint64_t wire_bytes_in;  /* on the socket, TLS records included */
        uint64_t wire_bytes_out;
} SimHttpdStats;

/* Bind and listen; no thread runs yet. Errors are logged here, with the
 * address or file that caused them. */
int sim_httpd_new(const SimHttpdConfig *config, SimHttpd **ret);
/* Start accepting connections in a thread of its own. */
int sim_httpd_start(SimHttpd *h);
/* Stop accepting, end every connection (cutting short waits and delays),
 * wait for their threads, and free. Accepts NULL; returns NULL. */
SimHttpd *sim_httpd_free(SimHttpd *h);
TG_DEFINE_TRIVIAL_CLEANUP_FUNC(SimHttpd *, sim_httpd_free);

/* The bound address, "ADDR:PORT" ("[ADDR]:PORT" for IPv6). */
const char *sim_httpd_address(const SimHttpd *h);

void sim_httpd_get_stats(SimHttpd *h, SimHttpdStats *ret);
/* Zero every counter except connections_open, which counts what is open now. */
void sim_httpd_reset_stats(SimHttpd *h);

/* First header named `name` (case-insensitive), or NULL. */
const char *sim_request_header(const SimRequest *req, const char *name);
/* 0 and *ret for exactly one header `name`, -ENOENT for none, -ENOTUNIQ for several. */
int sim_request_header_unique(const SimRequest *req, const char *name, const char **ret);
/* Value of the query parameter `name`, percent-decoded ('+' is a space),
 * in *ret (to free). -ENOENT if absent, -EINVAL for a bad escape or a NUL. */
int sim_request_query(const SimRequest *req, const char *name, char **ret);

void sim_response_done(SimResponse *resp);
int sim_response_add_header(SimResponse *resp, const char *name, const char *format, ...) _printf_(3, 4);
/* Set status and a text/plain body (a line, newline added). */
int sim_response_text(SimResponse *resp, int status, const char *format, ...) _printf_(3, 4);

const char *sim_status_reason(int status);
