/* dist_test_util.c: the shared main of the distributed cmocka tests. */
#include "dist_test_util.h"

#include <stdio.h>

#include "runtime/log.h"

mb_dist *g_test_dist;

int dist_test_run(const char *group, const struct CMUnitTest *tests, size_t n, const mb_dist_options *opt) {
  int rc = mb_dist_init(opt, &g_test_dist);
  if (rc != MB_OK) {
    fprintf(stderr, "%s: distributed init failed: %s\n", group, mb_error_message());
    return 1;
  }
  int failed = _cmocka_run_group_tests(group, tests, n, NULL, NULL);
  rc = mb_dist_finalize(g_test_dist);
  g_test_dist = NULL;
  if (rc != MB_OK) {
    fprintf(stderr, "%s: distributed finalize failed: %s\n", group, mb_error_message());
    return failed + 1;
  }
  return failed;
}
