# ctest: the command .ci/run executes must appear verbatim in README.md (CI runs what the README tells users).
file(STRINGS ${SRC}/.ci/run lines)
list(GET lines -1 command)
file(READ ${SRC}/README.md readme)
string(FIND "${readme}" "${command}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "README.md does not contain the command of .ci/run:\n  ${command}")
endif()
message(STATUS "README.md contains: ${command}")
