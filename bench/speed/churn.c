/*
 * churn: allocation patterns for the speed benchmark (bench/speed.py).
 *
 *   churn PATTERN [--pairs N] [--live N] [--check]
 *
 * PATTERN is one of
 *   small      one thread: LIVE slots, PAIRS times free a random slot and
 *              malloc a new block of 8..256 bytes (uniform) into it
 *   mixed      the same with sizes log-uniform from 8 bytes to 64 KiB
 *              (exp of a uniform value in [ln 8, ln 65536])
 *   threads2   two threads, each the small pattern on its own LIVE slots with
 *              PAIRS/2 pairs: the same total work as `small` on two threads
 *   prodcons   one thread mallocs PAIRS blocks of 8..256 bytes and hands them
 *              over a single-producer/single-consumer ring to a second thread,
 *              which reads and frees them: every free is a remote free
 *   scale-N    N threads, each the small pattern with LIVE slots and PAIRS
 *              pairs of its own (work grows with N)
 *
 * The random numbers come from xorshift64* with fixed seeds (one per thread),
 * so every allocator sees exactly the same sequence of requests.  Each block
 * gets its first and last byte written when allocated and read back before it
 * is freed; the bytes read go into a checksum printed at the end, one line,
 * identical under every correct allocator.  With --check every block is
 * filled with a pattern derived from its allocation index and the whole block
 * is verified before it is freed (a correctness mode for the tests; it is far
 * slower, never timed).  Exit status 0, 1 if a check fails, 2 usage error.
 *
 * The counts the benchmark uses are in bench/speed.py; the defaults here are
 * the full-run values of `small`.
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_mode;

/* ---------------------------------------------------------------- PRNG --- */

static inline uint64_t next_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t seed_for(unsigned thread)
{
    return 0x9E3779B97F4A7C15ULL * (thread + 1) ^ 0xD1B54A32D192ED03ULL;
}

/* Sizes: uniform 8..256, or log-uniform 8..65536. */
static inline size_t small_size(uint64_t *s)
{
    return 8 + next_rand(s) % 249;
}

static inline size_t mixed_size(uint64_t *s)
{
    static const double lo = 2.0794415416798357;   /* ln 8 */
    static const double hi = 11.090354888959125;   /* ln 65536 */
    double u = (double)(next_rand(s) >> 11) * 0x1.0p-53;
    size_t n = (size_t)exp(lo + u * (hi - lo));
    return n < 8 ? 8 : n > 65536 ? 65536 : n;
}

/* ------------------------------------------------------------- blocks --- */

static inline unsigned char tag_of(uint64_t index)
{
    return (unsigned char)((index * 0x9E3779B97F4A7C15ULL) >> 56);
}

static void fail_check(unsigned char tag, size_t size, size_t at)
{
    fprintf(stderr, "churn: a block of %zu bytes (tag %u) is corrupted at byte %zu\n",
            size, tag, at);
    exit(1);
}

/* Block `index` holds byte (tag + i * 7) at offset i; normally only its
 * first and last byte are written, with --check all of them. */
static inline unsigned char pattern_byte(unsigned char tag, size_t i)
{
    return (unsigned char)(tag + i * 7);
}

static inline unsigned char *make_block(unsigned char tag, size_t size)
{
    unsigned char *p = malloc(size);
    if (!p) {
        fprintf(stderr, "churn: malloc(%zu) failed\n", size);
        exit(1);
    }
    if (check_mode) {
        for (size_t i = 0; i < size; i++)
            p[i] = pattern_byte(tag, i);
    } else {
        p[0] = tag;
        p[size - 1] = pattern_byte(tag, size - 1);
    }
    return p;
}

/* Read the block back (verify all of it with --check), free it and return
 * what goes into the checksum: the same value in both modes. */
static inline uint64_t drop_block(unsigned char *p, unsigned char tag, size_t size)
{
    if (check_mode)
        for (size_t i = 0; i < size; i++)
            if (p[i] != pattern_byte(tag, i))
                fail_check(tag, size, i);
    uint64_t v = p[0] + ((uint64_t)p[size - 1] << 8);
    free(p);
    return v;
}

static inline uint64_t mix(uint64_t sum, uint64_t v)
{
    return (sum ^ v) * 0x100000001B3ULL;
}

/* ------------------------------------------------- the churn pattern --- */

struct slot {            /* 16 bytes: pointer, size and tag on one cache line */
    unsigned char *p;
    uint32_t size;
    uint32_t tag;
};

struct churn_job {
    unsigned thread;
    long live;
    long pairs;
    int mixed;
    uint64_t sum;
};

static void *churn(void *arg)
{
    struct churn_job *job = arg;
    uint64_t rng = seed_for(job->thread);
    uint64_t count = 0, sum = 0;
    struct slot *slots = calloc((size_t)job->live, sizeof *slots);
    if (!slots) {
        fprintf(stderr, "churn: cannot allocate %ld slots\n", job->live);
        exit(1);
    }
    for (long i = 0; i < job->live; i++) {
        size_t n = job->mixed ? mixed_size(&rng) : small_size(&rng);
        slots[i].tag = tag_of(count++);
        slots[i].p = make_block((unsigned char)slots[i].tag, n);
        slots[i].size = (uint32_t)n;
    }
    for (long i = 0; i < job->pairs; i++) {
        struct slot *s = &slots[next_rand(&rng) % (uint64_t)job->live];
        sum = mix(sum, drop_block(s->p, (unsigned char)s->tag, s->size));
        size_t n = job->mixed ? mixed_size(&rng) : small_size(&rng);
        s->tag = tag_of(count++);
        s->p = make_block((unsigned char)s->tag, n);
        s->size = (uint32_t)n;
    }
    for (long i = 0; i < job->live; i++)
        sum = mix(sum, drop_block(slots[i].p, (unsigned char)slots[i].tag, slots[i].size));
    free(slots);
    job->sum = sum;
    return NULL;
}

/* Run `threads` churn jobs at once (the calling thread runs the first);
 * returns the per-thread checksums combined in thread order. */
static uint64_t run_churn(unsigned threads, long live, long pairs, int mixed)
{
    struct churn_job *jobs = calloc(threads, sizeof *jobs);
    pthread_t *tids = calloc(threads, sizeof *tids);
    if (!jobs || !tids) {
        fprintf(stderr, "churn: out of memory\n");
        exit(1);
    }
    for (unsigned t = 0; t < threads; t++)
        jobs[t] = (struct churn_job){.thread = t, .live = live, .pairs = pairs, .mixed = mixed};
    for (unsigned t = 1; t < threads; t++)
        if (pthread_create(&tids[t], NULL, churn, &jobs[t]) != 0) {
            fprintf(stderr, "churn: pthread_create failed\n");
            exit(1);
        }
    churn(&jobs[0]);
    uint64_t sum = 0;
    for (unsigned t = 0; t < threads; t++) {
        if (t > 0)
            pthread_join(tids[t], NULL);
        sum = mix(sum, jobs[t].sum);
    }
    free(jobs);
    free(tids);
    return sum;
}

/* ------------------------------------------- producer / consumer ring --- */

#define RING_SLOTS 4096          /* a power of two */
#define RING_BATCH 64            /* publish the index every RING_BATCH items */

struct ring {
    _Alignas(64) _Atomic uint64_t head;    /* written by the producer */
    _Alignas(64) _Atomic uint64_t tail;    /* written by the consumer */
    _Alignas(64) unsigned char *items[RING_SLOTS];
    long total;
    uint64_t sum;
};

static inline void pause_briefly(unsigned *spins)
{
    if (++*spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else {
        sched_yield();    /* the other side may not be running (2 cores, busy machine) */
        *spins = 0;
    }
}

static void *consumer(void *arg)
{
    struct ring *r = arg;
    uint64_t rng = seed_for(0);   /* replays the producer's sizes */
    uint64_t sum = 0, tail = 0, head = 0;
    unsigned spins = 0;
    while (tail < (uint64_t)r->total) {
        if (tail == head) {
            head = atomic_load_explicit(&r->head, memory_order_acquire);
            if (tail == head) {
                pause_briefly(&spins);
                continue;
            }
        }
        size_t n = small_size(&rng);
        sum = mix(sum, drop_block(r->items[tail % RING_SLOTS], tag_of(tail), n));
        tail++;
        if (tail % RING_BATCH == 0 || tail == head)
            atomic_store_explicit(&r->tail, tail, memory_order_release);
    }
    atomic_store_explicit(&r->tail, tail, memory_order_release);
    r->sum = sum;
    return NULL;
}

static struct ring ring;   /* static: only the blocks go through the allocator */

static uint64_t run_prodcons(long total)
{
    struct ring *r = &ring;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    r->total = total;
    r->sum = 0;
    pthread_t tid;
    if (pthread_create(&tid, NULL, consumer, r) != 0) {
        fprintf(stderr, "churn: pthread_create failed\n");
        exit(1);
    }
    uint64_t rng = seed_for(0);
    uint64_t head = 0, tail = 0;
    unsigned spins = 0;
    while (head < (uint64_t)total) {
        if (head - tail == RING_SLOTS) {
            tail = atomic_load_explicit(&r->tail, memory_order_acquire);
            if (head - tail == RING_SLOTS) {
                atomic_store_explicit(&r->head, head, memory_order_release);
                pause_briefly(&spins);
                continue;
            }
        }
        r->items[head % RING_SLOTS] = make_block(tag_of(head), small_size(&rng));
        head++;
        if (head % RING_BATCH == 0)
            atomic_store_explicit(&r->head, head, memory_order_release);
    }
    atomic_store_explicit(&r->head, head, memory_order_release);
    pthread_join(tid, NULL);
    return r->sum;
}

/* ---------------------------------------------------------------- main --- */

static long parse_count(const char *text, const char *what)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || v < 1) {
        fprintf(stderr, "churn: %s must be a positive integer, not '%s'\n", what, text);
        exit(2);
    }
    return v;
}

static int usage(void)
{
    fprintf(stderr, "usage: churn small|mixed|threads2|prodcons|scale-N "
                    "[--pairs N] [--live N] [--check]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *pattern = argv[1];
    long pairs = 4000000, live = 100000;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--check") == 0)
            check_mode = 1;
        else if (strcmp(argv[i], "--pairs") == 0 && i + 1 < argc)
            pairs = parse_count(argv[++i], "--pairs");
        else if (strcmp(argv[i], "--live") == 0 && i + 1 < argc)
            live = parse_count(argv[++i], "--live");
        else
            return usage();
    }

    unsigned threads = 1;
    uint64_t sum;
    if (strcmp(pattern, "small") == 0) {
        sum = run_churn(1, live, pairs, 0);
    } else if (strcmp(pattern, "mixed") == 0) {
        sum = run_churn(1, live, pairs, 1);
    } else if (strcmp(pattern, "threads2") == 0) {
        threads = 2;
        sum = run_churn(2, live, pairs / 2, 0);
    } else if (strcmp(pattern, "prodcons") == 0) {
        threads = 2;
        live = 0;
        sum = run_prodcons(pairs);
    } else if (strncmp(pattern, "scale-", 6) == 0) {
        threads = (unsigned)parse_count(pattern + 6, "the thread count of scale-N");
        if (threads > 256)
            return usage();
        sum = run_churn(threads, live, pairs, 0);
    } else {
        return usage();
    }
    printf("churn %s threads=%u pairs=%ld live=%ld checksum=%016llx\n",
           pattern, threads, pairs, live, (unsigned long long)sum);
    return 0;
}
