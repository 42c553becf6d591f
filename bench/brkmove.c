/*
 * brkmove: change the program break and anonymous mappings by known amounts,
 * so tests/test_bench.py can check the suite's strace-based measurement
 * (bench/measure.py) to the byte.
 *
 * It calls the brk system call directly and never calls malloc (glibc's
 * malloc would move the break by amounts we do not control), writing only
 * with write(2).  Expected figures, relative to the first break:
 *
 *   break:   +1 MiB, +4 MiB (peak), +2 MiB, +2.5 MiB (final)  -> peak brk 4 MiB
 *   anonymous private mappings: 8 MiB mapped, a 2 MiB hole punched in the
 *   middle, the first 2 MiB unmapped, the last 4 MiB grown by mremap to
 *   12 MiB (peak), then unmapped; a private file mapping and a shared
 *   anonymous mapping on the way must not count.
 *   -> peak held - final held = 12 MiB exactly (the peak is 2.5 + 12 MiB above
 *      whatever the dynamic loader had mapped before main).
 *
 * The 4 MiB of break and the 12 MiB mapping are written to, so the peak RSS
 * that bench/launch reports is at least 12 MiB.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KiB (1024UL)
#define MiB (1024UL * 1024UL)

static void die(const char *msg)
{
    (void)!write(2, msg, strlen(msg));
    _exit(1);
}

static char *set_break(char *to)
{
    return (char *)syscall(SYS_brk, to);
}

static void move_to(char *base, unsigned long off)
{
    if (set_break(base + off) != base + off)
        die("brkmove: brk failed\n");
}

int main(void)
{
    char *base = set_break(0);
    move_to(base, 1 * MiB);
    move_to(base, 4 * MiB);
    memset(base, 1, 4 * MiB);
    move_to(base, 2 * MiB);
    move_to(base, 2 * MiB + 512 * KiB);

    char *m = mmap(NULL, 8 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        die("brkmove: mmap failed\n");
    if (munmap(m + 2 * MiB, 2 * MiB) != 0 || munmap(m, 2 * MiB) != 0)
        die("brkmove: munmap failed\n");
    char *r = mremap(m + 4 * MiB, 4 * MiB, 12 * MiB, MREMAP_MAYMOVE);
    if (r == MAP_FAILED)
        die("brkmove: mremap failed\n");
    memset(r, 2, 12 * MiB);

    int fd = open("/proc/self/exe", O_RDONLY);
    if (fd >= 0) {
        char *f = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
        if (f != MAP_FAILED)
            munmap(f, 4096);
        close(fd);
    }
    char *s = mmap(NULL, 1 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s != MAP_FAILED)
        munmap(s, 1 * MiB);

    if (munmap(r, 12 * MiB) != 0)
        die("brkmove: munmap failed\n");
    (void)!write(1, "brkmove ok\n", 11);
    return 0;
}
