/*
 * launch: run one command and report its wall time and resource usage.
 *
 *   launch RESULT_FILE [-p PRELOAD_LIB] -- COMMAND [ARGS...]
 *
 * Why a separate C program: ru_maxrss of a child forked from a large process
 * (the Python benchmark driver) never reads below that parent's RSS at the
 * time of the fork, so small workloads would all look as big as the driver.
 * Forking from this tiny process gives the workload's own peak, and wait4()
 * reports the largest of the workload and every descendant it waited for.
 *
 * The preload library goes into the environment of the child only (between
 * fork and exec), so the launcher itself always runs on glibc's malloc and
 * adds nothing of the allocator under test to the measurement.
 *
 * RESULT_FILE receives key=value lines:
 *   wall_ns, maxrss_kib, utime_us, stime_us, status (exit code, or 128+signal)
 * The launcher exits with the same status.  Standard streams are inherited.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    const char *result = NULL, *preload = NULL;
    int i = 1;
    if (i < argc)
        result = argv[i++];
    if (i + 1 < argc && strcmp(argv[i], "-p") == 0) {
        preload = argv[i + 1];
        i += 2;
    }
    if (!result || i >= argc || strcmp(argv[i], "--") != 0 || i + 1 >= argc) {
        fprintf(stderr, "usage: launch RESULT_FILE [-p PRELOAD_LIB] -- COMMAND [ARGS...]\n");
        return 2;
    }
    char **cmd = argv + i + 1;

    long long start = now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        perror("launch: fork");
        return 125;
    }
    if (pid == 0) {
        if (preload)
            setenv("LD_PRELOAD", preload, 1);
        else
            unsetenv("LD_PRELOAD");
        execvp(cmd[0], cmd);
        fprintf(stderr, "launch: cannot run %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
    }

    int st;
    struct rusage ru;
    while (wait4(pid, &st, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("launch: wait4");
            return 125;
        }
    }
    long long wall = now_ns() - start;
    int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);

    FILE *f = fopen(result, "w");
    if (!f) {
        perror("launch: result file");
        return 125;
    }
    fprintf(f, "wall_ns=%lld\nmaxrss_kib=%ld\nutime_us=%lld\nstime_us=%lld\nstatus=%d\n",
            wall, ru.ru_maxrss,
            (long long)ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec,
            (long long)ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec,
            status);
    if (fclose(f) != 0) {
        perror("launch: result file");
        return 125;
    }
    return status;
}
