/*
 * brk_harness.c - a private program break for the preloaded allocator.
 *
 * This program defines its own sbrk() and brk() (exported with -rdynamic, so
 * the preloaded library's calls to sbrk/brk bind to them) backed by a static,
 * page-aligned region of REGION bytes (-DREGION=...).  The region is poisoned
 * with 0xA5 on the first call (which may come before main), and memory given
 * back by lowering the break is poisoned again, so nothing may assume that
 * memory obtained from the break is zero.  Requests beyond the region fail
 * with errno ENOMEM and (void *)-1 / -1.  The harness counts calls that grow
 * and shrink the break and records the highest break ever returned.
 *
 *   brk_harness small      10,000 random 8..128-byte allocations (as in
 *                          mem_small): prints extent (highest break - region
 *                          start), live_bytes, overhead_per_object
 *   brk_harness many8 N    up to N live 8-byte allocations; counts how many
 *                          land inside the region before the first one that
 *                          fails or lands outside (in_region); values written
 *                          to every block are checked afterwards
 *   brk_harness calloc     calloc of 16, 1000, 100000, 10 MiB is zeroed (fresh
 *                          and after dirty reuse) although the region is poisoned
 *   brk_harness trim       66 adjacent 512-byte blocks: free the 65 lower ones,
 *                          then the topmost; prints the break against block #58
 *   brk_harness growcalls  128 allocations of 16..128 bytes: grow calls made,
 *                          and the break's distance above the highest block end
 */
#include "testutil.h"
#include <sys/mman.h>

#ifndef REGION
#error "compile with -DREGION=<bytes>"
#endif

static unsigned char region[REGION] __attribute__((aligned(4096)));
/* volatile: glibc declares free() and malloc() "leaf", so without it the compiler may
 * keep the break in a register across them, though they call back into sbrk() here. */
static unsigned char *volatile cur;      /* current break */
static unsigned char *peak;     /* highest break ever set */
static long grow_calls, shrink_calls, failed_calls, total_calls;

static void harness_init(void)
{
    if (!cur) {
        memset(region, 0xA5, sizeof region);
        cur = peak = region;
    }
}

static void set_break(unsigned char *a)
{
    if (a > cur) {
        grow_calls++;
    } else if (a < cur) {
        shrink_calls++;
        memset(a, 0xA5, (size_t)(cur - a));
    }
    cur = a;
    if (cur > peak)
        peak = cur;
}

void *sbrk(intptr_t inc)
{
    harness_init();
    total_calls++;
    unsigned char *old = cur;
    if (inc == 0)
        return old;
    if (inc > 0 ? (uintptr_t)inc > (uintptr_t)(region + REGION - cur)
                : (uintptr_t)0 - (uintptr_t)inc > (uintptr_t)(cur - region)) {
        failed_calls++;
        errno = ENOMEM;
        return (void *)-1;
    }
    set_break(cur + inc);
    return old;
}

int brk(void *addr)
{
    harness_init();
    total_calls++;
    unsigned char *a = addr;
    if (a < region || a > region + REGION) {
        failed_calls++;
        errno = ENOMEM;
        return -1;
    }
    set_break(a);
    return 0;
}

static int in_region(const void *p, size_t n)
{
    const unsigned char *b = p;
    return b >= region && b + n <= region + REGION;
}

static void print_harness(void)
{
    printf("region_size=%llu\n", (unsigned long long)REGION);
    printf("harness_used=%d\n", cur != NULL && total_calls > 0);
    printf("extent=%ld\nbreak=%ld\n", cur ? (long)(peak - region) : 0L,
           cur ? (long)(cur - region) : 0L);
    printf("grow_calls=%ld\nshrink_calls=%ld\nfailed_calls=%ld\ntotal_calls=%ld\n",
           grow_calls, shrink_calls, failed_calls, total_calls);
}

#define NSMALL 10000
static void *sp[NSMALL];
static size_t ss[NSMALL];

static void test_small(void)
{
    size_t live = 0;
    for (int i = 0; i < NSMALL; i++) {
        ss[i] = (rng_range(1, 127) + 7) & ~(size_t)7;
        live += ss[i];
    }
    long extent_before = cur ? (long)(peak - region) : 0;
    int outside = 0;
    for (int i = 0; i < NSMALL; i++) {
        sp[i] = malloc(ss[i]);
        CHECK(sp[i] != NULL, "malloc(%zu) failed", ss[i]);
        if (!sp[i])
            continue;
        memset(sp[i], 0x5a, ss[i]);
        outside += !in_region(sp[i], ss[i]);
    }
    long extent = (long)(peak - region);
    printf("objects=%d\nlive_bytes=%zu\nextent_before=%ld\noutside=%d\n",
           NSMALL, live, extent_before, outside);
    printf("overhead_per_object=%.3f\n", ((double)extent - (double)live) / NSMALL);
    CHECK(outside == 0, "%d blocks outside the break region", outside);
}

static void test_many8(long n)
{
    uint64_t **v = mmap(NULL, (size_t)n * sizeof *v, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (v == MAP_FAILED) {
        perror("mmap");
        exit(3);
    }
    long count = 0, first_bad = -1;
    const char *why = "none";
    for (long i = 0; i < n; i++) {
        uint64_t *p = malloc(8);
        if (!p) {
            first_bad = i;
            why = "NULL";
            break;
        }
        *p = (uint64_t)i * 0x9E3779B97F4A7C15ULL;
        if (!in_region(p, 8)) {
            first_bad = i;
            why = "outside";
            break;
        }
        v[count++] = p;
    }
    long corrupt = 0;
    for (long i = 0; i < count; i++)
        if (*v[i] != (uint64_t)i * 0x9E3779B97F4A7C15ULL)
            corrupt++;
    printf("requested=%ld\nin_region=%ld\nfirst_bad=%ld\nfirst_bad_reason=%s\ncorrupt=%ld\n",
           n, count, first_bad, why, corrupt);
    CHECK(corrupt == 0, "%ld of the 8-byte blocks were overwritten (overlap)", corrupt);
}

static void zero_check(const unsigned char *p, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) {
            CHECK(p[i] == 0, "%s(%zu) = %p: byte %zu is 0x%02x", what, n,
                  (const void *)p, i, p[i]);
            return;
        }
}

static void test_calloc(void)
{
    static const size_t sizes[] = { 16, 1000, 100000, 10u << 20 };
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < 4; i++) {
            size_t n = sizes[i];
            unsigned char *p = round ? calloc(n / 8, 8) : calloc(1, n);
            CHECK(p != NULL, "calloc(%zu) failed", n);
            if (!p)
                continue;
            zero_check(p, n, "calloc");
            printf("calloc_%zu_in_region=%d\n", n, in_region(p, n));
            memset(p, 0x5a, n); /* dirty it for the next round's reuse */
            free(p);
        }
    }
    /* blocks carved out of dirty space */
    for (int i = 0; i < 500; i++) {
        unsigned char *d = malloc(3000);
        memset(d, 0x5a, 3000);
        free(d);
        unsigned char *p = calloc(1, 16 + (size_t)i * 7);
        CHECK(p != NULL, "calloc failed");
        if (p) {
            zero_check(p, 16 + (size_t)i * 7, "calloc");
            free(p);
        }
    }
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static void test_trim(void)
{
    enum { N = 66 };
    unsigned char *b[N];
    for (int i = 0; i < N; i++) {
        b[i] = malloc(512);
        CHECK(b[i] != NULL && in_region(b[i], 512), "block %d = %p not in region", i, (void *)b[i]);
        if (b[i])
            memset(b[i], 0x5a, 512);
    }
    qsort(b, N, sizeof b[0], cmp_ptr);
    long maxgap = 0;
    for (int i = 1; i < N; i++)
        if (b[i] - b[i - 1] > maxgap)
            maxgap = b[i] - b[i - 1];
    long brk_full = (long)(cur - region);
    for (int i = 0; i < N - 1; i++)
        free(b[i]);
    long brk_65 = (long)(cur - region);
    free(b[N - 1]);
    long brk_final = (long)(cur - region);
    printf("block0=%ld\nblock58=%ld\nblock65=%ld\nblock_end=%ld\nmax_gap=%ld\n",
           (long)(b[0] - region), (long)(b[58] - region), (long)(b[65] - region),
           (long)(b[65] + 512 - region), maxgap);
    printf("break_all_live=%ld\nbreak_after_65=%ld\nbreak_final=%ld\n", brk_full, brk_65, brk_final);
}

static void test_growcalls(void)
{
    enum { N = 128 };
    size_t sz[N];
    for (int i = 0; i < N; i++)
        sz[i] = rng_range(16, 128);
    long g0 = grow_calls;
    uintptr_t maxend = 0;
    for (int i = 0; i < N; i++) {
        unsigned char *p = malloc(sz[i]);
        CHECK(p != NULL && in_region(p, sz[i]), "block %d = %p not in region", i, (void *)p);
        if (!p)
            continue;
        memset(p, 0x5a, sz[i]);
        if ((uintptr_t)(p + sz[i]) > maxend)
            maxend = (uintptr_t)(p + sz[i]);
    }
    long g1 = grow_calls;
    printf("loop_grow_calls=%ld\n", g1 - g0);
    printf("break_above_highest_end=%ld\n", (long)((uintptr_t)cur - maxend));
}

int main(int argc, char **argv)
{
    report_preload();
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "small")) test_small();
    else if (!strcmp(w, "many8")) test_many8(argc > 2 ? atol(argv[2]) : 4194304);
    else if (!strcmp(w, "calloc")) test_calloc();
    else if (!strcmp(w, "trim")) test_trim();
    else if (!strcmp(w, "growcalls")) test_growcalls();
    else {
        printf("unknown case '%s'\n", w);
        return 2;
    }
    print_harness();
    print_stats();
    return finish();
}
