# Per-file target flags of the CPU backend's SIMD kernels: src/backend/cpu/*_avx2.cpp and
# *_avx512.cpp are compiled for their own instruction set and called only after a runtime check
# of the CPU (backend/cpu/cpu_features.h), so the library runs on any x86-64 when HEARTH_NATIVE
# is off. Under HEARTH_NATIVE (-march=native, the default) these flags come after -march=native
# on the command line: -mno-avx512f keeps the AVX2 kernels free of AVX-512 instructions even on
# an AVX-512 build machine, so HEARTH_CPU=avx2 really runs AVX2 code. -ffp-contract=off: the
# kernels reproduce the reference float operations one for one (no fused multiply-adds the
# source does not ask for). *_amx.cpp: the AMX tile kernels (backend/cpu/amx.h checks the CPU
# and asks the kernel for tile state before any of them runs), with AVX-512 for their float part.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$" AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  set(hearth_cpu_kernel_dir ${PROJECT_SOURCE_DIR}/src/backend/cpu)
  file(GLOB hearth_avx2_srcs CONFIGURE_DEPENDS ${hearth_cpu_kernel_dir}/*_avx2.cpp)
  file(GLOB hearth_avx512_srcs CONFIGURE_DEPENDS ${hearth_cpu_kernel_dir}/*_avx512.cpp)
  file(GLOB hearth_amx_srcs CONFIGURE_DEPENDS ${hearth_cpu_kernel_dir}/*_amx.cpp)
  set_source_files_properties(${hearth_avx2_srcs} DIRECTORY ${PROJECT_SOURCE_DIR}/src PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c;-mno-avx512f;-ffp-contract=off")
  set_source_files_properties(${hearth_avx512_srcs} DIRECTORY ${PROJECT_SOURCE_DIR}/src PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c;-mavx512f;-mavx512bw;-mavx512vl;-mavx512vnni;-ffp-contract=off")
  # A compiler without AMX (GCC < 11, clang < 12) builds the AMX files as stubs, and the
  # runtime check then keeps AMX off (tile_kernels.h: amx_kernels_built).
  include(CheckCXXCompilerFlag)
  check_cxx_compiler_flag("-mamx-tile -mamx-int8" HEARTH_COMPILER_HAS_AMX)
  if(HEARTH_COMPILER_HAS_AMX)
    set_source_files_properties(${hearth_amx_srcs} DIRECTORY ${PROJECT_SOURCE_DIR}/src PROPERTIES
      COMPILE_OPTIONS "-mavx2;-mfma;-mf16c;-mavx512f;-mavx512bw;-mavx512vl;-mavx512vnni;-mamx-tile;-mamx-int8;-ffp-contract=off")
  endif()
endif()
