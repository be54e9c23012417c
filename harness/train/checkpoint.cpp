#include "checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/support/diagnostics.h"
#include "core/support/kill_points.h"
#include "device_placement.h"
#include "lory/core/sha256.h"

namespace lory {

namespace fs = std::filesystem;

namespace {

void fsync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// `kill_point_name` marks the moment between the temporary file and the rename (crash tests).
void write_atomically(const fs::path& target, const std::string& bytes, const char* kill_point_name,
                      int64_t step) {
  const fs::path temporary = target.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) throw UserError(fmt::format("cannot write '{}' (disk full?)", temporary.string()));
  }
  fsync_path(temporary);
  kill_point(kill_point_name, step);
  fs::rename(temporary, target);
  fsync_path(target.parent_path());
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace

void CheckpointStore::save(LanguageModel& model, const AdamW& optimizer,
                           const TrainingState& state) const {
  fs::create_directories(directory_);
  torch::serialize::OutputArchive archive;
  torch::serialize::OutputArchive model_archive;
  model.save(model_archive);
  archive.write("model", model_archive);
  torch::serialize::OutputArchive optimizer_archive;
  optimizer.save(optimizer_archive);
  archive.write("optimizer", optimizer_archive);
  archive.write("rng", at::detail::getDefaultCPUGenerator().get_state());
  std::ostringstream bytes;
  archive.save_to(bytes);
  const std::string file = fmt::format("checkpoint-{:08d}.pt", state.step);
  const std::string payload = bytes.str();
  write_atomically(fs::path(directory_) / file, payload, "checkpoint_file", state.step);
  const nlohmann::json meta = {{"file", file},
                               {"sha256", sha256_hex(payload)},
                               {"step", state.step},
                               {"data_epoch", state.data.epoch},
                               {"data_instance", state.data.instance},
                               {"upcycled", state.upcycled},
                               {"upcycle_step", state.upcycle_step},
                               {"tokens_seen", state.tokens_seen}};
  write_atomically(fs::path(directory_) / "latest.json", meta.dump(2) + "\n", "checkpoint_index",
                   state.step);
  for (const auto& entry : fs::directory_iterator(directory_)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("checkpoint-", 0) == 0 && name != file) fs::remove(entry.path());
  }
}

std::optional<TrainingState> CheckpointStore::latest_state() const {
  const fs::path meta_path = fs::path(directory_) / "latest.json";
  std::error_code ec;
  if (!fs::exists(meta_path, ec)) return std::nullopt;
  try {
    const nlohmann::json meta = nlohmann::json::parse(read_file(meta_path));
    TrainingState state;
    state.step = meta.at("step").get<int64_t>();
    state.data = {meta.at("data_epoch").get<int64_t>(), meta.at("data_instance").get<int64_t>()};
    state.upcycled = meta.at("upcycled").get<bool>();
    state.upcycle_step = meta.at("upcycle_step").get<int64_t>();
    state.tokens_seen = meta.at("tokens_seen").get<int64_t>();
    return state;
  } catch (const nlohmann::json::exception& e) {
    throw UserError(fmt::format(
        "checkpoint index '{}' is unreadable ({}); delete the folder to start the run over, then "
        "rerun with `lory run ... --retry-failed`",
        meta_path.string(), e.what()));
  }
}

TrainingState CheckpointStore::restore(LanguageModel& model, AdamW* optimizer) const {
  const auto state = latest_state();
  if (!state) throw UserError(fmt::format("no checkpoint in '{}'", directory_));
  const nlohmann::json meta =
      nlohmann::json::parse(read_file(fs::path(directory_) / "latest.json"));
  const fs::path file = fs::path(directory_) / meta.at("file").get<std::string>();
  const std::string payload = read_file(file);
  if (payload.empty() || sha256_hex(payload) != meta.at("sha256").get<std::string>()) {
    throw UserError(fmt::format(
        "checkpoint '{}' is missing or fails its sha256 check; delete '{}' to start the run "
        "over, then rerun with `lory run ... --retry-failed`",
        file.string(), directory_));
  }
  torch::serialize::InputArchive archive;
  archive.load_from(payload.data(), payload.size());
  // Read on the host, whatever device the run trains on: loading puts every tensor where the
  // archive's is, so the model and the moments go back to the model's device after.
  const torch::Device device = module_device(model);
  torch::serialize::InputArchive model_archive;
  archive.read("model", model_archive);
  model.load(model_archive);
  if (!device.is_cpu()) model.to(device);
  if (optimizer) {
    torch::serialize::InputArchive optimizer_archive;
    archive.read("optimizer", optimizer_archive);
    optimizer->load(optimizer_archive);
    if (!device.is_cpu()) optimizer->to(device);
  }
  torch::Tensor rng;
  archive.read("rng", rng);
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  generator.set_state(rng);
  return *state;
}

}  // namespace lory
