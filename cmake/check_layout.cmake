# ctest: what the restructure (issue 10) promised about the layout, checked on the sources so it cannot rot:
# nothing SteerLM/HelpSteer-specific in core/, and the training loop and the DPO plugin name no LLaVA parameter or
# option (they reach the model only through the model interface).
file(GLOB_RECURSE core_files ${SRC}/core/*.h ${SRC}/core/*.cpp ${SRC}/core/*.txt)
foreach(f IN LISTS core_files)
  file(READ ${f} text)
  string(TOLOWER "${text}" lower)
  if(lower MATCHES "steer")
    message(FATAL_ERROR "${f}: names SteerLM/HelpSteer; algorithm-specific code belongs in its plugin folder")
  endif()
endforeach()
file(GLOB algorithm_files ${SRC}/core/lib/training/trainer.* ${SRC}/plugins/algorithms/dpo/*.h ${SRC}/plugins/algorithms/dpo/*.cpp)
foreach(f IN LISTS algorithm_files)
  file(READ ${f} text)
  if(text MATCHES "multi_modal_projector|mm_projector|lora_r|train_projector|llava")
    message(FATAL_ERROR "${f}: names a LLaVA parameter or option ('${CMAKE_MATCH_0}'); use the model interface")
  endif()
endforeach()
message(STATUS "layout: core/ names no algorithm; trainer and dpo name no LLaVA parameter or option")
