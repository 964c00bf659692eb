# The CUDA attention tests (included by tests/cuda/CMakeLists.txt).
# cuda_attention_dispatch: the dispatcher's decisions, plain C (it compiles
# kernels/cuda/attention_plan.c itself), so it runs in every build, CUDA or
# not, sanitizers included.
mambert_test(cuda_attention_dispatch SOURCES test_cuda_attention_dispatch.c
             ${PROJECT_SOURCE_DIR}/kernels/cuda/attention_plan.c LIBS mb_runtime)
if(MAMBERT_HAVE_CUDA)
  # The kernels against the CPU reference (and each other); need a GPU.
  mambert_test(cuda_attention SOURCES test_cuda_attention.c LIBS mb_kernels mb_runtime LABELS gpu TIMEOUT 300)
  mambert_test(cuda_attention_fp8 SOURCES test_cuda_attention_fp8.c LIBS mb_kernels mb_runtime LABELS gpu TIMEOUT 120)
endif()
