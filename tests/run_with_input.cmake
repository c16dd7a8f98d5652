# Runs EXE with ARGS (a ;-list) and INPUT as its stdin, prints what it wrote,
# and fails if it fails: ctest's PASS_REGULAR_EXPRESSION then checks the text.
execute_process(COMMAND "${EXE}" ${ARGS} INPUT_FILE "${INPUT}" RESULT_VARIABLE rc
                OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${EXE} exited with ${rc}")
endif()
