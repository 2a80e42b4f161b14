// Anonymous memory for large read-mostly data (regrouped weights): mapped in one piece and, where
// the kernel allows it, backed by transparent huge pages, which cuts TLB misses when kernels
// stream gigabytes through it. Anonymous memory is also never dropped and re-read like the page
// cache behind an mmapped file.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moe {

class HugeBuffer {
 public:
  HugeBuffer() = default;
  // Throws moe::Error when the memory cannot be had.
  explicit HugeBuffer(size_t bytes);
  ~HugeBuffer();
  HugeBuffer(HugeBuffer&& o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
  }
  HugeBuffer& operator=(HugeBuffer&& o) noexcept;
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;  // bytes mapped (rounded up)
};

}  // namespace moe
