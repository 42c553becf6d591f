/* Reuse is LIFO: the most recently freed block of a size is the next one handed out,
 * including when it is the highest block of the heap.
 *   lifo  prints lifo_pairs_ok, lifo_top_ok, failures */
#include "testutil.h"

int main(void)
{
    report_preload();
    int failures = 0;
    /* Blocks of one size, freed in a shuffled order, come back in reverse order. */
    enum { N = 6 };
    void *b[N];
    for (int i = 0; i < N; i++)
        b[i] = malloc(40);
    int order[N] = {3, 0, 5, 1, 4, 2};
    for (int i = 0; i < N; i++)
        free(b[order[i]]);
    int pairs_ok = 1;
    for (int i = N - 1; i >= 0; i--) {
        void *p = malloc(40);
        if (p != b[order[i]]) {
            printf("FAIL: expected %p (freed %d-th), got %p\n", b[order[i]], i, p);
            pairs_ok = 0;
            failures++;
        }
    }
    /* The newest block of the heap (1000 bytes: refills of this size bring one block,
     * so x is the highest block), freed after an older block of the same size: x is
     * still the one handed out next. */
    int top_ok = 1;
    for (int round = 0; round < 100; round++) {
        void *h = malloc(1000);
        void *x = malloc(1000);
        free(h);
        free(x);
        void *y = malloc(1000);
        void *z = malloc(1000);
        if (y != x || z != h) {
            if (top_ok)
                printf("FAIL: round %d: freed %p then %p, got %p then %p\n", round, h, x, y, z);
            top_ok = 0;
            failures++;
        }
        free(z);
        free(y);
    }
    printf("lifo_pairs_ok=%d\nlifo_top_ok=%d\n", pairs_ok, top_ok);
    tu_failures += failures;
    return finish();
}
