# Cross-compiling for 64-bit ARM Linux (Raspberry Pi 3/4/5 with a 64-bit OS,
# other Cortex-A boards, ARM servers) with Debian/Ubuntu's cross toolchain:
#
#   apt-get install g++-aarch64-linux-gnu
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install libflatbuffers-dev:arm64 libxxhash-dev:arm64 libpcre2-dev:arm64 \
#                   libutf8proc-dev:arm64 libgtest-dev:arm64 nlohmann-json3-dev
#   apt-get install flatbuffers-compiler qemu-user     # flatc for the host; qemu to run tests
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=toolchains/aarch64-linux-gnu.cmake -DLLM_MIMALLOC=OFF
#
# The arm64 libraries of the multiarch packages are found in
# /usr/lib/aarch64-linux-gnu (the default search path of this compiler);
# their headers are the same as the host's, in /usr/include. flatc, the only
# build-time generator, runs on the build machine: CMakeLists.txt finds the
# host's (flatbuffers-compiler) on PATH when cross-compiling, or takes
# -DLLM_FLATC=/path/to/flatc. mimalloc (LLM_MIMALLOC, for the tools only) has
# no arm64 package installed here, hence OFF. scripts/test_aarch64.sh does
# all of this and runs the tests under qemu-aarch64.
#
# The library is built for the ARMv8.0 baseline with NEON; the dot-product
# kernels (ARMv8.2 sdot) are compiled separately and chosen at run time, so
# one build runs on a Raspberry Pi 3 (Cortex-A53, no dotprod) and uses sdot on
# a Pi 5 (Cortex-A76). To tune for one board instead, add e.g.
# -DCMAKE_CXX_FLAGS=-mcpu=cortex-a76.
#
# For a board's own root file system instead of multiarch packages, set
# LLM_SYSROOT (e.g. a copy of the Pi's / made with rsync).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(LLM_CROSS_PREFIX "aarch64-linux-gnu-" CACHE STRING "Prefix of the cross compiler's executables")
set(CMAKE_C_COMPILER "${LLM_CROSS_PREFIX}gcc")
set(CMAKE_CXX_COMPILER "${LLM_CROSS_PREFIX}g++")

set(LLM_SYSROOT "" CACHE PATH "Target root file system (empty: Debian multiarch packages)")
if(LLM_SYSROOT)
  set(CMAKE_SYSROOT "${LLM_SYSROOT}")
  set(CMAKE_FIND_ROOT_PATH "${LLM_SYSROOT}")
  set(ENV{PKG_CONFIG_SYSROOT_DIR} "${LLM_SYSROOT}")
  set(ENV{PKG_CONFIG_LIBDIR}
      "${LLM_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${LLM_SYSROOT}/usr/lib/pkgconfig:${LLM_SYSROOT}/usr/share/pkgconfig")
else()
  # Multiarch: only the arm64 pkg-config files and CMake packages.
  set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
  set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
endif()

# Programs come from the build machine; libraries, headers and packages from
# the target.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Tests and tools run through an emulator when there is one (ctest uses it;
# gtest_discover_tests too).
find_program(LLM_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(LLM_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${LLM_QEMU_AARCH64};-cpu;max" CACHE STRING "")
endif()
