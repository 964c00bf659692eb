/* cli.c: shared helpers for subcommands (cli.h). */
#include "experiments/cli.h"

#include <stdarg.h>
#include <string.h>

#include "distributed/dist.h"
#include "runtime/error.h"

int mb_cli_wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0)
      return 0;
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
      return 1;
  }
  return 0;
}

int mb_cli_usage_error(const mb_command *cmd, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "mambert %s: ", cmd->name);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nRun 'mambert %s --help' for usage.\n", cmd->name);
  return MB_EXIT_USAGE;
}

int mb_cli_fail(const char *cmd_name, const char *what) {
  const char *msg = mb_error_message();
  fprintf(stderr, "mambert %s: %s%s%s\n", cmd_name, what ? what : "", what && msg[0] ? ": " : "",
          msg[0] ? msg : mb_status_name(mb_error_code()));
  return MB_EXIT_FAIL;
}

int mb_cli_one_process(const mb_command *cmd, const char *why) {
  mb_launch_env le;
  if (mb_dist_detect_launch(NULL, NULL, &le) != MB_OK) {
    mb_error_clear();
    return 0;
  }
  if (le.world_size <= 1)
    return 0;
  if (le.rank > 0) /* rank 0 says it, once */
    return MB_EXIT_USAGE;
  return mb_cli_usage_error(cmd, "started as %d ranks by %s: %s runs as one process (%s); run it without mpirun or srun",
                            le.world_size, mb_launcher_name(le.launcher), cmd->name, why);
}
