/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <linux/can.h>
#include <linux/can/raw.h>
#include <math.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>

#ifdef TG_HAVE_LIBSOCKETCAN
#include <libsocketcan.h>
#include <linux/can/netlink.h>
#endif

#include "tg-can.h"

/* The wire form is the kernel's own structs, byte for byte. */
static_assert(sizeof(struct can_frame) == TG_CAN_MTU, "struct can_frame is not 16 bytes");
static_assert(sizeof(struct canfd_frame) == TG_CANFD_MTU, "struct canfd_frame is not 72 bytes");
static_assert(offsetof(struct can_frame, data) == 8 && offsetof(struct canfd_frame, data) == 8,
              "CAN payload not at offset 8");
static_assert(TG_CAN_MAX_DLEN == CAN_MAX_DLEN && TG_CANFD_MAX_DLEN == CANFD_MAX_DLEN, "payload sizes");

#define SIGNAL_BITS_MAX (TG_CANFD_MAX_DLEN * 8)
/* Flags a caller may set on an FD frame (FDF is implied by .fd). */
#define FD_FLAGS (CANFD_BRS | CANFD_ESI)

struct TgCanBus {
        int fd;
        bool hub;          /* "unix:" */
        bool fd_frames;
        bool receive_errors;
        uint32_t *filters; /* for the hub; the kernel has its own copy */
        size_t n_filters;
        char *spec;
};

/* ---- frames ---------------------------------------------------------------- */

bool tg_can_len_valid(unsigned len, bool fd) {
        if (len <= CAN_MAX_DLEN)
                return true;
        if (!fd)
                return false;
        switch (len) {
        case 12: case 16: case 20: case 24: case 32: case 48: case 64:
                return true;
        default:
                return false;
        }
}

/* An 11-bit id has nothing above bit 10; an error frame's id is its class. */
static bool id_valid(uint32_t id, bool fd) {
        if (id & CAN_ERR_FLAG)
                return !fd;
        if (fd && (id & CAN_RTR_FLAG)) /* CAN FD has no remote frames */
                return false;
        if (id & CAN_EFF_FLAG)
                return true;
        return (id & CAN_EFF_MASK & ~CAN_SFF_MASK) == 0;
}

static bool frame_valid(const TgCanFrame *f) {
        if (!tg_can_len_valid(f->len, f->fd) || !id_valid(f->id, f->fd))
                return false;
        return f->fd ? (f->flags & ~(FD_FLAGS | CANFD_FDF)) == 0 : f->flags == 0;
}

int tg_can_frame_encode(const TgCanFrame *f, uint8_t *buf, size_t size) {
        if (!f || !buf || !frame_valid(f))
                return -EINVAL;

        if (!f->fd) {
                struct can_frame cf;

                if (size < sizeof cf)
                        return -EINVAL;
                memset(&cf, 0, sizeof cf); /* reserved bytes and padding included */
                cf.can_id = f->id;
                cf.len = f->len;
                memcpy(cf.data, f->data, f->len);
                memcpy(buf, &cf, sizeof cf);
                return (int) sizeof cf;
        } else {
                struct canfd_frame cfd;

                if (size < sizeof cfd)
                        return -EINVAL;
                memset(&cfd, 0, sizeof cfd);
                cfd.can_id = f->id;
                cfd.len = f->len;
                cfd.flags = (uint8_t) ((f->flags & FD_FLAGS) | CANFD_FDF);
                memcpy(cfd.data, f->data, f->len);
                memcpy(buf, &cfd, sizeof cfd);
                return (int) sizeof cfd;
        }
}

int tg_can_frame_decode(const uint8_t *buf, size_t size, TgCanFrame *ret) {
        TgCanFrame f = {};

        if (!ret || (!buf && size > 0))
                return -EINVAL;
        if (size == TG_CAN_MTU) {
                struct can_frame cf;

                memcpy(&cf, buf, sizeof cf);
                if (cf.len > CAN_MAX_DLEN) /* len8_dlc and the padding are not looked at */
                        return -EBADMSG;
                f.id = cf.can_id;
                f.len = cf.len;
                memcpy(f.data, cf.data, cf.len);
        } else if (size == TG_CANFD_MTU) {
                struct canfd_frame cfd;

                memcpy(&cfd, buf, sizeof cfd);
                if (!tg_can_len_valid(cfd.len, true))
                        return -EBADMSG;
                f.id = cfd.can_id;
                f.len = cfd.len;
                f.fd = true;
                f.flags = cfd.flags & FD_FLAGS;
                memcpy(f.data, cfd.data, cfd.len);
        } else
                return -EBADMSG;

        if (!id_valid(f.id, f.fd))
                return -EBADMSG;
        *ret = f;
        return 0;
}

const char *tg_can_frame_format(const TgCanFrame *f, char *buf, size_t size) {
        size_t n = 0;
        unsigned len;

#define PUT(...)                                                                \
        do {                                                                    \
                if (n < size) {                                                 \
                        int _k = snprintf(buf + n, size - n, __VA_ARGS__);      \
                        n += _k > 0 ? (size_t) _k : 0;                          \
                }                                                               \
        } while (0)

        if (!buf || size == 0)
                return buf;
        buf[0] = '\0';
        if (!f)
                return buf;
        if (f->id & (CAN_EFF_FLAG | CAN_ERR_FLAG))
                PUT("%08" PRIX32, f->id & (CAN_EFF_MASK | CAN_ERR_FLAG));
        else
                PUT("%03" PRIX32, f->id & CAN_SFF_MASK);
        if (f->fd)
                PUT("##%X", (unsigned) (f->flags & 0xf));
        else if (f->id & CAN_RTR_FLAG) {
                PUT("#R");
                return buf;
        } else
                PUT("#");
        len = MIN((unsigned) f->len, (unsigned) TG_CANFD_MAX_DLEN);
        for (unsigned i = 0; i < len; i++)
                PUT("%02X", f->data[i]);
#undef PUT
        return buf;
}

/* ---- specs ----------------------------------------------------------------- */

/* "can0" → *ret_ifname; "unix:PATH" → *ret_path. */
static int spec_parse(const char *spec, const char **ret_ifname, const char **ret_path) {
        *ret_ifname = *ret_path = NULL;
        if (!spec || !*spec)
                return -EINVAL;
        if (startswith(spec, "unix:")) {
                const char *path = spec + 5;

                if (!*path || strlen(path) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                        return -EINVAL;
                *ret_path = path;
                return 0;
        }
        if (strlen(spec) >= IFNAMSIZ)
                return -EINVAL;
        for (const char *p = spec; *p; p++)
                if (*p == '/' || *p == ':' || *p <= ' ' || *p == 0x7f)
                        return -EINVAL;
        *ret_ifname = spec;
        return 0;
}

static int ifindex_of(const char *ifname) {
        unsigned idx = if_nametoindex(ifname);

        if (idx == 0)
                return errno == 0 || errno == ENODEV || errno == ENXIO ? -ENODEV : -errno;
        if (idx > INT32_MAX)
                return -ERANGE;
        return (int) idx;
}

/* ---- buses ----------------------------------------------------------------- */

static bool filter_valid(uint32_t id) {
        if (id & (CAN_RTR_FLAG | CAN_ERR_FLAG))
                return false;
        return (id & CAN_EFF_FLAG) || (id & ~CAN_SFF_MASK) == 0;
}

static uint32_t filter_mask(uint32_t id) {
        return CAN_EFF_FLAG | ((id & CAN_EFF_FLAG) ? CAN_EFF_MASK : CAN_SFF_MASK);
}

static int open_socketcan(TgCanBus *bus, const char *ifname) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_can sa = { .can_family = AF_CAN };
        int ifindex, one = 1;

        ifindex = ifindex_of(ifname);
        if (ifindex < 0)
                return ifindex;
        sa.can_ifindex = ifindex;

        fd = socket(PF_CAN, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, CAN_RAW);
        if (fd < 0)
                return -errno;
        if (bus->fd_frames && setsockopt(fd, SOL_CAN_RAW, CAN_RAW_FD_FRAMES, &one, sizeof one) < 0)
                return -errno;
        if (bus->receive_errors) {
                can_err_mask_t mask = CAN_ERR_MASK;

                if (setsockopt(fd, SOL_CAN_RAW, CAN_RAW_ERR_FILTER, &mask, sizeof mask) < 0)
                        return -errno;
        }
        if (bus->n_filters > 0) {
                _cleanup_free_ struct can_filter *k = calloc(bus->n_filters, sizeof *k);

                if (!k)
                        return -ENOMEM;
                for (size_t i = 0; i < bus->n_filters; i++)
                        k[i] = (struct can_filter) { .can_id = bus->filters[i],
                                                     .can_mask = filter_mask(bus->filters[i]) };
                if (setsockopt(fd, SOL_CAN_RAW, CAN_RAW_FILTER, k, (socklen_t) (bus->n_filters * sizeof *k)) < 0)
                        return -errno;
        }
        if (bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return -errno;
        bus->fd = TAKE_FD(fd);
        return 0;
}

static int open_hub(TgCanBus *bus, const char *path) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        memcpy(sa.sun_path, path, strlen(path)); /* length checked by spec_parse() */
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        /* On a non-blocking unix socket connect() completes at once or fails
         * with EAGAIN (the listener's backlog is full): no EINPROGRESS. */
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        bus->fd = TAKE_FD(fd);
        bus->hub = true;
        return 0;
}

int tg_can_open(const char *spec, const TgCanOptions *options, TgCanBus **ret) {
        static const TgCanOptions defaults = {};
        _cleanup_(tg_can_closep) TgCanBus *bus = NULL;
        const char *ifname, *path;
        int r;

        if (!ret)
                return -EINVAL;
        r = spec_parse(spec, &ifname, &path);
        if (r < 0)
                return r;
        options = options ?: &defaults;
        if (options->n_filters > CAN_RAW_FILTER_MAX || (options->n_filters > 0 && !options->filters))
                return -EINVAL;
        for (size_t i = 0; i < options->n_filters; i++)
                if (!filter_valid(options->filters[i]))
                        return -EINVAL;

        bus = calloc(1, sizeof *bus);
        if (!bus)
                return -ENOMEM;
        bus->fd = -EBADF;
        bus->fd_frames = options->fd;
        bus->receive_errors = options->receive_errors;
        bus->spec = strdup(spec);
        if (!bus->spec)
                return -ENOMEM;
        if (options->n_filters > 0) {
                bus->filters = malloc(options->n_filters * sizeof *bus->filters);
                if (!bus->filters)
                        return -ENOMEM;
                memcpy(bus->filters, options->filters, options->n_filters * sizeof *bus->filters);
                bus->n_filters = options->n_filters;
        }

        r = ifname ? open_socketcan(bus, ifname) : open_hub(bus, path);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

TgCanBus *tg_can_close(TgCanBus *bus) {
        if (!bus)
                return NULL;
        safe_close(bus->fd);
        free(bus->filters);
        free(bus->spec);
        free(bus);
        return NULL;
}

int tg_can_fd(const TgCanBus *bus) {
        return bus ? bus->fd : -EBADF;
}

const char *tg_can_name(const TgCanBus *bus) {
        return bus ? bus->spec : NULL;
}

/* What the kernel does for a CAN_RAW socket, done again for the hub (which
 * forwards everything); for SocketCAN it changes nothing. */
static bool bus_wants(const TgCanBus *bus, const TgCanFrame *f) {
        if (f->id & CAN_ERR_FLAG)
                return bus->receive_errors;
        if (f->fd && !bus->fd_frames)
                return false;
        if (bus->n_filters == 0)
                return true;
        for (size_t i = 0; i < bus->n_filters; i++) {
                uint32_t mask = filter_mask(bus->filters[i]);

                if ((f->id & mask) == (bus->filters[i] & mask))
                        return true;
        }
        return false;
}

int tg_can_recv(TgCanBus *bus, TgCanFrame *ret) {
        /* One byte more than the largest frame, so a larger datagram shows. */
        uint8_t buf[TG_CANFD_MTU + 1];

        if (!bus || !ret)
                return -EINVAL;
        for (;;) {
                TgCanFrame f;
                ssize_t n;

                n = recv(bus->fd, buf, sizeof buf, MSG_DONTWAIT | (bus->hub ? MSG_TRUNC : 0));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return -EAGAIN;
                        if (bus->hub && (errno == EPIPE || errno == ENOTCONN))
                                return -ECONNRESET;
                        return -errno;
                }
                if (n == 0 && bus->hub) /* end of stream: the hub never forwards empty datagrams */
                        return -ECONNRESET;
                if (n != TG_CAN_MTU && n != TG_CANFD_MTU)
                        return -EBADMSG;
                if (tg_can_frame_decode(buf, (size_t) n, &f) < 0)
                        return -EBADMSG;
                if (!bus_wants(bus, &f))
                        continue;
                *ret = f;
                return 0;
        }
}

int tg_can_send(TgCanBus *bus, const TgCanFrame *frame) {
        uint8_t buf[TG_CANFD_MTU];
        ssize_t n;
        int size;

        if (!bus || !frame)
                return -EINVAL;
        if (frame->fd && !bus->fd_frames)
                return -EINVAL;
        size = tg_can_frame_encode(frame, buf, sizeof buf);
        if (size < 0)
                return size;
        do
                n = send(bus->fd, buf, (size_t) size, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
                        return -EAGAIN;
                if (bus->hub && (errno == EPIPE || errno == ENOTCONN || errno == ECONNREFUSED))
                        return -ECONNRESET;
                return -errno;
        }
        return n == size ? 0 : -EIO;
}

/* ---- interfaces ------------------------------------------------------------ */

#ifdef TG_HAVE_LIBSOCKETCAN
/* libsocketcan returns -1 and leaves errno set when the kernel said why;
 * some of its own failures leave errno alone, hence the reset. */
#define SOCKETCAN_CALL(call)                                                    \
        ({                                                                      \
                int _r;                                                         \
                errno = 0;                                                      \
                _r = (call);                                                    \
                _r < 0 ? (errno > 0 ? -errno : -EIO) : 0;                       \
        })

static int link_is_up(const char *ifname) {
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr = {};

        if (fd < 0)
                return -errno;
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
        if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
                return -errno;
        return !!(ifr.ifr_flags & IFF_UP);
}
#endif

static int link_ifname(const char *spec, const char **ret) {
        const char *path;
        int r;

        r = spec_parse(spec, ret, &path);
        if (r < 0)
                return r;
        return *ret ? 1 : 0;
}

int tg_can_link_up(const char *spec, uint32_t bitrate, uint32_t data_bitrate, uint32_t restart_ms) {
        const char *ifname;
        int r;

        r = link_ifname(spec, &ifname);
        if (r <= 0)
                return r;
#ifndef TG_HAVE_LIBSOCKETCAN
        (void) bitrate, (void) data_bitrate, (void) restart_ms;
        return -EOPNOTSUPP;
#else
        struct can_bittiming bt = {};
        uint32_t ms = 0;
        int state = 0;

        /* libsocketcan (0.0.12) has no call for the CAN FD data bit timing. */
        if (data_bitrate > 0)
                return -EOPNOTSUPP;
        r = ifindex_of(ifname);
        if (r < 0)
                return r;

        /* Up, not bus-off, and set as asked: nothing to do (a daemon that
         * restarts does not bounce the bus). */
        if (link_is_up(ifname) > 0 && SOCKETCAN_CALL(can_get_state(ifname, &state)) == 0 &&
            state != CAN_STATE_BUS_OFF && SOCKETCAN_CALL(can_get_restart_ms(ifname, &ms)) == 0 &&
            ms == restart_ms &&
            (bitrate == 0 || (SOCKETCAN_CALL(can_get_bittiming(ifname, &bt)) == 0 && bt.bitrate == bitrate)))
                return 0;

        /* The restart delay can only change while the interface is down. */

        r = SOCKETCAN_CALL(can_do_stop(ifname));
        if (r < 0)
                return r;
        if (bitrate > 0) {
                r = SOCKETCAN_CALL(can_set_bitrate(ifname, bitrate));
                if (r < 0)
                        return r;
        }
        r = SOCKETCAN_CALL(can_set_restart_ms(ifname, restart_ms));
        if (r < 0)
                return r;
        return SOCKETCAN_CALL(can_do_start(ifname));
#endif
}

int tg_can_link_restart(const char *spec) {
        const char *ifname;
        int r;

        r = link_ifname(spec, &ifname);
        if (r <= 0)
                return r;
#ifndef TG_HAVE_LIBSOCKETCAN
        return -EOPNOTSUPP;
#else
        uint32_t ms = 0;
        int state = 0;

        r = ifindex_of(ifname);
        if (r < 0)
                return r;
        if (SOCKETCAN_CALL(can_get_state(ifname, &state)) == 0 && state != CAN_STATE_BUS_OFF)
                return 0;
        if (SOCKETCAN_CALL(can_get_restart_ms(ifname, &ms)) == 0 && ms > 0)
                return 0;
        r = SOCKETCAN_CALL(can_do_restart(ifname));
        /* EBUSY: not bus-off (any more); EINVAL: automatic restart is on. */
        return r == -EBUSY ? 0 : r;
#endif
}

/* ---- signals --------------------------------------------------------------- */

/* Big endian: the position of DBC bit n counted from the most significant
 * bit of byte 0 (byte 0 bit 7 = 0, byte 0 bit 0 = 7, byte 1 bit 7 = 8 …).
 * In that order a big-endian signal's bits are consecutive. */
static unsigned msb_first(unsigned bit) {
        return bit / 8 * 8 + 7 - bit % 8;
}

/* The bytes the layout needs (1…64), or -EINVAL. */
static int signal_bytes(const TgCanSignal *s) {
        unsigned last;

        if (!s || s->length < 1 || s->length > 64 || s->start_bit >= SIGNAL_BITS_MAX)
                return -EINVAL;
        if (s->byte_order == TG_CAN_LITTLE_ENDIAN)
                last = s->start_bit + s->length - 1;       /* the most significant bit */
        else if (s->byte_order == TG_CAN_BIG_ENDIAN)
                last = msb_first(s->start_bit) + s->length - 1; /* the least significant, MSB-first */
        else
                return -EINVAL;
        if (last >= SIGNAL_BITS_MAX)
                return -EINVAL;
        return (int) (last / 8 + 1);
}

static bool scale_valid(const TgCanSignal *s) {
        return isfinite(s->scale) && s->scale != 0 && isfinite(s->offset);
}

static _printf_(3, 4) int reason_set(char *reason, size_t size, const char *format, ...) {
        va_list ap;

        if (reason && size > 0) {
                va_start(ap, format);
                vsnprintf(reason, size, format, ap);
                va_end(ap);
        }
        return -EINVAL;
}

int tg_can_signal_check(const TgCanSignal *s, unsigned frame_len, char *reason, size_t reason_size) {
        const char *order;
        int bytes;

        if (reason && reason_size > 0)
                reason[0] = '\0';
        if (!s)
                return reason_set(reason, reason_size, "no signal");
        order = s->byte_order == TG_CAN_BIG_ENDIAN ? " (big endian)" : "";
        if (s->byte_order != TG_CAN_LITTLE_ENDIAN && s->byte_order != TG_CAN_BIG_ENDIAN)
                return reason_set(reason, reason_size, "unknown byte order %d", (int) s->byte_order);
        if (s->length < 1 || s->length > 64)
                return reason_set(reason, reason_size, "length %u is not in 1-64", s->length);
        if (s->start_bit >= SIGNAL_BITS_MAX)
                return reason_set(reason, reason_size, "start bit %u is past bit %u", s->start_bit,
                                  SIGNAL_BITS_MAX - 1);
        if (frame_len < 1 || frame_len > TG_CANFD_MAX_DLEN)
                return reason_set(reason, reason_size, "frame length %u is not in 1-%u", frame_len,
                                  TG_CANFD_MAX_DLEN);
        bytes = signal_bytes(s);
        if (bytes < 0 || (unsigned) bytes > frame_len) {
                if (bytes < 0)
                        return reason_set(reason, reason_size, "start bit %u + length %u%s runs past bit %u",
                                          s->start_bit, s->length, order, SIGNAL_BITS_MAX - 1);
                return reason_set(reason, reason_size, "start bit %u + length %u%s runs past the %u-byte frame (needs %d bytes)",
                                  s->start_bit, s->length, order, frame_len, bytes);
        }
        if (s->frame_id & (CAN_RTR_FLAG | CAN_ERR_FLAG))
                return reason_set(reason, reason_size, "frame id 0x%" PRIX32 " has the RTR or ERR flag", s->frame_id);
        if (!(s->frame_id & CAN_EFF_FLAG) && s->frame_id > CAN_SFF_MASK)
                return reason_set(reason, reason_size,
                                  "frame id 0x%" PRIX32 " does not fit in 11 bits (29-bit ids need the extended flag)",
                                  s->frame_id);
        if (!isfinite(s->scale) || s->scale == 0)
                return reason_set(reason, reason_size, "scale %g is not a finite number other than 0", s->scale);
        if (!isfinite(s->offset))
                return reason_set(reason, reason_size, "offset %g is not finite", s->offset);
        return 0;
}

/* Only the bytes of the signal are touched: signal_bytes() ≤ f->len was
 * checked by the callers. */
static uint64_t bits_get(const TgCanSignal *s, const uint8_t *d) {
        uint64_t v = 0;

        if (s->byte_order == TG_CAN_LITTLE_ENDIAN)
                for (unsigned k = 0; k < s->length; k++) {
                        unsigned b = s->start_bit + k;
                        v |= (uint64_t) ((d[b / 8] >> (b % 8)) & 1) << k;
                }
        else
                for (unsigned k = 0, m = msb_first(s->start_bit); k < s->length; k++, m++)
                        v = v << 1 | ((d[m / 8] >> (7 - m % 8)) & 1);
        return v;
}

static void bits_put(const TgCanSignal *s, uint8_t *d, uint64_t v) {
        if (s->byte_order == TG_CAN_LITTLE_ENDIAN)
                for (unsigned k = 0; k < s->length; k++) {
                        unsigned b = s->start_bit + k;
                        uint8_t bit = (uint8_t) (1u << (b % 8));

                        d[b / 8] = (uint8_t) ((v >> k & 1) ? d[b / 8] | bit : d[b / 8] & ~bit);
                }
        else
                for (unsigned k = 0, m = msb_first(s->start_bit); k < s->length; k++, m++) {
                        uint8_t bit = (uint8_t) (1u << (7 - m % 8));

                        d[m / 8] = (uint8_t) ((v >> (s->length - 1 - k) & 1) ? d[m / 8] | bit : d[m / 8] & ~bit);
                }
}

static uint64_t length_mask(unsigned length) {
        return length >= 64 ? UINT64_MAX : (UINT64_C(1) << length) - 1;
}

int tg_can_signal_raw(const TgCanSignal *s, const TgCanFrame *f, int64_t *ret) {
        uint64_t v;
        int bytes;

        if (!f || !ret)
                return -EINVAL;
        bytes = signal_bytes(s);
        if (bytes < 0 || f->len > TG_CANFD_MAX_DLEN)
                return -EINVAL;
        if (bytes > f->len)
                return -EBADMSG;
        v = bits_get(s, f->data);
        if (s->is_signed && s->length < 64 && (v >> (s->length - 1) & 1))
                v |= ~length_mask(s->length);
        *ret = (int64_t) v;
        return 0;
}

int tg_can_signal_decode(const TgCanSignal *s, const TgCanFrame *f, double *ret) {
        int64_t raw;
        int r;

        if (!ret)
                return -EINVAL;
        r = tg_can_signal_raw(s, f, &raw);
        if (r < 0)
                return r;
        *ret = (s->is_signed ? (double) raw : (double) (uint64_t) raw) * s->scale + s->offset;
        return 0;
}

static int signal_writable(const TgCanSignal *s, const TgCanFrame *f) {
        int bytes;

        if (!f)
                return -EINVAL;
        bytes = signal_bytes(s);
        if (bytes < 0 || bytes > f->len || f->len > TG_CANFD_MAX_DLEN)
                return -EINVAL;
        return 0;
}

int tg_can_signal_encode(const TgCanSignal *s, double v, TgCanFrame *f) {
        uint64_t bits;
        double x;
        int r;

        r = signal_writable(s, f);
        if (r < 0)
                return r;
        if (!scale_valid(s) || isnan(v))
                return -EINVAL;

        /* Integral (or ±inf) after round(); every comparison below is exact,
         * and the conversions only ever see values inside the target type. */
        x = round((v - s->offset) / s->scale);
        if (isnan(x)) /* inf - inf cannot happen with a finite offset; be safe */
                return -EINVAL;
        if (s->is_signed) {
                double limit = ldexp(1.0, (int) s->length - 1); /* 2^(length-1) */
                int64_t raw;

                if (x >= limit)
                        raw = s->length == 64 ? INT64_MAX : (int64_t) (length_mask(s->length - 1));
                else if (x < -limit)
                        raw = s->length == 64 ? INT64_MIN : -(int64_t) length_mask(s->length - 1) - 1;
                else
                        raw = (int64_t) x;
                bits = (uint64_t) raw;
        } else {
                double limit = ldexp(1.0, (int) s->length); /* 2^length */

                if (x <= 0)
                        bits = 0;
                else if (x >= limit)
                        bits = length_mask(s->length);
                else
                        bits = (uint64_t) x;
        }
        bits_put(s, f->data, bits & length_mask(s->length));
        return 0;
}

int tg_can_signal_put_raw(const TgCanSignal *s, int64_t raw, TgCanFrame *f) {
        int r;

        r = signal_writable(s, f);
        if (r < 0)
                return r;
        if (s->length < 64) {
                if (s->is_signed) {
                        int64_t max = (int64_t) length_mask(s->length - 1);

                        if (raw > max || raw < -max - 1)
                                return -ERANGE;
                } else if (raw < 0 || (uint64_t) raw > length_mask(s->length))
                        return -ERANGE;
        }
        bits_put(s, f->data, (uint64_t) raw & length_mask(s->length));
        return 0;
}
