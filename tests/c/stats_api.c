/*
 * stats_api.c - the myalloc_stats_get() contract:
 *   - returns -1 for a NULL buffer
 *   - fills min(size, sizeof) bytes and returns the number written: a
 *     16-byte request writes exactly 16 bytes (the rest of the buffer keeps
 *     its sentinel), a large buffer gets the library's whole struct, which is
 *     at least as large as the field list of tests/c/myalloc_stats.h
 *   - counters move: malloc_calls / free_calls / calloc_calls /
 *     realloc_calls / memalign_calls grow by at least the calls made, and
 *     live_blocks / in_use_bytes go up while 100 blocks are live
 *   - in_use_bytes comes back to its value once 5,000 blocks of one size
 *     (enough to overflow the thread cache's list many times) are freed
 */
#include "testutil.h"
#include <malloc.h>

int main(void)
{
    if (!report_preload())
        return finish();
    myalloc_stats_get_fn get = stats_fn();

    CHECK(get(NULL, sizeof(struct myalloc_stats)) == -1, "NULL buffer must return -1");

    unsigned char buf[sizeof(struct myalloc_stats) + 256];
    memset(buf, 0xEE, sizeof buf);
    int n = get((struct myalloc_stats *)buf, 16);
    CHECK(n == 16, "16-byte request returned %d", n);
    for (size_t i = 16; i < sizeof buf; i++)
        if (buf[i] != 0xEE) {
            CHECK(buf[i] == 0xEE, "byte %zu written beyond the 16 bytes requested", i);
            break;
        }

    memset(buf, 0xEE, sizeof buf);
    n = get((struct myalloc_stats *)buf, sizeof buf);
    printf("full_size=%d\n", n);
    CHECK(n >= (int)sizeof(struct myalloc_stats) && n <= (int)sizeof buf && n % 8 == 0,
          "full request returned %d (our struct has %zu bytes)", n, sizeof(struct myalloc_stats));
    if (n > 0 && n < (int)sizeof buf)
        CHECK(buf[n] == 0xEE, "wrote more than the %d bytes it reported", n);
    struct myalloc_stats a, b;
    memcpy(&a, buf, sizeof a);
    printf("stats_size_field=%llu\nstats_version=%llu\n", (unsigned long long)a.size,
           (unsigned long long)a.version);

    void *v[100];
    for (int i = 0; i < 100; i++)
        v[i] = malloc(100 + (size_t)i);
    void *c = calloc(10, 10);
    void *r = realloc(NULL, 10);
    r = realloc(r, 5000);
    void *m = memalign(256, 100);
    get(&b, sizeof b);
    CHECK(b.malloc_calls >= a.malloc_calls + 100, "malloc_calls %llu -> %llu",
          (unsigned long long)a.malloc_calls, (unsigned long long)b.malloc_calls);
    CHECK(b.calloc_calls >= a.calloc_calls + 1, "calloc_calls did not move");
    CHECK(b.realloc_calls >= a.realloc_calls + 2, "realloc_calls did not move by 2");
    CHECK(b.memalign_calls >= a.memalign_calls + 1, "memalign_calls did not move");
    CHECK(b.live_blocks >= a.live_blocks + 100, "live_blocks %llu -> %llu",
          (unsigned long long)a.live_blocks, (unsigned long long)b.live_blocks);
    CHECK(b.in_use_bytes >= a.in_use_bytes + 100 * 100, "in_use_bytes %llu -> %llu",
          (unsigned long long)a.in_use_bytes, (unsigned long long)b.in_use_bytes);
    for (int i = 0; i < 100; i++)
        free(v[i]);
    free(c);
    free(r);
    free(m);
    struct myalloc_stats d;
    get(&d, sizeof d);
    CHECK(d.free_calls >= b.free_calls + 103, "free_calls %llu -> %llu",
          (unsigned long long)b.free_calls, (unsigned long long)d.free_calls);
    CHECK(d.live_blocks + 100 <= b.live_blocks, "live_blocks %llu -> %llu after 103 frees",
          (unsigned long long)b.live_blocks, (unsigned long long)d.live_blocks);

    /* Many blocks of one size freed: the thread cache's list overflows again and
     * again (and flushes), yet what it reports as cached stays exact, so the bytes in
     * use come back to where they were. */
    enum { MANY = 5000 };
    static void *w[MANY];
    struct myalloc_stats e, f;
    get(&e, sizeof e);
    for (int i = 0; i < MANY; i++)
        w[i] = malloc(16);
    for (int i = 0; i < MANY; i++)
        free(w[i]);
    get(&f, sizeof f);
    printf("in_use_before=%llu in_use_after=%llu cached_after=%llu\n",
           (unsigned long long)e.in_use_bytes, (unsigned long long)f.in_use_bytes,
           (unsigned long long)f.cached_bytes);
    CHECK(f.in_use_bytes == e.in_use_bytes, "in_use_bytes %llu -> %llu after %d blocks freed",
          (unsigned long long)e.in_use_bytes, (unsigned long long)f.in_use_bytes, MANY);
    return finish();
}
