# Instrumentation for the sanitizer / libFuzzer build (LLM_FUZZ=ON; the `asan`
# preset). Included by the top-level CMakeLists.txt before any target is
# defined, so that everything (the library, the converter, the tests and the
# fuzzers) is compiled with AddressSanitizer and UndefinedBehaviorSanitizer,
# plus libFuzzer's coverage feedback (-fsanitize=fuzzer-no-link: harmless in
# the tests, whose sanitizer runtime provides the coverage hooks).
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "LLM_FUZZ=ON needs Clang with libFuzzer (e.g. CC=clang-14 CXX=clang++-14; "
                      "Debian: apt-get install clang-14 libclang-rt-14-dev)")
endif()
# mimalloc would take the allocations AddressSanitizer must see.
if(LLM_MIMALLOC)
  message(STATUS "LLM_FUZZ: forcing LLM_MIMALLOC=OFF")
  set(LLM_MIMALLOC OFF CACHE BOOL "Link mimalloc into the llm and llm-convert tools (never into the library)" FORCE)
endif()
set(LLM_FUZZ_SANITIZERS "address,undefined" CACHE STRING
    "Sanitizers the fuzz build instruments everything with (-fsanitize=...)")
add_compile_options(-fsanitize=fuzzer-no-link,${LLM_FUZZ_SANITIZERS}
                    -fno-sanitize-recover=all -fno-omit-frame-pointer)
add_link_options(-fsanitize=${LLM_FUZZ_SANITIZERS})
# C programs linking the C++ library (the C API test, the C example) need the
# C++ part of the UBSan runtime too (vptr and function-type checks).
add_link_options($<$<LINK_LANGUAGE:C>:-fsanitize-link-c++-runtime>)
link_libraries($<$<LINK_LANGUAGE:C>:stdc++>)
