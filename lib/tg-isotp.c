/* SPDX-License-Identifier: MIT */
/* ISO-TP (ISO 15765-2) engine and its TgCanBus binding; see tg-isotp.h. */

#include <linux/can.h>
#include <poll.h>
#include <sys/epoll.h>
#include <systemd/sd-event.h>
#include <sys/socket.h>
#include <net/if.h>
#include <time.h>

#include "tg-isotp.h"

#define PCI_SF 0x0
#define PCI_FF 0x1
#define PCI_CF 0x2
#define PCI_FC 0x3

#define FS_CTS 0x0
#define FS_WAIT 0x1
#define FS_OVFLW 0x2

typedef enum TxState {
        TX_IDLE,
        TX_FIRST,   /* SF or FF waits for poll */
        TX_WAIT_FC, /* N_Bs runs */
        TX_SENDING, /* CFs, paced by STmin */
} TxState;

struct TgIsotp {
        TgIsotpConfig cfg;
        TgIsotpCallback cb;
        void *userdata;

        /* transmission */
        TxState tx_state;
        uint8_t *tx_buf;
        uint32_t tx_len, tx_off;
        uint8_t tx_sn;
        uint8_t tx_bs, tx_block_left;
        uint64_t tx_stmin, tx_next_cf, tx_deadline;
        unsigned tx_wft;
        TgIsotpError tx_result;

        /* reception */
        bool rx_active;
        uint8_t *rx_buf;
        uint32_t rx_len, rx_off;
        uint8_t rx_sn, rx_dl, rx_block;
        uint64_t rx_deadline;
        TgIsotpError rx_error;

        /* a flow control frame to send: fs, or -1 for none */
        int fc_pending;

        /* callback-less delivery */
        uint8_t *done_buf;
        size_t done_len;
        bool done;

        TgIsotpCounters counters;
};

static const char *const error_names[_TG_ISOTP_ERR_MAX] = {
        [TG_ISOTP_OK] = "ok",
        [TG_ISOTP_ERR_WRONG_SN] = "wrong sequence number",
        [TG_ISOTP_ERR_UNEXPECTED] = "unexpected frame",
        [TG_ISOTP_ERR_TIMEOUT_A] = "timeout N_As",
        [TG_ISOTP_ERR_TIMEOUT_BS] = "timeout N_Bs",
        [TG_ISOTP_ERR_TIMEOUT_CR] = "timeout N_Cr",
        [TG_ISOTP_ERR_OVERFLOW] = "overflow (receiver sent FC OVFLW)",
        [TG_ISOTP_ERR_TOO_LARGE] = "message too large",
        [TG_ISOTP_ERR_WFT_OVRN] = "too many FC WAIT frames",
        [TG_ISOTP_ERR_INVALID_FS] = "invalid flow status",
        [TG_ISOTP_ERR_NO_MEMORY] = "out of memory",
        [TG_ISOTP_ERR_ABORTED] = "aborted",
};

const char *tg_isotp_error_to_string(TgIsotpError e) {
        if ((unsigned) e >= _TG_ISOTP_ERR_MAX)
                return "unknown error";
        return error_names[e];
}

uint64_t tg_isotp_stmin_usec(uint8_t v) {
        if (v <= 0x7F)
                return (uint64_t) v * 1000;
        if (v >= 0xF1 && v <= 0xF9)
                return (uint64_t) (v - 0xF0) * 100;
        return 127000;
}

unsigned tg_isotp_round_dl(unsigned n) {
        static const unsigned lens[] = { 8, 12, 16, 20, 24, 32, 48, 64 };

        if (n <= 8)
                return n;
        for (size_t i = 0; i < ELEMENTSOF(lens); i++)
                if (n <= lens[i])
                        return lens[i];
        return 64;
}

void tg_isotp_config_init(TgIsotpConfig *c, uint32_t tx_id, uint32_t rx_id, bool fd) {
        *c = (TgIsotpConfig) {
                .tx_id = tx_id,
                .rx_id = rx_id,
                .fd = fd,
                .pad_byte = TG_ISOTP_DEFAULT_PAD_BYTE,
        };
}

static bool id_valid(uint32_t id) {
        if (id & (CAN_RTR_FLAG | CAN_ERR_FLAG))
                return false;
        if (id & CAN_EFF_FLAG)
                return (id & ~CAN_EFF_FLAG) <= CAN_EFF_MASK;
        return id <= CAN_SFF_MASK;
}

int tg_isotp_new(const TgIsotpConfig *c, TgIsotp **ret) {
        TgIsotp *e;

        if (!c || !ret || !id_valid(c->tx_id) || !id_valid(c->rx_id))
                return -EINVAL;
        e = calloc(1, sizeof *e);
        if (!e)
                return -ENOMEM;
        e->cfg = *c;
        if (e->cfg.tx_dl == 0)
                e->cfg.tx_dl = c->fd ? TG_CANFD_MAX_DLEN : TG_CAN_MAX_DLEN;
        if (!tg_can_len_valid(e->cfg.tx_dl, c->fd) || e->cfg.tx_dl < 8 ||
            (c->stmin > 0x7F && (c->stmin < 0xF1 || c->stmin > 0xF9))) {
                free(e);
                return -EINVAL;
        }
        if (e->cfg.max_rx == 0)
                e->cfg.max_rx = TG_ISOTP_DEFAULT_MAX_RX;
        if (e->cfg.n_as_usec == 0)
                e->cfg.n_as_usec = TG_ISOTP_DEFAULT_TIMEOUT_USEC;
        if (e->cfg.n_bs_usec == 0)
                e->cfg.n_bs_usec = TG_ISOTP_DEFAULT_TIMEOUT_USEC;
        if (e->cfg.n_cr_usec == 0)
                e->cfg.n_cr_usec = TG_ISOTP_DEFAULT_TIMEOUT_USEC;
        e->fc_pending = -1;
        *ret = e;
        return 0;
}

TgIsotp *tg_isotp_free(TgIsotp *e) {
        if (!e)
                return NULL;
        free(e->tx_buf);
        free(e->rx_buf);
        free(e->done_buf);
        free(e);
        return NULL;
}

const TgIsotpConfig *tg_isotp_config(const TgIsotp *e) {
        return &e->cfg;
}

void tg_isotp_set_callback(TgIsotp *e, TgIsotpCallback cb, void *userdata) {
        e->cb = cb;
        e->userdata = userdata;
}

static void emit(TgIsotp *e, TgIsotpEventType type, TgIsotpError error, const uint8_t *data, size_t len) {
        if (e->cb) {
                TgIsotpEvent ev = { .type = type, .error = error, .data = data, .len = len };
                e->cb(e, &ev, e->userdata);
        }
}

/* ---- transmission ---- */

static void tx_finish(TgIsotp *e, TgIsotpError error) {
        free(e->tx_buf);
        e->tx_buf = NULL;
        e->tx_state = TX_IDLE;
        e->tx_result = error;
        if (error == TG_ISOTP_OK) {
                e->counters.tx_messages++;
                emit(e, TG_ISOTP_TX_DONE, error, NULL, 0);
        } else {
                e->counters.tx_errors++;
                emit(e, TG_ISOTP_TX_ERROR, error, NULL, 0);
        }
}

void tg_isotp_abort_tx(TgIsotp *e, TgIsotpError error) {
        if (e->tx_state != TX_IDLE)
                tx_finish(e, error == TG_ISOTP_OK ? TG_ISOTP_ERR_ABORTED : error);
}

bool tg_isotp_tx_busy(const TgIsotp *e) {
        return e->tx_state != TX_IDLE;
}

TgIsotpError tg_isotp_tx_result(const TgIsotp *e) {
        return e->tx_result;
}

int tg_isotp_send(TgIsotp *e, const void *data, size_t len) {
        if (e->tx_state != TX_IDLE)
                return -EBUSY;
        if (len == 0 || !data)
                return -EINVAL;
        if (len > UINT32_MAX)
                return -EMSGSIZE;
        e->tx_buf = malloc(len);
        if (!e->tx_buf)
                return -ENOMEM;
        memcpy(e->tx_buf, data, len);
        e->tx_len = (uint32_t) len;
        e->tx_off = 0;
        e->tx_sn = 1;
        e->tx_wft = 0;
        e->tx_state = TX_FIRST;
        e->tx_result = TG_ISOTP_OK;
        return 0;
}

/* ---- reception ---- */

static void rx_reset(TgIsotp *e) {
        free(e->rx_buf);
        e->rx_buf = NULL;
        e->rx_active = false;
        e->rx_len = e->rx_off = 0;
}

static void rx_fail(TgIsotp *e, TgIsotpError error) {
        rx_reset(e);
        e->rx_error = error;
        e->counters.rx_errors++;
        emit(e, TG_ISOTP_RX_ERROR, error, NULL, 0);
}

static void rx_deliver(TgIsotp *e, uint8_t *buf, size_t len) {
        /* buf is owned by the engine on entry */
        e->counters.rx_messages++;
        if (e->cb) {
                emit(e, TG_ISOTP_RX_DONE, TG_ISOTP_OK, buf, len);
                free(buf);
                return;
        }
        if (e->done) {
                free(e->done_buf);
                e->counters.dropped++;
        }
        e->done_buf = buf;
        e->done_len = len;
        e->done = true;
}

int tg_isotp_recv(TgIsotp *e, uint8_t **ret_data, size_t *ret_len) {
        if (!e->done)
                return -EAGAIN;
        *ret_data = TAKE_PTR(e->done_buf);
        *ret_len = e->done_len;
        e->done = false;
        e->done_len = 0;
        return 0;
}

TgIsotpError tg_isotp_take_rx_error(TgIsotp *e) {
        TgIsotpError r = e->rx_error;
        e->rx_error = TG_ISOTP_OK;
        return r;
}

bool tg_isotp_rx_progress(const TgIsotp *e, uint32_t *ret_done, uint32_t *ret_total) {
        if (ret_done)
                *ret_done = e->rx_off;
        if (ret_total)
                *ret_total = e->rx_len;
        return e->rx_active;
}

void tg_isotp_counters(const TgIsotp *e, TgIsotpCounters *ret) {
        *ret = e->counters;
}

static int feed_sf(TgIsotp *e, const TgCanFrame *f, unsigned off, uint64_t now) {
        unsigned low = f->data[off] & 0xF, dl, hdr;
        uint8_t *buf;

        (void) now;
        if (f->len <= 8) {
                hdr = off + 1;
                dl = low;
                if (dl == 0 || dl + hdr > f->len)
                        return -EBADMSG;
        } else {
                hdr = off + 2;
                if (low != 0 || f->len < hdr)
                        return -EBADMSG;
                dl = f->data[off + 1];
                /* the escape is for what does not fit the short form */
                if (dl + hdr > f->len || dl + off + 1 <= 8)
                        return -EBADMSG;
        }
        if (e->rx_active)
                rx_fail(e, TG_ISOTP_ERR_UNEXPECTED);
        buf = malloc(dl);
        if (!buf) {
                rx_fail(e, TG_ISOTP_ERR_NO_MEMORY);
                return 1;
        }
        memcpy(buf, f->data + hdr, dl);
        rx_deliver(e, buf, dl);
        return 1;
}

static int feed_ff(TgIsotp *e, const TgCanFrame *f, unsigned off, uint64_t now) {
        uint32_t len = ((uint32_t) (f->data[off] & 0xF) << 8) | f->data[off + 1];
        unsigned hdr = off + 2, first;

        /* An FF fills its frame: 8 bytes, or for CAN FD a valid length ≥ 8. */
        if (f->len < 8 || (!f->fd && f->len != 8))
                return -EBADMSG;
        if (len == 0) {
                if (f->len < off + 6)
                        return -EBADMSG;
                len = (uint32_t) f->data[off + 2] << 24 | (uint32_t) f->data[off + 3] << 16 |
                      (uint32_t) f->data[off + 4] << 8 | f->data[off + 5];
                hdr = off + 6;
                if (len <= 4095)
                        return -EBADMSG;
        }
        /* An FF for what a single frame of this size carries is invalid. */
        if (len <= (uint32_t) (f->len <= 8 ? 7 - off : f->len - 2 - off))
                return -EBADMSG;
        first = f->len - hdr; /* < len, by the check above */

        if (e->rx_active)
                rx_fail(e, TG_ISOTP_ERR_UNEXPECTED);
        if (len > e->cfg.max_rx) {
                e->fc_pending = FS_OVFLW;
                rx_fail(e, TG_ISOTP_ERR_TOO_LARGE);
                return 1;
        }
        e->rx_buf = malloc(len);
        if (!e->rx_buf) {
                e->fc_pending = FS_OVFLW;
                rx_fail(e, TG_ISOTP_ERR_NO_MEMORY);
                return 1;
        }
        memcpy(e->rx_buf, f->data + hdr, first);
        e->rx_active = true;
        e->rx_len = len;
        e->rx_off = first;
        e->rx_sn = 1;
        e->rx_dl = f->len;
        e->rx_block = 0;
        e->rx_deadline = now + e->cfg.n_cr_usec;
        e->fc_pending = FS_CTS;
        return 1;
}

static int feed_cf(TgIsotp *e, const TgCanFrame *f, unsigned off, uint64_t now) {
        uint32_t remaining, avail, take;

        if (!e->rx_active) {
                e->counters.ignored++;
                return 0;
        }
        if (f->len < off + 1)
                return -EBADMSG;
        remaining = e->rx_len - e->rx_off;
        avail = f->len - off - 1;
        if (remaining > avail) {
                if (f->len != e->rx_dl) /* only the last CF may be shorter */
                        return -EBADMSG;
                take = avail;
        } else
                take = remaining;
        if ((f->data[off] & 0xF) != e->rx_sn) {
                rx_fail(e, TG_ISOTP_ERR_WRONG_SN);
                return 1;
        }
        memcpy(e->rx_buf + e->rx_off, f->data + off + 1, take);
        e->rx_off += take;
        e->rx_sn = (e->rx_sn + 1) & 0xF;
        e->rx_deadline = now + e->cfg.n_cr_usec;
        if (e->rx_off == e->rx_len) {
                uint8_t *buf = TAKE_PTR(e->rx_buf);
                size_t len = e->rx_len;

                rx_reset(e);
                rx_deliver(e, buf, len);
                return 1;
        }
        if (e->cfg.bs > 0 && ++e->rx_block >= e->cfg.bs) {
                e->rx_block = 0;
                e->fc_pending = FS_CTS;
        }
        return 1;
}

static int feed_fc(TgIsotp *e, const TgCanFrame *f, unsigned off, uint64_t now) {
        unsigned fs = f->data[off] & 0xF;

        if (f->len < off + 3)
                return -EBADMSG;
        if (e->tx_state != TX_WAIT_FC) {
                e->counters.ignored++;
                return 0;
        }
        switch (fs) {
        case FS_CTS:
                e->tx_bs = f->data[off + 1];
                e->tx_block_left = e->tx_bs;
                e->tx_stmin = tg_isotp_stmin_usec(f->data[off + 2]);
                e->tx_next_cf = now;
                e->tx_wft = 0;
                e->tx_state = TX_SENDING;
                break;
        case FS_WAIT:
                e->tx_wft++;
                if (e->cfg.max_wft > 0 && e->tx_wft > e->cfg.max_wft)
                        tx_finish(e, TG_ISOTP_ERR_WFT_OVRN);
                else
                        e->tx_deadline = now + e->cfg.n_bs_usec;
                break;
        case FS_OVFLW:
                tx_finish(e, TG_ISOTP_ERR_OVERFLOW);
                break;
        default:
                tx_finish(e, TG_ISOTP_ERR_INVALID_FS);
        }
        return 1;
}

int tg_isotp_feed(TgIsotp *e, const TgCanFrame *f, uint64_t now) {
        unsigned off = 0;
        int r;

        if (f->id != e->cfg.rx_id || f->len > TG_CANFD_MAX_DLEN)
                return 0; /* other ids, remote and error frames (their flags differ) */
        if (e->cfg.ext_addr) {
                if (f->len < 1 || f->data[0] != e->cfg.rx_ext)
                        return 0;
                off = 1;
        }
        if ((f->fd && !e->cfg.fd) || f->len < off + 1) {
                e->counters.malformed++;
                return -EBADMSG;
        }
        switch (f->data[off] >> 4) {
        case PCI_SF:
                r = feed_sf(e, f, off, now);
                break;
        case PCI_FF:
                r = f->len < off + 2 ? -EBADMSG : feed_ff(e, f, off, now);
                break;
        case PCI_CF:
                r = feed_cf(e, f, off, now);
                break;
        case PCI_FC:
                r = feed_fc(e, f, off, now);
                break;
        default:
                r = -EBADMSG;
        }
        if (r == -EBADMSG)
                e->counters.malformed++;
        return r;
}

/* ---- frames out ---- */

static unsigned frame_start(const TgIsotp *e, TgCanFrame *f) {
        *f = (TgCanFrame) {
                .id = e->cfg.tx_id,
                .fd = e->cfg.fd,
                .flags = e->cfg.fd && e->cfg.brs ? CANFD_BRS : 0,
        };
        if (e->cfg.ext_addr) {
                f->data[0] = e->cfg.tx_ext;
                return 1;
        }
        return 0;
}

static void frame_finish(const TgIsotp *e, TgCanFrame *f, unsigned n) {
        unsigned len = tg_isotp_round_dl(n);

        if (e->cfg.pad && len < 8)
                len = 8;
        if (len > n)
                memset(f->data + n, e->cfg.pad_byte, len - n);
        f->len = (uint8_t) len;
}

static void make_fc(TgIsotp *e, TgCanFrame *f, unsigned fs) {
        unsigned off = frame_start(e, f);

        f->data[off] = (uint8_t) (PCI_FC << 4 | fs);
        f->data[off + 1] = fs == FS_CTS ? e->cfg.bs : 0;
        f->data[off + 2] = fs == FS_CTS ? e->cfg.stmin : 0;
        frame_finish(e, f, off + 3);
}

static void make_first(TgIsotp *e, TgCanFrame *f, uint64_t now) {
        unsigned off = frame_start(e, f), dl = e->cfg.tx_dl;

        if (e->tx_len + off + 1 <= 8 && e->tx_len <= 7) {
                /* SF, short form */
                f->data[off] = (uint8_t) e->tx_len;
                memcpy(f->data + off + 1, e->tx_buf, e->tx_len);
                frame_finish(e, f, off + 1 + e->tx_len);
                tx_finish(e, TG_ISOTP_OK);
                return;
        }
        if (dl > 8 && e->tx_len + off + 2 <= dl) {
                /* SF with the escape: CAN FD only */
                f->data[off] = 0;
                f->data[off + 1] = (uint8_t) e->tx_len;
                memcpy(f->data + off + 2, e->tx_buf, e->tx_len);
                frame_finish(e, f, off + 2 + e->tx_len);
                tx_finish(e, TG_ISOTP_OK);
                return;
        }
        /* FF */
        if (e->tx_len <= 4095) {
                f->data[off] = (uint8_t) (PCI_FF << 4 | e->tx_len >> 8);
                f->data[off + 1] = (uint8_t) e->tx_len;
                off += 2;
        } else {
                f->data[off] = PCI_FF << 4;
                f->data[off + 1] = 0;
                f->data[off + 2] = (uint8_t) (e->tx_len >> 24);
                f->data[off + 3] = (uint8_t) (e->tx_len >> 16);
                f->data[off + 4] = (uint8_t) (e->tx_len >> 8);
                f->data[off + 5] = (uint8_t) e->tx_len;
                off += 6;
        }
        e->tx_off = dl - off; /* < tx_len: it did not fit a single frame */
        memcpy(f->data + off, e->tx_buf, e->tx_off);
        f->len = (uint8_t) dl;
        e->tx_state = TX_WAIT_FC;
        e->tx_deadline = now + e->cfg.n_bs_usec;
}

static void make_cf(TgIsotp *e, TgCanFrame *f, uint64_t now) {
        unsigned off = frame_start(e, f);
        uint32_t take = MIN(e->tx_len - e->tx_off, (uint32_t) (e->cfg.tx_dl - off - 1));

        f->data[off] = (uint8_t) (PCI_CF << 4 | e->tx_sn);
        memcpy(f->data + off + 1, e->tx_buf + e->tx_off, take);
        frame_finish(e, f, off + 1 + take);
        e->tx_off += take;
        e->tx_sn = (e->tx_sn + 1) & 0xF;
        if (e->tx_off == e->tx_len) {
                tx_finish(e, TG_ISOTP_OK);
                return;
        }
        e->tx_next_cf = now + e->tx_stmin;
        if (e->tx_bs > 0 && --e->tx_block_left == 0) {
                e->tx_state = TX_WAIT_FC;
                e->tx_deadline = now + e->cfg.n_bs_usec;
        }
}

int tg_isotp_poll(TgIsotp *e, uint64_t now, TgCanFrame *ret, uint64_t *ret_deadline) {
        uint64_t deadline = TG_ISOTP_NO_DEADLINE;

        /* timeouts first */
        if (e->rx_active && now >= e->rx_deadline && e->fc_pending < 0)
                rx_fail(e, TG_ISOTP_ERR_TIMEOUT_CR);
        if (e->tx_state == TX_WAIT_FC && now >= e->tx_deadline)
                tx_finish(e, TG_ISOTP_ERR_TIMEOUT_BS);

        if (e->fc_pending >= 0) {
                make_fc(e, ret, (unsigned) e->fc_pending);
                e->fc_pending = -1;
                if (e->rx_active)
                        e->rx_deadline = now + e->cfg.n_cr_usec;
                return 1;
        }
        if (e->tx_state == TX_FIRST) {
                make_first(e, ret, now);
                return 1;
        }
        if (e->tx_state == TX_SENDING) {
                if (now >= e->tx_next_cf) {
                        make_cf(e, ret, now);
                        return 1;
                }
                deadline = e->tx_next_cf;
        }
        if (e->tx_state == TX_WAIT_FC)
                deadline = MIN(deadline, e->tx_deadline);
        if (e->rx_active)
                deadline = MIN(deadline, e->rx_deadline);
        if (ret_deadline)
                *ret_deadline = deadline;
        return 0;
}

/* ---- binding to a TgCanBus ---- */

struct TgIsotpSocket {
        TgCanBus *bus;
        TgIsotp *engine;
        TgCanFrame pending;
        bool has_pending;
        uint64_t pending_since;
        sd_event_source *io, *timer;
        int error;
};

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

int tg_isotp_socket_new(TgCanBus *bus, const TgIsotpConfig *c, TgIsotpSocket **ret) {
        TgIsotpSocket *s;
        int r;

        if (!bus || !ret)
                return -EINVAL;
        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        r = tg_isotp_new(c, &s->engine);
        if (r < 0) {
                free(s);
                return r;
        }
        s->bus = bus;
        *ret = s;
        return 0;
}

TgIsotpSocket *tg_isotp_socket_free(TgIsotpSocket *s) {
        if (!s)
                return NULL;
        tg_isotp_socket_detach_event(s);
        tg_isotp_free(s->engine);
        free(s);
        return NULL;
}

TgIsotp *tg_isotp_socket_engine(TgIsotpSocket *s) {
        return s->engine;
}

int tg_isotp_socket_process(TgIsotpSocket *s, uint64_t *ret_deadline, bool *ret_want_write) {
        uint64_t deadline = TG_ISOTP_NO_DEADLINE, now;
        TgCanFrame f;
        int r;

        for (;;) {
                r = tg_can_recv(s->bus, &f);
                if (r == -EAGAIN)
                        break;
                if (r == -EBADMSG)
                        continue;
                if (r < 0)
                        return r;
                (void) tg_isotp_feed(s->engine, &f, now_usec());
        }
        for (;;) {
                now = now_usec();
                if (!s->has_pending) {
                        r = tg_isotp_poll(s->engine, now, &s->pending, &deadline);
                        if (r == 0)
                                break;
                        s->has_pending = true;
                        s->pending_since = now;
                }
                r = tg_can_send(s->bus, &s->pending);
                if (r == -EAGAIN) {
                        if (now - s->pending_since >= s->engine->cfg.n_as_usec) {
                                s->has_pending = false;
                                tg_isotp_abort_tx(s->engine, TG_ISOTP_ERR_TIMEOUT_A);
                                continue;
                        }
                        deadline = s->pending_since + s->engine->cfg.n_as_usec;
                        break;
                }
                s->has_pending = false;
                if (r < 0)
                        return r;
        }
        if (ret_deadline)
                *ret_deadline = deadline;
        if (ret_want_write)
                *ret_want_write = s->has_pending;
        return 0;
}

/* Wait for the bus fd (and POLLOUT while a frame waits) up to the earlier of
 * deadline and end. */
static int socket_wait(TgIsotpSocket *s, uint64_t deadline, bool want_write, uint64_t end) {
        struct pollfd p = { .fd = tg_can_fd(s->bus), .events = POLLIN | (want_write ? POLLOUT : 0) };
        uint64_t now = now_usec(), until = MIN(deadline, end);
        int timeout;

        if (until <= now)
                return 0;
        timeout = (int) MIN((until - now + 999) / 1000, (uint64_t) 60000);
        if (poll(&p, 1, timeout) < 0 && errno != EINTR)
                return -errno;
        return 0;
}

int tg_isotp_socket_send_wait(TgIsotpSocket *s, const void *data, size_t len, uint64_t timeout_usec) {
        uint64_t end = now_usec() + timeout_usec;
        int r;

        r = tg_isotp_send(s->engine, data, len);
        if (r < 0)
                return r;
        for (;;) {
                uint64_t deadline;
                bool want_write;

                r = tg_isotp_socket_process(s, &deadline, &want_write);
                if (r < 0)
                        return r;
                if (!tg_isotp_tx_busy(s->engine) && !s->has_pending)
                        return tg_isotp_tx_result(s->engine) == TG_ISOTP_OK ? 0 : -EIO;
                if (now_usec() >= end) {
                        tg_isotp_abort_tx(s->engine, TG_ISOTP_ERR_ABORTED);
                        return -ETIMEDOUT;
                }
                r = socket_wait(s, deadline, want_write, end);
                if (r < 0)
                        return r;
        }
}

int tg_isotp_socket_recv_wait(TgIsotpSocket *s, uint8_t **ret_data, size_t *ret_len, uint64_t timeout_usec) {
        uint64_t end = now_usec() + timeout_usec;
        int r;

        for (;;) {
                uint64_t deadline;
                bool want_write;

                r = tg_isotp_socket_process(s, &deadline, &want_write);
                if (r < 0)
                        return r;
                if (tg_isotp_recv(s->engine, ret_data, ret_len) == 0)
                        return 0;
                if (now_usec() >= end)
                        return -ETIMEDOUT;
                r = socket_wait(s, deadline, want_write, end);
                if (r < 0)
                        return r;
        }
}

/* ---- sd-event ---- */

static int socket_update(TgIsotpSocket *s) {
        uint64_t deadline;
        bool want_write;
        int r;

        if (s->error < 0)
                return s->error;
        r = tg_isotp_socket_process(s, &deadline, &want_write);
        if (r < 0) {
                s->error = r;
                if (s->io)
                        (void) sd_event_source_set_enabled(s->io, SD_EVENT_OFF);
                if (s->timer)
                        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
                tg_isotp_abort_tx(s->engine, TG_ISOTP_ERR_ABORTED);
                return r;
        }
        if (s->io) {
                r = sd_event_source_set_io_events(s->io, EPOLLIN | (want_write ? EPOLLOUT : 0));
                if (r < 0)
                        return r;
        }
        if (s->timer) {
                if (deadline == TG_ISOTP_NO_DEADLINE)
                        return sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
                r = sd_event_source_set_time(s->timer, deadline);
                if (r >= 0)
                        r = sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
                return r;
        }
        return 0;
}

static int on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        (void) source, (void) fd, (void) revents;
        (void) socket_update(userdata);
        return 0;
}

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        (void) source, (void) usec;
        (void) socket_update(userdata);
        return 0;
}

int tg_isotp_socket_attach_event(TgIsotpSocket *s, sd_event *event, int64_t priority) {
        int r;

        if (s->io)
                return -EBUSY;
        r = sd_event_add_io(event, &s->io, tg_can_fd(s->bus), EPOLLIN, on_io, s);
        if (r < 0)
                return r;
        r = sd_event_add_time(event, &s->timer, CLOCK_MONOTONIC, UINT64_MAX, 1, on_timer, s);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(s->io, "isotp-io");
        (void) sd_event_source_set_description(s->timer, "isotp-timer");
        r = sd_event_source_set_priority(s->io, priority);
        if (r >= 0)
                r = sd_event_source_set_priority(s->timer, priority);
        if (r >= 0)
                r = sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        if (r < 0)
                goto fail;
        return 0;
fail:
        tg_isotp_socket_detach_event(s);
        return r;
}

void tg_isotp_socket_detach_event(TgIsotpSocket *s) {
        s->io = sd_event_source_disable_unref(s->io);
        s->timer = sd_event_source_disable_unref(s->timer);
}

int tg_isotp_socket_send(TgIsotpSocket *s, const void *data, size_t len) {
        int r;

        if (s->error < 0)
                return s->error;
        r = tg_isotp_send(s->engine, data, len);
        if (r < 0)
                return r;
        return socket_update(s);
}

int tg_isotp_socket_error(const TgIsotpSocket *s) {
        return s->error;
}

/* ---- kernel CAN_ISOTP ---- */

#include <linux/can/isotp.h>

int tg_isotp_kernel_open(const char *ifname, const TgIsotpConfig *c) {
        struct sockaddr_can sa = { .can_family = AF_CAN };
        struct can_isotp_options opts = {
                .flags = (c && c->ext_addr ? CAN_ISOTP_EXTEND_ADDR | CAN_ISOTP_RX_EXT_ADDR : 0) |
                         (c && c->pad ? CAN_ISOTP_TX_PADDING : 0),
                .ext_address = c ? c->tx_ext : 0,
                .rx_ext_address = c ? c->rx_ext : 0,
                .txpad_content = c ? c->pad_byte : 0,
                .rxpad_content = c ? c->pad_byte : 0,
        };
        struct can_isotp_fc_options fc = {
                .bs = c ? c->bs : 0,
                .stmin = c ? c->stmin : 0,
                .wftmax = c ? (uint8_t) MIN(c->max_wft, 255u) : 0,
        };
        struct can_isotp_ll_options ll = {
                .mtu = c && c->fd ? CANFD_MTU : CAN_MTU,
                .tx_dl = c && c->tx_dl ? c->tx_dl : (c && c->fd ? CANFD_MAX_DLEN : CAN_MAX_DLEN),
                .tx_flags = c && c->fd && c->brs ? CANFD_BRS : 0,
        };
        int fd, r;

        if (!ifname || !c || !id_valid(c->tx_id) || !id_valid(c->rx_id))
                return -EINVAL;
        fd = socket(PF_CAN, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, CAN_ISOTP);
        if (fd < 0)
                return errno == EPROTONOSUPPORT || errno == EAFNOSUPPORT || errno == EINVAL ? -EAFNOSUPPORT
                                                                                           : -errno;
        if (setsockopt(fd, SOL_CAN_ISOTP, CAN_ISOTP_OPTS, &opts, sizeof opts) < 0 ||
            setsockopt(fd, SOL_CAN_ISOTP, CAN_ISOTP_RECV_FC, &fc, sizeof fc) < 0 ||
            setsockopt(fd, SOL_CAN_ISOTP, CAN_ISOTP_LL_OPTS, &ll, sizeof ll) < 0) {
                r = -errno;
                safe_close(fd);
                return r;
        }
        sa.can_ifindex = (int) if_nametoindex(ifname);
        if (sa.can_ifindex == 0) {
                safe_close(fd);
                return -ENODEV;
        }
        sa.can_addr.tp.tx_id = c->tx_id;
        sa.can_addr.tp.rx_id = c->rx_id;
        if (bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                r = -errno;
                safe_close(fd);
                return r;
        }
        return fd;
}
