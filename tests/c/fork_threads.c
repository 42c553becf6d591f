/*
 * fork_threads.c - fork() from a multi-threaded process whose other threads
 * are busy in the allocator (so a fork can land while an allocator lock is
 * held).  alarm() in every child turns a deadlock into a failure.
 *
 *   fork_threads exec   100 children each execl("/bin/true") right away;
 *                       every child must exit 0
 *   fork_threads alloc  100 children each keep allocating (malloc, calloc,
 *                       realloc, free of patterned blocks, also freeing
 *                       blocks inherited from the parent) and _exit(0)
 */
#include "testutil.h"
#include <pthread.h>
#include <sys/wait.h>

#define NTHREADS 4
#define NCHILD 100

static volatile int stop;

static void *busy(void *arg)
{
    struct rng r = { 0xFEEDULL * (uint64_t)((intptr_t)arg + 1) };
    void *v[64] = { 0 };
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        int i = (int)(rng_next_r(&r) % 64);
        if (v[i]) {
            free(v[i]);
            v[i] = NULL;
        } else {
            size_t n = rng_range_r(&r, 1, rng_next_r(&r) % 8 ? 2000 : 300000);
            v[i] = malloc(n);
            if (v[i])
                memset(v[i], 1, n < 512 ? n : 512);
        }
    }
    for (int i = 0; i < 64; i++)
        free(v[i]);
    return NULL;
}

/* blocks owned by the main thread before the forks; children free them */
static unsigned char *inherited[32];

static int child_alloc(void)
{
    struct rng r = { (uint64_t)getpid() | 1 };
    for (int i = 0; i < 32; i++) {
        if (check_pat(inherited[i], 100 + (size_t)i, (uintptr_t)inherited[i]) >= 0)
            return 3;
        free(inherited[i]);
    }
    unsigned char *v[32] = { 0 };
    size_t n[32];
    for (int it = 0; it < 2000; it++) {
        int i = (int)(rng_next_r(&r) % 32);
        if (v[i]) {
            if (check_pat(v[i], n[i], (uintptr_t)v[i] ^ n[i]) >= 0)
                return 1;
            if (rng_next_r(&r) & 1) {
                free(v[i]);
                v[i] = NULL;
                continue;
            }
            size_t m = rng_range_r(&r, 1, rng_next_r(&r) % 16 ? 4000 : 40000);
            unsigned char *q = realloc(v[i], m);
            if (!q)
                return 2;
            size_t c = m < n[i] ? m : n[i];
            if (check_pat(q, c, (uintptr_t)v[i] ^ n[i]) >= 0)
                return 1;
            v[i] = q;
            n[i] = m;
        } else {
            n[i] = rng_range_r(&r, 1, rng_next_r(&r) % 16 ? 4000 : 40000);
            v[i] = (rng_next_r(&r) & 1) ? malloc(n[i]) : calloc(1, n[i]);
            if (!v[i])
                return 2;
        }
        fill_pat(v[i], n[i], (uintptr_t)v[i] ^ n[i]);
    }
    for (int i = 0; i < 32; i++)
        free(v[i]);
    return 0;
}

int main(int argc, char **argv)
{
    report_preload();
    const char *w = argc > 1 ? argv[1] : "";
    int do_exec;
    if (!strcmp(w, "exec")) do_exec = 1;
    else if (!strcmp(w, "alloc")) do_exec = 0;
    else {
        printf("unknown case '%s'\n", w);
        return 2;
    }
    for (int i = 0; i < 32; i++) {
        inherited[i] = malloc(100 + (size_t)i);
        fill_pat(inherited[i], 100 + (size_t)i, (uintptr_t)inherited[i]);
    }
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&t[i], NULL, busy, (void *)(intptr_t)i);
    usleep(20000);
    int ok = 0, bad = 0;
    for (int c = 0; c < NCHILD; c++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(30);
            if (do_exec) {
                execl("/bin/true", "true", (char *)NULL);
                _exit(127);
            }
            _exit(child_alloc());
        }
        CHECK(pid > 0, "fork: %s", strerror(errno));
        if (pid < 0)
            continue;
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            ok++;
        } else {
            bad++;
            CHECK(0, "child %d: %s %d", c, WIFEXITED(st) ? "exit status" : "killed by signal",
                  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        }
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 32; i++)
        free(inherited[i]);
    printf("children_ok=%d\nchildren_failed=%d\n", ok, bad);
    return finish();
}
