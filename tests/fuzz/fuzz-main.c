/* SPDX-License-Identifier: MIT */
/*
 * Replay driver for builds without libFuzzer (gcc, the normal test run):
 * every file named, and every regular file in every directory named, goes
 * once through LLVMFuzzerTestOneInput(). A crash or an invariant violation
 * aborts, which fails the test.
 */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path) {
        FILE *f = fopen(path, "re");
        uint8_t *buf = NULL;
        size_t size = 0, allocated = 0;

        if (!f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -errno;
        }
        for (;;) {
                size_t k;

                if (size == allocated) {
                        uint8_t *b = realloc(buf, allocated = allocated * 2 + 4096);
                        if (!b)
                                abort();
                        buf = b;
                }
                k = fread(buf + size, 1, allocated - size, f);
                if (k == 0)
                        break;
                size += k;
        }
        fclose(f);
        /* An exact-size copy, so ASan notices a read one byte past the input. */
        {
                uint8_t *exact = malloc(size ? size : 1);
                if (!exact)
                        abort();
                memcpy(exact, buf, size);
                free(buf);
                fprintf(stderr, "%s (%zu bytes)\n", path, size);
                (void) LLVMFuzzerTestOneInput(exact, size);
                free(exact);
        }
        return 0;
}

static int cmp_names(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv) {
        unsigned n = 0;

        if (argc < 2) {
                fprintf(stderr, "Usage: %s FILE|DIRECTORY...\n", argv[0]);
                return EXIT_FAILURE;
        }
        for (int i = 1; i < argc; i++) {
                struct dirent **list;
                struct stat st;
                int k;

                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        return EXIT_FAILURE;
                }
                if (!S_ISDIR(st.st_mode)) {
                        if (run_file(argv[i]) < 0)
                                return EXIT_FAILURE;
                        n++;
                        continue;
                }
                k = scandir(argv[i], &list, NULL, cmp_names);
                if (k < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        return EXIT_FAILURE;
                }
                for (int j = 0; j < k; j++) {
                        char path[4096];

                        snprintf(path, sizeof path, "%s/%s", argv[i], list[j]->d_name);
                        if (list[j]->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                                if (run_file(path) < 0)
                                        return EXIT_FAILURE;
                                n++;
                        }
                        free(list[j]);
                }
                free(list);
        }
        if (n == 0) {
                fprintf(stderr, "No inputs found.\n");
                return EXIT_FAILURE;
        }
        fprintf(stderr, "%u input(s) ran.\n", n);
        return EXIT_SUCCESS;
}
