/*
 * mem_large_sparse.c - a large block the program uses little of costs little.
 *
 * GNU sort sizes its buffer from the machine's memory and fills only what its
 * input needs.  Here: malloc(1 GiB), write the first 8 MiB of it and one byte of
 * its last page; resident memory may grow by those pages and a little more, not
 * by bookkeeping in proportion to the whole block.  Then free it: the memory goes
 * back.  Prints rss_growth (after the writes) and left (after the free), both
 * relative to the start.
 */
#include "testutil.h"

int main(void)
{
    report_preload();
    size_t len = (size_t)1 << 30, used = 8u << 20;
    long start = rss_anon_bytes();
    unsigned char *p = malloc(len);
    CHECK(p != NULL, "malloc(1 GiB)");
    if (!p)
        return finish();
    memset(p, 0x3c, used);
    p[len - 1] = 0x3c;
    long after = rss_anon_bytes();
    CHECK(p[used - 1] == 0x3c && p[len - 1] == 0x3c, "contents");
    free(p);
    long end = rss_anon_bytes();
    printf("used=%zu\nrss_growth=%ld\nleft=%ld\n", used, after - start, end - start);
    return finish();
}
