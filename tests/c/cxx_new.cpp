/*
 * cxx_new.cpp - C++ allocation through the preloaded operator new/delete.
 *
 *   cxx_new objects     new/delete of objects (incl. polymorphic) in a churn
 *   cxx_new arrays      new[]/delete[] of non-trivial types (array cookies):
 *                       every constructed element destroyed exactly once
 *   cxx_new containers  std::vector / std::string / std::map /
 *                       std::unordered_map churn with a checksum
 *   cxx_new aligned     struct alignas(64/256/4096) S via new, new[],
 *                       std::vector<S>, and operator new(n, align_val_t) up
 *                       to 2 MiB: addresses aligned, memory writable
 *   cxx_new explicit    every operator new/delete form called explicitly
 *                       (plain, nothrow, sized, aligned, aligned+sized,
 *                       aligned+nothrow, and the array forms)
 *   cxx_new nothrow_huge  nothrow new of a huge size returns nullptr
 *   cxx_new throw_huge    plain new of a huge size throws std::bad_alloc:
 *                         prints "caught <form>" for each form
 */
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

extern "C" {
#include "testutil.h"
}

static volatile size_t huge_size = SIZE_MAX / 2;

struct Base {
    virtual ~Base() {}
    virtual uint64_t sum() const = 0;
};

struct Small : Base {
    uint64_t a, b;
    Small(uint64_t x) : a(x), b(~x) {}
    uint64_t sum() const override { return b == ~a ? a : ~a; }
};

struct Big : Base {
    unsigned char data[3000];
    uint64_t tag;
    Big(uint64_t x) : tag(x) { memset(data, (int)(x & 0xff), sizeof data); }
    uint64_t sum() const override
    {
        for (unsigned char c : data)
            if (c != (unsigned char)(tag & 0xff))
                return ~tag;
        return tag;
    }
};

static void test_objects()
{
    std::vector<Base *> v(2000, nullptr);
    for (int r = 0; r < 200000; r++) {
        size_t i = rng_range(0, v.size() - 1);
        if (v[i]) {
            uint64_t expect = (uint64_t)i * 2654435761u;
            CHECK(v[i]->sum() == expect, "object %zu corrupted", i);
            delete v[i];
            v[i] = nullptr;
        } else {
            uint64_t x = (uint64_t)i * 2654435761u;
            if (rng_next() & 1)
                v[i] = new Small(x);
            else
                v[i] = new Big(x);
        }
    }
    for (auto *p : v)
        delete p;
}

static long live_elems;
struct Elem {
    uint64_t v;
    Elem() : v(0x1122334455667788ULL) { live_elems++; }
    ~Elem()
    {
        if (v != 0x1122334455667788ULL)
            CHECK(0, "element corrupted: %llx", (unsigned long long)v);
        live_elems--;
    }
};

static void test_arrays()
{
    for (int r = 0; r < 20000; r++) {
        size_t n = rng_range(0, 300);
        Elem *a = new Elem[n];
        CHECK(live_elems == (long)n, "constructed %ld of %zu", live_elems, n);
        char *c = new char[n + 1];
        memset(c, 'x', n + 1);
        delete[] a;
        delete[] c;
        CHECK(live_elems == 0, "%ld elements not destroyed", live_elems);
    }
    Elem *big = new Elem[200000];
    delete[] big;
    CHECK(live_elems == 0, "big array not fully destroyed");
}

static void test_containers()
{
    uint64_t sum = 0;
    for (int round = 0; round < 20; round++) {
        std::map<std::string, std::vector<int>> m;
        std::unordered_map<uint64_t, std::string> u;
        for (int i = 0; i < 5000; i++) {
            std::string key = "key-" + std::to_string(rng_range(0, 3000)) +
                              std::string(rng_range(0, 100), 'k');
            auto &vec = m[key];
            for (int k = 0, n = (int)rng_range(0, 50); k < n; k++)
                vec.push_back(k * i);
            u[rng_next() % 4000] = key + key;
            if (i % 7 == 0 && !m.empty())
                m.erase(m.begin());
            if (i % 5 == 0)
                u.erase(rng_next() % 4000);
        }
        for (auto &kv : m) {
            sum += kv.first.size();
            for (int x : kv.second)
                sum += (uint64_t)x;
        }
        for (auto &kv : u)
            sum ^= kv.first * kv.second.size();
        std::vector<std::string> strs;
        for (int i = 0; i < 20000; i++)
            strs.emplace_back(rng_range(0, 200), (char)('a' + i % 26));
        strs.erase(strs.begin(), strs.begin() + 10000);
        strs.shrink_to_fit();
        for (auto &s : strs)
            sum += s.size();
    }
    printf("checksum=%llu\n", (unsigned long long)sum);
}

struct alignas(64) A64 { unsigned char b[100]; };
struct alignas(256) A256 { unsigned char b[300]; };
struct alignas(4096) A4096 { unsigned char b[5000]; };

template <class T> static void aligned_case(const char *name)
{
    std::vector<T *> keep;
    for (int i = 0; i < 50; i++) {
        T *p = new T;
        CHECK((uintptr_t)p % alignof(T) == 0, "new %s = %p misaligned", name, (void *)p);
        memset(p->b, i, sizeof p->b);
        keep.push_back(p);
    }
    T *arr = new T[7];
    CHECK((uintptr_t)arr % alignof(T) == 0, "new %s[7] = %p misaligned", name, (void *)arr);
    memset(arr, 1, sizeof(T) * 7);
    for (int i = 0; i < 50; i++) {
        for (unsigned char c : keep[i]->b)
            if (c != (unsigned char)i) {
                CHECK(0, "%s object %d corrupted", name, i);
                break;
            }
        delete keep[i];
    }
    delete[] arr;
    std::vector<T> vec(33);
    CHECK((uintptr_t)vec.data() % alignof(T) == 0, "vector<%s> data misaligned", name);
    vec.resize(100);
    CHECK((uintptr_t)vec.data() % alignof(T) == 0, "vector<%s> data misaligned", name);
}

static void test_aligned()
{
    aligned_case<A64>("A64");
    aligned_case<A256>("A256");
    aligned_case<A4096>("A4096");
    for (size_t al = 32; al <= ((size_t)2 << 20); al *= 2) {
        void *p = ::operator new(al + 10, std::align_val_t(al));
        CHECK((uintptr_t)p % al == 0, "operator new(%zu, align %zu) = %p", al + 10, al, p);
        memset(p, 3, al + 10);
        ::operator delete(p, std::align_val_t(al));
    }
}

static void use(void *p, size_t n, size_t align)
{
    CHECK(p != nullptr, "operator returned nullptr for %zu bytes", n);
    if (!p)
        return;
    CHECK((uintptr_t)p % align == 0, "%p not %zu-aligned", p, align);
    memset(p, 0x5c, n);
}

static void test_explicit()
{
    for (int r = 0; r < 200; r++) {
        size_t n = rng_range(1, 5000);
        std::align_val_t al{(size_t)1 << rng_range(5, 13)};
        size_t a = (size_t)al;
        void *p;

        p = ::operator new(n); use(p, n, 8); ::operator delete(p);
        p = ::operator new(n); use(p, n, 8); ::operator delete(p, n);
        p = ::operator new[](n); use(p, n, 8); ::operator delete[](p);
        p = ::operator new[](n); use(p, n, 8); ::operator delete[](p, n);
        p = ::operator new(n, std::nothrow); use(p, n, 8); ::operator delete(p, std::nothrow);
        p = ::operator new[](n, std::nothrow); use(p, n, 8); ::operator delete[](p, std::nothrow);
        p = ::operator new(n, al); use(p, n, a); ::operator delete(p, al);
        p = ::operator new(n, al); use(p, n, a); ::operator delete(p, n, al);
        p = ::operator new[](n, al); use(p, n, a); ::operator delete[](p, al);
        p = ::operator new[](n, al); use(p, n, a); ::operator delete[](p, n, al);
        p = ::operator new(n, al, std::nothrow); use(p, n, a); ::operator delete(p, al, std::nothrow);
        p = ::operator new[](n, al, std::nothrow); use(p, n, a); ::operator delete[](p, al, std::nothrow);
        /* mixing with malloc-family free is not allowed by C++, but the
           plain forms must at least agree with each other */
        ::operator delete(nullptr);
        ::operator delete[](nullptr);
    }
}

static void test_nothrow_huge()
{
    size_t n = huge_size;
    void *p1 = ::operator new(n, std::nothrow);
    void *p2 = ::operator new[](n, std::nothrow);
    void *p3 = ::operator new(n, std::align_val_t(64), std::nothrow);
    void *p4 = ::operator new[](n, std::align_val_t(4096), std::nothrow);
    char *p5 = new (std::nothrow) char[n];
    CHECK(p1 == nullptr, "nothrow new(huge) = %p", p1);
    CHECK(p2 == nullptr, "nothrow new[](huge) = %p", p2);
    CHECK(p3 == nullptr, "nothrow aligned new(huge) = %p", p3);
    CHECK(p4 == nullptr, "nothrow aligned new[](huge) = %p", p4);
    CHECK(p5 == nullptr, "new (nothrow) char[huge] = %p", (void *)p5);
    printf("nothrow_null=%d\n", !p1 && !p2 && !p3 && !p4 && !p5);
}

template <class F> static void expect_throw(const char *form, F f)
{
    try {
        void *p = f();
        CHECK(0, "%s of a huge size returned %p instead of throwing", form, p);
    } catch (const std::bad_alloc &) {
        printf("caught %s\n", form);
    }
}

static void test_throw_huge()
{
    size_t n = huge_size;
    expect_throw("new", [n] { return ::operator new(n); });
    expect_throw("new[]", [n] { return ::operator new[](n); });
    expect_throw("aligned_new", [n] { return ::operator new(n, std::align_val_t(256)); });
    expect_throw("aligned_new[]", [n] { return ::operator new[](n, std::align_val_t(256)); });
    expect_throw("new_char_array", [n] { return (void *)new char[n]; });
    expect_throw("vector_reserve", [] {
        std::vector<char> v;
        v.reserve(PTRDIFF_MAX - 1);
        return (void *)v.data();
    });
    /* and the allocator still works afterwards */
    std::string s(100000, 'z');
    CHECK(s.size() == 100000, "allocation after bad_alloc");
}

int main(int argc, char **argv)
{
    report_preload();
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "objects")) test_objects();
    else if (!strcmp(w, "arrays")) test_arrays();
    else if (!strcmp(w, "containers")) test_containers();
    else if (!strcmp(w, "aligned")) test_aligned();
    else if (!strcmp(w, "explicit")) test_explicit();
    else if (!strcmp(w, "nothrow_huge")) test_nothrow_huge();
    else if (!strcmp(w, "throw_huge")) test_throw_huge();
    else {
        printf("unknown case '%s'\n", w);
        return 2;
    }
    return finish();
}
