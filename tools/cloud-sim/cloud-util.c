/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>

#include "cloud-util.h"

/* options.h before any other wolfSSL header: it carries the feature set
 * the library was built with. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

struct CloudSha256 {
        wc_Sha256 state;
};

int cloud_sha256_new(CloudSha256 **ret) {
        CloudSha256 *h;

        h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        if (wc_InitSha256(&h->state) != 0) {
                free(h);
                return -EIO;
        }
        *ret = h;
        return 0;
}

int cloud_sha256_update(CloudSha256 *h, const void *data, size_t size) {
        const uint8_t *p = data;

        /* wolfCrypt takes a 32-bit length. */
        while (size > 0) {
                word32 n = (word32) MIN(size, (size_t) 1 << 30);

                if (wc_Sha256Update(&h->state, p, n) != 0)
                        return -EIO;
                p += n;
                size -= n;
        }
        return 0;
}

int cloud_sha256_final(CloudSha256 *h, char out[static SHA256_HEX_SIZE]) {
        static const char hex[] = "0123456789abcdef";
        byte digest[WC_SHA256_DIGEST_SIZE];

        if (wc_Sha256Final(&h->state, digest) != 0)
                return -EIO;
        for (size_t i = 0; i < sizeof digest; i++) {
                out[2 * i] = hex[digest[i] >> 4];
                out[2 * i + 1] = hex[digest[i] & 15];
        }
        out[2 * sizeof digest] = '\0';
        return 0;
}

CloudSha256 *cloud_sha256_free(CloudSha256 *h) {
        if (!h)
                return NULL;
        wc_Sha256Free(&h->state);
        free(h);
        return NULL;
}

int cloud_sha256_hex(const void *data, size_t size, char out[static SHA256_HEX_SIZE]) {
        _cleanup_(cloud_sha256_freep) CloudSha256 *h = NULL;
        int r;

        r = cloud_sha256_new(&h);
        if (r < 0)
                return r;
        r = cloud_sha256_update(h, data, size);
        if (r < 0)
                return r;
        return cloud_sha256_final(h, out);
}

bool cloud_sha256_hex_valid(const char *s) {
        size_t n = 0;

        for (; s[n]; n++)
                if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f') || (s[n] >= 'A' && s[n] <= 'F')))
                        return false;
        return n == 64;
}

int cloud_json_append(TgBuf *b, const char *format, ...) {
        char buf[512];
        va_list ap;
        int n;

        va_start(ap, format);
        n = vsnprintf(buf, sizeof buf, format, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= sizeof buf)
                return -EINVAL;
        return tg_buf_append(b, buf, (size_t) n);
}

int cloud_json_append_string(TgBuf *b, const char *s) {
        int r;

        r = tg_buf_append(b, "\"", 1);
        for (; r >= 0 && *s; s++) {
                unsigned char ch = (unsigned char) *s;
                char esc[8];

                if (ch == '"' || ch == '\\') {
                        esc[0] = '\\';
                        esc[1] = (char) ch;
                        r = tg_buf_append(b, esc, 2);
                } else if (ch < 0x20) {
                        snprintf(esc, sizeof esc, "\\u%04x", ch);
                        r = tg_buf_append(b, esc, 6);
                } else
                        r = tg_buf_append(b, s, 1);
        }
        if (r >= 0)
                r = tg_buf_append(b, "\"", 1);
        return r;
}
