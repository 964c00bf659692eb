/* params.h: the parameter store. Every parameter of a model lives in one
 * flat buffer, its gradient at the same offset in a second flat buffer, so
 * the optimizer updates all parameters in one fused pass and data-parallel
 * code all-reduces / shards contiguous ranges (ZeRO-1).
 *
 * Parameters are added by name (by mb_param() while a graph is built, or by
 * mb_params_add() when loading a checkpoint first). The layout is fixed when
 * the store is materialised (its buffers allocated on a backend); after that,
 * graphs may only refer to existing parameters. Each parameter starts on a
 * 64-byte boundary (MB_PARAM_ALIGN_ELEMS elements of padding at most).
 *
 * Trainability is read when a graph is compiled (frozen parameters get no
 * gradient ops). Changing it bumps a generation counter; an executor built
 * from an older compile refuses to run (recompile).
 */
#ifndef MB_AUTOGRAD_PARAMS_H
#define MB_AUTOGRAD_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mb_params mb_params;
typedef struct mb_backend mb_backend;

typedef struct {
  const char *name;
  mb_shape shape;
  int64_t offset; /* in elements, into the flat buffers */
  int64_t numel;
  int trainable;
  int weight_decay; /* the optimizer applies weight decay to it (default 1) */
} mb_param_info;

int mb_params_new(mb_dtype dtype, mb_params **out) MB_NODISCARD;
void mb_params_free(mb_params *p);

mb_dtype mb_params_dtype(const mb_params *p);
int mb_params_count(const mb_params *p);
const mb_param_info *mb_params_info(const mb_params *p, int index);
/* Index of a parameter by name, or -1. */
int mb_params_find(const mb_params *p, const char *name);
/* Total elements of the flat buffers (padding included). */
int64_t mb_params_total(const mb_params *p);

/* Add a parameter (MB_EINVAL if the store is materialised; adding an
 * existing name with the same shape returns its index). */
int mb_params_add(mb_params *p, const char *name, mb_shape shape, int *index_out) MB_NODISCARD;

int mb_params_set_trainable(mb_params *p, int index, int trainable);
/* Every parameter whose name starts with prefix ("" = all); returns count. */
int mb_params_set_trainable_prefix(mb_params *p, const char *prefix, int trainable);
int mb_params_set_weight_decay(mb_params *p, int index, int decay);
uint64_t mb_params_generation(const mb_params *p);

/* Allocate the parameter and gradient buffers on `be` (zeroed). Idempotent
 * on the same backend. Fixes the layout. */
int mb_params_materialize(mb_params *p, mb_backend *be) MB_NODISCARD;
int mb_params_is_materialized(const mb_params *p);
mb_backend *mb_params_backend(const mb_params *p);

/* Flat buffers in the backend's memory (host memory on the CPU backend). */
void *mb_params_data(mb_params *p);
void *mb_params_grad(mb_params *p);
/* Parameter i's data / gradient as tensors viewing the flat buffers. */
mb_tensor mb_params_tensor(mb_params *p, int index);
mb_tensor mb_params_grad_tensor(mb_params *p, int index);

/* Copy one parameter from / to host memory of the store's dtype. */
int mb_params_set(mb_params *p, int index, const void *host) MB_NODISCARD;
int mb_params_get(mb_params *p, int index, void *host) MB_NODISCARD;
int mb_params_zero_grad(mb_params *p) MB_NODISCARD;

#ifdef __cplusplus
}
#endif
#endif
