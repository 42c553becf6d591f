/*
 * myalloc_stats.h - statistics block exported by libmyalloc.so (test copy).
 *
 * The library exports
 *     int myalloc_stats_get(struct myalloc_stats *out, size_t size);
 * which fills min(size, sizeof(struct myalloc_stats)) bytes of *out and
 * returns the number of bytes written, or -1 if out is NULL.
 *
 * Every field is a uint64_t.  `size` and `version` come first; new fields are
 * only ever appended.  Keep this identical to the list in the test contract.
 */
#ifndef MYALLOC_STATS_H
#define MYALLOC_STATS_H

#include <stddef.h>
#include <stdint.h>

struct myalloc_stats {
    uint64_t size;
    uint64_t version;
    uint64_t heap_start;
    uint64_t brk_extent;
    uint64_t brk_extent_peak;
    uint64_t held_bytes;
    uint64_t held_bytes_peak;
    uint64_t in_use_bytes;
    uint64_t in_use_bytes_peak;
    uint64_t live_blocks;
    uint64_t malloc_calls;
    uint64_t free_calls;
    uint64_t realloc_calls;
    uint64_t calloc_calls;
    uint64_t memalign_calls;
    uint64_t brk_grow_calls;
    uint64_t brk_shrink_calls;
    uint64_t madvise_calls;
    uint64_t madvised_bytes;
    uint64_t mmap_fallback_calls;
    uint64_t mmap_fallback_bytes;
    uint64_t cached_bytes;
    uint64_t metadata_bytes;
    uint64_t requested_bytes_total;
};

typedef int (*myalloc_stats_get_fn)(struct myalloc_stats *out, size_t size);

#endif
