/*
 * edge_cases.c - corner cases of the C allocation API.
 *
 *   malloc0               malloc(0) returns distinct non-NULL pointers, free-able
 *   huge                  malloc/calloc/realloc/memalign/posix_memalign of
 *                         SIZE_MAX, PTRDIFF_MAX, ... fail with ENOMEM; realloc
 *                         failure leaves the old block intact
 *   calloc_overflow       calloc(SIZE_MAX/2, 3) etc. -> NULL, errno ENOMEM
 *   reallocarray_overflow reallocarray overflow -> NULL, ENOMEM, block intact
 *   posix_memalign_einval alignment 0, 1, 2, 3, 4, 12, 24, 40, 48, 96 -> EINVAL,
 *                         *memptr untouched
 *   aligned_alloc_einval  non power-of-two alignment -> NULL, errno EINVAL
 *   free_null             free(NULL) is a no-op
 *   free_errno            free() preserves errno (small, large, trimming frees)
 *   realloc_null          realloc(NULL, n) behaves like malloc(n)
 *   realloc_zero          realloc(p, 0) frees p and returns NULL (glibc);
 *                         repeated 100000 times without leaking
 */
#include "testutil.h"
#include <malloc.h>
#include <stdint.h>

static void expect_enomem(void *p, const char *what)
{
    int e = errno;
    CHECK(p == NULL, "%s returned %p, expected NULL", what, p);
    CHECK(e == ENOMEM, "%s: errno %d (%s), expected ENOMEM", what, e, strerror(e));
    if (p)
        free(p);
}

#define EXPECT_ENOMEM(expr)                                                   \
    do {                                                                      \
        errno = 0;                                                            \
        void *r_ = (expr);                                                    \
        expect_enomem(r_, #expr);                                             \
    } while (0)

static void test_malloc0(void)
{
    enum { N = 200 };
    void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = malloc(0);
        CHECK(p[i] != NULL, "malloc(0) #%d returned NULL", i);
        for (int j = 0; j < i; j++)
            CHECK(p[i] != p[j], "malloc(0) returned %p twice (#%d and #%d)", p[i], j, i);
    }
    for (int i = 0; i < N; i++)
        free(p[i]);
    /* still fine afterwards */
    void *q = malloc(0);
    CHECK(q != NULL, "malloc(0) after frees returned NULL");
    free(q);
}

static void test_huge(void)
{
    EXPECT_ENOMEM(malloc(SIZE_MAX));
    EXPECT_ENOMEM(malloc(SIZE_MAX - 15));
    EXPECT_ENOMEM(malloc(SIZE_MAX - 4095));
    EXPECT_ENOMEM(malloc(PTRDIFF_MAX));
    EXPECT_ENOMEM(malloc((size_t)PTRDIFF_MAX + 1));
    EXPECT_ENOMEM(malloc((size_t)1 << 62));
    EXPECT_ENOMEM(calloc(1, SIZE_MAX));
    EXPECT_ENOMEM(calloc(1, PTRDIFF_MAX));
    EXPECT_ENOMEM(memalign(64, SIZE_MAX));
    EXPECT_ENOMEM(memalign(1 << 20, PTRDIFF_MAX));
    EXPECT_ENOMEM(aligned_alloc(4096, SIZE_MAX - 4095));
    EXPECT_ENOMEM(valloc(SIZE_MAX));
    EXPECT_ENOMEM(pvalloc(SIZE_MAX - 100));
    EXPECT_ENOMEM(realloc(NULL, SIZE_MAX));

    void *m = (void *)0x1;
    int rc = posix_memalign(&m, 64, SIZE_MAX);
    CHECK(rc == ENOMEM, "posix_memalign(64, SIZE_MAX) returned %d", rc);

    /* a failing realloc leaves the original block alone */
    unsigned char *p = malloc(1000);
    CHECK(p != NULL, "malloc(1000)");
    fill_pat(p, 1000, 42);
    errno = 0;
    void *q = realloc(p, SIZE_MAX);
    int e = errno;
    CHECK(q == NULL, "realloc(p, SIZE_MAX) returned %p", q);
    CHECK(e == ENOMEM, "realloc(p, SIZE_MAX): errno %d", e);
    errno = 0;
    q = realloc(p, PTRDIFF_MAX);
    e = errno;
    CHECK(q == NULL, "realloc(p, PTRDIFF_MAX) returned %p", q);
    CHECK(e == ENOMEM, "realloc(p, PTRDIFF_MAX): errno %d", e);
    CHECK(check_pat(p, 1000, 42) < 0, "block changed by failed realloc");
    free(p);

    /* the allocator still works */
    void *r = malloc(100);
    CHECK(r != NULL, "malloc(100) after huge failures");
    free(r);
}

static void test_calloc_overflow(void)
{
    EXPECT_ENOMEM(calloc(SIZE_MAX / 2, 3));
    EXPECT_ENOMEM(calloc(3, SIZE_MAX / 2));
    EXPECT_ENOMEM(calloc(SIZE_MAX, SIZE_MAX));
    EXPECT_ENOMEM(calloc((size_t)1 << 32, (size_t)1 << 32));
    EXPECT_ENOMEM(calloc(((size_t)1 << 32) + 1, ((size_t)1 << 32) - 1));
    EXPECT_ENOMEM(calloc(SIZE_MAX / 16 + 1, 16));
    void *p = calloc(1000, 16);
    CHECK(p != NULL, "calloc(1000, 16) failed after overflow attempts");
    free(p);
}

static void test_reallocarray_overflow(void)
{
    EXPECT_ENOMEM(reallocarray(NULL, SIZE_MAX / 2, 3));
    EXPECT_ENOMEM(reallocarray(NULL, (size_t)1 << 33, (size_t)1 << 33));

    unsigned char *p = reallocarray(NULL, 10, 10);
    CHECK(p != NULL, "reallocarray(NULL, 10, 10) failed");
    fill_pat(p, 100, 7);
    errno = 0;
    void *q = reallocarray(p, SIZE_MAX / 2, 3);
    int e = errno;
    CHECK(q == NULL, "reallocarray(p, SIZE_MAX/2, 3) returned %p", q);
    CHECK(e == ENOMEM, "reallocarray overflow: errno %d", e);
    CHECK(check_pat(p, 100, 7) < 0, "block changed by failed reallocarray");
    q = reallocarray(p, 100, 20);
    CHECK(q != NULL, "reallocarray(p, 100, 20) failed");
    CHECK(check_pat(q, 100, 7) < 0, "reallocarray lost contents");
    free(q);
}

static void test_posix_memalign_einval(void)
{
    static const size_t bad[] = { 0, 1, 2, 3, 4, 12, 24, 40, 48, 96, 100, 4097,
                                  ((size_t)1 << 20) + 8 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *sentinel = (void *)0xdeadbeef;
        void *m = sentinel;
        errno = 0;
        int rc = posix_memalign(&m, bad[i], 64);
        CHECK(rc == EINVAL, "posix_memalign(align=%zu) returned %d, expected EINVAL",
              bad[i], rc);
        CHECK(m == sentinel, "posix_memalign(align=%zu) modified *memptr to %p", bad[i], m);
    }
    void *m = NULL;
    int rc = posix_memalign(&m, 8, 64);
    CHECK(rc == 0 && m != NULL, "posix_memalign(8, 64) failed: %d", rc);
    free(m);
}

static void test_aligned_alloc_einval(void)
{
    static const size_t bad[] = { 3, 24, 48, 100, 4097, 3 << 20 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        void *p = aligned_alloc(bad[i], bad[i] * 4);
        int e = errno;
        CHECK(p == NULL, "aligned_alloc(%zu, %zu) returned %p, expected NULL",
              bad[i], bad[i] * 4, p);
        CHECK(e == EINVAL, "aligned_alloc(%zu): errno %d, expected EINVAL", bad[i], e);
        if (p)
            free(p);
    }
}

static void test_free_null(void)
{
    for (int i = 0; i < 1000; i++)
        free(NULL);
    void *p = malloc(10);
    CHECK(p != NULL, "malloc after free(NULL)");
    free(p);
}

static void free_keep_errno(void *p, const char *what)
{
    errno = 1234;
    free(p);
    CHECK(errno == 1234, "free(%s) changed errno to %d", what, errno);
}

static void test_free_errno(void)
{
    static const size_t sizes[] = { 1, 16, 100, 1000, 4096, 100000, 1 << 20,
                                    (size_t)64 << 20 };
    free_keep_errno(NULL, "NULL");
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(sizes[i]);
        CHECK(p != NULL, "malloc(%zu)", sizes[i]);
        memset(p, 1, sizes[i]);
        free_keep_errno(p, "block");
    }
    /* many frees of a big heap, so trimming / madvise / munmap happen */
    enum { N = 2000 };
    static void *v[N];
    for (int i = 0; i < N; i++) {
        v[i] = malloc(65536);
        CHECK(v[i] != NULL, "malloc(65536)");
        memset(v[i], 2, 65536);
    }
    for (int i = N - 1; i >= 0; i--)
        free_keep_errno(v[i], "64 KiB block");
    void *a = memalign(1 << 20, 3 << 20);
    CHECK(a != NULL, "memalign(1 MiB, 3 MiB)");
    free_keep_errno(a, "memalign block");
}

static void test_realloc_null(void)
{
    static const size_t sizes[] = { 0, 1, 8, 100, 5000, 200000, 3 << 20 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = realloc(NULL, sizes[i]);
        CHECK(p != NULL, "realloc(NULL, %zu) returned NULL", sizes[i]);
        if (!p)
            continue;
        CHECK(malloc_usable_size(p) >= sizes[i], "realloc(NULL, %zu): usable %zu",
              sizes[i], malloc_usable_size(p));
        fill_pat(p, sizes[i], (uintptr_t)p);
        CHECK(check_pat(p, sizes[i], (uintptr_t)p) < 0, "pattern");
        free(p);
    }
}

static void test_realloc_zero(void)
{
    struct myalloc_stats before, after;
    int have = get_stats(&before);
    void *p = malloc(100);
    CHECK(p != NULL, "malloc(100)");
    void *r = realloc(p, 0);
    CHECK(r == NULL, "realloc(p, 0) returned %p, expected NULL (glibc semantics)", r);
    if (r)
        free(r);
    if (have && get_stats(&after))
        CHECK(after.live_blocks == before.live_blocks,
              "live_blocks %llu -> %llu: realloc(p, 0) did not free p",
              (unsigned long long)before.live_blocks,
              (unsigned long long)after.live_blocks);

    /* 100000 x (malloc 1000 + realloc(p, 0)) must not leak ~100 MB */
    long rss0 = rss_anon_bytes();
    for (int i = 0; i < 100000; i++) {
        void *q = malloc(1000);
        CHECK(q != NULL, "malloc(1000)");
        memset(q, 3, 1000);
        void *z = realloc(q, 0);
        if (z) {
            CHECK(z == NULL, "realloc(q, 0) returned %p", z);
            free(z);
            break;
        }
    }
    long grown = rss_anon_bytes() - rss0;
    printf("realloc_zero_rss_growth=%ld\n", grown);
    CHECK(grown < (16L << 20), "RssAnon grew by %ld bytes: realloc(p, 0) leaks", grown);
}

int main(int argc, char **argv)
{
    report_preload();
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "malloc0")) test_malloc0();
    else if (!strcmp(w, "huge")) test_huge();
    else if (!strcmp(w, "calloc_overflow")) test_calloc_overflow();
    else if (!strcmp(w, "reallocarray_overflow")) test_reallocarray_overflow();
    else if (!strcmp(w, "posix_memalign_einval")) test_posix_memalign_einval();
    else if (!strcmp(w, "aligned_alloc_einval")) test_aligned_alloc_einval();
    else if (!strcmp(w, "free_null")) test_free_null();
    else if (!strcmp(w, "free_errno")) test_free_errno();
    else if (!strcmp(w, "realloc_null")) test_realloc_null();
    else if (!strcmp(w, "realloc_zero")) test_realloc_zero();
    else {
        printf("unknown case '%s'\n", w);
        return 2;
    }
    return finish();
}
