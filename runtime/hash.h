/* hash.h: SHA-256 (through OpenSSL's libcrypto) for vocabulary fingerprints,
 * checkpoint manifests and fixture checks. */
#ifndef MB_RUNTIME_HASH_H
#define MB_RUNTIME_HASH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mb_sha256 mb_sha256;

/* Incremental hashing; NULL from mb_sha256_new only when out of memory. */
mb_sha256 *mb_sha256_new(void);
void mb_sha256_update(mb_sha256 *h, const void *data, size_t n);
/* Finish into 32 bytes and free the context. */
void mb_sha256_final(mb_sha256 *h, uint8_t out[32]);

void mb_sha256_bytes(const void *data, size_t n, uint8_t out[32]);
/* Lower-case hex of 32 bytes into hex[65]. */
void mb_sha256_hex(const uint8_t digest[32], char hex[65]);
/* SHA-256 of a whole file as hex; MB_EIO (with the path) if unreadable. */
int mb_sha256_file_hex(const char *path, char hex[65]);

#ifdef __cplusplus
}
#endif
#endif
