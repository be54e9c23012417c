# Run at every build (target lory_code_version): writes OUT with `git describe` of SOURCE_DIR, so
# that runs.code_version names the tree the binaries were built from, not the tree as it is when
# a run starts. The file is rewritten only when the description changes, so an unchanged tree
# rebuilds nothing.
execute_process(COMMAND git -C "${SOURCE_DIR}" describe --always --dirty --abbrev=12
                OUTPUT_VARIABLE description OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE status)
if(NOT status EQUAL 0 OR description STREQUAL "")
  set(description "unknown")
endif()
set(content "// Generated at build time by cmake/CodeVersion.cmake: the source tree these binaries were built from.\n#pragma once\n#define LORY_CODE_VERSION \"${description}\"\n")
set(previous "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" previous)
endif()
if(NOT previous STREQUAL content)
  file(WRITE "${OUT}" "${content}")
endif()
