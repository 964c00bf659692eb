/* dist_test_util.h: the shared main of the distributed cmocka tests: init
 * the world, run the group on every rank, finalize. */
#ifndef MB_TESTS_DIST_UTIL_H
#define MB_TESTS_DIST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "distributed/dist.h"

extern mb_dist *g_test_dist;

/* Runs `tests` on every rank between mb_dist_init(opt) and mb_dist_finalize;
 * returns the number of failed tests on this rank (or 1 on init failure). */
int dist_test_run(const char *group, const struct CMUnitTest *tests, size_t n, const mb_dist_options *opt);

#define DIST_TEST_MAIN(group, tests, opt) dist_test_run(group, tests, sizeof(tests) / sizeof((tests)[0]), opt)

#endif
