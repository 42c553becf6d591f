/*
 * mem_mid_churn.c - fragmentation under churn of 1-64 KiB blocks.
 *
 * 2,000 live blocks of sizes log-uniform in [1 KiB, 64 KiB] (fixed seed); then
 * 100,000 times a random one is freed and replaced by a block of a new random
 * size.  Every block has its first and last byte written and checked.  The
 * program tracks the bytes it has live (requested sizes) and their peak, and the
 * break's peak above where it stood before the first block (sbrk(0) after each
 * allocation: without a system call under glibc and myalloc alike).  Prints
 *   live_peak, brk_peak, extent_per_live = brk_peak / live_peak
 */
#include "testutil.h"

#define LIVE 2000
#define PAIRS 100000

static unsigned char *blocks[LIVE];
static size_t sizes[LIVE];
static char *brk_start;
static size_t brk_peak;

/* Log-uniform in [1 KiB, 64 KiB]: 2^(10 + 6u) for u uniform in [0, 1). */
static size_t mid_size(void)
{
    uint64_t r = rng_next();
    unsigned e = (unsigned)(r % 6);              /* whole doubling: 1, 2, 4 .. 32 KiB */
    size_t base = (size_t)1024 << e;
    return base + (size_t)((r >> 8) % base);     /* uniform inside the doubling */
}

static void fill(int i, size_t n)
{
    sizes[i] = n;
    blocks[i] = malloc(n);
    CHECK(blocks[i] != NULL, "malloc(%zu) failed", n);
    if (!blocks[i])
        exit(finish());
    blocks[i][0] = (unsigned char)i;
    blocks[i][n - 1] = (unsigned char)(i >> 3);
    size_t extent = (size_t)((char *)sbrk(0) - brk_start);
    if (extent > brk_peak)
        brk_peak = extent;
}

int main(void)
{
    report_preload();
    brk_start = sbrk(0);
    size_t live = 0, live_peak = 0;
    for (int i = 0; i < LIVE; i++) {
        fill(i, mid_size());
        live += sizes[i];
    }
    live_peak = live;
    for (int p = 0; p < PAIRS; p++) {
        int i = (int)(rng_next() % LIVE);
        CHECK(blocks[i][0] == (unsigned char)i && blocks[i][sizes[i] - 1] == (unsigned char)(i >> 3),
              "block %d changed", i);
        free(blocks[i]);
        live -= sizes[i];
        fill(i, mid_size());
        live += sizes[i];
        if (live > live_peak)
            live_peak = live;
    }
    printf("live_peak=%zu\nbrk_peak=%zu\nextent_per_live=%.3f\n", live_peak, brk_peak,
           (double)brk_peak / (double)live_peak);
    for (int i = 0; i < LIVE; i++)
        free(blocks[i]);
    print_stats();
    return finish();
}
