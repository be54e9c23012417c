// Peak bytes of CPU tensor memory: wraps LibTorch's CPU allocator so that a benchmark can reset
// the high-water mark and read it after a forward and backward pass.
#pragma once

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <atomic>
#include <cstddef>

namespace lory::bench {

class TensorMemory final : public c10::Allocator {
 public:
  // Installs the tracker as the CPU allocator (before the tensors to be measured are made).
  static TensorMemory& install() {
    static TensorMemory tracker(c10::GetDefaultCPUAllocator());
    c10::SetCPUAllocator(&tracker, /*priority=*/100);
    return tracker;
  }

  void reset_peak() { peak_ = current_.load(); }
  size_t current() const { return current_; }
  size_t peak() const { return peak_; }

  // The allocation's size sits in a 64-byte header before the data, and the DataPtr's context is
  // the data pointer itself: LibTorch's raw_allocate (used by oneDNN's bf16 kernels) requires that.
  c10::DataPtr allocate(size_t bytes) const override {
    char* base = static_cast<char*>(c10::alloc_cpu(bytes + kHeader));
    *reinterpret_cast<size_t*>(base) = bytes;
    void* data = base + kHeader;
    const size_t now = (current_ += bytes);
    size_t previous = peak_.load();
    while (now > previous && !peak_.compare_exchange_weak(previous, now)) {
    }
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }

 private:
  static constexpr size_t kHeader = 64;  // keeps alloc_cpu's 64-byte alignment
  explicit TensorMemory(c10::Allocator* base) : base_(base) { instance() = this; }
  static TensorMemory*& instance() {
    static TensorMemory* tracker = nullptr;
    return tracker;
  }
  static void release(void* data) {
    if (!data) return;
    char* base = static_cast<char*>(data) - kHeader;
    instance()->current_ -= *reinterpret_cast<size_t*>(base);
    c10::free_cpu(base);
  }

  c10::Allocator* base_;
  mutable std::atomic<size_t> current_{0};
  mutable std::atomic<size_t> peak_{0};
};

}  // namespace lory::bench
