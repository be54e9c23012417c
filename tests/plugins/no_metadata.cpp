// A shared library that is not a lory plugin: it has no lory_plugin_info symbol.
extern "C" int some_other_function(void) { return 42; }
