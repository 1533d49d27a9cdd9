# Shared build helpers: dependencies, warnings, the torch precompiled header, plugins and tests.
include_guard(GLOBAL)

# ccache when present. PCH needs the sloppiness settings or every PCH user misses the cache.
find_program(MMR_CCACHE ccache)
if(MMR_CCACHE)
  set(CMAKE_C_COMPILER_LAUNCHER ${CMAKE_COMMAND} -E env
      CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime ${MMR_CCACHE})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CMAKE_C_COMPILER_LAUNCHER})
endif()

find_package(Threads REQUIRED)
if(NOT MMR_FUZZ)  # the fuzz build (fuzz/) holds no LibTorch code
  find_package(Torch REQUIRED)
endif()
find_package(yaml-cpp REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(Boost 1.74 REQUIRED COMPONENTS filesystem)
# cpp-httplib (Debian builds it as a shared library with OpenSSL, zlib and brotli): its pkg-config file carries the
# CPPHTTPLIB_*_SUPPORT defines the library was compiled with, which every user must share (they change the
# classes' layout). The openai_compatible judge and the HTTP tests link PkgConfig::HTTPLIB; `runner serve` is on
# Boost.Beast (app/serve_http.h).
find_package(PkgConfig REQUIRED)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET GLOBAL cpp-httplib)

# The build id a plugin must share with the host: compiler + LibTorch version.
set(MMR_TORCH_VERSION "${Torch_VERSION}")
if(NOT MMR_TORCH_VERSION)
  set(MMR_TORCH_VERSION "unknown")
endif()
set(MMR_BUILD_ID "${CMAKE_CXX_COMPILER_ID}-${CMAKE_CXX_COMPILER_VERSION}/libtorch-${MMR_TORCH_VERSION}")
message(STATUS "mmrunner build id: ${MMR_BUILD_ID}")

function(mmr_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-unused-parameter)
  if(MMR_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# One precompiled header for LibTorch, built once and reused by every target that includes torch.
# Torch's own flags (e.g. -D_GLIBCXX_USE_CXX11_ABI) come from TORCH_CXX_FLAGS.
function(mmr_use_torch target)
  if(NOT TARGET mmr_torch_pch)
    add_library(mmr_torch_pch OBJECT ${PROJECT_SOURCE_DIR}/cmake/torch_pch.cpp)
    target_link_libraries(mmr_torch_pch PUBLIC ${TORCH_LIBRARIES})
    separate_arguments(_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
    target_compile_options(mmr_torch_pch PUBLIC ${_torch_flags})
    target_precompile_headers(mmr_torch_pch PRIVATE <torch/torch.h>)
    mmr_warnings(mmr_torch_pch)  # same flags as its users (-Wpedantic changes predefined macros), or GCC rejects the PCH
  endif()
  target_link_libraries(${target} PRIVATE ${TORCH_LIBRARIES})
  separate_arguments(_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
  target_compile_options(${target} PRIVATE ${_torch_flags})
  target_precompile_headers(${target} REUSE_FROM mmr_torch_pch)
  # libstdc++ first among the needed libraries: PyTorch 2.11's libtorch_cpu.so exports its own, incompatible
  # copies of std::filesystem functions, and whichever library comes first in the search order supplies them.
  # Measured on the GPU machines: std::filesystem::remove_all segfaults in any program linked against that
  # libtorch unless libstdc++ is searched first (a 10-line program reproduces it).
  target_link_options(${target} PRIVATE "LINKER:--push-state,--no-as-needed" -lstdc++ "LINKER:--pop-state")
endfunction()

# mmr_add_plugin(<name> KIND <models|algorithms|datasets|benchmarks|judges> SOURCES ... [LIBS ...] [TORCH])
# Builds plugins/<kind>/lib<name>.so in the build's plugin folder, linked against the host's plugin API.
function(mmr_add_plugin name)
  cmake_parse_arguments(P "TORCH" "KIND" "SOURCES;LIBS" ${ARGN})
  set(target mmr_plugin_${name})
  add_library(${target} MODULE ${P_SOURCES})
  set_target_properties(${target} PROPERTIES OUTPUT_NAME ${name} PREFIX "lib"
      LIBRARY_OUTPUT_DIRECTORY ${MMR_PLUGIN_OUTPUT_DIR}/${P_KIND})
  target_link_libraries(${target} PRIVATE mmr_plugin_api ${P_LIBS})
  mmr_warnings(${target})
  if(P_TORCH)
    mmr_use_torch(${target})
  endif()
  install(TARGETS ${target} LIBRARY DESTINATION lib/mmrunner/plugins/${P_KIND})  # Registry::builtin_dir
  set_property(GLOBAL APPEND PROPERTY MMR_PLUGIN_TARGETS ${target})
endfunction()

# mmr_add_gtest(<name> SOURCES ... [LIBS ...] [TORCH] [PLUGINS])
# A GoogleTest executable registered with ctest. Tests read their data from tests/data in the source tree
# (MMR_TEST_DATA_DIR) and may find the build's plugin folder through MMR_TEST_PLUGIN_DIR. PLUGINS: it loads plugins
# or the sentencepiece module (or starts the runner, which does). A sanitized build (MMR_SANITIZE) leaves out TORCH
# and PLUGINS tests: LibTorch is not instrumented, the plugins those tests need mostly use it, and AddressSanitizer
# refuses the RTLD_DEEPBIND the sentencepiece module is loaded with.
function(mmr_add_gtest name)
  cmake_parse_arguments(T "TORCH;PLUGINS" "" "SOURCES;LIBS" ${ARGN})
  if(NOT MMR_BUILD_TESTS OR (MMR_SANITIZE AND (T_TORCH OR T_PLUGINS)))
    return()
  endif()
  find_package(GTest REQUIRED)
  include(GoogleTest)
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} mmr_crash GTest::gtest GTest::gtest_main Threads::Threads)
  target_compile_definitions(${name} PRIVATE
      MMR_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/tests/data"
      MMR_TEST_PLUGIN_DIR="${MMR_PLUGIN_OUTPUT_DIR}"
      MMR_TEST_BINARY_DIR="${PROJECT_BINARY_DIR}")
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
  mmr_warnings(${name})
  if(T_TORCH)
    mmr_use_torch(${name})
  endif()
  set_property(GLOBAL APPEND PROPERTY MMR_GTEST_TARGETS ${name})
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST WORKING_DIRECTORY ${PROJECT_BINARY_DIR}
      PROPERTIES ENVIRONMENT "MMR_TEST_DATA_DIR=${PROJECT_SOURCE_DIR}/tests/data")
endfunction()

# add_subdirectory unless the folder (relative to the source root) is listed in MMR_SKIP_DIRS.
function(mmr_subdirectory dir)
  file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR}/${dir})
  if(NOT rel IN_LIST MMR_SKIP_DIRS)
    add_subdirectory(${dir})
  endif()
endfunction()
