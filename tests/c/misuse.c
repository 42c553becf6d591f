/*
 * misuse.c - heap misuse that the allocator must detect and abort on.
 *
 * Each case prints "bad=<pointer passed to the bad call>" (%p) to stdout and
 * flushes BEFORE making the bad call (nothing is allocated in between), then
 * makes exactly one bad call.  The driver expects one "myalloc: ..." line on
 * stderr naming the problem and that address, and death by SIGABRT.  If the
 * process survives the bad call it prints "survived" and exits 0.
 *
 *   double_free           free() twice, 64-byte block
 *   double_free_large     free() twice, 1 MiB block
 *   double_free_thread    free() twice, done in a second thread
 *   double_free_later     free(p), free(q), free(p) of 64-byte blocks, then exit:
 *                         found by the check of the thread cache at exit
 *   double_free_reused    the same, then three malloc(64): found before p is
 *                         handed out a second time
 *   interior16/interior8  free(p + 16) / free(p + 8) of a live 64-byte block
 *   interior_large        free(p + 4 MiB) of a live 8 MiB block (inside chunks
 *                         whose metadata is not written yet)
 *   use_after_free_large  realloc(p + 4 MiB) after free(p) of an 8 MiB block
 *   stack                 free() of a stack address
 *   wild                  free((void *)0x12345670)
 *   mmap / mmap_page      free() of a pointer into the program's own private
 *                         mmap (page + 16 / page start, mapped memory below)
 *   realloc_freed         realloc() of an already freed 64-byte block
 *   realloc_freed_large   realloc() of an already freed 1 MiB block
 *   realloc_freed_shrink  realloc() of an already freed 64-byte block to 48 bytes
 *                         (a size it holds: realloc's lock-free path)
 */
#include "testutil.h"
#include <pthread.h>
#include <sys/mman.h>

static void announce(const void *bad)
{
    printf("bad=%p\n", bad);
    fflush(stdout);
}

static void *thread_double_free(void *arg)
{
    (void)arg;
    char *p = malloc(64);
    memset(p, 1, 64);
    announce(p);
    free(p);
    free(p);
    return NULL;
}

int main(int argc, char **argv)
{
    report_preload();
    const char *w = argc > 1 ? argv[1] : "";

    if (!strcmp(w, "double_free") || !strcmp(w, "double_free_large")) {
        size_t n = strcmp(w, "double_free") ? (1 << 20) : 64;
        char *p = malloc(n);
        memset(p, 1, n);
        announce(p);
        free(p);
        free(p);
    } else if (!strcmp(w, "double_free_later") || !strcmp(w, "double_free_reused")) {
        char *p = malloc(64), *q = malloc(64);
        memset(p, 1, 64);
        memset(q, 1, 64);
        announce(p);
        free(p);
        free(q);
        free(p);
        if (!strcmp(w, "double_free_reused")) {
            char *a = malloc(64), *b = malloc(64), *c = malloc(64);
            printf("reused %p %p %p\n", (void *)a, (void *)b, (void *)c);
        }
        fflush(stdout);
        return 0;
    } else if (!strcmp(w, "double_free_thread")) {
        pthread_t t;
        pthread_create(&t, NULL, thread_double_free, NULL);
        pthread_join(t, NULL);
    } else if (!strcmp(w, "interior16") || !strcmp(w, "interior8")) {
        char *p = malloc(64);
        memset(p, 1, 64);
        char *bad = p + (strcmp(w, "interior16") ? 8 : 16);
        announce(bad);
        free(bad);
    } else if (!strcmp(w, "interior_large")) {
        char *p = malloc(8u << 20);
        p[0] = 1;
        char *bad = p + (4u << 20);
        announce(bad);
        free(bad);
    } else if (!strcmp(w, "use_after_free_large")) {
        char *p = malloc(8u << 20);
        char *keep = malloc(64); /* above it: the free leaves a hole, not a trim */
        keep[0] = 1;
        free(p);
        char *bad = p + (4u << 20);
        announce(bad);
        bad = realloc(bad, 100);
    } else if (!strcmp(w, "stack")) {
        char buf[256] __attribute__((aligned(16)));
        memset(buf, 0, sizeof buf);
        char *bad = buf + 64;
        announce(bad);
        free(bad);
        buf[0] = 1; /* keep buf alive */
    } else if (!strcmp(w, "wild")) {
        void *bad = (void *)0x12345670;
        announce(bad);
        free(bad);
    } else if (!strcmp(w, "mmap") || !strcmp(w, "mmap_page")) {
        char *m = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            perror("mmap");
            return 2;
        }
        memset(m, 0, 3 * 4096);
        char *bad = m + 4096 + (strcmp(w, "mmap") ? 0 : 16);
        announce(bad);
        free(bad);
    } else if (!strcmp(w, "realloc_freed") || !strcmp(w, "realloc_freed_large")) {
        size_t n = strcmp(w, "realloc_freed") ? (1 << 20) : 64;
        char *p = malloc(n);
        memset(p, 1, n);
        announce(p);
        free(p);
        p = realloc(p, 2 * n);
        printf("realloc returned %p\n", (void *)p);
    } else if (!strcmp(w, "realloc_freed_shrink")) {
        char *p = malloc(64);
        memset(p, 1, 64);
        announce(p);
        free(p);
        p = realloc(p, 48);
        printf("realloc returned %p\n", (void *)p);
    } else {
        printf("unknown case '%s'\n", w);
        return 2;
    }
    printf("survived\n");
    return 0;
}
