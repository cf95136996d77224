/* SPDX-License-Identifier: MIT */
#include <assert.h>

#include "tg-doip.h"

static const char *const doip_errors[_TG_DOIP_ERROR_MAX] = {
        [TG_DOIP_OK] = "ok",
        [TG_DOIP_INCORRECT_PATTERN] = "incorrect-pattern",
        [TG_DOIP_UNKNOWN_TYPE] = "unknown-payload-type",
        [TG_DOIP_MESSAGE_TOO_LARGE] = "message-too-large",
        [TG_DOIP_OUT_OF_MEMORY] = "out-of-memory",
        [TG_DOIP_INVALID_LENGTH] = "invalid-payload-length",
        [TG_DOIP_TRUNCATED] = "truncated",
        [TG_DOIP_TRAILING_BYTES] = "trailing-bytes",
        [TG_DOIP_NO_SPACE] = "no-space",
        [TG_DOIP_INVALID_MESSAGE] = "invalid-message",
};

const char *tg_doip_error_to_string(TgDoipError e) {
        return (unsigned) e < _TG_DOIP_ERROR_MAX ? doip_errors[e] : "unknown-error";
}

int tg_doip_error_nack_code(TgDoipError e) {
        switch (e) {
        case TG_DOIP_INCORRECT_PATTERN:
                return TG_DOIP_NACK_INCORRECT_PATTERN;
        case TG_DOIP_UNKNOWN_TYPE:
                return TG_DOIP_NACK_UNKNOWN_TYPE;
        case TG_DOIP_MESSAGE_TOO_LARGE:
                return TG_DOIP_NACK_MESSAGE_TOO_LARGE;
        case TG_DOIP_OUT_OF_MEMORY:
                return TG_DOIP_NACK_OUT_OF_MEMORY;
        case TG_DOIP_INVALID_LENGTH:
                return TG_DOIP_NACK_INVALID_LENGTH;
        default:
                return -1;
        }
}

bool tg_doip_error_closes(TgDoipError e) {
        return e == TG_DOIP_INCORRECT_PATTERN || e == TG_DOIP_INVALID_LENGTH;
}

const char *tg_doip_type_to_string(uint16_t type) {
        switch (type) {
        case TG_DOIP_GENERIC_NACK:
                return "generic-header-nack";
        case TG_DOIP_VEHICLE_ID_REQUEST:
                return "vehicle-identification-request";
        case TG_DOIP_VEHICLE_ID_REQUEST_EID:
                return "vehicle-identification-request-eid";
        case TG_DOIP_VEHICLE_ID_REQUEST_VIN:
                return "vehicle-identification-request-vin";
        case TG_DOIP_VEHICLE_ANNOUNCEMENT:
                return "vehicle-announcement";
        case TG_DOIP_ROUTING_ACTIVATION_REQUEST:
                return "routing-activation-request";
        case TG_DOIP_ROUTING_ACTIVATION_RESPONSE:
                return "routing-activation-response";
        case TG_DOIP_ALIVE_CHECK_REQUEST:
                return "alive-check-request";
        case TG_DOIP_ALIVE_CHECK_RESPONSE:
                return "alive-check-response";
        case TG_DOIP_ENTITY_STATUS_REQUEST:
                return "entity-status-request";
        case TG_DOIP_ENTITY_STATUS_RESPONSE:
                return "entity-status-response";
        case TG_DOIP_POWER_MODE_REQUEST:
                return "power-mode-request";
        case TG_DOIP_POWER_MODE_RESPONSE:
                return "power-mode-response";
        case TG_DOIP_DIAG_MESSAGE:
                return "diagnostic-message";
        case TG_DOIP_DIAG_ACK:
                return "diagnostic-message-ack";
        case TG_DOIP_DIAG_NACK:
                return "diagnostic-message-nack";
        default:
                return "unknown";
        }
}

const char *tg_doip_nack_code_to_string(uint8_t code) {
        static const char *const names[] = {
                [TG_DOIP_NACK_INCORRECT_PATTERN] = "incorrect-pattern",
                [TG_DOIP_NACK_UNKNOWN_TYPE] = "unknown-payload-type",
                [TG_DOIP_NACK_MESSAGE_TOO_LARGE] = "message-too-large",
                [TG_DOIP_NACK_OUT_OF_MEMORY] = "out-of-memory",
                [TG_DOIP_NACK_INVALID_LENGTH] = "invalid-payload-length",
        };
        return code < ELEMENTSOF(names) ? names[code] : "unknown";
}

const char *tg_doip_routing_response_to_string(uint8_t code) {
        switch (code) {
        case TG_DOIP_RA_UNKNOWN_SOURCE:
                return "unknown-source-address";
        case TG_DOIP_RA_NO_FREE_SOCKET:
                return "no-free-socket";
        case TG_DOIP_RA_SOURCE_MISMATCH:
                return "source-address-mismatch";
        case TG_DOIP_RA_SOURCE_ACTIVE_ELSEWHERE:
                return "source-address-active-elsewhere";
        case TG_DOIP_RA_MISSING_AUTHENTICATION:
                return "missing-authentication";
        case TG_DOIP_RA_CONFIRMATION_REJECTED:
                return "confirmation-rejected";
        case TG_DOIP_RA_UNSUPPORTED_TYPE:
                return "unsupported-activation-type";
        case TG_DOIP_RA_TLS_REQUIRED:
                return "tls-required";
        case TG_DOIP_RA_SUCCESS:
                return "success";
        case TG_DOIP_RA_CONFIRMATION_REQUIRED:
                return "confirmation-required";
        default:
                return code >= 0xE0 && code <= 0xFE ? "vehicle-manufacturer-specific" : "unknown";
        }
}

const char *tg_doip_activation_type_to_string(uint8_t type) {
        switch (type) {
        case TG_DOIP_ACTIVATION_DEFAULT:
                return "default";
        case TG_DOIP_ACTIVATION_WWH_OBD:
                return "wwh-obd";
        case TG_DOIP_ACTIVATION_CENTRAL_SECURITY:
                return "central-security";
        default:
                return "unknown";
        }
}

const char *tg_doip_diag_nack_to_string(uint8_t code) {
        static const char *const names[] = {
                [TG_DOIP_DIAG_NACK_INVALID_SOURCE] = "invalid-source-address",
                [TG_DOIP_DIAG_NACK_UNKNOWN_TARGET] = "unknown-target-address",
                [TG_DOIP_DIAG_NACK_MESSAGE_TOO_LARGE] = "diagnostic-message-too-large",
                [TG_DOIP_DIAG_NACK_OUT_OF_MEMORY] = "out-of-memory",
                [TG_DOIP_DIAG_NACK_TARGET_UNREACHABLE] = "target-unreachable",
                [TG_DOIP_DIAG_NACK_UNKNOWN_NETWORK] = "unknown-network",
                [TG_DOIP_DIAG_NACK_TRANSPORT_ERROR] = "transport-protocol-error",
        };
        return code < ELEMENTSOF(names) && names[code] ? names[code] : "unknown";
}

/* Payload layout of each type: a fixed part, an optional field of `optional`
 * bytes (0: none), or `variable` for at least `fixed` bytes. */
typedef struct Layout {
        uint32_t fixed;
        uint32_t optional;
        bool variable;
} Layout;

static bool layout_of(uint16_t type, Layout *ret) {
        switch (type) {
        case TG_DOIP_GENERIC_NACK:
        case TG_DOIP_POWER_MODE_RESPONSE:
                *ret = (Layout) { 1, 0, false };
                return true;
        case TG_DOIP_VEHICLE_ID_REQUEST:
        case TG_DOIP_ALIVE_CHECK_REQUEST:
        case TG_DOIP_ENTITY_STATUS_REQUEST:
        case TG_DOIP_POWER_MODE_REQUEST:
                *ret = (Layout) { 0, 0, false };
                return true;
        case TG_DOIP_VEHICLE_ID_REQUEST_EID:
                *ret = (Layout) { TG_DOIP_EID_SIZE, 0, false };
                return true;
        case TG_DOIP_VEHICLE_ID_REQUEST_VIN:
                *ret = (Layout) { TG_DOIP_VIN_SIZE, 0, false };
                return true;
        case TG_DOIP_VEHICLE_ANNOUNCEMENT:
                *ret = (Layout) { TG_DOIP_VIN_SIZE + 2 + TG_DOIP_EID_SIZE + TG_DOIP_GID_SIZE + 1, 1, false };
                return true;
        case TG_DOIP_ROUTING_ACTIVATION_REQUEST:
                *ret = (Layout) { 7, 4, false };
                return true;
        case TG_DOIP_ROUTING_ACTIVATION_RESPONSE:
                *ret = (Layout) { 9, 4, false };
                return true;
        case TG_DOIP_ALIVE_CHECK_RESPONSE:
                *ret = (Layout) { 2, 0, false };
                return true;
        case TG_DOIP_ENTITY_STATUS_RESPONSE:
                *ret = (Layout) { 3, 4, false };
                return true;
        case TG_DOIP_DIAG_MESSAGE:
        case TG_DOIP_DIAG_ACK:
        case TG_DOIP_DIAG_NACK:
                *ret = (Layout) { 5, 0, true };
                return true;
        default:
                return false;
        }
}

static bool is_vehicle_id_request(uint16_t type) {
        return type >= TG_DOIP_VEHICLE_ID_REQUEST && type <= TG_DOIP_VEHICLE_ID_REQUEST_VIN;
}

static bool version_valid(uint8_t version, uint16_t type) {
        if (version >= TG_DOIP_VERSION_2010 && version <= TG_DOIP_VERSION_2019)
                return true;
        return version == TG_DOIP_VERSION_DEFAULT && is_vehicle_id_request(type);
}

bool tg_doip_payload_length_valid(uint16_t type, uint64_t length) {
        Layout l;

        if (!layout_of(type, &l))
                return false;
        if (l.variable)
                return length >= l.fixed && length <= UINT32_MAX;
        return length == l.fixed || (l.optional > 0 && length == l.fixed + l.optional);
}

TgDoipError tg_doip_header_parse(const uint8_t h[TG_DOIP_HEADER_SIZE], TgDoipHeader *ret) {
        *ret = (TgDoipHeader) {
                .version = h[0],
                .type = tg_get_be16(h + 2),
                .payload_length = tg_get_be32(h + 4),
        };
        if ((h[0] ^ h[1]) != 0xFF || !version_valid(h[0], ret->type))
                return TG_DOIP_INCORRECT_PATTERN;
        return TG_DOIP_OK;
}

TgDoipError tg_doip_header_check(const TgDoipHeader *h, uint32_t max_payload) {
        Layout l;

        if (!layout_of(h->type, &l))
                return TG_DOIP_UNKNOWN_TYPE;
        if (h->payload_length > max_payload)
                return TG_DOIP_MESSAGE_TOO_LARGE;
        if (!tg_doip_payload_length_valid(h->type, h->payload_length))
                return TG_DOIP_INVALID_LENGTH;
        return TG_DOIP_OK;
}

TgDoipError tg_doip_payload_parse(uint16_t type, const uint8_t *p, size_t len, TgDoipMessage *ret) {
        Layout l;

        if (!layout_of(type, &l))
                return TG_DOIP_UNKNOWN_TYPE;
        if (!tg_doip_payload_length_valid(type, len))
                return TG_DOIP_INVALID_LENGTH;

        ret->type = type;
        switch (type) {
        case TG_DOIP_GENERIC_NACK:
                ret->nack_code = p[0];
                break;
        case TG_DOIP_VEHICLE_ID_REQUEST:
        case TG_DOIP_ALIVE_CHECK_REQUEST:
        case TG_DOIP_ENTITY_STATUS_REQUEST:
        case TG_DOIP_POWER_MODE_REQUEST:
                break;
        case TG_DOIP_VEHICLE_ID_REQUEST_EID:
                memcpy(ret->eid, p, TG_DOIP_EID_SIZE);
                break;
        case TG_DOIP_VEHICLE_ID_REQUEST_VIN:
                memcpy(ret->vin, p, TG_DOIP_VIN_SIZE);
                break;
        case TG_DOIP_VEHICLE_ANNOUNCEMENT: {
                TgDoipVehicleAnnouncement *a = &ret->announcement;

                memcpy(a->vin, p, TG_DOIP_VIN_SIZE);
                a->logical_address = tg_get_be16(p + 17);
                memcpy(a->eid, p + 19, TG_DOIP_EID_SIZE);
                memcpy(a->gid, p + 25, TG_DOIP_GID_SIZE);
                a->further_action = p[31];
                a->has_sync_status = len > l.fixed;
                a->sync_status = a->has_sync_status ? p[32] : 0;
                break;
        }
        case TG_DOIP_ROUTING_ACTIVATION_REQUEST: {
                TgDoipRoutingActivationRequest *r = &ret->activation_request;

                r->source_address = tg_get_be16(p);
                r->activation_type = p[2];
                r->reserved = tg_get_be32(p + 3);
                r->has_oem = len > l.fixed;
                r->oem = r->has_oem ? tg_get_be32(p + 7) : 0;
                break;
        }
        case TG_DOIP_ROUTING_ACTIVATION_RESPONSE: {
                TgDoipRoutingActivationResponse *r = &ret->activation_response;

                r->tester_address = tg_get_be16(p);
                r->entity_address = tg_get_be16(p + 2);
                r->code = p[4];
                r->reserved = tg_get_be32(p + 5);
                r->has_oem = len > l.fixed;
                r->oem = r->has_oem ? tg_get_be32(p + 9) : 0;
                break;
        }
        case TG_DOIP_ALIVE_CHECK_RESPONSE:
                ret->alive_source_address = tg_get_be16(p);
                break;
        case TG_DOIP_ENTITY_STATUS_RESPONSE: {
                TgDoipEntityStatus *s = &ret->entity_status;

                s->node_type = p[0];
                s->max_sockets = p[1];
                s->open_sockets = p[2];
                s->has_max_data_size = len > l.fixed;
                s->max_data_size = s->has_max_data_size ? tg_get_be32(p + 3) : 0;
                break;
        }
        case TG_DOIP_POWER_MODE_RESPONSE:
                ret->power_mode = p[0];
                break;
        case TG_DOIP_DIAG_MESSAGE:
                ret->diag = (TgDoipDiag) {
                        .source_address = tg_get_be16(p),
                        .target_address = tg_get_be16(p + 2),
                        .data = p + 4,
                        .data_len = len - 4,
                };
                break;
        case TG_DOIP_DIAG_ACK:
        case TG_DOIP_DIAG_NACK:
                ret->diag = (TgDoipDiag) {
                        .source_address = tg_get_be16(p),
                        .target_address = tg_get_be16(p + 2),
                        .code = p[4],
                        .data = p + 5,
                        .data_len = len - 5,
                };
                break;
        default:
                assert(false); /* layout_of() knows no other type */
                return TG_DOIP_UNKNOWN_TYPE;
        }
        return TG_DOIP_OK;
}

TgDoipError tg_doip_message_decode(const uint8_t *buf, size_t size, uint32_t max_payload, TgDoipMessage *ret) {
        TgDoipHeader h;
        TgDoipError e;

        if (size < TG_DOIP_HEADER_SIZE)
                return TG_DOIP_TRUNCATED;
        e = tg_doip_header_parse(buf, &h);
        ret->version = h.version;
        ret->type = h.type;
        if (e != TG_DOIP_OK)
                return e;
        e = tg_doip_header_check(&h, max_payload);
        if (e != TG_DOIP_OK)
                return e;
        if (size - TG_DOIP_HEADER_SIZE < h.payload_length)
                return TG_DOIP_TRUNCATED;
        if (size - TG_DOIP_HEADER_SIZE > h.payload_length)
                return TG_DOIP_TRAILING_BYTES;
        return tg_doip_payload_parse(h.type, buf + TG_DOIP_HEADER_SIZE, h.payload_length, ret);
}

void tg_doip_put_header(uint8_t p[TG_DOIP_HEADER_SIZE], uint8_t version, uint16_t type, uint32_t payload_length) {
        p[0] = version;
        p[1] = (uint8_t) ~version;
        tg_put_be16(p + 2, type);
        tg_put_be32(p + 4, payload_length);
}

void tg_doip_put_diag_header(uint8_t p[TG_DOIP_DIAG_HEADER_SIZE], uint8_t version, uint16_t source, uint16_t target,
                             uint32_t data_len) {
        tg_doip_put_header(p, version, TG_DOIP_DIAG_MESSAGE, data_len + 4);
        tg_put_be16(p + 8, source);
        tg_put_be16(p + 10, target);
}

/* The payload size of m, or false if it cannot be encoded. */
static bool payload_size(const TgDoipMessage *m, uint64_t *ret) {
        Layout l;
        uint64_t n;

        if (!layout_of(m->type, &l) || !version_valid(m->version, m->type))
                return false;
        n = l.fixed;
        switch (m->type) {
        case TG_DOIP_VEHICLE_ANNOUNCEMENT:
                n += m->announcement.has_sync_status ? l.optional : 0;
                break;
        case TG_DOIP_ROUTING_ACTIVATION_REQUEST:
                n += m->activation_request.has_oem ? l.optional : 0;
                break;
        case TG_DOIP_ROUTING_ACTIVATION_RESPONSE:
                n += m->activation_response.has_oem ? l.optional : 0;
                break;
        case TG_DOIP_ENTITY_STATUS_RESPONSE:
                n += m->entity_status.has_max_data_size ? l.optional : 0;
                break;
        case TG_DOIP_DIAG_MESSAGE:
                if (m->diag.data_len == 0 || !m->diag.data)
                        return false;
                n = 4 + (uint64_t) m->diag.data_len;
                break;
        case TG_DOIP_DIAG_ACK:
        case TG_DOIP_DIAG_NACK:
                if (m->diag.data_len > 0 && !m->diag.data)
                        return false;
                n = 5 + (uint64_t) m->diag.data_len;
                break;
        default:
                break;
        }
        if (n > UINT32_MAX)
                return false;
        *ret = n;
        return true;
}

TgDoipError tg_doip_message_encode(const TgDoipMessage *m, uint8_t *buf, size_t size, size_t *ret_size) {
        uint64_t n;
        uint8_t *p;

        *ret_size = 0;
        if (!payload_size(m, &n))
                return TG_DOIP_INVALID_MESSAGE;
        if (n > SIZE_MAX - TG_DOIP_HEADER_SIZE)
                return TG_DOIP_INVALID_MESSAGE;
        *ret_size = TG_DOIP_HEADER_SIZE + (size_t) n;
        if (size < *ret_size)
                return TG_DOIP_NO_SPACE;

        tg_doip_put_header(buf, m->version, m->type, (uint32_t) n);
        p = buf + TG_DOIP_HEADER_SIZE;
        switch (m->type) {
        case TG_DOIP_GENERIC_NACK:
                p[0] = m->nack_code;
                break;
        case TG_DOIP_VEHICLE_ID_REQUEST_EID:
                memcpy(p, m->eid, TG_DOIP_EID_SIZE);
                break;
        case TG_DOIP_VEHICLE_ID_REQUEST_VIN:
                memcpy(p, m->vin, TG_DOIP_VIN_SIZE);
                break;
        case TG_DOIP_VEHICLE_ANNOUNCEMENT: {
                const TgDoipVehicleAnnouncement *a = &m->announcement;

                memcpy(p, a->vin, TG_DOIP_VIN_SIZE);
                tg_put_be16(p + 17, a->logical_address);
                memcpy(p + 19, a->eid, TG_DOIP_EID_SIZE);
                memcpy(p + 25, a->gid, TG_DOIP_GID_SIZE);
                p[31] = a->further_action;
                if (a->has_sync_status)
                        p[32] = a->sync_status;
                break;
        }
        case TG_DOIP_ROUTING_ACTIVATION_REQUEST: {
                const TgDoipRoutingActivationRequest *r = &m->activation_request;

                tg_put_be16(p, r->source_address);
                p[2] = r->activation_type;
                tg_put_be32(p + 3, r->reserved);
                if (r->has_oem)
                        tg_put_be32(p + 7, r->oem);
                break;
        }
        case TG_DOIP_ROUTING_ACTIVATION_RESPONSE: {
                const TgDoipRoutingActivationResponse *r = &m->activation_response;

                tg_put_be16(p, r->tester_address);
                tg_put_be16(p + 2, r->entity_address);
                p[4] = r->code;
                tg_put_be32(p + 5, r->reserved);
                if (r->has_oem)
                        tg_put_be32(p + 9, r->oem);
                break;
        }
        case TG_DOIP_ALIVE_CHECK_RESPONSE:
                tg_put_be16(p, m->alive_source_address);
                break;
        case TG_DOIP_ENTITY_STATUS_RESPONSE: {
                const TgDoipEntityStatus *s = &m->entity_status;

                p[0] = s->node_type;
                p[1] = s->max_sockets;
                p[2] = s->open_sockets;
                if (s->has_max_data_size)
                        tg_put_be32(p + 3, s->max_data_size);
                break;
        }
        case TG_DOIP_POWER_MODE_RESPONSE:
                p[0] = m->power_mode;
                break;
        case TG_DOIP_DIAG_MESSAGE:
                tg_put_be16(p, m->diag.source_address);
                tg_put_be16(p + 2, m->diag.target_address);
                memcpy(p + 4, m->diag.data, m->diag.data_len);
                break;
        case TG_DOIP_DIAG_ACK:
        case TG_DOIP_DIAG_NACK:
                tg_put_be16(p, m->diag.source_address);
                tg_put_be16(p + 2, m->diag.target_address);
                p[4] = m->diag.code;
                if (m->diag.data_len > 0)
                        memcpy(p + 5, m->diag.data, m->diag.data_len);
                break;
        default: /* the empty requests */
                break;
        }
        return TG_DOIP_OK;
}

void tg_doip_decoder_init(TgDoipDecoder *d, uint32_t max_payload) {
        *d = (TgDoipDecoder) {
                .max_payload = max_payload > 0 ? max_payload : TG_DOIP_MAX_PAYLOAD_DEFAULT,
        };
}

void tg_doip_decoder_done(TgDoipDecoder *d) {
        free(d->buf);
        *d = (TgDoipDecoder) {};
}

size_t tg_doip_decoder_pending(const TgDoipDecoder *d) {
        if (d->discard > 0)
                return TG_DOIP_HEADER_SIZE + (size_t) (d->header.payload_length - d->discard);
        return d->header_got + d->got;
}

/* Room for a payload of n bytes that arrives in pieces. */
static bool reserve(TgDoipDecoder *d, size_t n) {
        size_t want;
        uint8_t *p;

        if (d->allocated >= n)
                return true;
        /* Doubling up to max_payload: few reallocations whatever the sizes. */
        want = MAX(n, MIN(d->allocated * 2, (size_t) d->max_payload));
        p = realloc(d->buf, want);
        if (!p) {
                p = realloc(d->buf, n);
                if (!p)
                        return false;
                want = n;
        }
        d->buf = p;
        d->allocated = want;
        return true;
}

TgDoipError tg_doip_decoder_push(TgDoipDecoder *d, const uint8_t *buf, size_t size, size_t *ret_used,
                                 TgDoipMessage *ret, bool *ret_complete) {
        const uint8_t *payload;
        size_t used = 0, need;
        TgDoipError e;

        *ret_used = 0;
        *ret_complete = false;
        if (d->error != TG_DOIP_OK)
                return d->error;

        if (d->discard > 0) {
                size_t skip = MIN((size_t) d->discard, size);

                d->discard -= (uint32_t) skip;
                used += skip;
                if (d->discard > 0)
                        goto more;
        }

        if (d->header_got < TG_DOIP_HEADER_SIZE) {
                size_t take = MIN((size_t) (TG_DOIP_HEADER_SIZE - d->header_got), size - used);

                memcpy(d->header_bytes + d->header_got, buf + used, take);
                d->header_got += (uint8_t) take;
                used += take;
                if (d->header_got < TG_DOIP_HEADER_SIZE)
                        goto more;

                /* The header is complete: check it before anything is buffered. */
                e = tg_doip_header_parse(d->header_bytes, &d->header);
                if (e == TG_DOIP_OK)
                        e = tg_doip_header_check(&d->header, d->max_payload);
                need = d->header.payload_length;
                if (e == TG_DOIP_OK && size - used < need && !reserve(d, need))
                        e = TG_DOIP_OUT_OF_MEMORY;
                if (e != TG_DOIP_OK) {
                        ret->version = d->header.version;
                        ret->type = d->header.type;
                        *ret_used = used;
                        if (tg_doip_error_closes(e))
                                return d->error = e;
                        /* NACK and discard: skip the payload, then the next message. */
                        d->header_got = 0;
                        d->discard = d->header.payload_length;
                        return e;
                }
        }

        need = d->header.payload_length;
        if (d->got == 0 && size - used >= need) {
                /* All of it in the caller's buffer: parse in place. */
                payload = buf + used;
                used += need;
        } else {
                size_t take = MIN(need - d->got, size - used);

                /* reserve() succeeded when the header came, or got > 0. */
                memcpy(d->buf + d->got, buf + used, take);
                d->got += take;
                used += take;
                if (d->got < need)
                        goto more;
                payload = d->buf;
        }

        ret->version = d->header.version;
        e = tg_doip_payload_parse(d->header.type, payload, need, ret);
        assert(e == TG_DOIP_OK); /* the header check covered the length */
        d->header_got = 0;
        d->got = 0;
        *ret_used = used;
        *ret_complete = e == TG_DOIP_OK;
        return e;

more:
        *ret_used = used;
        return TG_DOIP_OK;
}
