/*
 * libc_aliases.c - the glibc-internal allocation names work and belong to
 * the same allocator as malloc/free: every block obtained through one name is
 * released through another (__libc_malloc -> free, malloc -> __libc_free, ...).
 *
 * glibc itself exports the __libc_* names but not __posix_memalign, so that
 * one is a weak reference: NULL (reported as a failure) unless the preloaded
 * library provides it.
 */
#include "testutil.h"
#include <malloc.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
extern int __posix_memalign(void **, size_t, size_t) __attribute__((weak));

int main(void)
{
    report_preload();
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    unsigned char *a = __libc_malloc(100);
    CHECK(a != NULL, "__libc_malloc");
    fill_pat(a, 100, 1);
    CHECK(malloc_usable_size(a) >= 100, "usable size of __libc_malloc block");

    unsigned char *b = malloc(200);
    fill_pat(b, 200, 2);

    unsigned char *c = __libc_calloc(50, 20);
    CHECK(c != NULL, "__libc_calloc");
    for (int i = 0; c && i < 1000; i++)
        CHECK(c[i] == 0, "__libc_calloc byte %d not zero", i);

    a = __libc_realloc(a, 5000);
    CHECK(a != NULL, "__libc_realloc");
    CHECK(check_pat(a, 100, 1) < 0, "__libc_realloc lost contents");
    b = realloc(b, 3000);
    CHECK(check_pat(b, 200, 2) < 0, "realloc lost contents");

    unsigned char *m = __libc_memalign(4096, 300);
    CHECK(m != NULL && (uintptr_t)m % 4096 == 0, "__libc_memalign(4096) = %p", (void *)m);
    unsigned char *v = __libc_valloc(1000);
    CHECK(v != NULL && (uintptr_t)v % page == 0, "__libc_valloc = %p", (void *)v);
    unsigned char *pv = __libc_pvalloc(1000);
    CHECK(pv != NULL && (uintptr_t)pv % page == 0, "__libc_pvalloc = %p", (void *)pv);
    if (pv) {
        CHECK(malloc_usable_size(pv) >= page, "__libc_pvalloc usable %zu", malloc_usable_size(pv));
        memset(pv, 1, page);
    }

    CHECK(__posix_memalign != NULL, "__posix_memalign is not exported");
    void *pm = NULL;
    if (__posix_memalign) {
        int rc = __posix_memalign(&pm, 256, 1000);
        CHECK(rc == 0 && pm && (uintptr_t)pm % 256 == 0, "__posix_memalign: rc %d p %p", rc, pm);
        void *sentinel = (void *)0x1234, *x = sentinel;
        rc = __posix_memalign(&x, 24, 100);
        CHECK(rc == EINVAL && x == sentinel, "__posix_memalign(24): rc %d", rc);
    }

    /* cross-release */
    free(a);          /* from __libc_malloc/__libc_realloc */
    __libc_free(b);   /* from malloc/realloc */
    free(c);
    __libc_free(m);
    free(v);
    __libc_free(pv);
    if (pm)
        __libc_free(pm);
    __libc_free(NULL);

    /* and a few rounds more, to catch a block going to the wrong free list */
    for (int i = 0; i < 10000; i++) {
        void *x = (i & 1) ? __libc_malloc(i % 500) : malloc(i % 500);
        memset(x, 7, i % 500);
        if (i & 2) __libc_free(x); else free(x);
    }
    return finish();
}
