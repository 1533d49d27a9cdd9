# The plugin SDK: the public headers (core/api/, the whole plugin ABI) and mmrunnerConfig.cmake, so a plugin can
# be built outside this source tree against them alone. Made in the build tree (build/sdk/: what the tests use) and
# installed by `cmake --install` (<prefix>/include/core/api, <prefix>/lib/cmake/mmrunner).
file(GLOB mmr_api_headers ${PROJECT_SOURCE_DIR}/core/api/*.h)
foreach(header IN LISTS mmr_api_headers)
  get_filename_component(header_name ${header} NAME)
  configure_file(${header} ${PROJECT_BINARY_DIR}/sdk/include/core/api/${header_name} COPYONLY)
endforeach()
set(MMR_SDK_INCLUDE_RELATIVE "include")
configure_file(${PROJECT_SOURCE_DIR}/cmake/mmrunnerConfig.cmake.in ${PROJECT_BINARY_DIR}/sdk/mmrunnerConfig.cmake @ONLY)

install(FILES ${mmr_api_headers} DESTINATION include/core/api)
set(MMR_SDK_INCLUDE_RELATIVE "../../../include")
configure_file(${PROJECT_SOURCE_DIR}/cmake/mmrunnerConfig.cmake.in ${PROJECT_BINARY_DIR}/sdk-install/mmrunnerConfig.cmake @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/sdk-install/mmrunnerConfig.cmake DESTINATION lib/cmake/mmrunner)
