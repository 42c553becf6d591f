/*
 * realloc.c - realloc preserves contents when growing and shrinking.
 *
 *   realloc small   32 interleaved blocks random-walk through sizes 1..70000
 *                   (so both in-place and moving reallocs happen); after each
 *                   realloc the common prefix must still hold the old pattern
 *   realloc large   one block walks 1 KiB -> 64 MiB -> 1 byte and back through
 *                   sizes that cross every plausible small/large threshold
 *   realloc same    realloc to the same / slightly smaller size keeps data
 */
#include "testutil.h"
#include <malloc.h>

static unsigned char *step(unsigned char *p, size_t old, size_t n, uintptr_t *key)
{
    unsigned char *q = realloc(p, n);
    CHECK(q != NULL, "realloc(%p, %zu) failed", (void *)p, n);
    if (!q)
        return NULL; /* p is still valid, caller keeps it */
    size_t common = old < n ? old : n;
    long bad = check_pat(q, common, *key);
    CHECK(bad < 0, "realloc %zu -> %zu (%p -> %p): contents lost at offset %ld",
          old, n, (void *)p, (void *)q, bad);
    *key = (uintptr_t)q ^ n;
    fill_pat(q, n, *key);
    return q;
}

static void test_small(void)
{
    enum { N = 32, ROUNDS = 20000 };
    unsigned char *p[N];
    size_t sz[N];
    uintptr_t key[N];
    for (int i = 0; i < N; i++) {
        sz[i] = 1 + i;
        p[i] = malloc(sz[i]);
        CHECK(p[i] != NULL, "malloc");
        key[i] = (uintptr_t)p[i];
        fill_pat(p[i], sz[i], key[i]);
    }
    for (int r = 0; r < ROUNDS; r++) {
        int i = (int)rng_range(0, N - 1);
        size_t n;
        switch (rng_range(0, 3)) {
        case 0: n = rng_range(1, 64); break;
        case 1: n = rng_range(1, 1024); break;
        case 2: n = sz[i] + rng_range(0, 300); break; /* small growth */
        default: n = rng_range(1, 70000); break;
        }
        unsigned char *q = step(p[i], sz[i], n, &key[i]);
        if (q) {
            p[i] = q;
            sz[i] = n;
        }
    }
    for (int i = 0; i < N; i++) {
        CHECK(check_pat(p[i], sz[i], key[i]) < 0, "final check block %d", i);
        free(p[i]);
    }
}

static void test_large(void)
{
    static const size_t walk[] = { 1024, 4096, 4097, 65536, 131072, 131073,
                                   200000, 1 << 20, 3 << 20, 8 << 20,
                                   (size_t)64 << 20, 5 << 20, 1 << 20, 300000,
                                   70000, 5000, 100, 1, 50, 100000, 2 << 20,
                                   (size_t)33 << 20, 16, 0x12345 };
    size_t n = sizeof walk / sizeof walk[0];
    unsigned char *p = malloc(walk[0]);
    CHECK(p != NULL, "malloc");
    uintptr_t key = (uintptr_t)p;
    fill_pat(p, walk[0], key);
    /* a second live block so that the heap is not trivially empty */
    unsigned char *other = malloc(1000);
    fill_pat(other, 1000, 99);
    for (size_t i = 1; i < n; i++) {
        unsigned char *q = step(p, walk[i - 1], walk[i], &key);
        if (!q)
            break;
        p = q;
    }
    CHECK(check_pat(other, 1000, 99) < 0, "unrelated block damaged");
    free(p);
    free(other);
}

static void test_same(void)
{
    static const size_t sizes[] = { 8, 24, 100, 1000, 4096, 100000, 1 << 20, 5 << 20 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        unsigned char *p = malloc(n);
        uintptr_t key = 1234 + i;
        fill_pat(p, n, key);
        unsigned char *q;
        if ((q = step(p, n, n, &key)) != NULL) p = q; else break;
        if ((q = step(p, n, n - 1, &key)) != NULL) p = q; else break;
        if ((q = step(p, n - 1, n, &key)) != NULL) p = q; else break;
        if ((q = step(p, n, n / 2 + 1, &key)) != NULL) p = q; else break;
        free(p);
    }
}

int main(int argc, char **argv)
{
    report_preload();
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "small")) test_small();
    else if (!strcmp(w, "large")) test_large();
    else if (!strcmp(w, "same")) test_same();
    else {
        printf("unknown case '%s'\n", w);
        return 2;
    }
    return finish();
}
