/*
 * mem_free_all.c - memory goes back to the system after everything is freed.
 *
 * 65,536 blocks of 1000 bytes (or SIZE bytes, as many as fit 64 MiB) are
 * allocated (fully written) and then all freed, in allocation order
 * ("forward") or a random order ("random"):  mem_free_all ORDER [SIZE]
 * Prints RssAnon at the start (pointer array already touched), at the peak,
 * and at the end; left = rss_end - rss_start.
 */
#include "testutil.h"

#define N 65536
static void *ptrs[N];
static int order[N];

int main(int argc, char **argv)
{
    report_preload();
    const char *w = argc > 1 ? argv[1] : "forward";
    size_t size = argc > 2 ? (size_t)atol(argv[2]) : 1000;
    int n = size * N > (64u << 20) ? (int)((64u << 20) / size) : N;
    for (int i = 0; i < N; i++)
        order[i] = i;
    if (!strcmp(w, "random")) {
        for (int i = n - 1; i > 0; i--) {
            int j = (int)rng_range(0, (uint64_t)i);
            int t = order[i]; order[i] = order[j]; order[j] = t;
        }
    } else if (strcmp(w, "forward")) {
        printf("unknown case '%s'\n", w);
        return 2;
    }
    memset(ptrs, 0, sizeof ptrs);
    long start = rss_anon_bytes();
    for (int i = 0; i < n; i++) {
        ptrs[i] = malloc(size);
        CHECK(ptrs[i] != NULL, "malloc(%zu) #%d", size, i);
        if (ptrs[i])
            memset(ptrs[i], 0x5a, size);
    }
    long peak = rss_anon_bytes();
    for (int i = 0; i < n; i++)
        free(ptrs[order[i]]);
    long end = rss_anon_bytes();
    printf("rss_start=%ld\nrss_peak=%ld\nrss_end=%ld\nleft=%ld\n", start, peak, end, end - start);
    print_stats();
    return finish();
}
