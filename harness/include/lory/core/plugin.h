// What a plugin source file includes to declare itself: the C metadata (ABI version, kind, name,
// description, build fingerprint, parameters) and the C++ factory that the harness imports with
// Boost.DLL after the metadata has been checked. A plugin file ends with, for example:
//
//   LORY_PLUGIN_METADATA(LORY_PLUGIN_ROUTER, "dense", "One SwiGLU FFN per layer", kDenseParams)
//   LORY_ROUTER_FACTORY(lory_plugins::dense::create)
//
// where create() returns std::unique_ptr<lory::RouterPlugin> (batcher: BatcherPlugin, model:
// ModelPlugin). The factory must be a namespace-qualified function (an unqualified name makes
// the Boost.DLL alias point at itself).
#pragma once

#include <boost/dll/alias.hpp>
#include <cmath>
#include <iterator>

#include "lory/abi/plugin_abi.h"
#include "lory/core/param_check.h"

#define LORY_STRINGIFY_IMPL(x) #x
#define LORY_STRINGIFY(x) LORY_STRINGIFY_IMPL(x)

#if defined(__clang__)
#define LORY_COMPILER_STRING "Clang " __clang_version__
#elif defined(__GNUC__)
#define LORY_COMPILER_STRING                                                             \
  "GCC " LORY_STRINGIFY(__GNUC__) "." LORY_STRINGIFY(__GNUC_MINOR__) "." LORY_STRINGIFY( \
      __GNUC_PATCHLEVEL__)
#else
#define LORY_COMPILER_STRING "unknown compiler"
#endif

#ifndef _GLIBCXX_USE_CXX11_ABI
#define LORY_CXX11_ABI_VALUE -1
#else
#define LORY_CXX11_ABI_VALUE _GLIBCXX_USE_CXX11_ABI
#endif

// The torch version a plugin was compiled against is the one its own headers announce; a plugin
// that never includes LibTorch says "none" and may be loaded by any harness build. It is decided
// where the metadata macro expands (the end of the plugin's source, after all of its includes),
// not where this header is included: overload resolution picks the (int) overload, declared by
// lory/nn/routing.h (which every torch-side SDK header includes) or below when LibTorch came first,
// over the (...) fallback. So the include order of a plugin cannot hide its LibTorch version.
namespace lory::plugin_detail {
inline const char* torch_version_of_plugin(...) { return "none"; }
}  // namespace lory::plugin_detail
#if defined(TORCH_VERSION) && !defined(LORY_TORCH_VERSION_OVERLOAD)
#define LORY_TORCH_VERSION_OVERLOAD
namespace lory::plugin_detail {
inline const char* torch_version_of_plugin(int) { return TORCH_VERSION; }
}  // namespace lory::plugin_detail
#endif
#define LORY_TORCH_VERSION_STRING ::lory::plugin_detail::torch_version_of_plugin(0)

// Open range bound for LoryParamSpec.
#define LORY_UNBOUNDED HUGE_VAL

#define LORY_PLUGIN_METADATA_WITH(kind, name, description, params_pointer, param_count)            \
  extern "C" __attribute__((visibility("default"))) const LoryPluginInfo* lory_plugin_info(void) { \
    static const LoryPluginInfo info = {                                                           \
        {LORY_PLUGIN_ABI_VERSION, static_cast<uint32_t>(sizeof(LoryPluginInfo))},                  \
        static_cast<uint32_t>(kind),                                                               \
        name,                                                                                      \
        description,                                                                               \
        {LORY_COMPILER_STRING, LORY_CXX11_ABI_VALUE, LORY_TORCH_VERSION_STRING},                   \
        params_pointer,                                                                            \
        static_cast<uint32_t>(param_count)};                                                       \
    return &info;                                                                                  \
  }

#define LORY_PLUGIN_METADATA(kind, name, description, params_array) \
  LORY_PLUGIN_METADATA_WITH(kind, name, description, params_array, std::size(params_array))

#define LORY_PLUGIN_METADATA_NO_PARAMS(kind, name, description) \
  LORY_PLUGIN_METADATA_WITH(kind, name, description, nullptr, 0)

// Optional: the plugin's cross-parameter rules, checked at validation (see
// lory/core/param_check.h).
#define LORY_PARAM_CHECK(qualified_function) BOOST_DLL_ALIAS(qualified_function, lory_check_params)

#define LORY_ROUTER_FACTORY(qualified_function) \
  BOOST_DLL_ALIAS(qualified_function, lory_create_router)
#define LORY_BATCHER_FACTORY(qualified_function) \
  BOOST_DLL_ALIAS(qualified_function, lory_create_batcher)
#define LORY_MODEL_FACTORY(qualified_function) \
  BOOST_DLL_ALIAS(qualified_function, lory_create_model)
