# Helpers of the installed lory SDK for plugins built outside the lory source tree.
#
#   lory_add_router_plugin(NAME SOURCES file.cpp ...)   -> lory_router_NAME.so, linked with Lory::nn
#   lory_add_model_plugin(NAME SOURCES ...)             -> lory_model_NAME.so, linked with Lory::nn
#   lory_add_batcher_plugin(NAME SOURCES ...)           -> lory_batcher_NAME.so, linked with Lory::core
#
# The library goes to the build folder of the calling project; point LORY_PLUGIN_PATH (or an
# experiment's [plugins] path) at that folder.
function(_lory_add_sdk_plugin kind name link)
  cmake_parse_arguments(ARG "" "" "SOURCES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "lory_add_${kind}_plugin(${name}): give SOURCES")
  endif()
  add_library(${name} MODULE ${ARG_SOURCES})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    OUTPUT_NAME "lory_${kind}_${name}"
    CXX_STANDARD 17
    CXX_STANDARD_REQUIRED ON
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_link_libraries(${name} PRIVATE ${link})
endfunction()

function(lory_add_router_plugin name)
  _lory_add_sdk_plugin(router ${name} Lory::nn ${ARGN})
endfunction()

function(lory_add_model_plugin name)
  _lory_add_sdk_plugin(model ${name} Lory::nn ${ARGN})
endfunction()

function(lory_add_batcher_plugin name)
  _lory_add_sdk_plugin(batcher ${name} Lory::core ${ARGN})
endfunction()
