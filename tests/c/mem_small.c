/*
 * mem_small.c - resident-memory overhead of small objects.
 *
 * 10,000 allocations of random sizes uniform in [1,127] rounded up to a
 * multiple of 8 (fixed seed), none freed, each fully written.  RssAnon is
 * read from /proc/self/status (open/read into a stack buffer) before and after;
 * everything the measurement touches (pointer array, sizes, stdout buffer) is
 * set up beforehand.  Prints:
 *   objects, live_bytes, rss_before, rss_after,
 *   overhead_per_object = (rss_after - rss_before - live_bytes) / objects
 */
#include "testutil.h"

#define N 10000
static void *ptrs[N];
static size_t sizes[N];

int main(void)
{
    report_preload();
    size_t live = 0;
    for (int i = 0; i < N; i++) {
        sizes[i] = (rng_range(1, 127) + 7) & ~(size_t)7;
        live += sizes[i];
        ptrs[i] = NULL;
    }
    long before = rss_anon_bytes();
    for (int i = 0; i < N; i++) {
        ptrs[i] = malloc(sizes[i]);
        if (ptrs[i])
            memset(ptrs[i], 0x5a, sizes[i]);
    }
    long after = rss_anon_bytes();
    for (int i = 0; i < N; i++)
        CHECK(ptrs[i] != NULL, "malloc(%zu) #%d failed", sizes[i], i);
    printf("objects=%d\nlive_bytes=%zu\nrss_before=%ld\nrss_after=%ld\n", N, live, before, after);
    printf("overhead_per_object=%.3f\n", ((double)(after - before) - (double)live) / N);
    print_stats();
    return finish();
}
