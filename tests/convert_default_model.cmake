# CTest fixture: converts the default model shipped in models/libllm-tiny once,
# in every storage the tests use. Needs nothing outside the repository.
foreach(var CONVERT MODEL WORK)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "convert_default_model.cmake needs -D${var}=...")
  endif()
endforeach()
file(MAKE_DIRECTORY "${WORK}")
foreach(job "f32|--dtype|f32" "bf16|--dtype|bf16" "int8|--weights|int8" "int4|--weights|int4")
  string(REPLACE "|" ";" parts "${job}")
  list(GET parts 0 name)
  list(SUBLIST parts 1 -1 options)
  execute_process(COMMAND "${CONVERT}" "${MODEL}" -o "${WORK}/libllm-tiny-${name}.llm" ${options}
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "llm-convert failed on ${MODEL} (${name})")
  endif()
endforeach()
