/* test_rundir.c: claiming run directories (experiments/rundir.h): a new
 * run, refusing to overwrite another run or a directory that is not a run
 * (messages name the run and the ways out), resuming, --force moving the old
 * run aside without deleting it, and the lock against a second trainer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "experiments/rundir.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

static char root[64], run[128];

static int setup(void **state) {
  (void)state;
  strcpy(root, "/tmp/mb_rundir_XXXXXX");
  if (!mkdtemp(root))
    return -1;
  snprintf(run, sizeof run, "%s/run", root);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", root);
  return system(cmd) == 0 ? 0 : -1;
}

static void expect_msg(const char *frag) {
  if (!strstr(mb_error_message(), frag))
    fail_msg("message lacks '%s': %s", frag, mb_error_message());
}

static void new_run(const char *name) {
  mb_rundir *r;
  int resume;
  assert_int_equal(mb_rundir_claim(run, 0, 0, &r, &resume), MB_OK);
  assert_int_equal(resume, 0);
  assert_int_equal(mb_rundir_write_info(r, name, "abc", "bert", "completed", NULL), MB_OK);
  mb_rundir_release(r);
}

static void test_new_then_refuse_then_resume(void **state) {
  (void)state;
  new_run("first");
  mb_rundir *r;
  int resume;
  assert_int_equal(mb_rundir_claim(run, 0, 0, &r, &resume), MB_EINVAL);
  expect_msg("already holds run 'first'");
  expect_msg("completed");
  expect_msg("--resume");
  expect_msg("--force");
  expect_msg("--run-dir");
  assert_int_equal(mb_rundir_claim(run, 1, 0, &r, &resume), MB_OK);
  assert_int_equal(resume, 1);
  mb_rundir_release(r);
}

static void test_force_moves_aside(void **state) {
  (void)state;
  new_run("first");
  char keep[256];
  snprintf(keep, sizeof keep, "%s/precious.txt", run);
  assert_int_equal(mb_write_file_atomic(keep, "x", 1), MB_OK);
  mb_rundir *r;
  int resume;
  assert_int_equal(mb_rundir_claim(run, 0, 1, &r, &resume), MB_OK);
  assert_false(mb_file_exists(keep));
  mb_rundir_release(r);
  /* the old run is kept, whole, next to the new one */
  DIR *d = opendir(root);
  struct dirent *e;
  int found = 0;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, "run.replaced-", 13) == 0) {
      char p[512];
      snprintf(p, sizeof p, "%s/%s/precious.txt", root, e->d_name);
      found = mb_file_exists(p);
    }
  }
  closedir(d);
  assert_true(found);
}

static void test_not_a_run(void **state) {
  (void)state;
  assert_int_equal(mb_mkdir_p(run), MB_OK);
  char f[256];
  snprintf(f, sizeof f, "%s/notes.txt", run);
  assert_int_equal(mb_write_file_atomic(f, "mine", 4), MB_OK);
  mb_rundir *r;
  int resume;
  assert_int_equal(mb_rundir_claim(run, 0, 0, &r, &resume), MB_EINVAL);
  expect_msg("is not empty and holds no mambert run");
  assert_int_equal(mb_rundir_claim(run, 1, 0, &r, &resume), MB_EINVAL);
  expect_msg("does not hold a mambert run");
  assert_true(mb_file_exists(f));
  /* an empty existing directory is fine */
  char empty[256];
  snprintf(empty, sizeof empty, "%s/empty", root);
  assert_int_equal(mb_mkdir_p(empty), MB_OK);
  assert_int_equal(mb_rundir_claim(empty, 0, 0, &r, &resume), MB_OK);
  mb_rundir_release(r);
  /* resuming a directory that does not exist, and a file in the way */
  snprintf(empty, sizeof empty, "%s/nothing", root);
  assert_int_equal(mb_rundir_claim(empty, 1, 0, &r, &resume), MB_ENOTFOUND);
  expect_msg("does not exist");
  assert_int_equal(mb_rundir_claim(f, 0, 0, &r, &resume), MB_EINVAL);
  expect_msg("is not a directory");
}

static void test_lock(void **state) {
  (void)state;
  mb_rundir *a, *b;
  int resume;
  assert_int_equal(mb_rundir_claim(run, 0, 0, &a, &resume), MB_OK);
  assert_int_equal(mb_rundir_write_info(a, "live", "abc", "mamba", "running", NULL), MB_OK);
  assert_int_equal(mb_rundir_claim(run, 1, 0, &b, &resume), MB_EINVAL);
  char pid[32];
  snprintf(pid, sizeof pid, "pid %d", (int)getpid());
  expect_msg("is in use by another mambert process");
  expect_msg(pid);
  assert_int_equal(mb_rundir_claim(run, 0, 1, &b, &resume), MB_EINVAL); /* not even with --force */
  mb_rundir_release(a);
  assert_int_equal(mb_rundir_claim(run, 1, 0, &b, &resume), MB_OK);
  mb_rundir_release(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_new_then_refuse_then_resume, setup, teardown),
      cmocka_unit_test_setup_teardown(test_force_moves_aside, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_a_run, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
