#include "data_parallel.h"

#include <fmt/format.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>
#include <string>

#include "core/support/diagnostics.h"

namespace lory {

namespace {

int environment_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value && *value ? std::atoi(value) : fallback;
}

std::string environment_string(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}

void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
  try {
    work->wait();
  } catch (const c10::Error& e) {
    throw UserError(fmt::format("data-parallel {} failed (a rank died or timed out?): {}", what,
                                e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw UserError(
        fmt::format("data-parallel {} failed (a rank died or timed out?): {}", what, e.what()));
  }
}

}  // namespace

std::unique_ptr<DataParallel> DataParallel::from_environment() {
  const int world_size = environment_int("WORLD_SIZE", 1);
  const int rank = environment_int("RANK", 0);
  std::unique_ptr<DataParallel> dp(new DataParallel(rank, world_size));
  if (world_size <= 1) return dp;
  if (rank < 0 || rank >= world_size)
    throw UserError(fmt::format("RANK = {} is outside WORLD_SIZE = {}", rank, world_size));
  const std::string master = environment_string("MASTER_ADDR", "127.0.0.1");
  const int port = environment_int("MASTER_PORT", 29500);
  const std::chrono::milliseconds timeout(1000LL * environment_int("LORY_COLLECTIVE_TIMEOUT", 120));
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(port);
  store_options.isServer = rank == 0;
  store_options.numWorkers = world_size;
  store_options.timeout = timeout;
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(master, store_options);
  } catch (const std::exception& e) {
    throw UserError(fmt::format(
        "rank {} cannot reach the group's store at {}:{} (MASTER_ADDR, MASTER_PORT): {}", rank,
        master, port, e.what()));
  }
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  // Gloo binds to an interface: GLOO_SOCKET_IFNAME when given, loopback for a single machine,
  // else the address this machine's hostname resolves to.
  if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"); interface && *interface) {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
  } else if (master == "127.0.0.1" || master == "localhost") {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  options->threads = 1;
  dp->group_ = std::make_shared<c10d::ProcessGroupGloo>(store, rank, world_size, options);
  return dp;
}

DataParallel::~DataParallel() = default;

void DataParallel::broadcast_module(torch::nn::Module& module) {
  if (!distributed()) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (auto& p : module.parameters()) tensors.push_back(p.data());
  // Floating buffers only: integer and boolean ones (masks) are built identically on every rank,
  // and Gloo does not broadcast booleans.
  for (auto& b : module.buffers()) {
    if (b.is_floating_point()) tensors.push_back(b.data());
  }
  for (auto& t : tensors) {
    std::vector<torch::Tensor> one = {t};
    wait(group_->broadcast(one), "parameter broadcast");
  }
}

void DataParallel::average_gradients(const std::vector<torch::Tensor>& gradients,
                                     size_t bucket_bytes) {
  if (!distributed() || gradients.empty()) return;
  const auto start = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  size_t first = 0;
  while (first < gradients.size()) {
    size_t last = first, bytes = 0;
    while (last < gradients.size() &&
           (last == first || bytes + gradients[last].nbytes() <= bucket_bytes)) {
      bytes += gradients[last].nbytes();
      ++last;
    }
    std::vector<torch::Tensor> flat_pieces;
    for (size_t i = first; i < last; ++i) flat_pieces.push_back(gradients[i].reshape({-1}));
    std::vector<torch::Tensor> bucket = {torch::cat(flat_pieces)};
    wait(group_->allreduce(bucket), "gradient all-reduce");
    bucket[0].div_(static_cast<double>(world_size_));
    int64_t offset = 0;
    for (size_t i = first; i < last; ++i) {
      const int64_t n = gradients[i].numel();
      gradients[i].copy_(bucket[0].slice(0, offset, offset + n).view_as(gradients[i]));
      offset += n;
    }
    first = last;
  }
  allreduce_seconds_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void DataParallel::sum(torch::Tensor& values) {
  if (!distributed()) return;
  std::vector<torch::Tensor> one = {values};
  wait(group_->allreduce(one), "statistics all-reduce");
}

void DataParallel::sum(std::vector<double>& values) {
  if (!distributed() || values.empty()) return;
  torch::Tensor t = torch::tensor(values, torch::kFloat64);
  sum(t);
  for (size_t i = 0; i < values.size(); ++i) values[i] = t[static_cast<int64_t>(i)].item<double>();
}

void DataParallel::max(std::vector<double>& values) {
  if (!distributed() || values.empty()) return;
  std::vector<torch::Tensor> one = {torch::tensor(values, torch::kFloat64)};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::MAX;
  wait(group_->allreduce(one, options), "statistics all-reduce");
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = one[0][static_cast<int64_t>(i)].item<double>();
}

void DataParallel::barrier() {
  if (!distributed()) return;
  wait(group_->barrier(), "barrier");
}

double DataParallel::take_allreduce_seconds() {
  const double seconds = allreduce_seconds_;
  allreduce_seconds_ = 0;
  return seconds;
}

}  // namespace lory
