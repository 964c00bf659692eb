/* commands.c: the one table of mambert subcommands. Add a command here. */
#include "experiments/cli.h"

extern const mb_command mb_cmd_info;
extern const mb_command mb_cmd_prepare;
extern const mb_command mb_cmd_train;
extern const mb_command mb_cmd_eval;
extern const mb_command mb_cmd_predict;
extern const mb_command mb_cmd_export;
extern const mb_command mb_cmd_config;

const mb_command *const mb_commands[] = {
    &mb_cmd_info,  &mb_cmd_prepare, &mb_cmd_train,  &mb_cmd_eval,
    &mb_cmd_predict, &mb_cmd_export, &mb_cmd_config,
};
const int mb_command_count = (int)(sizeof mb_commands / sizeof mb_commands[0]);
