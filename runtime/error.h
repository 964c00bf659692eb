/* error.h: the one error convention of mambert.
 *
 * Every fallible function returns an int status: MB_OK (0) on success, a
 * negative MB_E* code on failure. Before returning the code it records a
 * message in a thread-local slot with MB_ERR(code, fmt, ...), which also
 * stamps our source file and line. Callers that add context (the file being
 * read, the op being built) wrap the message with mb_error_context(), so the
 * final text reads outer-to-inner:
 *   "loading runs/a/ckpt: model.safetensors: tensor 'w': offsets past end".
 * The top level (the CLI, a test) prints mb_error_message() and exits.
 */
#ifndef MB_RUNTIME_ERROR_H
#define MB_RUNTIME_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
  MB_OK = 0,
  MB_EINVAL = -1,    /* bad argument or malformed input */
  MB_ENOMEM = -2,    /* allocation failed */
  MB_EIO = -3,       /* file system or read/write failure */
  MB_EFORMAT = -4,   /* a file's content is not what its format requires */
  MB_ESHAPE = -5,    /* tensor shapes or dtypes do not fit */
  MB_EUNSUPPORTED = -6, /* valid request this build or device cannot do */
  MB_ENOTFOUND = -7, /* a named thing (file, tensor, key) is missing */
  MB_EDEVICE = -8,   /* CUDA / cuBLAS / NCCL reported an error */
  MB_EDIST = -9,     /* a collective failed or timed out, a peer died */
  MB_EINTERNAL = -10 /* a broken invariant: a bug in mambert */
};

#if defined(__GNUC__)
#define MB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define MB_NODISCARD __attribute__((warn_unused_result))
#else
#define MB_PRINTF(a, b)
#define MB_NODISCARD
#endif

/* Record an error and return its code. Use as: return MB_ERR(MB_EINVAL, "...", ...). */
#define MB_ERR(code, ...) mb_error_set((code), __FILE__, __LINE__, __VA_ARGS__)

int mb_error_set(int code, const char *file, int line, const char *fmt, ...) MB_PRINTF(4, 5);

/* Prefix the current message with context; returns `code` unchanged so it can
 * be used in a return statement: return mb_error_context(rc, "reading %s", p). */
int mb_error_context(int code, const char *fmt, ...) MB_PRINTF(2, 3);

/* The current thread's last message ("" if none) and where it was raised. */
const char *mb_error_message(void);
const char *mb_error_where(void); /* "runtime/safetensors.c:123" */
int mb_error_code(void);
void mb_error_clear(void);

/* Short name of a code ("invalid argument", "format error", ...). */
const char *mb_status_name(int code);

/* Propagate a failing status: MB_TRY(f(x)); */
#define MB_TRY(expr)            \
  do {                          \
    int mb_try_rc_ = (expr);    \
    if (mb_try_rc_ != MB_OK)    \
      return mb_try_rc_;        \
  } while (0)

/* A broken internal invariant: record it as MB_EINTERNAL and return. */
#define MB_CHECK(cond)                                                       \
  do {                                                                       \
    if (!(cond))                                                             \
      return MB_ERR(MB_EINTERNAL, "internal check failed: %s", #cond);       \
  } while (0)

#ifdef __cplusplus
}
#endif
#endif
