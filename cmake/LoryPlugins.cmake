# lory_add_plugin(NAME SOURCES ... [LIBRARIES ...])
# Builds a plugin as a MODULE library named lory_<kind>_<name>.so into the build's plugin folder,
# where `lory` finds it without configuration.
function(lory_add_plugin name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBRARIES" ${ARGN})
  add_library(${name} MODULE ${ARG_SOURCES})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    LIBRARY_OUTPUT_DIRECTORY ${LORY_PLUGIN_OUTPUT_DIRECTORY}
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_link_libraries(${name} PRIVATE ${ARG_LIBRARIES})
endfunction()
