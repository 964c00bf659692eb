/* cli.h: the mambert command table and the helpers every subcommand shares.
 *
 * Each subcommand is one mb_command in its own file, listed once in
 * commands.c. A command's run() gets argv with argv[0] = the command name and
 * returns a process exit code (0 ok, 1 failure, 2 usage error).
 */
#ifndef MB_EXPERIMENTS_CLI_H
#define MB_EXPERIMENTS_CLI_H

#include <stdio.h>

typedef struct {
  const char *name;
  const char *summary; /* one line for `mambert --help` */
  const char *usage;   /* full text for `mambert NAME --help` */
  int (*run)(int argc, char **argv);
} mb_command;

extern const mb_command *const mb_commands[];
extern const int mb_command_count;

/* Exit codes. */
enum { MB_EXIT_OK = 0, MB_EXIT_FAIL = 1, MB_EXIT_USAGE = 2 };

/* True if argv holds -h or --help. */
int mb_cli_wants_help(int argc, char **argv);
/* Print "mambert NAME: message" and a hint to stderr; returns MB_EXIT_USAGE. */
int mb_cli_usage_error(const mb_command *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 0 when this process was not started as one of several ranks (mpirun,
 * srun); else prints why the command runs as one process ("its timings
 * would compete", "every rank would write the same files") and returns
 * MB_EXIT_USAGE. */
int mb_cli_one_process(const mb_command *cmd, const char *why);
/* Print the current mb_error message as "mambert NAME: what: message"; returns MB_EXIT_FAIL. */
int mb_cli_fail(const char *cmd_name, const char *what);

#endif
