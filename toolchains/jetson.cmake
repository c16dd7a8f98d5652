# Cross-compiling for NVIDIA Jetson (Orin, Xavier: aarch64 + CUDA) from an
# x86-64 Linux machine with JetPack's cross CUDA toolkit.
#
# UNTESTED: no Jetson board, JetPack sysroot or CUDA cross toolkit was
# available where this file was written. The CPU part is the same as
# toolchains/aarch64-linux-gnu.cmake (which is tested: cross build + qemu
# in CI); the CUDA backend (docs/cuda.md) builds for sm_87 (Orin) and, with
# a CUDA 12 toolkit (JetPack 5), sm_72 (Xavier).
#
# Setup (JetPack 6 / L4T r36, Ubuntu 22.04 host; names change with releases):
#  1. Host compiler: apt-get install g++-aarch64-linux-gnu
#  2. CUDA cross toolkit on the host, from NVIDIA's JetPack repository or
#     SDK Manager: cuda-toolkit-12-x (x86-64 nvcc) plus
#     cuda-cross-aarch64-12-x, which installs the aarch64 target libraries in
#     /usr/local/cuda/targets/aarch64-linux.
#  3. Target sysroot: the board's root file system, e.g. copied from a
#     flashed board
#        rsync -aR jetson:/lib jetson:/usr/include jetson:/usr/lib jetson:/usr/local/cuda ~/jetson-rootfs
#     or the "Linux_for_Tegra/rootfs" folder of the L4T BSP after
#     apply_binaries.sh. Install libllm's dependencies on the board first
#     (apt-get install libflatbuffers-dev libxxhash-dev libpcre2-dev
#     libutf8proc-dev nlohmann-json3-dev) so the sysroot has them.
#  4. cmake -S . -B build-jetson -DCMAKE_TOOLCHAIN_FILE=toolchains/jetson.cmake \
#        -DLLM_SYSROOT=$HOME/jetson-rootfs -DLLM_MIMALLOC=OFF -DLLM_CUDA=ON
#     (flatc runs on the host: apt-get install flatbuffers-compiler)
#
# CUDA variables set here: CMAKE_CUDA_COMPILER (the host nvcc),
# CMAKE_CUDA_HOST_COMPILER (the aarch64 g++), LLM_CUDA_ARCHITECTURES (Orin:
# 87; add 72 for Xavier with a CUDA 12 toolkit) and the target library
# directory, where find_package(CUDAToolkit) looks when cross-compiling.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(LLM_CROSS_PREFIX "aarch64-linux-gnu-" CACHE STRING "Prefix of the cross compiler's executables")
set(CMAKE_C_COMPILER "${LLM_CROSS_PREFIX}gcc")
set(CMAKE_CXX_COMPILER "${LLM_CROSS_PREFIX}g++")

set(LLM_SYSROOT "" CACHE PATH "The Jetson's root file system (required)")
if(NOT LLM_SYSROOT)
  message(FATAL_ERROR "toolchains/jetson.cmake: set -DLLM_SYSROOT=<Jetson root file system> (see this file)")
endif()
set(CMAKE_SYSROOT "${LLM_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH "${LLM_SYSROOT}")
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${LLM_SYSROOT}")
set(ENV{PKG_CONFIG_LIBDIR}
    "${LLM_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${LLM_SYSROOT}/usr/lib/pkgconfig:${LLM_SYSROOT}/usr/share/pkgconfig")

# Jetson cores (Cortex-A78AE on Orin, Carmel on Xavier) have the dot-product
# extension; the library still selects it at run time, so no -mcpu is needed.

# ---- CUDA (cross) -------------------------------------------------------------
set(LLM_CUDA_HOST_ROOT "/usr/local/cuda" CACHE PATH "Host CUDA toolkit (x86-64 nvcc)")
set(LLM_CUDA_TARGET_DIR "${LLM_CUDA_HOST_ROOT}/targets/aarch64-linux" CACHE PATH
    "aarch64 CUDA headers and libraries (cuda-cross-aarch64 package)")
set(CMAKE_CUDA_COMPILER "${LLM_CUDA_HOST_ROOT}/bin/nvcc" CACHE FILEPATH "")
set(CMAKE_CUDA_HOST_COMPILER "${CMAKE_CXX_COMPILER}" CACHE FILEPATH "")
set(LLM_CUDA_ARCHITECTURES "87" CACHE STRING "Orin (sm_87); add 72 (Xavier) with a CUDA 12 toolkit")
set(CUDAToolkit_ROOT "${LLM_CUDA_TARGET_DIR}" CACHE PATH "")
list(APPEND CMAKE_FIND_ROOT_PATH "${LLM_CUDA_TARGET_DIR}")

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
