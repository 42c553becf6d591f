/*
 * mem_realloc_grow.c - growing one block from 1 MiB to 64 MiB with realloc in
 * 1 MiB steps.  Counts how often the block moved; the first byte and the last
 * byte written at each step must survive every later realloc.
 */
#include "testutil.h"

#define MIB ((size_t)1 << 20)

int main(void)
{
    report_preload();
    unsigned char *p = malloc(MIB);
    CHECK(p != NULL, "malloc(1 MiB)");
    if (!p)
        return finish();
    p[0] = 0xC3;
    p[MIB - 1] = 1;
    int moves = 0, steps = 0;
    for (size_t n = 2 * MIB; n <= 64 * MIB; n += MIB) {
        unsigned char *q = realloc(p, n);
        CHECK(q != NULL, "realloc to %zu MiB failed", n / MIB);
        if (!q)
            break;
        steps++;
        if (q != p)
            moves++;
        size_t old = n - MIB;
        CHECK(q[0] == 0xC3, "first byte lost at %zu MiB", n / MIB);
        CHECK(q[old - 1] == (unsigned char)(old / MIB), "last byte of the %zu MiB step lost", old / MIB);
        q[n - 1] = (unsigned char)(n / MIB);
        p = q;
    }
    printf("steps=%d\nmoves=%d\n", steps, moves);
    free(p);
    print_stats();
    return finish();
}
