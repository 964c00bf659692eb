/* test_checkpoint.c: training checkpoints (experiments/checkpoint.h):
 * save, verify and load back weights, optimizer state and run state;
 * rotation keeps the last K; and the failures: a full disk while writing,
 * a failed rename, a crash in the middle of a checkpoint (a child process
 * killed by the fileio fault hook) and a damaged newest checkpoint all
 * leave the previous checkpoint intact, found and loadable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "autograd/autograd.h"
#include "experiments/checkpoint.h"
#include "kernels/cpu/cpu.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/safetensors.h"

static char root[64], ckroot[128];
static mb_params *P;
static mb_optimizer *O;

static int setup(void **state) {
  (void)state;
  strcpy(root, "/tmp/mb_ckpt_XXXXXX");
  if (!mkdtemp(root))
    return -1;
  snprintf(ckroot, sizeof ckroot, "%s/checkpoints", root);
  int idx;
  if (mb_params_new(MB_F32, &P) || mb_params_add(P, "enc.weight", mb_shape2(3, 4), &idx) ||
      mb_params_add(P, "enc.bias", mb_shape1(5), &idx) || mb_params_materialize(P, mb_cpu_backend()))
    return -1;
  float *w = mb_params_data(P), *g = mb_params_grad(P);
  for (int64_t i = 0; i < mb_params_total(P); i++) {
    w[i] = 0.01f * (float)i;
    g[i] = 0.1f - 0.003f * (float)i;
  }
  mb_adamw_cfg c = mb_adamw_defaults();
  if (mb_optimizer_adamw(P, &c, &O) || mb_optimizer_step(O, -1, 1.0) || mb_optimizer_step(O, -1, 1.0))
    return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  mb_fileio_set_fault_hook(NULL);
  mb_ckpt_set_fault_hook(NULL);
  mb_optimizer_free(O);
  mb_params_free(P);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", root);
  return system(cmd) == 0 ? 0 : -1;
}

static int save(int64_t step, int keep) {
  mb_ckpt_writer *w;
  MB_TRY(mb_ckpt_begin(ckroot, step, &w));
  mb_ckpt_state s;
  memset(&s, 0, sizeof s);
  s.step = step;
  s.micro_step = 2 * step;
  s.epoch = 1;
  for (int i = 0; i < MB_LOADER_STATE_BYTES; i++)
    s.loader[i] = (uint8_t)(i * 7 + step);
  s.seed = 0xFFFFFFFFFFFFFFF1ull; /* past 2^53: must survive JSON */
  s.world_size = 1;
  if (step >= 30) { /* the loss scaler's state, exactly (the scale is any double) */
    s.has_loss_scaler = 1;
    mb_loss_scaler_init(&s.loss_scaler, 0);
    s.loss_scaler.scale = 1.0 / 3.0;
    s.loss_scaler.growth_interval = 7;
    s.loss_scaler.good_steps = 5;
    s.loss_scaler.bad_steps = 2;
    s.loss_scaler.steps = step;
    s.loss_scaler.skipped = 4;
    s.window_skipped = 1;
  }
  snprintf(s.arch, sizeof s.arch, "bert");
  snprintf(s.tokenizer_sha256, sizeof s.tokenizer_sha256, "%064d", 7);
  int rc = mb_ckpt_write_weights(w, P, "bert");
  if (rc == MB_OK)
    rc = mb_ckpt_write_optimizer(w, P, O, "adamw");
  if (rc == MB_OK)
    rc = mb_ckpt_write_state(w, &s);
  if (rc == MB_OK)
    rc = mb_ckpt_write_text(w, "config.yaml", "a: 1\n", 5);
  if (rc != MB_OK) {
    mb_ckpt_abort(w);
    return rc;
  }
  return mb_ckpt_commit(w, keep, NULL, 0);
}

static int entries_like(const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  if (!d)
    return 0;
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)))
    n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
  closedir(d);
  return n;
}

static void assert_latest(int64_t step) {
  char dir[512], want[512];
  assert_int_equal(mb_ckpt_find_latest(ckroot, dir, sizeof dir), MB_OK);
  snprintf(want, sizeof want, "%s/step-%08lld", ckroot, (long long)step);
  assert_string_equal(dir, want);
  assert_int_equal(mb_ckpt_verify(dir), MB_OK);
  /* loadable: state, optimizer and weights equal what was saved */
  mb_ckpt_state s;
  assert_int_equal(mb_ckpt_read_state(dir, &s), MB_OK);
  assert_int_equal(s.step, step);
  assert_int_equal(s.micro_step, 2 * step);
  assert_true(s.seed == 0xFFFFFFFFFFFFFFF1ull);
  for (int i = 0; i < MB_LOADER_STATE_BYTES; i++)
    assert_int_equal(s.loader[i], (uint8_t)(i * 7 + step));
  assert_int_equal(s.has_loss_scaler, step >= 30);
  assert_int_equal(s.counts_all_ranks, 1);
  if (step >= 30) {
    assert_true(s.loss_scaler.scale == 1.0 / 3.0);
    assert_true(s.loss_scaler.growth_factor == 2.0 && s.loss_scaler.backoff_factor == 0.5);
    assert_int_equal(s.loss_scaler.growth_interval, 7);
    assert_int_equal(s.loss_scaler.good_steps, 5);
    assert_int_equal(s.loss_scaler.bad_steps, 2);
    assert_int_equal(s.loss_scaler.steps, step);
    assert_int_equal(s.loss_scaler.skipped, 4);
    assert_int_equal(s.window_skipped, 1);
  }
  mb_adamw_cfg c = mb_adamw_defaults();
  mb_optimizer *o2;
  assert_int_equal(mb_optimizer_adamw(P, &c, &o2), MB_OK);
  assert_int_equal(mb_ckpt_read_optimizer(dir, P, o2, "adamw"), MB_OK);
  assert_int_equal(mb_optimizer_steps(o2), 2);
  size_t bytes = (size_t)mb_params_total(P) * sizeof(float);
  /* padding between parameters is not saved: compare parameter by parameter */
  for (int k = 0; k < 2; k++) {
    const float *a = mb_optimizer_state(O, k), *b = mb_optimizer_state(o2, k);
    for (int i = 0; i < mb_params_count(P); i++) {
      const mb_param_info *pi = mb_params_info(P, i);
      assert_memory_equal(a + pi->offset, b + pi->offset, (size_t)pi->numel * sizeof(float));
    }
  }
  (void)bytes;
  assert_int_equal(mb_ckpt_read_optimizer(dir, P, o2, "sgd"), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "optimizer state of adamw, but the config says optim.name: sgd"));
  mb_optimizer_free(o2);
  char path[600];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  mb_safetensors *st;
  assert_int_equal(mb_safetensors_open(path, &st), MB_OK);
  const mb_st_entry *e = mb_safetensors_find(st, "enc.bias");
  assert_non_null(e);
  assert_memory_equal(e->data, (float *)mb_params_data(P) + mb_params_info(P, 1)->offset, 5 * sizeof(float));
  assert_string_equal(mb_safetensors_metadata(st, "arch"), "bert");
  mb_safetensors_close(st);
}

static void test_save_load_rotate(void **state) {
  (void)state;
  assert_int_equal(save(10, 2), MB_OK);
  assert_latest(10);
  assert_int_equal(save(20, 2), MB_OK);
  assert_int_equal(save(30, 2), MB_OK);
  assert_latest(30);
  assert_int_equal(entries_like(ckroot, "step-"), 2); /* 10 rotated out */
  assert_int_equal(entries_like(ckroot, ".tmp-"), 0);
}

static const char *fail_name;
static int fail_errno;
static int hook_fail(const char *step, const char *path) {
  return strcmp(step, "write") == 0 && strstr(path, fail_name) ? fail_errno : 0;
}

static void test_full_disk_keeps_previous(void **state) {
  (void)state;
  assert_int_equal(save(10, 3), MB_OK);
  const char *names[] = {"model.safetensors", "optimizer.safetensors", "state.json", "manifest.json"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    fail_name = names[i];
    fail_errno = ENOSPC;
    mb_fileio_set_fault_hook(hook_fail);
    int rc = save(20, 3);
    mb_fileio_set_fault_hook(NULL);
    assert_int_not_equal(rc, MB_OK);
    if (!strstr(mb_error_message(), "No space left on device"))
      fail_msg("%s: %s", names[i], mb_error_message());
    assert_non_null(strstr(mb_error_message(), "step-00000020"));
    assert_latest(10);
    assert_int_equal(entries_like(ckroot, ".tmp-"), 0);
    assert_int_equal(entries_like(ckroot, "step-"), 1);
  }
}

static int hook_dir(const char *step, const char *path) {
  (void)path;
  return strcmp(step, fail_name) == 0 ? EIO : 0;
}

static void test_failed_rename_or_sync_keeps_previous(void **state) {
  (void)state;
  assert_int_equal(save(10, 3), MB_OK);
  const char *steps[] = {"ckpt_fsync", "ckpt_rename"};
  for (int i = 0; i < 2; i++) {
    fail_name = steps[i];
    mb_ckpt_set_fault_hook(hook_dir);
    assert_int_not_equal(save(20, 3), MB_OK);
    mb_ckpt_set_fault_hook(NULL);
    assert_latest(10);
    assert_int_equal(entries_like(ckroot, ".tmp-"), 0);
  }
  /* and it works again once the fault is gone */
  assert_int_equal(save(20, 3), MB_OK);
  assert_latest(20);
}

static int hook_crash(const char *step, const char *path) {
  if (strcmp(step, "rename") == 0 && strstr(path, fail_name))
    _exit(9); /* the process dies here, as with SIGKILL or a power cut */
  return 0;
}

static void test_crash_mid_checkpoint(void **state) {
  (void)state;
  assert_int_equal(save(10, 3), MB_OK);
  const char *names[] = {"optimizer.safetensors", "manifest.json"};
  for (int i = 0; i < 2; i++) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      fail_name = names[i];
      mb_fileio_set_fault_hook(hook_crash);
      (void)save(20, 3);
      _exit(0); /* not reached */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 9);
    /* the half-written checkpoint is a .tmp-* directory, never picked */
    assert_int_equal(entries_like(ckroot, ".tmp-step-00000020"), 1);
    assert_latest(10);
  }
  /* the next writer of that step clears the leftovers */
  assert_int_equal(save(20, 3), MB_OK);
  assert_int_equal(entries_like(ckroot, ".tmp-"), 0);
  assert_latest(20);
}

static void test_damaged_newest_falls_back(void **state) {
  (void)state;
  assert_int_equal(save(10, 3), MB_OK);
  assert_int_equal(save(20, 3), MB_OK);
  char path[512];
  snprintf(path, sizeof path, "%s/step-00000020/optimizer.safetensors", ckroot);
  FILE *f = fopen(path, "r+b");
  assert_non_null(f);
  fseek(f, -3, SEEK_END);
  fputc('X', f);
  fclose(f);
  snprintf(path, sizeof path, "%s/step-00000020", ckroot);
  assert_int_equal(mb_ckpt_verify(path), MB_EFORMAT);
  assert_non_null(strstr(mb_error_message(), "optimizer.safetensors: sha256"));
  assert_latest(10);
  /* a file cut short (a full disk) is named by its size, before any hashing */
  snprintf(path, sizeof path, "%s/step-00000020/model.safetensors", ckroot);
  assert_int_equal(truncate(path, 100), 0);
  snprintf(path, sizeof path, "%s/step-00000020", ckroot);
  assert_int_equal(mb_ckpt_verify(path), MB_EFORMAT);
  assert_non_null(strstr(mb_error_message(), "model.safetensors: 100 bytes, the manifest says"));
  assert_latest(10);
  /* a missing manifest (a checkpoint from before manifests were written) too */
  snprintf(path, sizeof path, "%s/step-00000020/manifest.json", ckroot);
  assert_int_equal(unlink(path), 0);
  assert_latest(10);
  /* saving step 20 again replaces the damaged one */
  assert_int_equal(save(20, 3), MB_OK);
  assert_latest(20);
}

static void test_layout_fingerprint(void **state) {
  (void)state;
  char a[65], b[65];
  mb_params_layout_sha256(P, a);
  mb_params *q;
  int idx;
  assert_int_equal(mb_params_new(MB_F32, &q), MB_OK);
  assert_int_equal(mb_params_add(q, "enc.weight", mb_shape2(4, 3), &idx), MB_OK);
  assert_int_equal(mb_params_add(q, "enc.bias", mb_shape1(5), &idx), MB_OK);
  mb_params_layout_sha256(q, b);
  assert_string_not_equal(a, b);
  mb_params_free(q);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_save_load_rotate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_full_disk_keeps_previous, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failed_rename_or_sync_keeps_previous, setup, teardown),
      cmocka_unit_test_setup_teardown(test_crash_mid_checkpoint, setup, teardown),
      cmocka_unit_test_setup_teardown(test_damaged_newest_falls_back, setup, teardown),
      cmocka_unit_test_setup_teardown(test_layout_fingerprint, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
