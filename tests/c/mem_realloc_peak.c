/*
 * mem_realloc_peak.c - moving a large block by realloc does not hold both
 * copies resident at once.
 *
 * An array is doubled by realloc from 1 MiB to 64 MiB.  Before every growth a
 * block as large as the array is allocated (one byte written): no hole the
 * array left behind holds it, so it goes after the array at the top of the
 * heap, and the growth cannot extend the array in place and moves it.  Like a vector that has just doubled, the program has written
 * only the old contents at each step (the copy realloc made) and fills the new
 * half before the next growth.  The peak resident set (VmHWM, restarted at the
 * beginning) is compared with the data written:
 *   data_bytes  the array's contents before its last growth (32 MiB)
 *   peak_growth VmHWM at the end - VmRSS at the start
 *   moves       how many growths moved the array
 * glibc moves such blocks with mremap (no copy); copying one whole before
 * giving the old one back had both resident: 64 MiB at the last step.
 */
#include "testutil.h"

#define MIB ((size_t)1 << 20)
#define STEPS 6

int main(void)
{
    report_preload();
    CHECK(reset_peak_rss() == 0, "cannot reset VmHWM");
    long start = status_bytes("VmRSS:");
    size_t n = MIB;
    unsigned char *a = malloc(n);
    CHECK(a != NULL, "malloc(1 MiB)");
    if (!a)
        return finish();
    memset(a, 1, n);
    unsigned char *fences[STEPS + 1];
    int moves = 0;
    for (int i = 0; i <= STEPS; i++) {
        fences[i] = malloc(n);
        CHECK(fences[i] != NULL, "malloc(%zu MiB)", n / MIB);
        if (!fences[i])
            return finish();
        fences[i][0] = 1;
        if (i == STEPS)
            break;
        unsigned char *q = realloc(a, 2 * n);
        CHECK(q != NULL, "realloc to %zu MiB", 2 * n / MIB);
        if (!q)
            return finish();
        moves += q != a;
        a = q;
        for (size_t j = 0; j < n; j += 4096)
            CHECK(a[j] == (unsigned char)(i + 1), "byte %zu lost growing to %zu MiB", j, 2 * n / MIB);
        CHECK(a[n - 1] == (unsigned char)(i + 1), "last byte lost growing to %zu MiB", 2 * n / MIB);
        n *= 2;
        if (i + 1 < STEPS)
            memset(a, i + 2, n);
    }
    long peak = status_bytes("VmHWM:");
    printf("data_bytes=%zu\npeak_growth=%ld\nmoves=%d\n", n / 2, peak - start, moves);
    print_stats();
    for (int i = 0; i <= STEPS; i++)
        free(fences[i]);
    free(a);
    return finish();
}
