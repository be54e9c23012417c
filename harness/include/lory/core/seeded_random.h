// Deterministic randomness for data plans: the same seed gives the same order on every platform
// and standard library (std::shuffle and std::uniform_int_distribution do not promise that).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace lory {

class SeededRandom {
 public:
  explicit SeededRandom(uint64_t seed) : state_(seed) {}

  // splitmix64: passes BigCrush, and is trivially reproducible.
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound), without modulo bias.
  uint64_t below(uint64_t bound) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t r;
    do {
      r = next();
    } while (r >= limit);
    return r % bound;
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  template <typename T>
  void shuffle(std::vector<T>& items) {
    for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[below(i)]);
  }

 private:
  uint64_t state_;
};

// Mixes several values into one seed (e.g. run seed and epoch).
inline uint64_t mix_seed(uint64_t a, uint64_t b) {
  SeededRandom r(a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull));
  return r.next();
}

}  // namespace lory
