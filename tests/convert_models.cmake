# CTest fixture: converts the reference checkpoints of ../shared once, before
# the tests that need them. Without ../shared it converts nothing and says so;
# those tests then skip with their own message.
foreach(var CONVERT SHARED WORK)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "convert_models.cmake needs -D${var}=...")
  endif()
endforeach()
if(NOT EXISTS "${SHARED}/models/tiny-llama-code/config.json")
  message(STATUS "SKIPPED: ${SHARED}/models not found; model tests will skip")
  return()
endif()
file(MAKE_DIRECTORY "${WORK}")
set(jobs
  "tiny-llama-code|f32|tiny-llama-code-f32.llm|-"
  "tiny-llama-code|bf16|tiny-llama-code-bf16.llm|-"
  "tiny-llama-code|f32|tiny-llama-code-vocab.llm|--vocab-only"
  "tiny-random-llama3|f32|tiny-random-llama3-f32.llm|-"
  "tiny-random-mistral-swa|f32|tiny-random-mistral-swa-f32.llm|-")
foreach(job ${jobs})
  string(REPLACE "|" ";" parts "${job}")
  list(GET parts 0 model)
  list(GET parts 1 dtype)
  list(GET parts 2 out)
  list(GET parts 3 extra)
  if(extra STREQUAL "-")
    set(extra "")
  endif()
  # REUSE: another build's converted files (the sanitizer builds link them
  # instead of converting again under instrumentation).
  if(DEFINED REUSE AND NOT REUSE STREQUAL "" AND EXISTS "${REUSE}/${out}")
    file(REMOVE "${WORK}/${out}")
    file(CREATE_LINK "${REUSE}/${out}" "${WORK}/${out}" SYMBOLIC)
    message(STATUS "${out}: linked to ${REUSE}/${out}")
    continue()
  endif()
  execute_process(COMMAND "${CONVERT}" "${SHARED}/models/${model}" -o "${WORK}/${out}" --dtype ${dtype} ${extra}
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "llm-convert failed on ${model} (${dtype} ${extra})")
  endif()
endforeach()
