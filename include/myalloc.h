/*
 * myalloc.h - the C interface of libmyalloc.so beyond the standard allocation API.
 *
 * Link nothing: the library is loaded with LD_PRELOAD. To tell whether a process runs
 * on myalloc, look the function up at run time:
 *
 *     ssize_t (*get)(struct myalloc_stats *, size_t) =
 *         dlsym(RTLD_DEFAULT, "myalloc_stats_get");
 *
 * The struct is append-only: fields are only ever added at the end (bumping
 * `version`); pass the size you know, and `size` says how much the library filled.
 */
#ifndef MYALLOC_H
#define MYALLOC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct myalloc_stats {
    uint64_t size;                  /* bytes of this struct the library filled */
    uint64_t version;               /* 1 */
    uint64_t heap_start;            /* the program break when myalloc first looked */
    uint64_t brk_extent;            /* current break - heap_start (metadata included) */
    uint64_t brk_extent_peak;
    uint64_t held_bytes;            /* break extent + fallback mappings */
    uint64_t held_bytes_peak;
    uint64_t in_use_bytes;          /* usable bytes of live blocks */
    uint64_t in_use_bytes_peak;     /* peak of bytes in live and thread-cached blocks */
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
    uint64_t cached_bytes;          /* free blocks parked in thread caches */
    uint64_t metadata_bytes;        /* the heap's bitmaps, inside the break */
    uint64_t requested_bytes_total; /* sum of every size asked for so far */
};

/* Copies up to `size` bytes of the statistics to `out`; returns the number of bytes
 * written, or -1 if `out` is NULL. */
ssize_t myalloc_stats_get(struct myalloc_stats *out, size_t size);

/* Its type, for the dlsym lookup. */
typedef ssize_t (*myalloc_stats_get_fn)(struct myalloc_stats *out, size_t size);

#endif
