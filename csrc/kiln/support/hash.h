// hash.h — SHA-256 (FIPS 180-4), used for cache keys and for verifying cache entries on disk.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kiln {

// Incremental SHA-256: update() any number of times, then finish() once.
class Sha256 {
 public:
  Sha256();
  Sha256& update(const void* data, std::size_t size);
  Sha256& update(std::string_view text) { return update(text.data(), text.size()); }
  std::array<std::uint8_t, 32> finish();  // the object is spent afterwards
  std::string finish_hex();               // 64 lowercase hex digits

 private:
  void compress(const std::uint8_t* block);
  std::array<std::uint32_t, 8> state_;
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t total_bytes_ = 0;
  bool finished_ = false;
};

std::string sha256_hex(std::string_view data);

// Lowercase hex of arbitrary bytes.
std::string to_hex(const std::uint8_t* data, std::size_t size);

}  // namespace kiln
