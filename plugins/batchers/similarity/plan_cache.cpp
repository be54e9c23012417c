#include "plan_cache.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "lory/core/sha256.h"

namespace lory_plugins::similarity {

namespace {

constexpr char kMagic[8] = {'L', 'O', 'R', 'Y', 'P', 'L', 'N', '1'};

void put_u64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }
void put_string(std::string& out, const std::string& s) {
  put_u64(out, s.size());
  out += s;
}

struct Reader {
  const std::string& data;
  size_t at = 0;
  bool ok = true;
  uint64_t u64() {
    uint64_t v = 0;
    if (at + 8 > data.size()) return ok = false, 0;
    std::memcpy(&v, data.data() + at, 8);
    at += 8;
    return v;
  }
  std::string string() {
    const uint64_t n = u64();
    if (!ok || at + n > data.size()) return ok = false, std::string();
    std::string s = data.substr(at, n);
    at += n;
    return s;
  }
};

}  // namespace

std::string plan_cache_path(const std::string& cache_dir, const std::string& key) {
  return (std::filesystem::path(cache_dir) / "similarity" / (key.substr(0, 24) + ".plan")).string();
}

std::optional<CachedPlan> load_cached_plan(const std::string& path, const std::string& key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string data = buffer.str();
  if (data.size() < 8 + 64 || std::memcmp(data.data(), kMagic, 8) != 0) return std::nullopt;
  const std::string payload = data.substr(0, data.size() - 64);
  if (lory::sha256_hex(payload) != data.substr(data.size() - 64)) return std::nullopt;
  Reader r{payload, 8};
  if (r.string() != key) return std::nullopt;
  CachedPlan plan;
  plan.description = r.string();
  for (auto* list : {&plan.document_order, &plan.dropped}) {
    const uint64_t n = r.u64();
    for (uint64_t i = 0; i < n && r.ok; ++i) list->push_back(static_cast<uint32_t>(r.u64()));
  }
  const uint64_t stats = r.u64();
  for (uint64_t i = 0; i < stats && r.ok; ++i) {
    const std::string name = r.string();
    const uint64_t bits = r.u64();
    double value;
    std::memcpy(&value, &bits, 8);
    plan.stats[name] = value;
  }
  if (!r.ok) return std::nullopt;
  return plan;
}

void store_cached_plan(const std::string& path, const std::string& key, const CachedPlan& plan) {
  std::string data(kMagic, 8);
  put_string(data, key);
  put_string(data, plan.description);
  for (const auto* list : {&plan.document_order, &plan.dropped}) {
    put_u64(data, list->size());
    for (uint32_t v : *list) put_u64(data, v);
  }
  put_u64(data, plan.stats.size());
  for (const auto& [name, value] : plan.stats) {
    put_string(data, name);
    uint64_t bits;
    std::memcpy(&bits, &value, 8);
    put_u64(data, bits);
  }
  data += lory::sha256_hex(data);
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  // Several workers may plan at once: each writes its own temporary file, the rename is atomic.
  const std::string temporary = fmt::format("{}.tmp-{}", path, ::getpid());
  {
    std::ofstream out(temporary, std::ios::binary);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) return;  // a cache that cannot be written costs time, not correctness
  }
  std::filesystem::rename(temporary, path);
}

}  // namespace lory_plugins::similarity
