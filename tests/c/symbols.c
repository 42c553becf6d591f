/*
 * symbols.c - which loaded object provides each symbol named on the command
 * line?  Prints "sym NAME=PATH" (PATH from dladdr of dlsym(RTLD_DEFAULT,
 * NAME)) or "sym NAME=MISSING".  The driver checks that under LD_PRELOAD every
 * allocation entry point resolves to libmyalloc.so, i.e. that no call can
 * reach glibc's malloc with a pointer from myalloc or vice versa.
 */
#include "testutil.h"

int main(int argc, char **argv)
{
    report_preload();
    for (int i = 1; i < argc; i++) {
        void *s = dlsym(RTLD_DEFAULT, argv[i]);
        Dl_info info;
        if (s && dladdr(s, &info) && info.dli_fname)
            printf("sym %s=%s\n", argv[i], info.dli_fname);
        else
            printf("sym %s=MISSING\n", argv[i]);
    }
    return 0;
}
