/* attention_wgmma.cuh: thin wrappers over Hopper's warpgroup MMA (wgmma,
 * sm_90a only) for the attention kernels, with the layouts they assume
 * written down (PTX ISA, "Asynchronous Warpgroup Level Matrix Multiply-
 * Accumulate": "Register Fragments", "Shared Memory Matrix Layout",
 * "Matrix Descriptor Format"). attention_common.cuh includes it; the host
 * emulator (tests/cuda/test_cuda_attention_emu.h) provides the same names.
 *
 * A warpgroup is 4 consecutive warps (128 threads) whose first warp index is
 * a multiple of 4; one wgmma.m64nNk16 computes D[64][N] (+)= A[64][16]
 * B[16][N] with warp w (0..3 in the group) owning rows 16w..16w+15:
 *   D (f32, N/2 registers): d[4j + e] is row 16w + g + 8 (e >> 1), column
 *     8j + 2t + (e & 1) (g = lane / 4, t = lane % 4): per warp, the mma
 *     m16n8 C fragments of the N/8 column tiles, in order;
 *   A from registers (16-bit, 4 x b32): the m16n8k16 A fragment of rows
 *     16w.. (attention_common.cuh), so S's accumulators are P's A operand
 *     as they are for mma.sync;
 *   A or B from shared memory: a 64-bit descriptor (start address, leading
 *     and stride byte offsets, swizzle mode; all / 16) over 8 x 16-byte
 *     "core matrices". Without swizzling (tilings 2-4), element (mn, k):
 *       K-major (imm-trans 0):  start + (mn % 8) 16 + (mn / 8) SBO + (k % 8) 2 + (k / 8) LBO
 *       MN-major (imm-trans 1): start + (mn % 8) 2 + (mn / 8) SBO + (k % 8) 16 + (k / 8) LBO
 *     (bytes, 16-bit elements; mn is A's row or B's column n, k the
 *     reduction index). e4m3 (K = 32 per instruction) is K-major only, a
 *     core matrix holding 16 k: start + (mn % 8) 16 + (mn / 8) SBO + (k % 16)
 *     + (k / 16) LBO.
 *     With the 128-byte swizzle (mode 1, tiling 5: the layout TMA writes),
 *     rows of 128 bytes in groups of 8 (1024 bytes), and then the 16-byte
 *     chunk index (address bits 4-6) XOR the row within the group (bits
 *     7-9), for element (mn, k) before the XOR:
 *       K-major:  start + (mn % 8) 128 + (mn / 8) SBO + 2 k   (k < 64; LBO unused)
 *       MN-major: start + (mn % 64) 2 + (mn / 64) LBO + (k % 8) 128 + (k / 8) SBO
 *     (CUTLASS's canonical GMMA layouts); the start must lie in the first
 *     128-byte row of a 1024-byte aligned group (the base offset stays 0).
 * wgmma runs asynchronously: issue (mma_async), close the batch
 * (commit_group), wait (wait_group N: all but the N newest batches done).
 * Until the wait, the accumulator and A registers must not be touched, and
 * the shared memory read must not be overwritten. wgmma.fence orders the
 * warp's earlier register accesses before the next mma_async; shared memory
 * written by ordinary stores or cp.async must be made visible to wgmma's
 * "async proxy" with fence.proxy.async by the writing thread (then a
 * barrier) before a wgmma reads it.
 */
#ifndef MB_KERNELS_CUDA_ATTENTION_WGMMA_CUH
#define MB_KERNELS_CUDA_ATTENTION_WGMMA_CUH

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)

/* The descriptor of a no-swizzle operand tile starting at `smem`. */
__device__ __forceinline__ uint64_t attn_wgmma_desc(const void *smem, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  const uint32_t addr = (uint32_t)__cvta_generic_to_shared(smem);
  return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)((lbo_bytes & 0x3FFFF) >> 4) << 16) |
         ((uint64_t)((sbo_bytes & 0x3FFFF) >> 4) << 32);
}
__device__ __forceinline__ void attn_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void attn_wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void attn_wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void attn_fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
/* A byte / 32-bit store to shared memory that a wgmma will read (the
 * emulator tracks them, so a missing fence.proxy.async is reported). */
__device__ __forceinline__ void attn_sts_u8_for_wgmma(uint8_t *smem, uint8_t v) { *smem = v; }
__device__ __forceinline__ void attn_sts_u32_for_wgmma(void *smem, uint32_t v) {
  *reinterpret_cast<uint32_t *>(smem) = v;
}
/* The compiler does not know that wait_group writes the accumulators (or
 * that mma_async reads A's registers until then): these empty statements
 * pin every register of the array at this point, so no access moves
 * across the wait and no register is reused while the hardware reads it. */
template <int N> __device__ __forceinline__ void attn_wgmma_pin(float *r) {
#pragma unroll
  for (int i = 0; i < N; i++)
    asm volatile("" : "+f"(r[i])::"memory");
}
template <int N> __device__ __forceinline__ void attn_wgmma_pin(uint32_t *r) {
#pragma unroll
  for (int i = 0; i < N; i++)
    asm volatile("" : "+r"(r[i])::"memory");
}

/* m64n64k16, A and B from shared memory (descriptors da, db; TA, TB: 1 for
 * an MN-major operand) */
#define ATTN_WGMMA_SS_N64(TY, TA, TB) \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n" \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " {" \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
               "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31" \
               "}, %32, %33, p, 1, 1, " #TA ", " #TB ";\n}\n" \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), \
                 "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), \
                 "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), \
                 "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
               : "l"(da), "l"(db), "r"((int)(accumulate)))
/* m64n64k16, A from registers a[4], B from shared memory (descriptor db) */
#define ATTN_WGMMA_RS_N64(TY, TB) \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n" \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " {" \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
               "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31" \
               "}, {%32, %33, %34, %35}, %36, p, 1, 1, " #TB ";\n}\n" \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), \
                 "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), \
                 "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), \
                 "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"((int)(accumulate)))
/* m64n128k16, A and B from shared memory (descriptors da, db) */
#define ATTN_WGMMA_SS_N128(TY, TB) \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n" \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " {" \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
               "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
               "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
               "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" \
               "}, %64, %65, p, 1, 1, 0, " #TB ";\n}\n" \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), \
                 "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), \
                 "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), \
                 "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), \
                 "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), \
                 "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), \
                 "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), \
                 "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
               : "l"(da), "l"(db), "r"((int)(accumulate)))
/* m64n128k16, A from registers a[4], B from shared memory (descriptor db) */
#define ATTN_WGMMA_RS_N128(TY, TB) \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n" \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " {" \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
               "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
               "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
               "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" \
               "}, {%64, %65, %66, %67}, %68, p, 1, 1, " #TB ";\n}\n" \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), \
                 "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), \
                 "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), \
                 "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), \
                 "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), \
                 "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), \
                 "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), \
                 "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"((int)(accumulate)))

/* d (+)= A B, f32 accumulators, N/2 per thread (accumulate = false: d = A B).
 * ss: A [64][16] K-major and B [16][N] K-major (B(k, n) at (mn = n, k)) from
 * descriptors; rs_mn: A from registers, B [16][N] MN-major; ss_mn (N = 64):
 * both from descriptors, both MN-major (the backward's dQ = dS K with dS^T
 * and K stored key by key). */
template <typename T, int N> struct AttnWgmma;
template <> struct AttnWgmma<attn_bf16, 64> {
  static __device__ __forceinline__ void ss(float *d, uint64_t da, uint64_t db, bool accumulate) {
    ATTN_WGMMA_SS_N64("bf16", 0, 0);
  }
  static __device__ __forceinline__ void ss_mn(float *d, uint64_t da, uint64_t db, bool accumulate) {
    ATTN_WGMMA_SS_N64("bf16", 1, 1);
  }
  static __device__ __forceinline__ void rs_mn(float *d, const uint32_t *a, uint64_t db, bool accumulate) {
    ATTN_WGMMA_RS_N64("bf16", 1);
  }
};
template <> struct AttnWgmma<attn_bf16, 128> {
  static __device__ __forceinline__ void ss(float *d, uint64_t da, uint64_t db, bool accumulate) {
    ATTN_WGMMA_SS_N128("bf16", 0);
  }
  static __device__ __forceinline__ void rs_mn(float *d, const uint32_t *a, uint64_t db, bool accumulate) {
    ATTN_WGMMA_RS_N128("bf16", 1);
  }
};
template <> struct AttnWgmma<attn_f16, 64> {
  static __device__ __forceinline__ void ss(float *d, uint64_t da, uint64_t db, bool accumulate) {
    ATTN_WGMMA_SS_N64("f16", 0, 0);
  }
  static __device__ __forceinline__ void ss_mn(float *d, uint64_t da, uint64_t db, bool accumulate) {
    ATTN_WGMMA_SS_N64("f16", 1, 1);
  }
  static __device__ __forceinline__ void rs_mn(float *d, const uint32_t *a, uint64_t db, bool accumulate) {
    ATTN_WGMMA_RS_N64("f16", 1);
  }
};
template <> struct AttnWgmma<attn_f16, 128> {
  static __device__ __forceinline__ void ss(float *d, uint64_t da, uint64_t db, bool accumulate) {
    ATTN_WGMMA_SS_N128("f16", 0);
  }
  static __device__ __forceinline__ void rs_mn(float *d, const uint32_t *a, uint64_t db, bool accumulate) {
    ATTN_WGMMA_RS_N128("f16", 1);
  }
};

/* m64n64k32 e4m3, A and B from shared memory (K-major: 8-bit operands cannot be transposed) */
#define ATTN_WGMMA_E4M3_SS_N64 \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n" \
               "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3 {" \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
               "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31" \
               "}, %32, %33, p, 1, 1;\n}\n" \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), \
                 "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), \
                 "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), \
                 "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
               : "l"(da), "l"(db), "r"((int)(accumulate)))
/* m64n64k32 e4m3, A from registers a[4], B from shared memory (K-major) */
#define ATTN_WGMMA_E4M3_RS_N64 \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n" \
               "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3 {" \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
               "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31" \
               "}, {%32, %33, %34, %35}, %36, p, 1, 1;\n}\n" \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), \
                 "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), \
                 "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), \
                 "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"((int)(accumulate)))
/* m64n128k32 e4m3, A and B from shared memory (K-major: 8-bit operands cannot be transposed) */
#define ATTN_WGMMA_E4M3_SS_N128 \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n" \
               "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 {" \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
               "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
               "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
               "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" \
               "}, %64, %65, p, 1, 1;\n}\n" \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), \
                 "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), \
                 "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), \
                 "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), \
                 "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), \
                 "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), \
                 "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), \
                 "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
               : "l"(da), "l"(db), "r"((int)(accumulate)))
/* m64n128k32 e4m3, A from registers a[4], B from shared memory (K-major) */
#define ATTN_WGMMA_E4M3_RS_N128 \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n" \
               "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 {" \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
               "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
               "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
               "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" \
               "}, {%64, %65, %66, %67}, %68, p, 1, 1;\n}\n" \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), \
                 "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), \
                 "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), \
                 "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), \
                 "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), \
                 "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), \
                 "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), \
                 "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"((int)(accumulate)))


/* e4m3 x e4m3 -> f32, K = 32: ss (A, B from descriptors, both K-major) and
 * rs (A from registers: the m16n8k32 A fragment of the warp's rows, four
 * consecutive k per register, lowest k in the lowest byte). */
template <int N> struct AttnWgmmaE4m3;
template <> struct AttnWgmmaE4m3<64> {
  static __device__ __forceinline__ void ss(float *d, uint64_t da, uint64_t db, bool accumulate) {
    ATTN_WGMMA_E4M3_SS_N64;
  }
  static __device__ __forceinline__ void rs(float *d, const uint32_t *a, uint64_t db, bool accumulate) {
    ATTN_WGMMA_E4M3_RS_N64;
  }
};
template <> struct AttnWgmmaE4m3<128> {
  static __device__ __forceinline__ void ss(float *d, uint64_t da, uint64_t db, bool accumulate) {
    ATTN_WGMMA_E4M3_SS_N128;
  }
  static __device__ __forceinline__ void rs(float *d, const uint32_t *a, uint64_t db, bool accumulate) {
    ATTN_WGMMA_E4M3_RS_N128;
  }
};


/* ---- TMA, mbarriers, named barriers, register reallocation ----
 * The warp-specialised forward (tiling 5) moves tiles with the Tensor
 * Memory Accelerator: one thread issues cp.async.bulk.tensor for a whole
 * box (rows of 64 16-bit elements = 128 bytes) described by a tensor map
 * (attn_tma_map_rows, host side), and the copy signals an mbarrier in
 * shared memory when its bytes have landed. An mbarrier completes a phase
 * when its expected arrivals have arrived and its expected transaction
 * bytes (arrive.expect_tx) have been delivered; waiters name the parity of
 * the phase they wait for (PTX ISA, "Parallel Synchronization and
 * Communication Instructions: mbarrier"). */
__device__ __forceinline__ void attn_mbar_init(uint64_t *bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(attn_smem_addr(bar)), "r"(count) : "memory");
}
/* The inits visible to the async proxy (TMA's completions) too; a barrier
 * follows for the other threads. */
__device__ __forceinline__ void attn_mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void attn_mbar_arrive(uint64_t *bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(attn_smem_addr(bar)) : "memory");
}
/* Arrive, and expect `bytes` more of transactions in this phase. */
__device__ __forceinline__ void attn_mbar_arrive_expect_tx(uint64_t *bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(attn_smem_addr(bar)), "r"(bytes)
               : "memory");
}
/* Until the phase of parity `parity` has completed. */
__device__ __forceinline__ void attn_mbar_wait(uint64_t *bar, uint32_t parity) {
  asm volatile("{\n.reg .pred done;\nATTN_MBAR_WAIT:\n"
               "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
               "@!done bra ATTN_MBAR_WAIT;\n}\n" ::"r"(attn_smem_addr(bar)),
               "r"(parity)
               : "memory");
}
/* The box at element coordinates (x, y, z) of the tensor `map` describes,
 * into shared memory at dst (1024-byte aligned for the 128-byte swizzle),
 * completing its bytes on `bar`. */
__device__ __forceinline__ void attn_tma_load_3d(void *dst, const AttnTmaMap *map, int x, int y, int z,
                                                 uint64_t *bar) {
  asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], "
               "[%5];\n" ::"r"(attn_smem_addr(dst)),
               "l"(reinterpret_cast<uint64_t>(map)), "r"(x), "r"(y), "r"(z), "r"(attn_smem_addr(bar))
               : "memory");
}
/* Barrier `id` (1..15; 0 is __syncthreads') among `count` threads, whole
 * warps; _or also returns whether any of them passed a nonzero pred. */
__device__ __forceinline__ void attn_named_bar_sync(int id, int count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
/* Arrive on barrier `id` without waiting (the ping-pong of tiling 6). */
__device__ __forceinline__ void attn_named_bar_arrive(int id, int count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
__device__ __forceinline__ int attn_named_bar_or(int id, int count, int pred) {
  int r;
  asm volatile("{\n.reg .pred p, q;\nsetp.ne.b32 q, %1, 0;\nbar.red.or.pred p, %2, %3, q;\nselp.b32 %0, 1, 0, p;\n}\n"
               : "=r"(r)
               : "r"(pred), "r"(id), "r"(count)
               : "memory");
  return r;
}
/* Give registers back (the producer warpgroup) or take them (the
 * consumers): warpgroup-wide, N a multiple of 8 in 24..256. */
template <int N> __device__ __forceinline__ void attn_setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N> __device__ __forceinline__ void attn_setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
/* 16 zero bytes by an ordinary store into a tile a wgmma will read (the
 * writer fences with fence.proxy.async before the barrier). */
__device__ __forceinline__ void attn_sts_zero16_for_wgmma(void *smem) {
  *reinterpret_cast<uint4 *>(smem) = make_uint4(0, 0, 0, 0);
}
/* Two floats by an ordinary store into shared memory that the async proxy
 * will read (a bulk reduce below; the writer fences with fence.proxy.async
 * before the barrier that hands the tile over). 8-byte aligned. */
__device__ __forceinline__ void attn_sts_f32x2_for_async(float *smem, float x, float y) {
  *reinterpret_cast<float2 *>(smem) = make_float2(x, y);
}
/* The box of the f32 tensor `map` (attn_tma_map_rows with esize 4) at
 * element coordinates (x, y, z) += the box in shared memory at src, laid
 * out as a TMA load of that map would leave it (128-byte swizzle: 1024-byte
 * aligned), by the TMA unit (PTX ISA "cp.reduce.async.bulk.tensor"; each
 * element's add is atomic, the box as a whole is not; elements outside the
 * tensor are not written; f32 subnormals flush to zero). One instruction
 * for a whole box, where a bulk reduce of a contiguous span would need one
 * per row of a [tokens, heads, head_dim] tensor. The issuing thread's bulk
 * group: commit it, then wait_group.read before the source is rewritten and
 * wait_group before the CTA exits. */
__device__ __forceinline__ void attn_tma_reduce_add_3d(const AttnTmaMap *map, int x, int y, int z, const void *src) {
  asm volatile("cp.reduce.async.bulk.tensor.3d.global.shared::cta.add.tile.bulk_group"
               " [%0, {%2, %3, %4}], [%1];\n" ::"l"(reinterpret_cast<uint64_t>(map)),
               "r"(attn_smem_addr(src)), "r"(x), "r"(y), "r"(z)
               : "memory");
}
__device__ __forceinline__ void attn_bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
/* Until all but the N newest of the thread's bulk groups have read their
 * shared source (the source may then be rewritten). */
template <int N> __device__ __forceinline__ void attn_bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}
/* Until all but the N newest have completed (their writes are done). */
template <int N> __device__ __forceinline__ void attn_bulk_wait() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}
/* Orders this thread's async-proxy accesses to global memory (bulk
 * reduces) with its generic ones: after a wait_group, before a release
 * that publishes the reduces; after an acquire, before reduces that must
 * follow what it saw. */
__device__ __forceinline__ void attn_fence_proxy_async_global() {
  asm volatile("fence.proxy.async.global;\n" ::: "memory");
}
/* A semaphore in global memory shared by CTAs: spin until it reads v or
 * more (acquire, so what its releaser wrote before is seen), or add 1 to
 * it (release). The deterministic bulk dQ orders its adds with them. */
__device__ __forceinline__ void attn_sem_wait_ge(const int32_t *sem, int32_t v) {
  int32_t x;
  do {
    asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(x) : "l"(sem) : "memory");
  } while (x < v);
}
__device__ __forceinline__ void attn_sem_inc_release(int32_t *sem) {
  asm volatile("red.release.gpu.global.add.s32 [%0], 1;\n" ::"l"(sem) : "memory");
}

#endif /* sm_90a device code */
#endif
