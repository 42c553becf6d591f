/*
 * floor: the least an allocator can do for churn's single-thread patterns, to
 * tell how much of a pattern's time is the program's own and how much any
 * allocator adds.  NOT an allocator for real use: one thread only, no limits,
 * no checks, memory never returned, alignment 16.
 *
 *   cc -O2 -fno-builtin -shared -fPIC bench/speed/floor.c -o floor.so
 *   LD_PRELOAD=./floor.so churn small --pairs 4000000 --live 100000
 *
 * Blocks are carved from one reserved region by a bump pointer; a side table
 * (one byte per 16-byte granule, out of band like myalloc's bitmaps) holds
 * each block's size in granules; a freed block goes on a LIFO list per size.
 * Blocks of CLASSES granules or more (4 KiB) are never reused: their size sits
 * in a 16-byte header in front, and the side table holds 0.
 * -fno-builtin keeps the compiler from turning calloc's malloc + memset into
 * a call to calloc.
 *
 * -DFREE_PADDING=N puts N register-zeroing instructions (`xor %r8d, %r8d`) in
 * free's path.  The CPU executes none of them (zeroing is done at register
 * renaming) but each takes a slot of the out-of-order window, so comparing
 * floor with and without padding shows what a longer allocator path costs a
 * pattern through the window alone (README, Speed).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define REGION (1UL << 32)      /* reserved, touched only as used */
#define GRANULE 16
#define CLASSES 256             /* lists for blocks of 1..255 granules */

#ifndef FREE_PADDING
#define FREE_PADDING 0
#endif
#define PAD_STR_(n) #n
#define PAD_STR(n) PAD_STR_(n)

static char *region, *bump_at;
static unsigned char *sizes;    /* granules of the block starting at each granule */
static void *lists[CLASSES];

static size_t granule_of(const void *p)
{
    return (size_t)((const char *)p - region) / GRANULE;
}

/* Bytes of the block at p (for realloc). */
static size_t block_bytes(const void *p)
{
    size_t n = sizes[granule_of(p)];
    return n ? n * GRANULE : *(const size_t *)((const char *)p - GRANULE);
}

static void *carve(size_t n)
{
    if (!region) {
        int prot = PROT_READ | PROT_WRITE;
        int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
        region = mmap(NULL, REGION, prot, flags, -1, 0);
        sizes = mmap(NULL, REGION / GRANULE, prot, flags, -1, 0);
        if (region == MAP_FAILED || sizes == MAP_FAILED)
            return NULL;
        bump_at = region;
    }
    size_t header = n < CLASSES ? 0 : 1;
    if (n >= REGION / GRANULE || (size_t)(region + REGION - bump_at) / GRANULE < n + header)
        return NULL;
    char *p = bump_at + header * GRANULE;
    bump_at += (n + header) * GRANULE;
    if (header)
        *(size_t *)(p - GRANULE) = n * GRANULE;
    sizes[granule_of(p)] = header ? 0 : (unsigned char)n;
    return p;
}

void *malloc(size_t size)
{
    if (size > REGION)
        return NULL;
    size_t n = size ? (size + GRANULE - 1) / GRANULE : 1;
    if (n < CLASSES && lists[n]) {
        void *p = lists[n];
        lists[n] = *(void **)p;
        return p;
    }
    return carve(n);
}

void free(void *p)
{
    if (!p)
        return;
    size_t n = sizes[granule_of(p)];
#if FREE_PADDING > 0
    __asm__ volatile(".rept " PAD_STR(FREE_PADDING) "\n\txor %%r8d, %%r8d\n\t.endr" ::: "r8");
#endif
    if (n) {
        *(void **)p = lists[n];
        lists[n] = p;
    }
}

void *calloc(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    void *p = malloc(count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

void *realloc(void *p, size_t size)
{
    void *q = malloc(size);
    if (p && q) {
        size_t old = block_bytes(p);
        memcpy(q, p, old < size ? old : size);
        free(p);
    }
    return q;
}
