/*
 * mem_calloc_lazy.c - a large calloc does not touch the pages the kernel can zero.
 *
 * First a 64 MiB block is written and freed, so the heap holds dirty memory that a
 * later calloc may reuse; then calloc(256 MiB) must read as zero everywhere we look
 * while resident memory grows by far less than its size (the allocator lets the
 * kernel zero whole pages instead of writing them).
 */
#include "testutil.h"

int main(void)
{
    report_preload();
    size_t dirty_len = 64u << 20, len = 256u << 20;
    unsigned char *d = malloc(dirty_len);
    CHECK(d != NULL, "malloc(64 MiB)");
    if (d) {
        memset(d, 0xA7, dirty_len);
        free(d);
    }
    long before = rss_anon_bytes();
    unsigned char *p = calloc(1, len);
    CHECK(p != NULL, "calloc(256 MiB)");
    long after = rss_anon_bytes();
    if (p) {
        /* Sample one byte per page: reading zero pages costs no resident memory. */
        for (size_t off = 0; off < len; off += 4096)
            CHECK(p[off] == 0, "byte at offset %zu is %d", off, p[off]);
        CHECK(p[len - 1] == 0, "last byte is %d", p[len - 1]);
        free(p);
    }
    printf("rss_growth=%ld\n", after - before);
    return finish();
}
