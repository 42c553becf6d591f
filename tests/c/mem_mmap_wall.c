/*
 * mem_mmap_wall.c - the break cannot grow past a foreign mapping.
 *
 * After a first malloc, a 1 MiB private mapping (filled with a pattern) is
 * placed with MAP_FIXED_NOREPLACE 64 KiB above the page-aligned current break
 * (read with the raw brk system call, so no cached value is involved).  Then
 * 200,000 allocations of 16..256 bytes must all succeed, be writable, not
 * overlap the mapping, keep their contents, and be freed; the mapping must be
 * left intact.
 */
#include "testutil.h"
#include <sys/mman.h>
#include <sys/syscall.h>

#define N 200000
#define WALL ((size_t)1 << 20)
static unsigned char *ptrs[N];
static size_t sizes[N];

int main(void)
{
    report_preload();
    void *first = malloc(100);
    memset(first, 1, 100);
    uintptr_t brk0 = (uintptr_t)syscall(SYS_brk, 0);
    uintptr_t at = ((brk0 + 4095) & ~(uintptr_t)4095) + 64 * 1024;
    unsigned char *wall = mmap((void *)at, WALL, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (wall == MAP_FAILED || (uintptr_t)wall != at) {
        printf("wall_mmap_failed=1\nerrno=%d\n", errno);
        return 3;
    }
    fill_pat(wall, WALL, 0xfeed);
    printf("brk0=%#lx\nwall=%#lx\n", (unsigned long)brk0, (unsigned long)at);
    fflush(stdout);
    long failed = 0, overlap = 0, below = 0, above = 0;
    for (int i = 0; i < N; i++) {
        sizes[i] = rng_range(16, 256);
        ptrs[i] = malloc(sizes[i]);
        if (!ptrs[i]) {
            failed++;
            continue;
        }
        uintptr_t a = (uintptr_t)ptrs[i];
        if (a < at + WALL && a + sizes[i] > at)
            overlap++;
        else if (a < at)
            below++;
        else
            above++;
        if (a < at + WALL && a + sizes[i] > at)
            continue; /* do not scribble over the wall */
        fill_pat(ptrs[i], sizes[i], a);
    }
    long corrupt = 0;
    for (int i = 0; i < N; i++) {
        if (!ptrs[i])
            continue;
        uintptr_t a = (uintptr_t)ptrs[i];
        if (!(a < at + WALL && a + sizes[i] > at) && check_pat(ptrs[i], sizes[i], a) >= 0)
            corrupt++;
    }
    long wall_bad = check_pat(wall, WALL, 0xfeed);
    for (int i = 0; i < N; i++)
        free(ptrs[i]);
    free(first);
    /* the heap still works afterwards */
    void *again = malloc(1000);
    CHECK(again != NULL, "malloc after the run");
    free(again);
    printf("failed=%ld\noverlap=%ld\nbelow_wall=%ld\nabove_wall=%ld\ncorrupt=%ld\nwall_damaged_at=%ld\n",
           failed, overlap, below, above, corrupt, wall_bad);
    CHECK(failed == 0, "%ld allocations failed", failed);
    CHECK(overlap == 0, "%ld blocks overlap the foreign mapping", overlap);
    CHECK(corrupt == 0, "%ld blocks lost their contents", corrupt);
    CHECK(wall_bad < 0, "the foreign mapping was written to (offset %ld)", wall_bad);
    print_stats();
    return finish();
}
