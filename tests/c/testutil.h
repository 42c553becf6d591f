/*
 * testutil.h - tiny helpers shared by the myalloc test programs.
 *
 * - report_preload(): prints "preloaded=1" when libmyalloc's
 *   myalloc_stats_get() is visible through dlsym(RTLD_DEFAULT), else
 *   "preloaded=0".  Every program calls it first so the pytest driver can
 *   verify that LD_PRELOAD was really in effect.
 * - CHECK(cond, fmt, ...): records a failure and prints "FAIL file:line ..."
 *   (only the first 50 are printed).
 * - finish(): prints "failures=N" and returns the exit status (0 = all ok).
 * - A fixed-seed xorshift64* PRNG so every run is reproducible.
 * - rss_anon_bytes(), status_bytes("VmHWM:"): a field of /proc/self/status,
 *   read with open/read into a stack buffer so that measuring does not
 *   allocate; reset_peak_rss() restarts VmHWM (/proc/self/clear_refs).
 * - fill_pat()/check_pat(): a pattern derived from a key (normally the block
 *   address) to detect blocks that overlap or get corrupted.
 */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "myalloc_stats.h"

static int tu_failures;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond) && ++tu_failures <= 50) {                                 \
            printf("FAIL %s:%d: (%s) ", __FILE__, __LINE__, #cond);           \
            printf(__VA_ARGS__);                                              \
            printf("\n");                                                     \
            fflush(stdout);                                                   \
        }                                                                     \
    } while (0)

static inline myalloc_stats_get_fn stats_fn(void)
{
    return (myalloc_stats_get_fn)dlsym(RTLD_DEFAULT, "myalloc_stats_get");
}

/* Fill *out from the library; returns 0 if the library is not loaded. */
static inline int get_stats(struct myalloc_stats *out)
{
    myalloc_stats_get_fn f = stats_fn();
    memset(out, 0, sizeof *out);
    if (!f)
        return 0;
    return f(out, sizeof *out) > 0;
}

/* Field names of struct myalloc_stats, in order (all uint64_t). */
static const char *const stats_names[] = {
    "size", "version", "heap_start", "brk_extent", "brk_extent_peak",
    "held_bytes", "held_bytes_peak", "in_use_bytes", "in_use_bytes_peak",
    "live_blocks", "malloc_calls", "free_calls", "realloc_calls",
    "calloc_calls", "memalign_calls", "brk_grow_calls", "brk_shrink_calls",
    "madvise_calls", "madvised_bytes", "mmap_fallback_calls",
    "mmap_fallback_bytes", "cached_bytes", "metadata_bytes",
    "requested_bytes_total",
};

/* Print the library's statistics as "stat.<name>=<value>" lines (for the
 * diagnostics of memory tests); prints nothing without the library. */
static inline void print_stats(void)
{
    struct myalloc_stats s;
    if (!get_stats(&s))
        return;
    const uint64_t *f = (const uint64_t *)&s;
    for (size_t i = 0; i < sizeof stats_names / sizeof stats_names[0]; i++)
        printf("stat.%s=%llu\n", stats_names[i], (unsigned long long)f[i]);
}

static inline int report_preload(void)
{
    int on = stats_fn() != NULL;
    printf("preloaded=%d\n", on);
    fflush(stdout);
    return on;
}

static inline int finish(void)
{
    printf("failures=%d\n", tu_failures);
    fflush(stdout);
    return tu_failures ? 1 : 0;
}

/* ---- PRNG: xorshift64*, fixed seed ---- */
struct rng { uint64_t s; };

static inline uint64_t rng_next_r(struct rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* uniform-ish integer in [lo, hi] */
static inline uint64_t rng_range_r(struct rng *r, uint64_t lo, uint64_t hi)
{
    return lo + rng_next_r(r) % (hi - lo + 1);
}

static struct rng tu_rng = { 0x9E3779B97F4A7C15ULL };
static inline uint64_t rng_next(void) { return rng_next_r(&tu_rng); }
static inline uint64_t rng_range(uint64_t lo, uint64_t hi) { return rng_range_r(&tu_rng, lo, hi); }

/* ---- /proc/self/status fields without allocating ---- */
static inline long status_bytes(const char *field)
{
    char buf[8192];
    size_t n = 0;
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0)
        return -1;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == sizeof buf - 1)
            break;
    }
    close(fd);
    buf[n] = 0;
    char *p = strstr(buf, field);
    if (!p)
        return -1;
    p += strlen(field);
    while (*p == ' ' || *p == '\t')
        p++;
    long kb = 0;
    while (*p >= '0' && *p <= '9')
        kb = kb * 10 + (*p++ - '0');
    return kb * 1024;
}

static inline long rss_anon_bytes(void)
{
    return status_bytes("RssAnon:");
}

/* Makes VmHWM start again from the current resident set (Linux 4.0+). */
static inline int reset_peak_rss(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0)
        return -1;
    int ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok ? 0 : -1;
}

/* ---- address-derived patterns ----
 * Byte i of the pattern is byte (i % 8) of pat_mix(key ^ (i/8)*golden), so any
 * prefix of a filled block holds the same pattern (needed after realloc). */
static inline uint64_t pat_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static inline void fill_pat(void *p, size_t n, uintptr_t key)
{
    unsigned char *b = (unsigned char *)p;
    size_t words = n / 8;
    for (size_t i = 0; i < words; i++) {
        uint64_t v = pat_mix(key ^ (i * 0x9E3779B97F4A7C15ULL));
        memcpy(b + i * 8, &v, 8);
    }
    if (words * 8 < n) {
        uint64_t v = pat_mix(key ^ (words * 0x9E3779B97F4A7C15ULL));
        memcpy(b + words * 8, &v, n - words * 8);
    }
}

/* Returns -1 when the first n bytes hold the pattern, else the first bad offset. */
static inline long check_pat(const void *p, size_t n, uintptr_t key)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t words = n / 8;
    for (size_t i = 0; i < words; i++) {
        uint64_t v = pat_mix(key ^ (i * 0x9E3779B97F4A7C15ULL)), got;
        memcpy(&got, b + i * 8, 8);
        if (got != v) {
            for (size_t j = 0; j < 8; j++)
                if (b[i * 8 + j] != ((unsigned char *)&v)[j])
                    return (long)(i * 8 + j);
        }
    }
    if (words * 8 < n) {
        uint64_t v = pat_mix(key ^ (words * 0x9E3779B97F4A7C15ULL));
        for (size_t i = words * 8; i < n; i++)
            if (b[i] != ((unsigned char *)&v)[i - words * 8])
                return (long)i;
    }
    return -1;
}

#endif
