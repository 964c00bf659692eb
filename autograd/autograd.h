/* autograd.h: everything model code needs from the autograd in one include:
 * graphs and compile (graph.h), op builders (ops.h), the parameter store
 * (params.h), executors and the program cache (exec.h), optimizers and
 * schedules (optim.h). Backends come from kernels/ (kernels/cpu/cpu.h). */
#ifndef MB_AUTOGRAD_AUTOGRAD_H
#define MB_AUTOGRAD_AUTOGRAD_H

#include "autograd/backend.h"
#include "autograd/exec.h"
#include "autograd/graph.h"
#include "autograd/loss_scaler.h"
#include "autograd/op.h"
#include "autograd/ops.h"
#include "autograd/optim.h"
#include "autograd/params.h"

#endif
