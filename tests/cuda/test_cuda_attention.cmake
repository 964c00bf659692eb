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
  mambert_test(cuda_attention_probe SOURCES test_cuda_attention_probe.c LIBS mb_kernels mb_runtime LABELS gpu
               TIMEOUT 60)
  # The Hopper (wgmma) kernels' machine code: no ptxas serialisation of
  # their wgmma (C7520) and no spills; needs nvcc, not a GPU.
  add_test(NAME cuda_wgmma_ptxas COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/check_wgmma_ptxas.sh ${CMAKE_CUDA_COMPILER}
                                         ${PROJECT_SOURCE_DIR})
  set_tests_properties(cuda_wgmma_ptxas PROPERTIES TIMEOUT 300)
endif()

# cuda_attention_emulated: the same kernels and launchers, unmodified, run on
# the CPU by a fiber-per-thread emulator of the CUDA features they use
# (test_cuda_attention_emu.h), against the CPU reference. Needs neither a GPU
# nor the CUDA toolkit (test_cuda_attention_emu_shim.h stands in for its
# headers), so every build runs it. Plain C++ (the .cu files are #included),
# with its own copies of the CPU reference and the plan, so nothing links the
# real kernels. Its "device" buffers end at guard pages (bounds checks), so
# the sanitizer run skips it (label no_sanitize): under ASan at -O0 it takes
# ~10 minutes and ASan does not fully support the fibers' stack switches.
# It took 277 s beside the other tests (ctest -j2, 2 cores): a 900 s limit.
# -Wno-psabi: g++'s note that passing the 128-byte-aligned tensor maps by
# value changed ABI in GCC 4.6 (nothing here crosses compilers).
mambert_test(cuda_attention_emulated SOURCES test_cuda_attention_emu.cpp
             ${PROJECT_SOURCE_DIR}/kernels/cpu/attention.c ${PROJECT_SOURCE_DIR}/kernels/cpu/blas_env.c
             ${PROJECT_SOURCE_DIR}/kernels/cuda/attention_plan.c
             LIBS mb_runtime PkgConfig::OPENBLAS OpenMP::OpenMP_C LABELS no_sanitize TIMEOUT 900)
target_compile_options(cuda_attention_emulated PRIVATE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas -Wno-psabi>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${MAMBERT_WERROR}>>:-Werror>)
set_tests_properties(cuda_attention_emulated PROPERTIES ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE")

# The GPU tests themselves, unmodified, on the emulator (device memory is
# host memory): checks their set-up, comparisons and the dispatcher's
# fallbacks before a GPU session relies on them. Quick mode skips L = 1000.
if(MAMBERT_HAVE_CUDA)
  foreach(t cuda_attention cuda_attention_fp8 cuda_attention_probe)
    string(REPLACE "cuda_attention" "test_cuda_attention" src ${t})
    mambert_test(${t}_on_emulator SOURCES ${src}.c test_cuda_attention_emu_runtime.cpp
                 ${PROJECT_SOURCE_DIR}/kernels/cpu/attention.c ${PROJECT_SOURCE_DIR}/kernels/cpu/blas_env.c
                 ${PROJECT_SOURCE_DIR}/kernels/cuda/attention_plan.c
                 LIBS mb_runtime PkgConfig::OPENBLAS OpenMP::OpenMP_C TIMEOUT 600)
    target_include_directories(${t}_on_emulator PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
    target_compile_options(${t}_on_emulator PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas -Wno-psabi>
      $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${MAMBERT_WERROR}>>:-Werror>)
    set_tests_properties(${t}_on_emulator PROPERTIES ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE;MAMBERT_ATTN_TEST_QUICK=1")
  endforeach()
endif()

# The op-table glue (kernels/cuda/attention_ops.c) through the executor on
# the CUDA backend against the CPU backend, eager and in CUDA graphs; GPU.
if(MAMBERT_HAVE_CUDA)
  mambert_test(cuda_attention_ops SOURCES test_cuda_attention_ops.c LIBS mb_kernels mb_autograd mb_runtime
               LABELS gpu TIMEOUT 300)
endif()
