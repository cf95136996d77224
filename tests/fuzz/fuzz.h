/* SPDX-License-Identifier: MIT */
#pragma once

/* The libFuzzer entry point, shared by the targets and the replay driver
 * (fuzz-main.c) that runs a corpus through them in a build without libFuzzer. */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test: a violation is a finding, so crash
 * where libFuzzer (or the replay driver) notices and keeps the input. */
#define FUZZ_ASSERT(expr)                                                                       \
        do {                                                                                    \
                if (!(expr)) {                                                                  \
                        fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #expr); \
                        abort();                                                                \
                }                                                                               \
        } while (0)
