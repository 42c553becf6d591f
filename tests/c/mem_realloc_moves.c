/*
 * mem_realloc_moves.c - two arrays grown by doubling in turns, so that each
 * growth finds the other array (or something else) after its block and moves.
 *
 * Arrays a and b are grown by realloc from 256 KiB to 16 MiB, doubling, a then
 * b at each step, and filled after every step, so each copy was resident once.
 * RssAnon is read before the first allocation and after the last step; prints
 *   final_bytes (both arrays), moves, rss_growth,
 *   metadata_bytes (myalloc's bitmaps at that point; 0 without the library),
 *   stale_bytes = rss_growth - final_bytes - metadata_bytes (resident memory
 *                 beyond the arrays and the allocator's metadata: old copies
 *                 not given back)
 * The contents are checked at every step.
 */
#include "testutil.h"

#define KIB ((size_t)1 << 10)
#define STEPS 6

static int moves;

static unsigned char *grow(unsigned char *p, size_t old, size_t n, unsigned char fill)
{
    unsigned char *q = realloc(p, n);
    CHECK(q != NULL, "realloc to %zu KiB failed", n / KIB);
    if (!q)
        exit(finish());
    moves += q != p;
    for (size_t j = 0; j < old; j += 4096)
        CHECK(q[j] == (unsigned char)(fill - 1), "byte %zu lost growing to %zu KiB", j, n / KIB);
    memset(q, fill, n);
    return q;
}

int main(void)
{
    report_preload();
    long before = rss_anon_bytes();
    size_t n = 256 * KIB;
    unsigned char *a = malloc(n), *b = malloc(n);
    CHECK(a && b, "malloc(256 KiB)");
    if (!a || !b)
        return finish();
    memset(a, 1, n);
    memset(b, 1, n);
    for (int i = 0; i < STEPS; i++) {
        a = grow(a, n, 2 * n, (unsigned char)(i + 2));
        b = grow(b, n, 2 * n, (unsigned char)(i + 2));
        n *= 2;
    }
    long after = rss_anon_bytes();
    struct myalloc_stats s;
    get_stats(&s);
    printf("final_bytes=%zu\nmoves=%d\nrss_growth=%ld\nmetadata_bytes=%lu\nstale_bytes=%ld\n",
           2 * n, moves, after - before, (unsigned long)s.metadata_bytes,
           after - before - (long)(2 * n) - (long)s.metadata_bytes);
    free(a);
    free(b);
    print_stats();
    return finish();
}
