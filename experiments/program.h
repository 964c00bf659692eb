/* program.h: compiled programs of a net, one per batch shape, with the
 * runner's part added (labels and the cross-entropy), and feeding a loader
 * batch into one. Shared by training and evaluation. */
#ifndef MB_EXPERIMENTS_PROGRAM_H
#define MB_EXPERIMENTS_PROGRAM_H

#include <stdint.h>
#include <stdio.h>

#include "autograd/autograd.h"
#include "data/loader.h"
#include "experiments/net.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mb_net_programs mb_net_programs;

/* opts->train selects training graphs (dropout, backward). */
int mb_net_programs_new(mb_net *net, mb_backend *be, const mb_compile_opts *opts, mb_net_programs **out) MB_NODISCARD;
void mb_net_programs_free(mb_net_programs *p);

/* The executor for this batch's shape (compiled on first use), its logits
 * [rows, num_labels] and loss (mean over real rows), with the batch fed in.
 * rng (seed, offset) feeds dropout in training graphs. */
int mb_net_programs_run_inputs(mb_net_programs *p, const mb_batch *b, const uint64_t rng[2], mb_exec **ex,
                               mb_var *logits, mb_var *loss) MB_NODISCARD;

/* Time every op of every program (exec.h profiling); print the per-op
 * tables of the programs run so far. */
void mb_net_programs_set_profiling(mb_net_programs *p, int on);
void mb_net_programs_profile_print(mb_net_programs *p, FILE *f);

/* Largest planned arena over the compiled programs, and their count. */
size_t mb_net_programs_arena_bytes(const mb_net_programs *p);
int mb_net_programs_count(const mb_net_programs *p);

#ifdef __cplusplus
}
#endif
#endif
