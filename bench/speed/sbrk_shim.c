/*
 * sbrk_shim: a program break for counting instructions under valgrind.
 *
 *   cc -O2 -shared -fPIC bench/speed/sbrk_shim.c -o sbrk_shim.so
 *   LD_PRELOAD=./sbrk_shim.so:libmyalloc.so valgrind --tool=cachegrind churn ...
 *
 * Valgrind gives a program a break segment of 8 MB; past it `brk` fails, and
 * myalloc (which moves the break with sbrk, called by name) continues in mmap
 * fallback arenas, whose `free` takes a different path.  Preloaded first, this
 * file's sbrk and brk serve the break from a reserved mapping instead, so the
 * patterns of the speed benchmark can be counted at their full size on the
 * path they take outside valgrind.  Memory given back (a negative increment)
 * is released with MADV_DONTNEED, as the kernel releases a lowered break.
 *
 * An allocator that calls the kernel's brk itself (glibc's malloc) never sees
 * this file.  Not thread-safe: an allocator calls sbrk under its own lock.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#define RESERVE (16UL << 30)

static char *start, *end;

static int reserve(void)
{
    if (start)
        return 0;
    void *p = mmap(NULL, RESERVE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    start = end = p;
    return 0;
}

/* Moves the break to `to`; -1 with ENOMEM outside the reservation. */
static int move_to(char *to)
{
    if (to < start || (size_t)(to - start) > RESERVE) {
        errno = ENOMEM;
        return -1;
    }
    if (to < end)
        madvise(to, (size_t)(end - to), MADV_DONTNEED);
    end = to;
    return 0;
}

void *sbrk(intptr_t increment)
{
    if (reserve() != 0) {
        errno = ENOMEM;
        return (void *)-1;
    }
    char *old = end;
    if (increment < 0 ? (size_t)-increment > (size_t)(end - start)
                      : (size_t)increment > RESERVE - (size_t)(end - start)) {
        errno = ENOMEM;
        return (void *)-1;
    }
    if (move_to(old + increment) != 0)
        return (void *)-1;
    return old;
}

int brk(void *addr)
{
    if (reserve() != 0) {
        errno = ENOMEM;
        return -1;
    }
    return move_to(addr);
}
