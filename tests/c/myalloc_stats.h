/*
 * myalloc_stats.h - the tests use the project's public header, so that the header
 * shipped in include/ is the one checked against the library.
 */
#ifndef MYALLOC_STATS_H
#define MYALLOC_STATS_H
#include "../../include/myalloc.h"
#endif
