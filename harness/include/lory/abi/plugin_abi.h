/* The plugin boundary of lory, in plain C: the one thing the harness reads from a shared
 * library before any C++ object crosses. Every plugin exports
 *
 *     const LoryPluginInfo* lory_plugin_info(void);
 *
 * The harness reads `header.abi_version` first and refuses the plugin (naming both versions) when
 * it differs from LORY_PLUGIN_ABI_VERSION; only then does it read the rest of the struct, compare
 * the build fingerprint, and import the C++ factory of the plugin's kind through Boost.DLL.
 *
 * What changes LORY_PLUGIN_ABI_VERSION (see docs/plugin-abi.md): any change to the layout of the
 * structs below, to the meaning of a field, or to a C++ interface a plugin implements or receives
 * (lory/nn/router_api.h, lory/nn/model_api.h, lory/core/batcher_api.h, lory/core/param_values.h).
 * Adding a new plugin kind or parameter type is also a version change, because an older harness
 * cannot interpret it. */
#ifndef LORY_PLUGIN_ABI_H
#define LORY_PLUGIN_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LORY_PLUGIN_ABI_VERSION 4u

/* Name of the exported C metadata function. */
#define LORY_PLUGIN_INFO_SYMBOL "lory_plugin_info"

typedef enum LoryPluginKind {
  LORY_PLUGIN_ROUTER = 1,  /* builds the FFN sub-layer of each transformer block */
  LORY_PLUGIN_BATCHER = 2, /* plans training instances from a prepared corpus */
  LORY_PLUGIN_MODEL = 3    /* builds the network from a config and a router */
} LoryPluginKind;

typedef enum LoryParamType {
  LORY_PARAM_BOOL = 1,
  LORY_PARAM_INT = 2,
  LORY_PARAM_FLOAT = 3,
  LORY_PARAM_STRING = 4,
  LORY_PARAM_PATH = 5 /* a string naming a file or folder: the plugin receives it resolved against
                         the experiment file's folder when relative (empty stays empty) */
} LoryParamType;

/* One declared parameter of a plugin: the harness validates the plugin's TOML table against
 * these and fills in defaults, so a plugin never sees an unknown, mistyped or out-of-range value.
 */
typedef struct LoryParamSpec {
  const char* name;
  uint32_t type; /* a LoryParamType */
  const char*
      default_value; /* TOML-free literal: "256", "0.02", "true", "paper"; NULL = required */
  double min_value;  /* inclusive bounds for INT and FLOAT; -HUGE_VAL / HUGE_VAL when open */
  double max_value;
  const char* choices; /* STRING: allowed values separated by '|'; NULL = any string */
  const char* doc;     /* one line */
} LoryParamSpec;

/* What a plugin was built with. A plugin whose C++ ABI flag or LibTorch version differs from the
 * harness's would pass C++ objects with another layout, so the harness refuses it. */
typedef struct LoryBuildFingerprint {
  const char* compiler;      /* e.g. "GCC 12.2.0" */
  int32_t cxx11_abi;         /* value of _GLIBCXX_USE_CXX11_ABI */
  const char* torch_version; /* "1.13.0"; "none" for plugins that do not use LibTorch */
} LoryBuildFingerprint;

/* Read before anything else; stays first in every future version of LoryPluginInfo. */
typedef struct LoryPluginInfoHeader {
  uint32_t abi_version;
  uint32_t struct_size;
} LoryPluginInfoHeader;

typedef struct LoryPluginInfo {
  LoryPluginInfoHeader header;
  uint32_t kind; /* a LoryPluginKind */
  const char* name;
  const char* description; /* one line */
  LoryBuildFingerprint fingerprint;
  const LoryParamSpec* params;
  uint32_t param_count;
} LoryPluginInfo;

typedef const LoryPluginInfo* (*LoryPluginInfoFn)(void);

#ifdef __cplusplus
}
#endif

#endif /* LORY_PLUGIN_ABI_H */
