/* fileio.h: small file helpers every layer needs: read a whole file with a
 * size limit, write a file atomically (whole or not at all), mkdir -p, path
 * join, existence and size. Every failure sets an error (error.h) naming
 * the path and what the system said.
 *
 * Atomic writes go to a temporary file in the target's directory
 * (".NAME.tmp.PID.N"), which is written, fsync'ed and closed, then renamed
 * over the target, and the directory is fsync'ed. A crash or error before
 * the rename leaves the old file untouched (and the temporary removed when
 * the process is still alive to do it); after it, the new file is complete.
 */
#ifndef MB_RUNTIME_FILEIO_H
#define MB_RUNTIME_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Read all of `path` into a new buffer (*data, free with free()), with a NUL
 * after the last byte (not counted in *size) so text can be used as a C
 * string. Files larger than max_bytes fail with MB_EINVAL; a missing or
 * unreadable file with MB_EIO (MB_ENOTFOUND when it does not exist). */
int mb_read_file(const char *path, size_t max_bytes, char **data, size_t *size) MB_NODISCARD;

/* Replace `path` with exactly these n bytes, atomically (see above). */
int mb_write_file_atomic(const char *path, const void *data, size_t n) MB_NODISCARD;

/* The same, streamed: open, write any number of times, then commit (rename
 * into place) or abort (drop the temporary). Commit and abort free `f`;
 * after a failed write, call abort. Files are created with mode 0666 & ~umask. */
typedef struct mb_atomic_file mb_atomic_file;
int mb_atomic_open(const char *path, mb_atomic_file **f) MB_NODISCARD;
int mb_atomic_write(mb_atomic_file *f, const void *data, size_t n) MB_NODISCARD;
int mb_atomic_commit(mb_atomic_file *f) MB_NODISCARD;
void mb_atomic_abort(mb_atomic_file *f);
/* The temporary's path while open (for messages and tests). */
const char *mb_atomic_temp_path(const mb_atomic_file *f);

/* Create `path` and any missing parents (mode 0777 & ~umask). Existing
 * directories are fine; an existing non-directory is MB_EIO. */
int mb_mkdir_p(const char *path) MB_NODISCARD;
/* mb_mkdir_p, then prove the directory takes a file (one is created and
 * removed): an output directory checked before the work, not after it.
 * MB_EIO naming `what` (e.g. "--out") and the path. */
int mb_dir_writable(const char *path, const char *what) MB_NODISCARD;

/* out = a "/" b, with one slash between; b absolute or a empty gives b.
 * MB_EINVAL if the result does not fit in cap bytes (with its NUL). */
int mb_path_join(char *out, size_t cap, const char *a, const char *b) MB_NODISCARD;
/* out = path made absolute against the working directory (an absolute
 * path is copied; nothing is resolved or checked). out may be path. */
int mb_path_absolute(char *out, size_t cap, const char *path) MB_NODISCARD;

/* Temporaries named <prefix><host>-<pid> (a writer's, beside what it
 * writes): the name for this process, and whether `name` is one of this
 * host's whose process is gone (a writer killed part-way). Another host's,
 * a live process's and anything else are 0: not ours to remove. */
void mb_writer_temp_name(const char *prefix, char *out, size_t cap);
int mb_writer_temp_is_dead(const char *prefix, const char *name);

/* 1 if something exists at path (following symlinks), else 0. */
int mb_file_exists(const char *path);
/* 1 if path is a directory, else 0. */
int mb_is_dir(const char *path);
/* Size in bytes of the file at path; MB_ENOTFOUND / MB_EIO on failure. */
int mb_file_size(const char *path, uint64_t *size) MB_NODISCARD;

/* Fault injection for tests: when set, the hook is asked before each step of
 * an atomic write ("open", "write", "fsync", "close", "rename", "fsync_dir")
 * and a nonzero return is taken as that step failing with that errno value.
 * NULL restores normal operation. Not thread-safe; for tests only. */
typedef int (*mb_fileio_fault_hook)(const char *step, const char *path);
void mb_fileio_set_fault_hook(mb_fileio_fault_hook hook);

#ifdef __cplusplus
}
#endif
#endif
