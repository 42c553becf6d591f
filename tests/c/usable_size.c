/*
 * usable_size.c - malloc_usable_size(p) >= requested size, and the whole
 * usable size is really the caller's: every byte up to the usable size is
 * written with a pattern while many blocks are live, and all patterns are
 * checked afterwards (an overstated usable size would make neighbouring
 * blocks overlap and corrupt each other).
 *
 *   usable_size small    every size 0..4200, all live at once
 *   usable_size large    sizes up to 16 MiB, plus memalign and realloc'd blocks
 */
#include "testutil.h"
#include <malloc.h>

#define MAXB 5000
static unsigned char *blk[MAXB];
static size_t usz[MAXB];

static int check_all(int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (!blk[i])
            continue;
        long off = check_pat(blk[i], usz[i], (uintptr_t)blk[i]);
        CHECK(off < 0, "block %p (usable %zu) corrupted at offset %ld", blk[i], usz[i], off);
        bad += off >= 0;
    }
    return bad;
}

static void take(int i, void *p, size_t req, const char *what)
{
    blk[i] = p;
    CHECK(p != NULL, "%s(%zu) failed", what, req);
    if (!p)
        return;
    usz[i] = malloc_usable_size(p);
    CHECK(usz[i] >= req, "%s(%zu): malloc_usable_size = %zu", what, req, usz[i]);
    fill_pat(p, usz[i], (uintptr_t)p);
}

static void test_small(void)
{
    int n = 0;
    for (size_t sz = 0; sz <= 4200; sz++, n++)
        take(n, malloc(sz), sz, "malloc");
    check_all(n);
    for (int i = 0; i < n; i++)
        free(blk[i]);
}

static void test_large(void)
{
    static const size_t sizes[] = { 4095, 4097, 8000, 16385, 32767, 65536,
                                    100000, 131073, 250000, 1 << 20,
                                    (1 << 20) + 1, 3000000, 8 << 20,
                                    (16 << 20) - 1 };
    int n = 0;
    size_t ns = sizeof sizes / sizeof sizes[0];
    for (size_t i = 0; i < ns; i++)
        take(n++, malloc(sizes[i]), sizes[i], "malloc");
    for (size_t i = 0; i < ns; i++)
        take(n++, memalign(4096, sizes[i]), sizes[i], "memalign");
    for (size_t i = 0; i < ns; i++)
        take(n++, calloc(1, sizes[i]), sizes[i], "calloc");
    /* realloc'd blocks: grow a small block, shrink a large one */
    for (size_t i = 0; i < ns; i++) {
        void *p = malloc(10);
        p = realloc(p, sizes[i]);
        take(n++, p, sizes[i], "realloc-grow");
        void *q = malloc(sizes[ns - 1]);
        q = realloc(q, sizes[i]);
        take(n++, q, sizes[i], "realloc-shrink");
    }
    check_all(n);
    for (int i = 0; i < n; i++)
        free(blk[i]);
}

int main(int argc, char **argv)
{
    report_preload();
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "small")) test_small();
    else if (!strcmp(w, "large")) test_large();
    else {
        printf("unknown case '%s'\n", w);
        return 2;
    }
    return finish();
}
