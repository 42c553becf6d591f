/*
 * calloc.c - calloc always returns zeroed memory.
 *
 *   calloc dirty   for each size: allocate 64 blocks, fill them with 0xAB,
 *                  free them, then calloc the same size 64 times (in both
 *                  nmemb/size orders) and check every byte is zero -- the
 *                  reused blocks were dirty.  Also calloc out of the dirty
 *                  remains of a freed large block, and after a realloc shrink.
 *   calloc large   calloc(8 MiB) and calloc(100 MiB) are all zero, also after
 *                  the same sizes were malloc'ed, dirtied and freed
 */
#include "testutil.h"
#include <malloc.h>

static void check_zero(const unsigned char *p, size_t n, const char *what, size_t req)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            CHECK(p[i] == 0, "%s(%zu) = %p: byte %zu is 0x%02x, not zero",
                  what, req, (const void *)p, i, p[i]);
            return;
        }
    }
}

static void test_dirty(void)
{
    static const size_t sizes[] = { 1, 8, 16, 24, 100, 512, 1000, 4096, 5000,
                                    65536, 100000, 1 << 20 };
    enum { K = 64 };
    void *v[K];
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        for (int round = 0; round < 2; round++) {
            for (int i = 0; i < K; i++) {
                v[i] = malloc(n);
                CHECK(v[i] != NULL, "malloc(%zu)", n);
                memset(v[i], 0xAB, malloc_usable_size(v[i]));
            }
            for (int i = 0; i < K; i++)
                free(v[i]);
            for (int i = 0; i < K; i++) {
                unsigned char *p = round ? calloc(n, 1) : calloc(1, n);
                CHECK(p != NULL, "calloc(%zu)", n);
                if (!p)
                    continue;
                check_zero(p, n, "calloc", n);
                v[i] = p;
            }
            for (int i = 0; i < K; i++) {
                /* dirty them again before freeing, for the next round */
                if (v[i])
                    memset(v[i], 0xAB, n);
                free(v[i]);
            }
        }
    }
    /* small callocs carved from a freed, dirty large block */
    unsigned char *big = malloc(2 << 20);
    memset(big, 0xAB, 2 << 20);
    free(big);
    for (int i = 0; i < 2000; i++) {
        size_t n = rng_range(1, 2000);
        unsigned char *p = calloc(1, n);
        CHECK(p != NULL, "calloc(%zu)", n);
        if (p) {
            check_zero(p, n, "calloc", n);
            memset(p, 0xAB, n);
        }
        /* leak-free: keep only some */
        if (i % 2)
            free(p);
    }
    /* the tail released by a shrinking realloc is dirty */
    unsigned char *r = malloc(100000);
    memset(r, 0xAB, 100000);
    r = realloc(r, 100);
    for (int i = 0; i < 50; i++) {
        unsigned char *p = calloc(1, 1000);
        CHECK(p != NULL, "calloc(1000)");
        if (p)
            check_zero(p, 1000, "calloc", 1000);
    }
    free(r);
}

static void test_large(void)
{
    static const size_t sizes[] = { (size_t)8 << 20, (size_t)100 << 20 };
    for (size_t s = 0; s < 2; s++) {
        size_t n = sizes[s];
        unsigned char *p = calloc(1, n);
        CHECK(p != NULL, "calloc(%zu)", n);
        if (p) {
            check_zero(p, n, "calloc", n);
            free(p);
        }
        /* dirty a block of the same size, free it, calloc again */
        p = malloc(n);
        CHECK(p != NULL, "malloc(%zu)", n);
        if (p) {
            memset(p, 0xAB, n);
            free(p);
        }
        p = calloc(n / 16, 16);
        CHECK(p != NULL, "calloc(%zu, 16)", n / 16);
        if (p) {
            check_zero(p, n, "calloc", n);
            free(p);
        }
    }
}

int main(int argc, char **argv)
{
    report_preload();
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "dirty")) test_dirty();
    else if (!strcmp(w, "large")) test_large();
    else {
        printf("unknown case '%s'\n", w);
        return 2;
    }
    return finish();
}
