/* main.c: the mambert executable: dispatch argv[1] through the command table. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "experiments/cli.h"
#include "kernels/cpu/blas_env.h"
#include "mambert_build_config.h"

static void print_help(FILE *f) {
  fprintf(f,
          "mambert %s: train and evaluate BERT and Mamba sentiment classifiers\n\n"
          "Usage: mambert COMMAND [ARGS...]\n\nCommands:\n",
          MAMBERT_VERSION);
  for (int i = 0; i < mb_command_count; i++)
    fprintf(f, "  %-10s %s\n", mb_commands[i]->name, mb_commands[i]->summary);
  fprintf(f, "\nRun 'mambert COMMAND --help' for a command's options.\n");
}

/* Output that did not reach stdout (a full disk, a closed pipe's reader
 * gone, /dev/full) is a failure, not exit 0 with the results lost. */
static int close_stdout(int code) {
  const int failed = fflush(stdout) != 0 || ferror(stdout);
  if (failed) {
    fprintf(stderr, "mambert: writing to standard output failed: %s\n", strerror(errno));
    return code == MB_EXIT_OK ? MB_EXIT_FAIL : code;
  }
  return code;
}

int main(int argc, char **argv) {
  mb_blas_env_fix(argc, argv);
  if (argc < 2) {
    print_help(stderr);
    return MB_EXIT_USAGE;
  }
  if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
    print_help(stdout);
    return close_stdout(MB_EXIT_OK);
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("mambert %s\n", MAMBERT_VERSION);
    return close_stdout(MB_EXIT_OK);
  }
  for (int i = 0; i < mb_command_count; i++) {
    const mb_command *c = mb_commands[i];
    if (strcmp(argv[1], c->name) == 0) {
      if (mb_cli_wants_help(argc - 1, argv + 1)) {
        printf("%s", c->usage);
        return close_stdout(MB_EXIT_OK);
      }
      return close_stdout(c->run(argc - 1, argv + 1));
    }
  }
  fprintf(stderr, "mambert: unknown command '%s'\n", argv[1]);
  fprintf(stderr, "Run 'mambert --help' for the list of commands.\n");
  return MB_EXIT_USAGE;
}
