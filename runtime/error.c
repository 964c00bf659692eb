/* error.c: thread-local error messages for the MB_ERR convention (error.h). */
#include "runtime/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MB_ERROR_CAP 2048

static _Thread_local char err_msg[MB_ERROR_CAP];
static _Thread_local char err_where[256];
static _Thread_local int err_code;

int mb_error_set(int code, const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err_msg, sizeof err_msg, fmt, ap);
  va_end(ap);
  snprintf(err_where, sizeof err_where, "%s:%d", file, line);
  err_code = code;
  return code;
}

int mb_error_context(int code, const char *fmt, ...) {
  char prefix[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  /* Shift the old message right and put "prefix: " in front, truncating the tail. */
  size_t plen = strlen(prefix), mlen = strlen(err_msg);
  size_t sep = mlen ? 2 : 0;
  if (plen + sep >= MB_ERROR_CAP)
    plen = MB_ERROR_CAP - 1 - sep;
  if (plen + sep + mlen >= MB_ERROR_CAP)
    mlen = MB_ERROR_CAP - 1 - plen - sep;
  memmove(err_msg + plen + sep, err_msg, mlen);
  memcpy(err_msg, prefix, plen);
  if (sep)
    memcpy(err_msg + plen, ": ", 2);
  err_msg[plen + sep + mlen] = 0;
  if (!err_code)
    err_code = code;
  return code;
}

const char *mb_error_message(void) { return err_msg; }
const char *mb_error_where(void) { return err_where; }
int mb_error_code(void) { return err_code; }

void mb_error_clear(void) {
  err_msg[0] = 0;
  err_where[0] = 0;
  err_code = 0;
}

const char *mb_status_name(int code) {
  switch (code) {
  case MB_OK: return "ok";
  case MB_EINVAL: return "invalid argument";
  case MB_ENOMEM: return "out of memory";
  case MB_EIO: return "I/O error";
  case MB_EFORMAT: return "format error";
  case MB_ESHAPE: return "shape error";
  case MB_EUNSUPPORTED: return "unsupported";
  case MB_ENOTFOUND: return "not found";
  case MB_EDEVICE: return "device error";
  case MB_EDIST: return "distributed error";
  case MB_EINTERNAL: return "internal error";
  default: return "unknown error";
  }
}
