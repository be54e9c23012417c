// Plugin loading: a real plugin loads and works; every broken plugin gets its one-line error.
#include <dlfcn.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "core/plugins/plugin_loader.h"
#include "lory/core/batcher_api.h"
#include "test_support.h"

namespace lory {
namespace {

namespace fs = std::filesystem;

// Stands in for lory::RouterPlugin (which needs LibTorch) where only the kind and alias matter.
struct RouterLikeInterface {
  static constexpr LoryPluginKind kKind = LORY_PLUGIN_ROUTER;
  static constexpr const char* kFactoryAlias = "lory_create_router";
};

std::string test_plugin(const std::string& name) {
  return testing::build_dir() + "/tests/plugins/" + name + ".so";
}

std::string load_error(const std::string& path) {
  try {
    load_plugin_file(path);
  } catch (const PluginError& e) {
    return e.what();
  }
  return "";
}

TEST(PluginLoader, LoadsAWellFormedPluginWithItsMetadataAndSchema) {
  const LoadedPlugin plugin = load_plugin_file(test_plugin("good_batcher"));
  EXPECT_EQ(plugin.descriptor.name, "test_batcher");
  EXPECT_EQ(plugin.descriptor.kind, PluginKind::Batcher);
  EXPECT_EQ(plugin.descriptor.abi_version, LORY_PLUGIN_ABI_VERSION);
  EXPECT_EQ(plugin.descriptor.torch_version, "none");
  ASSERT_EQ(plugin.descriptor.schema.params().size(), 4u);
  const ParamSpec* note = plugin.descriptor.schema.find("note");
  ASSERT_TRUE(note);
  EXPECT_EQ(note->choices, (std::vector<std::string>{"hello", "world"}));
  EXPECT_EQ(plugin.descriptor.schema.find("window")->range_text(), "[1, 64]");
}

TEST(PluginLoader, PluginObjectsKeepTheirLibraryLoadedAfterTheRegistryIsGone) {
  const std::string path = fs::weakly_canonical(test_plugin("good_batcher")).string();
  std::shared_ptr<BatcherPlugin> batcher;
  {
    const PluginRegistry registry = PluginRegistry::discover({path});
    ASSERT_TRUE(registry.problems().empty());
    batcher = create_plugin_object<BatcherPlugin>(
        registry.require("test_batcher", PluginKind::Batcher, "test"));
  }
  void* still_loaded = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  EXPECT_NE(still_loaded, nullptr);
  if (still_loaded) dlclose(still_loaded);
  batcher.reset();
}

TEST(PluginLoader, MissingFile) {
  EXPECT_EQ(load_error("/nonexistent/lory_router_x.so"),
            "plugin file '/nonexistent/lory_router_x.so' does not exist");
}

TEST(PluginLoader, FileThatIsNotASharedLibrary) {
  testing::TempDir dir;
  testing::write_text(dir.file("fake.so"), "#!/bin/sh\necho not a library\n");
  const std::string error = load_error(dir.file("fake.so"));
  EXPECT_NE(error.find("is not a shared library (no ELF header)"), std::string::npos) << error;
}

// The first bytes of a real plugin, as a half-finished copy leaves it. dlopen would map segments
// past the end of such a file and the process would die of SIGBUS with nothing printed.
std::string truncated_copy(const testing::TempDir& dir, const std::string& name, size_t bytes) {
  const std::string whole =
      testing::read_text(testing::build_dir() + "/plugins/lory_router_expert_choice.so");
  EXPECT_GT(whole.size(), bytes);
  const std::string path = dir.file(name);
  testing::write_text(path, whole.substr(0, bytes));
  return path;
}

TEST(PluginLoader, TruncatedSharedLibrariesAreRefusedByNameBeforeDlopen) {
  testing::TempDir dir;
  for (const size_t bytes : {size_t{40}, size_t{4096}, size_t{30000}}) {
    const std::string path = truncated_copy(dir, fmt::format("cut_{}.so", bytes), bytes);
    const std::string error = load_error(path);
    EXPECT_NE(error.find("'" + path + "' is truncated or damaged"), std::string::npos)
        << bytes << ": " << error;
    EXPECT_NE(error.find(fmt::format("the file has {} bytes", bytes)), std::string::npos) << error;
  }
}

TEST(PluginRegistry, ATruncatedFileIsReportedAndTheOtherPluginsStillLoad) {
  testing::TempDir dir;
  std::filesystem::create_directories(dir.file("plugins"));
  truncated_copy(dir, "plugins/lory_half_copied.so", 30000);
  std::filesystem::copy_file(test_plugin("good_batcher"), dir.file("plugins/good_batcher.so"));
  const PluginRegistry registry = PluginRegistry::discover({dir.file("plugins")});
  ASSERT_EQ(registry.problems().size(), 1u);
  EXPECT_NE(registry.problems().front().find("lory_half_copied.so' is truncated"),
            std::string::npos)
      << registry.problems().front();
  EXPECT_EQ(registry.unloadable_files().size(), 1u);
  EXPECT_TRUE(registry.find("test_batcher"));
  EXPECT_NO_THROW(registry.throw_if_problems(/*skip_unloadable=*/true));
  EXPECT_THROW(registry.throw_if_problems(), PluginError);
  // Through the CLI: a message and a non-zero exit, never a signal.
  const auto listed = testing::run_command(testing::build_dir() + "/lory plugins --plugin-path " +
                                           dir.file("plugins"));
  EXPECT_EQ(listed.exit_code, 1) << listed.output;
  EXPECT_NE(listed.output.find("lory_half_copied.so' is truncated or damaged"), std::string::npos)
      << listed.output;
  EXPECT_NE(listed.output.find("test_batcher"), std::string::npos) << listed.output;
}

// A symbolic link loop in a plugin folder (l1.so -> l2.so -> l1.so) is one more bad file: named
// with the system's reason and skipped, while the good plugin beside it loads.
TEST(PluginRegistry, ASymlinkLoopIsReportedAndSkippedAndTheOtherPluginsStillLoad) {
  testing::TempDir dir;
  std::filesystem::create_directories(dir.file("plugins"));
  std::filesystem::create_symlink("l2.so", dir.file("plugins/l1.so"));
  std::filesystem::create_symlink("l1.so", dir.file("plugins/l2.so"));
  std::filesystem::copy_file(test_plugin("good_batcher"), dir.file("plugins/good_batcher.so"));
  const PluginRegistry registry = PluginRegistry::discover({dir.file("plugins")});
  ASSERT_EQ(registry.problems().size(), 2u);
  EXPECT_NE(registry.problems().front().find(
                "l1.so' cannot be resolved: Too many levels of symbolic links"),
            std::string::npos)
      << registry.problems().front();
  EXPECT_EQ(registry.unloadable_files().size(), 2u);
  EXPECT_TRUE(registry.find("test_batcher"));
  EXPECT_NO_THROW(registry.throw_if_problems(/*skip_unloadable=*/true));
  const auto listed = testing::run_command(testing::build_dir() + "/lory plugins --plugin-path " +
                                           dir.file("plugins"));
  EXPECT_EQ(listed.exit_code, 1) << listed.output;
  EXPECT_NE(listed.output.find("test_batcher"), std::string::npos) << listed.output;
  EXPECT_EQ(listed.output.find("internal error"), std::string::npos) << listed.output;
}

TEST(PluginLoader, SharedLibraryWithoutMetadataSymbol) {
  const std::string error = load_error(test_plugin("no_metadata"));
  EXPECT_NE(error.find("has no 'lory_plugin_info' symbol, so it is not a lory plugin"),
            std::string::npos)
      << error;
}

TEST(PluginLoader, AbiMismatchNamesBothVersions) {
  const std::string error = load_error(test_plugin("abi_mismatch"));
  EXPECT_NE(error.find("was built for plugin ABI version 99, but this harness uses version " +
                       std::to_string(LORY_PLUGIN_ABI_VERSION)),
            std::string::npos)
      << error;
}

TEST(PluginLoader, PluginOfAnOlderAbiIsRefusedWithBothVersions) {
  // Version 0's metadata is a smaller struct: only its header may be read.
  const std::string error = load_error(test_plugin("old_abi"));
  EXPECT_NE(error.find("was built for plugin ABI version 0, but this harness uses version " +
                       std::to_string(LORY_PLUGIN_ABI_VERSION)),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("rebuild the plugin against this harness's SDK"), std::string::npos)
      << error;
}

TEST(PluginLoader, LibTorchMismatchNamesBothVersions) {
  const std::string error = load_error(test_plugin("torch_mismatch"));
  EXPECT_NE(error.find("built against LibTorch 0.4.1"), std::string::npos) << error;
  EXPECT_NE(error.find(std::string("the harness against LibTorch ") +
                       harness_fingerprint().torch_version),
            std::string::npos)
      << error;
}

TEST(PluginLoader, BrokenParameterDeclaration) {
  const std::string error = load_error(test_plugin("broken_parameter"));
  EXPECT_NE(
      error.find(
          "declares a broken parameter: parameter 'depth' default: value 100 is out of range"),
      std::string::npos)
      << error;
}

TEST(PluginLoader, FactoryThatThrows) {
  const LoadedPlugin plugin = load_plugin_file(test_plugin("factory_throws"));
  try {
    create_plugin_object<BatcherPlugin>(plugin);
    FAIL();
  } catch (const PluginError& e) {
    EXPECT_NE(std::string(e.what()).find("failed in its factory: out of coffee"), std::string::npos)
        << e.what();
  }
}

TEST(PluginLoader, PluginWithoutFactory) {
  const LoadedPlugin plugin = load_plugin_file(test_plugin("no_factory"));
  try {
    create_plugin_object<RouterLikeInterface>(plugin);
    FAIL();
  } catch (const PluginError& e) {
    EXPECT_NE(std::string(e.what()).find("exports no 'lory_create_router' factory: declare it with "
                                         "LORY_ROUTER_FACTORY(...)"),
              std::string::npos)
        << e.what();
  }
}

TEST(PluginLoader, WrongKind) {
  const PluginRegistry registry = PluginRegistry::discover({test_plugin("good_batcher")});
  try {
    registry.require("test_batcher", PluginKind::Router, "router.plugin");
    FAIL();
  } catch (const PluginError& e) {
    EXPECT_NE(std::string(e.what()).find("router.plugin = \"test_batcher\" names a batcher plugin"),
              std::string::npos)
        << e.what();
  }
  const LoadedPlugin plugin = load_plugin_file(test_plugin("good_batcher"));
  EXPECT_THROW(create_plugin_object<RouterLikeInterface>(plugin), PluginError);
}

TEST(PluginRegistry, TwoPluginsWithOneNameIsAnErrorNamingBothFiles) {
  const PluginRegistry registry =
      PluginRegistry::discover({test_plugin("good_batcher"), test_plugin("good_batcher_copy")});
  ASSERT_EQ(registry.problems().size(), 1u);
  const std::string& problem = registry.problems().front();
  EXPECT_NE(problem.find("two plugins are named 'test_batcher'"), std::string::npos) << problem;
  EXPECT_NE(problem.find("good_batcher.so"), std::string::npos) << problem;
  EXPECT_NE(problem.find("good_batcher_copy.so"), std::string::npos) << problem;
}

TEST(PluginRegistry, DiscoveryCollectsEveryBrokenFileInAFolder) {
  const PluginRegistry registry =
      PluginRegistry::discover({testing::build_dir() + "/tests/plugins"});
  // abi_mismatch, old_abi, torch_mismatch, no_metadata, broken_parameter, and the duplicate name.
  EXPECT_EQ(registry.problems().size(), 6u);
  EXPECT_TRUE(registry.find("test_batcher"));
  EXPECT_THROW(registry.throw_if_problems(), PluginError);
}

TEST(LoryPluginsCommand, ListsAndDescribesPluginsAndFailsOnBrokenOnes) {
  const auto listed = testing::run_command(testing::build_dir() + "/lory plugins --plugin-path " +
                                           test_plugin("good_batcher"));
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_NE(listed.output.find("test_batcher"), std::string::npos) << listed.output;
  EXPECT_NE(listed.output.find("transformer"), std::string::npos) << listed.output;
  const auto described =
      testing::run_command(testing::build_dir() + "/lory plugins --plugin-path " +
                           test_plugin("good_batcher") + " --describe test_batcher");
  EXPECT_NE(described.output.find("window     integer  4        [1, 64]"), std::string::npos)
      << described.output;
  // The in-tree dense router declares the role that makes it the baseline
  // (lory/core/router_roles.h).
  const auto dense = testing::run_command(testing::build_dir() + "/lory plugins --describe dense");
  EXPECT_NE(dense.output.find("roles:    dense_baseline"), std::string::npos) << dense.output;
  const auto lory_router =
      testing::run_command(testing::build_dir() + "/lory plugins --describe lory");
  EXPECT_EQ(lory_router.output.find("roles:"), std::string::npos) << lory_router.output;
  // A harness section is described like a plugin: trainer.precision with its choices and default.
  const auto trainer =
      testing::run_command(testing::build_dir() + "/lory plugins --describe trainer");
  EXPECT_EQ(trainer.exit_code, 0) << trainer.output;
  EXPECT_NE(trainer.output.find("parameters ([trainer] in an experiment file)"), std::string::npos)
      << trainer.output;
  EXPECT_NE(trainer.output.find("precision"), std::string::npos) << trainer.output;
  EXPECT_NE(trainer.output.find("one of fp32|bf16"), std::string::npos) << trainer.output;
  const auto router_section =
      testing::run_command(testing::build_dir() + "/lory plugins --describe router");
  EXPECT_NE(router_section.output.find("[router.<plugin>]"), std::string::npos)
      << router_section.output;
  const auto unknown =
      testing::run_command(testing::build_dir() + "/lory plugins --describe trainr");
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_NE(unknown.output.find("no plugin or harness section named 'trainr'"), std::string::npos)
      << unknown.output;
  EXPECT_NE(unknown.output.find("sections: data, model, router, batcher, trainer, eval"),
            std::string::npos)
      << unknown.output;
  const auto broken = testing::run_command(testing::build_dir() + "/lory plugins --plugin-path " +
                                           test_plugin("abi_mismatch"));
  EXPECT_NE(broken.exit_code, 0);
  EXPECT_NE(broken.output.find("ABI version 99"), std::string::npos) << broken.output;
}

}  // namespace
}  // namespace lory
