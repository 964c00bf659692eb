/* tfevents.h: a TensorBoard event file writer for scalar metrics.
 *
 * The file is TensorFlow's TFRecord framing of tensorflow.Event protocol
 * buffers, the format `tensorboard --logdir` and tensorboard's
 * EventAccumulator read:
 *   record = u64 length (little-endian), u32 masked CRC32C of those 8 bytes,
 *            the bytes, u32 masked CRC32C of the bytes;
 *   masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8.
 * Only three fixed messages are written, so the protobuf encoding is done
 * here by hand (a few tags, varints and fixed-width fields):
 *   Event { double wall_time = 1; int64 step = 2; string file_version = 3;
 *           Summary summary = 5; SessionLog session_log = 6; }
 *   Summary { repeated Value value = 1; }
 *   Value { string tag = 1; float simple_value = 2; }
 *   SessionLog { SessionStatus status = 1; }   (START = 1)
 * The first record is the file_version event ("brain.Event:2"). A resumed
 * run starts its new file with a SessionLog START at the resume step, which
 * makes TensorBoard drop the points the killed run logged after its last
 * checkpoint (they are logged again).
 *
 * File name: events.out.tfevents.<unix seconds>.<hostname>.<pid>.mambert, in
 * the run directory. Each write is flushed so a crash loses nothing written.
 */
#ifndef MB_EXPERIMENTS_TFEVENTS_H
#define MB_EXPERIMENTS_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mb_tfevents mb_tfevents;

/* Create a new event file in dir; *path_out (may be NULL) gets its path. */
int mb_tfevents_open(const char *dir, mb_tfevents **out, char *path_out, size_t cap) MB_NODISCARD;
/* One scalar at a step (wall_time = now). */
int mb_tfevents_scalar(mb_tfevents *w, const char *tag, int64_t step, double value) MB_NODISCARD;
/* Several scalars of one step in one Event. */
int mb_tfevents_scalars(mb_tfevents *w, int64_t step, const char *const *tags, const double *values,
                        int n) MB_NODISCARD;
/* A SessionLog START at `step` (resume: TensorBoard purges later points). */
int mb_tfevents_session_start(mb_tfevents *w, int64_t step) MB_NODISCARD;
int mb_tfevents_close(mb_tfevents *w) MB_NODISCARD;

/* Exposed for tests: CRC32C (Castagnoli) and the TFRecord mask. */
uint32_t mb_crc32c(const void *data, size_t n);
uint32_t mb_crc32c_masked(const void *data, size_t n);

/* Encode an Event into buf (exposed for tests); returns bytes written or 0
 * if cap is too small. tags/values may be NULL with n = 0. */
size_t mb_tfevent_encode(uint8_t *buf, size_t cap, double wall_time, int64_t step, const char *file_version,
                         const char *const *tags, const double *values, int n, int session_status);

#ifdef __cplusplus
}
#endif
#endif
