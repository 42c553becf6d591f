/*
 * alignment.c - alignment guarantees of every allocation entry point.
 *
 *   alignment malloc          every size 1..4096 and larger ones up to 32 MiB
 *                             (all live at once): 16-aligned when size >= 16,
 *                             8-aligned below; whole block writable
 *   alignment memalign        memalign(a, n) for a = 8 .. 4 MiB, several n
 *   alignment posix_memalign  same through posix_memalign (returns 0)
 *   alignment aligned_alloc   same through aligned_alloc (n multiple of a)
 *   alignment valloc          page aligned, usable >= n, writable
 *   alignment pvalloc         page aligned, malloc_usable_size >= n rounded
 *                             up to a page, the whole rounded size writable
 *
 * Each allocated block is filled with an address pattern while several are
 * live and checked before free, so overlapping blocks are detected too.
 */
#include "testutil.h"
#include <malloc.h>

#define MAX_LIVE 8192

static void *live[MAX_LIVE];
static size_t live_n[MAX_LIVE];
static int nlive;

static void keep(void *p, size_t n)
{
    fill_pat(p, n, (uintptr_t)p);
    live[nlive] = p;
    live_n[nlive] = n;
    nlive++;
}

static void release_all(void)
{
    for (int i = 0; i < nlive; i++) {
        long bad = check_pat(live[i], live_n[i], (uintptr_t)live[i]);
        CHECK(bad < 0, "block %p (size %zu) corrupted at offset %ld",
              live[i], live_n[i], bad);
        free(live[i]);
    }
    nlive = 0;
}

static void test_malloc(void)
{
    static const size_t big[] = { 5000, 8191, 8192, 65535, 65536, 65537,
                                  131072, 200000, 1 << 20, (1 << 20) + 1,
                                  2 << 20, 3 << 20, 8 << 20, 32 << 20 };
    for (size_t n = 1; n <= 4096; n++) {
        void *p = malloc(n);
        CHECK(p != NULL, "malloc(%zu) failed", n);
        if (!p)
            continue;
        size_t want = n >= 16 ? 16 : 8;
        CHECK((uintptr_t)p % want == 0, "malloc(%zu) = %p not %zu-aligned", n, p, want);
        keep(p, n);
    }
    release_all();
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        void *p = malloc(big[i]);
        CHECK(p != NULL, "malloc(%zu) failed", big[i]);
        if (!p)
            continue;
        CHECK((uintptr_t)p % 16 == 0, "malloc(%zu) = %p not 16-aligned", big[i], p);
        keep(p, big[i]);
    }
    release_all();
}

enum api { MEMALIGN, POSIX_MEMALIGN, ALIGNED_ALLOC };

static void *do_alloc(enum api api, size_t align, size_t n)
{
    switch (api) {
    case MEMALIGN:
        return memalign(align, n);
    case ALIGNED_ALLOC:
        return aligned_alloc(align, n);
    case POSIX_MEMALIGN: {
        void *p = (void *)0x1;
        int rc = posix_memalign(&p, align, n);
        CHECK(rc == 0, "posix_memalign(%zu, %zu) returned %d", align, n, rc);
        return rc == 0 ? p : NULL;
    }
    }
    return NULL;
}

static void test_aligned(enum api api, const char *name)
{
    for (size_t align = 8; align <= ((size_t)4 << 20); align *= 2) {
        size_t sizes[6];
        int ns = 0;
        if (api == ALIGNED_ALLOC) {
            sizes[ns++] = align;
            sizes[ns++] = 2 * align;
            sizes[ns++] = 3 * align;
        } else {
            sizes[ns++] = 1;
            sizes[ns++] = 24;
            sizes[ns++] = align;
            sizes[ns++] = align + 8;
            sizes[ns++] = 3 * align + 5;
            sizes[ns++] = 100000;
        }
        for (int s = 0; s < ns; s++) {
            /* several live blocks of the same shape at once */
            for (int k = 0; k < 4; k++) {
                void *p = do_alloc(api, align, sizes[s]);
                CHECK(p != NULL, "%s(%zu, %zu) failed", name, align, sizes[s]);
                if (!p)
                    continue;
                CHECK((uintptr_t)p % align == 0, "%s(%zu, %zu) = %p misaligned",
                      name, align, sizes[s], p);
                CHECK(malloc_usable_size(p) >= sizes[s],
                      "%s(%zu, %zu): usable size %zu too small", name, align,
                      sizes[s], malloc_usable_size(p));
                keep(p, sizes[s]);
            }
            release_all();
        }
    }
}

static void test_page(int use_pvalloc)
{
    static const size_t sizes[] = { 1, 100, 4095, 4096, 4097, 12345, 100000, 1 << 20 };
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (int k = 0; k < 3; k++) {
            size_t n = sizes[i];
            void *p = use_pvalloc ? pvalloc(n) : valloc(n);
            const char *name = use_pvalloc ? "pvalloc" : "valloc";
            CHECK(p != NULL, "%s(%zu) failed", name, n);
            if (!p)
                continue;
            CHECK((uintptr_t)p % page == 0, "%s(%zu) = %p not page aligned", name, n, p);
            size_t want = use_pvalloc ? (n + page - 1) / page * page : n;
            size_t us = malloc_usable_size(p);
            CHECK(us >= want, "%s(%zu): malloc_usable_size %zu < %zu", name, n, us, want);
            keep(p, want); /* the whole (rounded) size must be writable */
        }
    }
    release_all();
}

int main(int argc, char **argv)
{
    report_preload();
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "malloc"))
        test_malloc();
    else if (!strcmp(what, "memalign"))
        test_aligned(MEMALIGN, "memalign");
    else if (!strcmp(what, "posix_memalign"))
        test_aligned(POSIX_MEMALIGN, "posix_memalign");
    else if (!strcmp(what, "aligned_alloc"))
        test_aligned(ALIGNED_ALLOC, "aligned_alloc");
    else if (!strcmp(what, "valloc"))
        test_page(0);
    else if (!strcmp(what, "pvalloc"))
        test_page(1);
    else {
        printf("unknown case '%s'\n", what);
        return 2;
    }
    return finish();
}
