/*
 * mem_frag.c - fragmentation: 1,000,000 objects of 1..300 bytes (random,
 * fixed seed), every other one freed, then the freed slots refilled with
 * 1..600-byte objects.  Every block is fully written.  Prints the growth of
 * RssAnon over the run (the pointer/size arrays are touched before the first
 * reading, so the growth is the heap's) divided by the live requested bytes:
 *   ratio = (rss_after - rss_before) / live_bytes
 * and, for information, rss_after / live_bytes as ratio_absolute.
 */
#include "testutil.h"

#define N 1000000
static unsigned char *ptrs[N];
static uint32_t sizes[N];

int main(void)
{
    report_preload();
    memset(ptrs, 0, sizeof ptrs);
    memset(sizes, 0, sizeof sizes);
    long before = rss_anon_bytes();
    long failed = 0;
    for (int i = 0; i < N; i++) {
        sizes[i] = (uint32_t)rng_range(1, 300);
        ptrs[i] = malloc(sizes[i]);
        if (!ptrs[i]) { failed++; continue; }
        memset(ptrs[i], (int)(i & 0xff), sizes[i]);
    }
    for (int i = 1; i < N; i += 2) {
        free(ptrs[i]);
        ptrs[i] = NULL;
    }
    for (int i = 1; i < N; i += 2) {
        sizes[i] = (uint32_t)rng_range(1, 600);
        ptrs[i] = malloc(sizes[i]);
        if (!ptrs[i]) { failed++; continue; }
        memset(ptrs[i], (int)(i & 0xff), sizes[i]);
    }
    long after = rss_anon_bytes();
    size_t live = 0;
    long corrupt = 0;
    for (int i = 0; i < N; i++) {
        live += sizes[i];
        if (ptrs[i] && (ptrs[i][0] != (unsigned char)(i & 0xff) ||
                        ptrs[i][sizes[i] - 1] != (unsigned char)(i & 0xff)))
            corrupt++;
    }
    CHECK(failed == 0, "%ld allocations failed", failed);
    CHECK(corrupt == 0, "%ld blocks corrupted", corrupt);
    printf("live_bytes=%zu\nrss_before=%ld\nrss_after=%ld\n", live, before, after);
    printf("ratio=%.4f\nratio_absolute=%.4f\n", (double)(after - before) / (double)live,
           (double)after / (double)live);
    print_stats();
    return finish();
}
