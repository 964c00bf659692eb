/* test_config.c: the experiment config reader (experiments/config.h):
 * typed values, defaults, --set overrides, every kind of bad input with the
 * key and line:column in the message, cross-key checks, and the resolved
 * YAML reading back to the same config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/config.h"
#include "experiments/net.h"
#include "kernels/cpu/cpu.h"
#include "mambert_build_config.h"
#include "models/model.h"
#include "runtime/error.h"

static const char *GOOD = "run:\n"
                          "  dir: runs/x\n"
                          "  seed: 7\n"
                          "model:\n"
                          "  arch: bert\n"
                          "  hidden_size: 64\n"
                          "  num_layers: 2\n"
                          "  num_heads: 4\n"
                          "tokenizer: data/vocab/bert-base-uncased-vocab.txt\n"
                          "data:\n"
                          "  train: data/samples/imdb/train.tsv.gz\n"
                          "  max_length: 128\n"
                          "optim:\n"
                          "  lr: 3e-4\n"
                          "  betas: [0.9, 0.98]\n"
                          "train:\n"
                          "  epochs: 2\n"
                          "  recompute: true\n";

static mb_config_doc *load_text(const char *text, int expect_rc) {
  mb_config_doc *d;
  assert_int_equal(mb_config_doc_new(&d), MB_OK);
  int rc = mb_config_doc_load_string(d, text, strlen(text), "t.yaml");
  if (rc != expect_rc)
    fail_msg("rc %d, expected %d: %s", rc, expect_rc, mb_error_message());
  return d;
}

/* The load fails and the message contains every fragment. */
static void expect_load_fails(const char *text, const char *const *frags) {
  mb_config_doc *d = load_text(text, MB_EINVAL);
  const char *msg = mb_error_message();
  for (; *frags; frags++)
    if (!strstr(msg, *frags))
      fail_msg("message lacks '%s': %s", *frags, msg);
  mb_config_doc_free(d);
}

static void test_good_values_and_defaults(void **state) {
  (void)state;
  mb_config_doc *d = load_text(GOOD, MB_OK);
  const mb_config *c = mb_config_doc_config(d);
  assert_string_equal(c->run_dir, "runs/x");
  assert_int_equal(c->seed, 7);
  assert_string_equal(c->model_arch, "bert");
  assert_int_equal(c->hidden_size, 64);
  assert_int_equal(c->num_heads, 4);
  assert_int_equal(c->max_length, 128);
  assert_true(c->lr == 3e-4);
  assert_true(c->betas[0] == 0.9 && c->betas[1] == 0.98);
  assert_int_equal(c->recompute, 1);
  /* untouched keys keep their defaults, and say so */
  assert_int_equal(c->batch_size, 32);
  assert_string_equal(c->optimizer, "adamw");
  assert_int_equal(mb_config_doc_origin(d, "data.batch_size")->set, 0);
  assert_string_equal(mb_config_doc_origin(d, "optim.lr")->where, "t.yaml:14:7");
  assert_int_equal(mb_config_check(d, "train"), MB_OK);
  /* loss scaling: auto is on with fp16 only */
  assert_string_equal(c->loss_scale, "auto");
  assert_int_equal(mb_config_loss_scaling(c), 0);
  mb_config copy = *c;
  strcpy(copy.precision, "fp16");
  assert_int_equal(mb_config_loss_scaling(&copy), 1);
  strcpy(copy.loss_scale, "off");
  assert_int_equal(mb_config_loss_scaling(&copy), 0);
  strcpy(copy.precision, "f32");
  strcpy(copy.loss_scale, "dynamic");
  assert_int_equal(mb_config_loss_scaling(&copy), 1);
  mb_config_doc_free(d);
}

static void test_unknown_keys(void **state) {
  (void)state;
  expect_load_fails("optim:\n  lrr: 1e-3\n", (const char *[]){"t.yaml:2:3", "unknown key 'optim.lrr'", "did you mean 'optim.lr'", NULL});
  expect_load_fails("model:\n  arch: bert\n  hiden_size: 3\n",
               (const char *[]){"t.yaml:3:3", "unknown key 'model.hiden_size'", "model.hidden_size", NULL});
  expect_load_fails("optimizer:\n  lr: 1\n", (const char *[]){"t.yaml:1:1", "unknown key 'optimizer'", NULL});
  /* a leaf spelled out, and the names of Hugging Face and common shorthands */
  expect_load_fails("optim:\n  lrate: 1e-3\n", (const char *[]){"did you mean 'optim.lr'", NULL});
  expect_load_fails("optim:\n  wd: 0.1\n", (const char *[]){"did you mean 'optim.weight_decay'", NULL});
  expect_load_fails("train:\n  num_train_epochs: 3\n", (const char *[]){"did you mean 'train.epochs'", NULL});
  expect_load_fails("model:\n  num_hidden_layers: 3\n", (const char *[]){"did you mean 'model.num_layers'", NULL});
  expect_load_fails("learning_rate: 2e-5\n", (const char *[]){"t.yaml:1:1", "did you mean 'optim.lr'", NULL});
  /* a leaf in the wrong section is found by its name */
  expect_load_fails("data:\n  lr: 1e-3\n", (const char *[]){"unknown key 'data.lr'", "optim.lr", NULL});
}

static void test_wrong_types(void **state) {
  (void)state;
  expect_load_fails("optim:\n  lr: fast\n", (const char *[]){"t.yaml:2:7", "optim.lr: expected a number, got 'fast'", NULL});
  expect_load_fails("data:\n  batch_size: \"32\"\n",
               (const char *[]){"t.yaml:2:15", "data.batch_size: expected an integer", "quoted string", NULL});
  expect_load_fails("data:\n  batch_size: 3.5\n", (const char *[]){"data.batch_size: expected an integer", NULL});
  expect_load_fails("data:\n  shuffle: maybe\n", (const char *[]){"data.shuffle: expected true or false", NULL});
  expect_load_fails("optim:\n  name: adam\n", (const char *[]){"optim.name: expected one of adamw|sgd, got 'adam'", NULL});
  expect_load_fails("optim:\n  betas: 0.9\n", (const char *[]){"optim.betas: expected a list of two numbers", NULL});
  expect_load_fails("optim:\n  betas: [0.9, 0.99, 0.999]\n", (const char *[]){"3 items", NULL});
  expect_load_fails("optim:\n  lr: [1, 2]\n", (const char *[]){"optim.lr: expected a number, got a list", NULL});
  expect_load_fails("optim: 3\n", (const char *[]){"'optim' is a section", NULL});
  expect_load_fails("- a\n- b\n", (const char *[]){"expected a mapping of sections", NULL});
}

static void test_ranges_duplicates_syntax(void **state) {
  (void)state;
  expect_load_fails("data:\n  batch_size: 0\n", (const char *[]){"t.yaml:2:15", "data.batch_size: 0 is out of range [1,", NULL});
  expect_load_fails("model:\n  dropout: 1.5\n", (const char *[]){"model.dropout: 1.5 is out of range [0, 0.95]", NULL});
  expect_load_fails("optim:\n  lr: 1e-3\n  lr: 2e-3\n", (const char *[]){"t.yaml:3:3", "'optim.lr' given twice (first at line 2)", NULL});
  expect_load_fails("optim:\n  lr: [1e-3\n", (const char *[]){"t.yaml:", "YAML syntax", NULL});
  expect_load_fails("model:\n  d_model: &w 16\noptim:\n  <<: {lr: 1e-3}\n",
                    (const char *[]){"t.yaml:4:3", "YAML merge keys (<<) are not supported", "base.yaml changes.yaml",
                                     NULL});
  expect_load_fails("a: 1\n---\nb: 2\n", (const char *[]){"more than one YAML document", NULL});
}

static void test_overrides(void **state) {
  (void)state;
  mb_config_doc *d = load_text(GOOD, MB_OK);
  assert_int_equal(mb_config_doc_set(d, "optim.lr=3e-5"), MB_OK);
  assert_int_equal(mb_config_doc_set(d, "optim.betas=[0.8, 0.9]"), MB_OK);
  assert_int_equal(mb_config_doc_set(d, "data.shuffle=false"), MB_OK);
  assert_int_equal(mb_config_doc_set(d, "run.name=\"my run: 2\""), MB_OK);
  assert_int_equal(mb_config_doc_set(d, "data.test="), MB_OK);
  const mb_config *c = mb_config_doc_config(d);
  assert_true(c->lr == 3e-5);
  assert_true(c->betas[0] == 0.8);
  assert_int_equal(c->shuffle, 0);
  assert_string_equal(c->run_name, "my run: 2");
  assert_string_equal(c->test_data, "");
  assert_string_equal(mb_config_doc_origin(d, "optim.lr")->where, "--set optim.lr");
  assert_int_equal(mb_config_doc_set(d, "optim.lr=abc"), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "--set optim.lr: optim.lr: expected a number, got 'abc'"));
  assert_int_equal(mb_config_doc_set(d, "optim.lrr=1"), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "did you mean 'optim.lr'"));
  assert_int_equal(mb_config_doc_set(d, "optim.lr"), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "expected KEY=VALUE"));
  assert_int_equal(mb_config_doc_set(d, "optim=1"), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "is a section"));
  assert_int_equal(mb_config_doc_set(d, "data.batch_size=-3"), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "out of range"));
  mb_config_doc_free(d);
}

static void expect_check_fails(const char *text, const char *purpose, const char *const *frags) {
  mb_config_doc *d = load_text(text, MB_OK);
  assert_int_equal(mb_config_check(d, purpose), MB_EINVAL);
  for (; *frags; frags++)
    if (!strstr(mb_error_message(), *frags))
      fail_msg("message lacks '%s': %s", *frags, mb_error_message());
  mb_config_doc_free(d);
}

/* A later config (or --set) that switches model.arch: the earlier one's
 * keys of the other architecture are ignored (with a warning), while in one
 * source they stay an error (tested below). */
static void test_arch_switched_by_a_later_source(void **state) {
  (void)state;
  const char *bert = "model:\n  arch: bert\n  hidden_size: 64\n  num_heads: 4\n  dropout: 0.1\ntokenizer: v.txt\n";
  const char *mamba = "model:\n  arch: mamba\n  d_model: 32\n  d_state: 4\ntokenizer: t.json\ndata:\n  test: x\n";
  mb_config_doc *d;
  assert_int_equal(mb_config_doc_new(&d), MB_OK);
  assert_int_equal(mb_config_doc_load_string(d, bert, strlen(bert), "bert.yaml"), MB_OK);
  assert_int_equal(mb_config_doc_load_string(d, mamba, strlen(mamba), "mamba.yaml"), MB_OK);
  assert_int_equal(mb_config_check(d, "eval"), MB_OK);
  assert_string_equal(mb_config_doc_config(d)->model_arch, "mamba");
  mb_config_doc_free(d);
  /* --set model.arch=mamba over a bert file: the same */
  assert_int_equal(mb_config_doc_new(&d), MB_OK);
  assert_int_equal(mb_config_doc_load_string(d, bert, strlen(bert), "bert.yaml"), MB_OK);
  assert_int_equal(mb_config_doc_set(d, "model.arch=mamba"), MB_OK);
  assert_int_equal(mb_config_doc_set(d, "data.test=x"), MB_OK);
  assert_int_equal(mb_config_check(d, "eval"), MB_OK);
  mb_config_doc_free(d);
  /* a bert key in the same source as model.arch: mamba stays an error */
  assert_int_equal(mb_config_doc_new(&d), MB_OK);
  assert_int_equal(mb_config_doc_load_string(d, bert, strlen(bert), "bert.yaml"), MB_OK);
  assert_int_equal(mb_config_doc_set(d, "model.arch=mamba"), MB_OK);
  assert_int_equal(mb_config_doc_set(d, "data.test=x"), MB_OK);
  assert_int_equal(mb_config_doc_set(d, "model.num_heads=2"), MB_OK);
  assert_int_equal(mb_config_check(d, "eval"), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "model.num_heads (set at --set model.num_heads)"));
  /* null unsets it: back to the default, as if never given */
  assert_int_equal(mb_config_doc_set(d, "model.num_heads=null"), MB_OK);
  assert_int_equal(mb_config_check(d, "eval"), MB_OK);
  assert_int_equal(mb_config_doc_config(d)->num_heads, 4);
  assert_string_equal(mb_config_doc_origin(d, "model.num_heads")->where, "default");
  /* and a list: no names left, none written out */
  assert_int_equal(mb_config_doc_set(d, "model.labels=[neg, pos]"), MB_OK);
  assert_int_equal(mb_config_doc_config(d)->n_labels, 2);
  assert_int_equal(mb_config_doc_set(d, "model.labels=null"), MB_OK);
  assert_int_equal(mb_config_doc_config(d)->n_labels, 0);
  char *yaml;
  size_t len;
  assert_int_equal(mb_config_to_yaml(mb_config_doc_config(d), NULL, &yaml, &len), MB_OK);
  assert_null(strstr(yaml, "neg"));
  free(yaml);
  mb_config_doc_free(d);
}

static void test_cross_checks(void **state) {
  (void)state;
  expect_check_fails("model:\n  arch: bert\n  hidden_size: 64\n  num_heads: 5\ntokenizer: v.txt\ndata:\n  train: x\nrun:\n  dir: r\n",
               "train", (const char *[]){"model.num_heads (set at t.yaml:4:14)", "5 heads do not divide hidden_size 64", NULL});
  expect_check_fails("model:\n  arch: mamba\n  num_heads: 4\n", "train",
               (const char *[]){"model.num_heads", "applies to bert models, not mamba", NULL});
  expect_check_fails("model:\n  arch: bert\n  d_state: 4\n", "train", (const char *[]){"model.d_state", "applies to mamba", NULL});
  expect_check_fails("model:\n  arch: mamba\n  attention_dropout_exact: true\n", "train",
                     (const char *[]){"model.attention_dropout_exact", "applies to bert models, not mamba", NULL});
  expect_check_fails("model:\n  checkpoint: ck\n  position_init: sinusoidal\ndata:\n  train: x\nrun:\n  dir: r\n", "train",
               (const char *[]){"model.position_init (set at t.yaml:3:18)", "the position embeddings are the checkpoint's",
                                NULL});
  expect_check_fails("data:\n  train: x\n", "train", (const char *[]){"model.arch (default)", "model.checkpoint", NULL});
  expect_check_fails("model:\n  arch: mamba\n  labels: [a, b, c]\ntokenizer: t\n", "eval",
                     (const char *[]){"model.labels (set at t.yaml:3:11)", "3 names for model.num_labels 2", NULL});
  expect_check_fails("model:\n  arch: mamba\n  labels: [a, a]\ntokenizer: t\n", "eval",
                     (const char *[]){"model.labels", "'a' is given twice", NULL});
  expect_check_fails("model:\n  arch: bow\n  labels: [a, b]\ntokenizer: t\n", "eval",
                     (const char *[]){"model.labels", "the bow baseline has none", NULL});
  expect_check_fails("model:\n  arch: mamba\ntokenizer: t\ndata:\n  train: x\n  batching: packed\n  batch_size: 2\n"
                     "  max_length: 8\n  max_seqs: 17\nrun:\n  dir: r\n",
                     "train", (const char *[]){"data.max_seqs", "17 sequences cannot fit a batch of 16 tokens", NULL});
  expect_check_fails("model:\n  arch: mamba\ntokenizer: t.json\nrun:\n  dir: r\n", "train",
               (const char *[]){"data.train (default)", "training needs a training set", NULL});
  expect_check_fails("model:\n  arch: mamba\ntokenizer: t.json\n", "eval", (const char *[]){"data.test", NULL});
  if (!MAMBERT_HAVE_CUDA)
    expect_check_fails("model:\n  arch: mamba\ntokenizer: t.json\ntrain:\n  precision: bf16\n", "eval",
                 (const char *[]){"train.precision (set at t.yaml:5:14)", "bf16 needs a GPU", NULL});
  expect_check_fails("model:\n  arch: bert\ntokenizer: t\ndata:\n  max_length: 1024\n", "eval",
               (const char *[]){"data.max_length", "longer than model.max_position 512", NULL});
  expect_check_fails("model:\n  arch: mamba\ntokenizer: t\noptim:\n  momentum: 0.9\n", "eval",
               (const char *[]){"optim.momentum", "applies to sgd", NULL});
  expect_check_fails("model:\n  arch: mamba\ntokenizer: t\nschedule:\n  warmup_steps: 3\n  warmup_ratio: 0.1\n", "eval",
               (const char *[]){"either warmup_steps or warmup_ratio", NULL});
  expect_check_fails("model:\n  arch: mamba\n  pooling: cls\ntokenizer: t\n", "eval", (const char *[]){"cls pooling", NULL});
  /* dynamic loss scaling: its settings need it on; not with the bow model (ZeRO-1 on several ranks: the trainer) */
  expect_check_fails("model:\n  arch: mamba\ntokenizer: t\ntrain:\n  loss_scale_init: 1024\n", "eval",
                     (const char *[]){"train.loss_scale_init (set at t.yaml:5:20)", "applies with dynamic loss scaling",
                                      NULL});
  expect_check_fails("model:\n  arch: mamba\ntokenizer: t\ntrain:\n  loss_scale: off\n  loss_scale_interval: 9\n",
                     "eval", (const char *[]){"train.loss_scale_interval", "applies with dynamic loss scaling", NULL});
  expect_check_fails("model:\n  arch: bow\ntokenizer: t\ndata:\n  train: x\nrun:\n  dir: r\ntrain:\n"
                     "  loss_scale: dynamic\n",
                     "train", (const char *[]){"train.loss_scale", "the bow model computes in f32", NULL});
}

/* model.attention_dropout_exact reaches the BERT model, from scratch and
 * from a checkpoint (config.json cannot hold it); a Mamba checkpoint refuses it. */
static void test_attention_dropout_exact(void **state) {
  (void)state;
  const char *texts[] = {"model:\n  arch: bert\n  hidden_size: 16\n  num_layers: 1\n  num_heads: 2\n",
                         "model:\n  checkpoint: tests/fixtures/models/bert_tiny\n"};
  for (int i = 0; i < 2; i++)
    for (int exact = 0; exact < 2; exact++) {
      mb_config_doc *d = load_text(texts[i], MB_OK);
      assert_int_equal(mb_config_doc_set(d, exact ? "model.attention_dropout_exact=true" : "run.seed=1"), MB_OK);
      mb_net *net;
      if (mb_net_create(mb_config_doc_config(d), 100, 1, mb_cpu_backend(), &net) != MB_OK)
        fail_msg("%s", mb_error_message());
      assert_int_equal(mb_model_config_of(mb_net_model(net))->bert.attn_dropout_exact, exact);
      mb_net_free(net);
      mb_config_doc_free(d);
    }
  mb_config_doc *d =
      load_text("model:\n  checkpoint: tests/fixtures/models/mamba_tiny\n  attention_dropout_exact: true\n", MB_OK);
  mb_net *net = NULL;
  assert_int_equal(mb_net_create(mb_config_doc_config(d), 100, 1, mb_cpu_backend(), &net), MB_EINVAL);
  assert_non_null(strstr(mb_error_message(), "model.attention_dropout_exact applies to bert models"));
  assert_null(net);
  mb_config_doc_free(d);
}

/* Weight decay: the matrices and embeddings, not biases, norm weights,
 * Mamba's A_log and D (HF's Trainer, mamba_ssm); all with decay_norms_biases */
static void test_weight_decay_groups(void **state) {
  (void)state;
  const char *dirs[] = {"tests/fixtures/models/bert_tiny", "tests/fixtures/models/mamba_tiny"};
  for (int m = 0; m < 2; m++)
    for (int all = 0; all < 2; all++) {
      char text[160];
      snprintf(text, sizeof text, "model:\n  checkpoint: %s\n", dirs[m]);
      mb_config_doc *d = load_text(text, MB_OK);
      mb_net *net;
      if (mb_net_create(mb_config_doc_config(d), 100, 1, mb_cpu_backend(), &net) != MB_OK)
        fail_msg("%s", mb_error_message());
      mb_net_set_weight_decay(net, all);
      int decayed = 0, kept = 0, a_log = 0;
      for (int i = 0; i < mb_params_count(net->params); i++) {
        const mb_param_info *pi = mb_params_info(net->params, i);
        const int want = all || (pi->shape.ndim > 1 && !strstr(pi->name, "A_log"));
        if (pi->weight_decay != want)
          fail_msg("%s %s (%d dims): weight decay %d, expected %d", dirs[m], pi->name, pi->shape.ndim,
                   pi->weight_decay, want);
        decayed += pi->weight_decay;
        kept += !pi->weight_decay;
        a_log += strstr(pi->name, "A_log") != NULL;
      }
      assert_true(decayed > 0);
      assert_true(all ? kept == 0 : kept > 0);
      assert_true(m == 0 || a_log > 0); /* the Mamba fixture has A_log, a matrix */
      mb_net_free(net);
      mb_config_doc_free(d);
    }
}

static void test_resolved_round_trip(void **state) {
  (void)state;
  mb_config_doc *d = load_text(GOOD, MB_OK);
  assert_int_equal(mb_config_doc_set(d, "optim.lr=0.1"), MB_OK); /* not exact in binary */
  assert_int_equal(mb_config_doc_set(d, "model.dropout=0.123456789012345"), MB_OK);
  char *yaml;
  size_t n;
  assert_int_equal(mb_config_to_yaml(mb_config_doc_config(d), "a comment", &yaml, &n), MB_OK);
  assert_non_null(strstr(yaml, "# a comment\n"));
  assert_null(strstr(yaml, "d_state")); /* another architecture's keys are left out */
  assert_null(strstr(yaml, "momentum"));
  mb_config_doc *e = load_text(yaml, MB_OK);
  char diff[512];
  int nd = mb_config_diff(mb_config_doc_config(d), mb_config_doc_config(e), 0, diff, sizeof diff);
  if (nd)
    fail_msg("round trip differs: %s", diff);
  assert_int_equal(mb_config_check(e, "train"), MB_OK);
  char h1[65], h2[65];
  mb_config_identity_sha256(mb_config_doc_config(d), h1);
  mb_config_identity_sha256(mb_config_doc_config(e), h2);
  assert_string_equal(h1, h2);
  /* keys that may change on resume do not change the identity; others do */
  assert_int_equal(mb_config_doc_set(e, "eval.samples=7"), MB_OK);
  mb_config_identity_sha256(mb_config_doc_config(e), h2);
  assert_string_equal(h1, h2);
  assert_int_equal(mb_config_doc_set(e, "optim.lr=0.2"), MB_OK);
  mb_config_identity_sha256(mb_config_doc_config(e), h2);
  assert_string_not_equal(h1, h2);
  assert_int_equal(mb_config_diff(mb_config_doc_config(d), mb_config_doc_config(e), 1, diff, sizeof diff), 1);
  assert_non_null(strstr(diff, "optim.lr: 0.1 -> 0.2"));
  free(yaml);
  mb_config_doc_free(d);
  mb_config_doc_free(e);
}

static void test_shipped_configs_load(void **state) {
  (void)state;
  /* the CPU configs pass the training checks; GPU ones (bf16) and eval-only ones load */
  const char *train[] = {"experiments/imdb-bert.yaml",  "experiments/imdb-mamba.yaml", "experiments/nsmc-bert.yaml",
                         "experiments/nsmc-mamba.yaml", "experiments/demo-bert.yaml",  "experiments/demo-mamba.yaml"};
  const char *other[] = {"experiments/imdb-bert-base.yaml", "experiments/imdb-mamba-130m.yaml",
                         "experiments/study-bert.yaml",     "experiments/study-mamba.yaml",
                         "experiments/sweep-bert.yaml",     "experiments/sweep-mamba.yaml",
                         "experiments/sweep.yaml"};
  for (size_t i = 0; i < sizeof train / sizeof train[0]; i++) {
    mb_config_doc *d;
    if (mb_config_load(&train[i], 1, NULL, 0, "train", &d) != MB_OK)
      fail_msg("%s: %s", train[i], mb_error_message());
    mb_config_doc_free(d);
  }
  for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
    mb_config_doc *d;
    if (mb_config_load(&other[i], 1, NULL, 0, NULL, &d) != MB_OK)
      fail_msg("%s: %s", other[i], mb_error_message());
    mb_config_doc_free(d);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_good_values_and_defaults), cmocka_unit_test(test_unknown_keys),
      cmocka_unit_test(test_wrong_types),              cmocka_unit_test(test_ranges_duplicates_syntax),
      cmocka_unit_test(test_overrides),                cmocka_unit_test(test_cross_checks),
      cmocka_unit_test(test_arch_switched_by_a_later_source),
      cmocka_unit_test(test_resolved_round_trip),      cmocka_unit_test(test_shipped_configs_load),
      cmocka_unit_test(test_attention_dropout_exact),
      cmocka_unit_test(test_weight_decay_groups),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
