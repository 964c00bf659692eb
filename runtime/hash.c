/* hash.c: SHA-256 through OpenSSL's EVP interface (hash.h). */
#include "runtime/hash.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

struct mb_sha256 {
  EVP_MD_CTX *ctx;
};

mb_sha256 *mb_sha256_new(void) {
  mb_sha256 *h = malloc(sizeof *h);
  if (!h)
    return NULL;
  h->ctx = EVP_MD_CTX_new();
  if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(h->ctx);
    free(h);
    return NULL;
  }
  return h;
}

void mb_sha256_update(mb_sha256 *h, const void *data, size_t n) {
  EVP_DigestUpdate(h->ctx, data, n);
}

void mb_sha256_final(mb_sha256 *h, uint8_t out[32]) {
  unsigned int len = 32;
  EVP_DigestFinal_ex(h->ctx, out, &len);
  EVP_MD_CTX_free(h->ctx);
  free(h);
}

void mb_sha256_bytes(const void *data, size_t n, uint8_t out[32]) {
  unsigned int len = 32;
  EVP_Digest(data, n, out, &len, EVP_sha256(), NULL);
}

void mb_sha256_hex(const uint8_t digest[32], char hex[65]) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    hex[2 * i] = digits[digest[i] >> 4];
    hex[2 * i + 1] = digits[digest[i] & 15];
  }
  hex[64] = 0;
}

int mb_sha256_file_hex(const char *path, char hex[65]) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return MB_ERR(MB_EIO, "%s: cannot open: %s", path, strerror(errno));
  mb_sha256 *h = mb_sha256_new();
  if (!h) {
    fclose(f);
    return MB_ERR(MB_ENOMEM, "%s: cannot start a SHA-256 context", path);
  }
  unsigned char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    mb_sha256_update(h, buf, n);
  int bad = ferror(f);
  fclose(f);
  uint8_t d[32];
  mb_sha256_final(h, d);
  if (bad)
    return MB_ERR(MB_EIO, "%s: read error", path);
  mb_sha256_hex(d, hex);
  return MB_OK;
}
