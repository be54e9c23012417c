# lory_use_torch_pch(TARGET)
# Reuses lory_nn's precompiled <torch/torch.h>. GCC accepts a precompiled header only under the
# same code-generation flags, so executables compile with -fPIC (not -fPIE) like the libraries.
function(lory_use_torch_pch target)
  target_precompile_headers(${target} REUSE_FROM lory_nn)
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "EXECUTABLE")
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE OFF)
    target_compile_options(${target} PRIVATE -fPIC)
  else()
    set_target_properties(${target} PROPERTIES DEFINE_SYMBOL "")
  endif()
endfunction()

# lory_add_plugin(NAME SOURCES ... [LIBRARIES ...])
# Builds an in-tree plugin as a MODULE library into the build's plugin folder, where `lory` finds
# it without configuration, and installs it into <prefix>/lib/lory/plugins. (Plugins built outside
# the tree use lory_add_router_plugin & co. from the installed SDK: cmake/LorySdkPlugins.cmake.)
function(lory_add_plugin name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBRARIES" ${ARGN})
  add_library(${name} MODULE ${ARG_SOURCES})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    LIBRARY_OUTPUT_DIRECTORY ${LORY_PLUGIN_OUTPUT_DIRECTORY}
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    DEFINE_SYMBOL "")
  target_link_libraries(${name} PRIVATE ${ARG_LIBRARIES})
  install(TARGETS ${name} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/lory/plugins)
  if("lory_nn" IN_LIST ARG_LIBRARIES)
    lory_use_torch_pch(${name})
  endif()
endfunction()
