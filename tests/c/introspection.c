/*
 * introspection.c - the glibc introspection / tuning entry points.
 *
 *   introspection mallinfo2     uordblks grows by >= N after allocating N
 *                               bytes (1000 x 1000 B, live), and drops again
 *                               by at least N/2 once they are freed;
 *                               legacy mallinfo() callable too
 *   introspection malloc_trim   malloc_trim(0) / malloc_trim(1 MiB) return 0 or 1
 *   introspection mallopt       mallopt(...) returns an int, allocation still works
 *   introspection malloc_stats  malloc_stats() runs (the driver checks that it
 *                               wrote something to stderr)
 */
#include "testutil.h"
#include <malloc.h>

static void test_mallinfo2(void)
{
    enum { N = 1000, SZ = 1000 };
    static void *v[N];
    struct mallinfo2 a = mallinfo2();
    for (int i = 0; i < N; i++) {
        v[i] = malloc(SZ);
        CHECK(v[i] != NULL, "malloc");
        memset(v[i], 1, SZ);
    }
    struct mallinfo2 b = mallinfo2();
    printf("uordblks_before=%zu\nuordblks_after=%zu\n", a.uordblks, b.uordblks);
    CHECK(b.uordblks >= a.uordblks + (size_t)N * SZ,
          "mallinfo2().uordblks grew by %zd after allocating %d bytes",
          (ssize_t)(b.uordblks - a.uordblks), N * SZ);
    for (int i = 0; i < N; i++)
        free(v[i]);
    struct mallinfo2 c = mallinfo2();
    printf("uordblks_freed=%zu\n", c.uordblks);
    CHECK(c.uordblks + (size_t)N * SZ / 2 <= b.uordblks,
          "mallinfo2().uordblks only went from %zu to %zu after freeing %d bytes",
          b.uordblks, c.uordblks, N * SZ);
    struct mallinfo old = mallinfo();
    printf("mallinfo_uordblks=%d\n", old.uordblks);
}

static void test_trim(void)
{
    enum { N = 4000 };
    static void *v[N];
    for (int i = 0; i < N; i++) {
        v[i] = malloc(4000);
        memset(v[i], 1, 4000);
    }
    for (int i = 0; i < N; i += 2)
        free(v[i]);
    int r1 = malloc_trim(0);
    for (int i = 1; i < N; i += 2)
        free(v[i]);
    int r2 = malloc_trim(1 << 20);
    int r3 = malloc_trim(0);
    printf("trim=%d,%d,%d\n", r1, r2, r3);
    CHECK(r1 == 0 || r1 == 1, "malloc_trim(0) returned %d", r1);
    CHECK(r2 == 0 || r2 == 1, "malloc_trim(1 MiB) returned %d", r2);
    CHECK(r3 == 0 || r3 == 1, "malloc_trim(0) returned %d", r3);
    void *p = malloc(100);
    CHECK(p != NULL, "malloc after trim");
    free(p);
}

static void test_mallopt(void)
{
    int r[7];
    r[0] = mallopt(M_TRIM_THRESHOLD, 256 * 1024);
    r[1] = mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
    r[2] = mallopt(M_TOP_PAD, 64 * 1024);
    r[3] = mallopt(M_ARENA_MAX, 2);
    r[4] = mallopt(M_MMAP_MAX, 65536);
    r[5] = mallopt(M_PERTURB, 0);
    r[6] = mallopt(12345, 1); /* unknown parameter */
    printf("mallopt=%d,%d,%d,%d,%d,%d,%d\n", r[0], r[1], r[2], r[3], r[4], r[5], r[6]);
    void *p = malloc(3 << 20);
    CHECK(p != NULL, "malloc after mallopt");
    memset(p, 1, 3 << 20);
    free(p);
}

static void test_malloc_stats(void)
{
    void *p = malloc(12345);
    malloc_stats();
    free(p);
    printf("malloc_stats_called=1\n");
}

int main(int argc, char **argv)
{
    report_preload();
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "mallinfo2")) test_mallinfo2();
    else if (!strcmp(w, "malloc_trim")) test_trim();
    else if (!strcmp(w, "mallopt")) test_mallopt();
    else if (!strcmp(w, "malloc_stats")) test_malloc_stats();
    else {
        printf("unknown case '%s'\n", w);
        return 2;
    }
    return finish();
}
