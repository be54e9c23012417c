// Peak bytes of CPU tensor memory: wraps LibTorch's CPU allocator so that a benchmark can reset
// the high-water mark and read it after a forward and backward pass.
#pragma once

#include <c10/core/CPUAllocator.h>

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

  c10::DataPtr allocate(size_t bytes) const override {
    c10::DataPtr inner = base_->allocate(bytes);
    void* data = inner.get();
    auto* context = new Allocation{std::move(inner), bytes, const_cast<TensorMemory*>(this)};
    const size_t now = (current_ += bytes);
    size_t previous = peak_.load();
    while (now > previous && !peak_.compare_exchange_weak(previous, now)) {
    }
    return {data, context, &release, c10::Device(c10::DeviceType::CPU)};
  }

 private:
  struct Allocation {
    c10::DataPtr inner;
    size_t bytes;
    TensorMemory* owner;
  };
  explicit TensorMemory(c10::Allocator* base) : base_(base) {}
  static void release(void* context) {
    auto* allocation = static_cast<Allocation*>(context);
    allocation->owner->current_ -= allocation->bytes;
    delete allocation;
  }

  c10::Allocator* base_;
  mutable std::atomic<size_t> current_{0};
  mutable std::atomic<size_t> peak_{0};
};

}  // namespace lory::bench
