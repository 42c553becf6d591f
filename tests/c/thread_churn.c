/*
 * thread_churn.c - thread lifetimes.
 *
 *   thread_churn churn        a thread is created and joined 1000 times (two
 *                             at a time); each allocates ~50 blocks, frees
 *                             most of them (filling any per-thread cache) and
 *                             hands 10 to the main thread, which checks and
 *                             frees them after the thread is gone.  RssAnon
 *                             may not keep growing: growth between iteration
 *                             100 and 1000 is printed as rss_growth.
 *   thread_churn exit_cached  20 rounds of 16 concurrent threads that churn
 *                             through many size classes and exit while
 *                             holding freed (cached) and live blocks; the live
 *                             ones are freed later by the main thread and by
 *                             threads of the next round (cross-thread frees
 *                             of blocks whose owner died).
 */
#include "testutil.h"
#include <pthread.h>

struct blk { unsigned char *p; size_t n; };

#define GIVE 10
struct churn_arg { int id; struct blk out[GIVE]; };

static void *churn_thread(void *arg)
{
    struct churn_arg *a = arg;
    struct rng r = { 0x51ED2701ULL + (uint64_t)a->id * 7919 };
    struct blk v[50];
    for (int i = 0; i < 50; i++) {
        v[i].n = rng_range_r(&r, 16, 8192);
        v[i].p = malloc(v[i].n);
        CHECK(v[i].p != NULL, "malloc(%zu) in thread", v[i].n);
        if (v[i].p)
            fill_pat(v[i].p, v[i].n, (uintptr_t)v[i].p);
    }
    for (int i = GIVE; i < 50; i++) {
        CHECK(check_pat(v[i].p, v[i].n, (uintptr_t)v[i].p) < 0, "block corrupted in thread");
        free(v[i].p);
    }
    for (int i = 0; i < GIVE; i++)
        a->out[i] = v[i];
    return NULL;
}

static void test_churn(void)
{
    enum { ROUNDS = 500, PAR = 2 };
    long rss_at_100 = 0;
    for (int round = 0; round < ROUNDS; round++) {
        pthread_t t[PAR];
        struct churn_arg a[PAR];
        for (int k = 0; k < PAR; k++) {
            a[k].id = round * PAR + k;
            int rc = pthread_create(&t[k], NULL, churn_thread, &a[k]);
            CHECK(rc == 0, "pthread_create: %d", rc);
        }
        for (int k = 0; k < PAR; k++) {
            pthread_join(t[k], NULL);
            for (int i = 0; i < GIVE; i++) {
                struct blk *b = &a[k].out[i];
                CHECK(check_pat(b->p, b->n, (uintptr_t)b->p) < 0,
                      "block from a finished thread corrupted");
                free(b->p);
            }
        }
        if (round == 50)
            rss_at_100 = rss_anon_bytes();
    }
    long rss_end = rss_anon_bytes();
    printf("threads=%d\nrss_at_100=%ld\nrss_end=%ld\nrss_growth=%ld\n",
           ROUNDS * PAR, rss_at_100, rss_end, rss_end - rss_at_100);
}

#define NT 16
#define HOLD 64
static struct blk held[NT][HOLD];       /* live blocks left behind by dead threads */

struct exit_arg { int id, round; };

static void *exit_thread(void *arg)
{
    struct exit_arg *a = arg;
    struct rng r = { 0xC0FFEEULL + (uint64_t)a->round * 1000 + (uint64_t)a->id };
    /* free half of what the previous round's thread with the same id left */
    for (int i = 0; i < HOLD; i += 2) {
        struct blk *b = &held[a->id][i];
        if (b->p) {
            CHECK(check_pat(b->p, b->n, (uintptr_t)b->p) < 0, "held block corrupted");
            free(b->p);
            b->p = NULL;
        }
    }
    /* churn through many size classes so that caches fill up */
    for (int i = 0; i < 2000; i++) {
        size_t n = (size_t)8 << (i % 12);
        n += rng_next_r(&r) % n;
        void *p = malloc(n);
        CHECK(p != NULL, "malloc(%zu)", n);
        memset(p, 0x33, n < 256 ? n : 256);
        free(p);
    }
    /* leave live blocks behind */
    for (int i = 0; i < HOLD; i++) {
        struct blk *b = &held[a->id][i];
        if (b->p)
            continue;
        b->n = rng_range_r(&r, 1, 5000);
        b->p = malloc(b->n);
        CHECK(b->p != NULL, "malloc(%zu)", b->n);
        if (b->p)
            fill_pat(b->p, b->n, (uintptr_t)b->p);
    }
    /* exit with cached blocks still in this thread's cache */
    for (int i = 0; i < 100; i++) {
        void *p = malloc(48 + (size_t)i % 80);
        free(p);
    }
    return NULL;
}

static void test_exit_cached(void)
{
    enum { ROUNDS = 20 };
    for (int round = 0; round < ROUNDS; round++) {
        pthread_t t[NT];
        struct exit_arg a[NT];
        for (int k = 0; k < NT; k++) {
            a[k].id = k;
            a[k].round = round;
            int rc = pthread_create(&t[k], NULL, exit_thread, &a[k]);
            CHECK(rc == 0, "pthread_create: %d", rc);
        }
        for (int k = 0; k < NT; k++)
            pthread_join(t[k], NULL);
        /* main thread frees a quarter of what the dead threads left */
        for (int k = 0; k < NT; k++)
            for (int i = 1; i < HOLD; i += 4) {
                struct blk *b = &held[k][i];
                if (b->p) {
                    CHECK(check_pat(b->p, b->n, (uintptr_t)b->p) < 0, "held block corrupted");
                    free(b->p);
                    b->p = NULL;
                }
            }
        /* and allocates a lot itself, possibly reusing dead threads' memory */
        struct blk mine[500];
        for (int i = 0; i < 500; i++) {
            mine[i].n = 16 + (size_t)(i * 37) % 3000;
            mine[i].p = malloc(mine[i].n);
            fill_pat(mine[i].p, mine[i].n, (uintptr_t)mine[i].p);
        }
        for (int i = 0; i < 500; i++) {
            CHECK(check_pat(mine[i].p, mine[i].n, (uintptr_t)mine[i].p) < 0, "main block corrupted");
            free(mine[i].p);
        }
    }
    for (int k = 0; k < NT; k++)
        for (int i = 0; i < HOLD; i++)
            if (held[k][i].p) {
                CHECK(check_pat(held[k][i].p, held[k][i].n, (uintptr_t)held[k][i].p) < 0,
                      "held block corrupted");
                free(held[k][i].p);
            }
    printf("threads=%d\n", ROUNDS * NT);
}

int main(int argc, char **argv)
{
    report_preload();
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "churn")) test_churn();
    else if (!strcmp(w, "exit_cached")) test_exit_cached();
    else {
        printf("unknown case '%s'\n", w);
        return 2;
    }
    return finish();
}
