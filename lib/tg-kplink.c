/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "tg-kplink.h"

TgKpLinkState tg_kp_link_pump(TgTls *tls, TgKpSession *s, uint8_t *buf, size_t size, uint64_t *ret_sent) {
        for (;;) {
                bool progress = false;
                ssize_t n;

                /* In: everything readable now (TLS may hold decrypted bytes the socket no longer shows). */
                for (;;) {
                        n = tg_tls_read(tls, buf, size);
                        if (n == -EAGAIN)
                                break;
                        if (n == 0)
                                return TG_KP_LINK_CLOSED;
                        if (n < 0)
                                return n == -ECONNRESET ? TG_KP_LINK_CLOSED : TG_KP_LINK_FAILED;
                        progress = true;
                        if (tg_kp_session_feed(s, buf, (size_t) n) != TG_KP_OK)
                                break;
                }

                /* Out: what the session composed, as far as the socket takes it. */
                for (;;) {
                        const uint8_t *out;
                        size_t len;

                        (void) tg_kp_session_output(s, &out, &len);
                        if (len == 0)
                                break;
                        n = tg_tls_write(tls, out, len);
                        if (n == -EAGAIN)
                                break;
                        if (n < 0)
                                return TG_KP_LINK_FAILED;
                        tg_kp_session_consumed(s, (size_t) n);
                        if (ret_sent)
                                *ret_sent += (uint64_t) n;
                        progress = true;
                }

                if (tg_kp_session_finished(s)) {
                        int r = tg_tls_flush(tls);
                        if (r == -EAGAIN)
                                return TG_KP_LINK_AGAIN; /* the ERROR frame still goes out */
                        return TG_KP_LINK_FINISHED;
                }
                if (!progress)
                        return TG_KP_LINK_AGAIN;
        }
}

const char *tg_kp_link_reason(TgKpSession *s, char *buf, size_t size) {
        uint16_t code = 0;
        const char *text = NULL;
        TgKpError e = tg_kp_session_error(s, &code, &text);

        snprintf(buf, size, "%s (%s%s%s)", tg_kp_error_to_string(e), tg_kp_code_to_string(code),
                 text && *text ? ": " : "", text ? text : "");
        return buf;
}

int tg_kp_sha256_fd(int fd, uint8_t ret[TG_KP_SHA256_SIZE]) {
        uint8_t buf[64 * 1024];
        wc_Sha256 sha;
        off_t offset = 0;

        if (wc_InitSha256(&sha) != 0)
                return -EIO;
        for (;;) {
                ssize_t n = pread(fd, buf, sizeof buf, offset);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        wc_Sha256Free(&sha);
                        return negative_errno();
                }
                if (n == 0)
                        break;
                wc_Sha256Update(&sha, buf, (word32) n);
                offset += n;
        }
        wc_Sha256Final(&sha, ret);
        wc_Sha256Free(&sha);
        return 0;
}
