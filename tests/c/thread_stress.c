/*
 * thread_stress.c - 8 threads of malloc / calloc / realloc / free while a
 * ninth thread keeps forking.
 *
 * Workers: ITERS operations each on a private table of slots; sizes 8 B ..
 * 64 KiB (log-uniform) and now and then 1 MiB.  Every block is filled with a
 * pattern derived from its address, checked before it is freed or realloc'ed
 * (realloc must keep the common prefix); calloc'ed blocks must be zero.  A
 * third of the released blocks are handed to another worker through a
 * mutex-protected queue and freed there.
 *
 * Forker: once all workers run, forks CHILDREN children one after the other;
 * each child (alarm(60) against deadlock) mallocs/frees a few thousand
 * patterned blocks, checks them, and _exit(0)s.  The parent checks that every
 * child exited with status 0.
 *
 * Prints ops=, handoffs=, children_ok=, children_failed= and failures=.
 */
#include "testutil.h"
#include <pthread.h>
#include <sys/wait.h>

#define NWORKERS 8
#define SLOTS 256
#define QCAP 1024
#ifndef ITERS
#define ITERS 40000
#endif
#define CHILDREN 50

struct blk { unsigned char *p; size_t n; uintptr_t key; };

struct queue {
    pthread_mutex_t m;
    int head, count;
    struct blk items[QCAP];
};

static struct queue queues[NWORKERS];
static pthread_barrier_t done_barrier;
static volatile int workers_started;
static long total_ops, total_handoffs;
static pthread_mutex_t total_m = PTHREAD_MUTEX_INITIALIZER;

static size_t pick_size(struct rng *r)
{
    if (rng_next_r(r) % 500 == 0)
        return ((size_t)1 << 20) + rng_range_r(r, 0, 4096);
    unsigned e = (unsigned)rng_range_r(r, 3, 16);
    size_t n = rng_range_r(r, (size_t)1 << (e - 1), (size_t)1 << e);
    return n < 8 ? 8 : n;
}

static void verify_and_free(struct blk *b, const char *where)
{
    long bad = check_pat(b->p, b->n, b->key);
    CHECK(bad < 0, "%s: block %p size %zu corrupted at offset %ld", where,
          (void *)b->p, b->n, bad);
    free(b->p);
    b->p = NULL;
}

static int push(int to, struct blk b)
{
    struct queue *q = &queues[to];
    int ok = 0;
    pthread_mutex_lock(&q->m);
    if (q->count < QCAP) {
        q->items[(q->head + q->count) % QCAP] = b;
        q->count++;
        ok = 1;
    }
    pthread_mutex_unlock(&q->m);
    return ok;
}

static void drain(int me)
{
    struct queue *q = &queues[me];
    for (;;) {
        struct blk b;
        pthread_mutex_lock(&q->m);
        if (q->count == 0) {
            pthread_mutex_unlock(&q->m);
            return;
        }
        b = q->items[q->head];
        q->head = (q->head + 1) % QCAP;
        q->count--;
        pthread_mutex_unlock(&q->m);
        verify_and_free(&b, "foreign free");
    }
}

static void *worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    struct rng r = { 0x1234567ULL * (uint64_t)(me + 1) + 0xABCDEFULL };
    struct blk slot[SLOTS];
    memset(slot, 0, sizeof slot);
    long handoffs = 0;
    __atomic_add_fetch(&workers_started, 1, __ATOMIC_SEQ_CST);

    for (long it = 0; it < ITERS; it++) {
        struct blk *b = &slot[rng_next_r(&r) % SLOTS];
        if (b->p) {
            uint64_t act = rng_next_r(&r) % 4;
            if (act == 0) {
                /* realloc: common prefix must survive */
                size_t n = pick_size(&r);
                long bad = check_pat(b->p, b->n, b->key);
                CHECK(bad < 0, "before realloc: block %p size %zu corrupted at %ld",
                      (void *)b->p, b->n, bad);
                unsigned char *q = realloc(b->p, n);
                CHECK(q != NULL, "realloc(%zu) failed", n);
                if (!q)
                    continue;
                size_t common = n < b->n ? n : b->n;
                bad = check_pat(q, common, b->key);
                CHECK(bad < 0, "realloc %zu -> %zu lost data at %ld", b->n, n, bad);
                b->p = q;
                b->n = n;
                b->key = (uintptr_t)q ^ ((uintptr_t)me << 56);
                fill_pat(q, n, b->key);
            } else if (rng_next_r(&r) % 3 == 0) {
                int to = (me + 1 + (int)(rng_next_r(&r) % (NWORKERS - 1))) % NWORKERS;
                if (push(to, *b)) {
                    handoffs++;
                    b->p = NULL;
                } else {
                    verify_and_free(b, "local free");
                }
            } else {
                verify_and_free(b, "local free");
            }
        } else {
            size_t n = pick_size(&r);
            unsigned char *p;
            if (rng_next_r(&r) % 4 == 0) {
                p = calloc(1, n);
                CHECK(p != NULL, "calloc(%zu) failed", n);
                if (p)
                    for (size_t i = 0; i < n; i += (i < 4096 ? 1 : 61))
                        if (p[i]) {
                            CHECK(p[i] == 0, "calloc(%zu) = %p: byte %zu not zero", n, (void *)p, i);
                            break;
                        }
            } else {
                p = malloc(n);
                CHECK(p != NULL, "malloc(%zu) failed", n);
            }
            if (!p)
                continue;
            b->p = p;
            b->n = n;
            b->key = (uintptr_t)p ^ ((uintptr_t)me << 56);
            fill_pat(p, n, b->key);
        }
        if ((it & 31) == 0)
            drain(me);
    }
    pthread_barrier_wait(&done_barrier); /* nobody pushes any more */
    drain(me);
    for (int i = 0; i < SLOTS; i++)
        if (slot[i].p)
            verify_and_free(&slot[i], "final free");
    pthread_mutex_lock(&total_m);
    total_ops += ITERS;
    total_handoffs += handoffs;
    pthread_mutex_unlock(&total_m);
    return NULL;
}

static int child_work(void)
{
    struct rng r = { (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL | 1 };
    enum { K = 64 };
    struct blk v[K];
    memset(v, 0, sizeof v);
    for (int i = 0; i < 3000; i++) {
        struct blk *b = &v[rng_next_r(&r) % K];
        if (b->p) {
            if (check_pat(b->p, b->n, b->key) >= 0)
                return 1;
            free(b->p);
            b->p = NULL;
        } else {
            b->n = rng_range_r(&r, 1, 20000);
            b->p = malloc(b->n);
            if (!b->p)
                return 2;
            b->key = (uintptr_t)b->p;
            fill_pat(b->p, b->n, b->key);
        }
    }
    for (int i = 0; i < K; i++)
        if (v[i].p) {
            if (check_pat(v[i].p, v[i].n, v[i].key) >= 0)
                return 1;
            free(v[i].p);
        }
    return 0;
}

static int children_ok, children_failed;

static void *forker(void *arg)
{
    (void)arg;
    while (__atomic_load_n(&workers_started, __ATOMIC_SEQ_CST) < NWORKERS)
        usleep(1000);
    for (int c = 0; c < CHILDREN; c++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(60);
            _exit(child_work());
        }
        CHECK(pid > 0, "fork failed: %s", strerror(errno));
        if (pid < 0)
            continue;
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            children_ok++;
        } else {
            children_failed++;
            CHECK(0, "child %d: %s %d", c, WIFEXITED(st) ? "exit status" : "killed by signal",
                  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        }
        usleep(2000);
    }
    return NULL;
}

int main(void)
{
    report_preload();
    for (int i = 0; i < NWORKERS; i++)
        pthread_mutex_init(&queues[i].m, NULL);
    pthread_barrier_init(&done_barrier, NULL, NWORKERS);
    pthread_t t[NWORKERS], f;
    pthread_create(&f, NULL, forker, NULL);
    for (int i = 0; i < NWORKERS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < NWORKERS; i++)
        pthread_join(t[i], NULL);
    pthread_join(f, NULL);
    printf("ops=%ld\nhandoffs=%ld\nchildren_ok=%d\nchildren_failed=%d\n",
           total_ops, total_handoffs, children_ok, children_failed);
    return finish();
}
