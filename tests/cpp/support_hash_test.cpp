// support_hash_test.cpp — SHA-256 against FIPS 180-4 vectors, at every block boundary, incrementally.
#include <gtest/gtest.h>

#include <string>

#include "kiln/support/hash.h"

namespace kiln {
namespace {

std::string pattern(std::size_t n) {  // bytes 0, 1, ..., 250, 0, 1, ...
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = char(i % 251);
  return s;
}

TEST(HashSha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqr"
                       "smnopqrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// Lengths around the padding edges (55/56 bytes fit the length in one block or not; 64 is one block).
TEST(HashSha256, PaddingBoundaries) {
  const std::pair<std::size_t, const char*> cases[] = {
      {55, "463eb28e72f82e0a96c0a4cc53690c571281131f672aa229e0d45ae59b598b59"},
      {56, "da2ae4d6b36748f2a318f23e7ab1dfdf45acdc9d049bd80e59de82a60895f562"},
      {63, "29af2686fd53374a36b0846694cc342177e428d1647515f078784d69cdb9e488"},
      {64, "fdeab9acf3710362bd2658cdc9a29e8f9c757fcf9811603a8c447cd1d9151108"},
      {65, "4bfd2c8b6f1eec7a2afeb48b934ee4b2694182027e6d0fc075074f2fabb31781"},
      {119, "da18797ed7c3a777f0847f429724a2d8cd5138e6ed2895c3fa1a6d39d18f7ec6"},
      {120, "f52b23db1fbb6ded89ef42a23ce0c8922c45f25c50b568a93bf1c075420bbb7c"},
      {1000, "4e4c294b331f7a2099a379bec34b9f9fc03dc46ab465d998f4d683da53487e6d"},
  };
  for (const auto& [n, expected] : cases) EXPECT_EQ(sha256_hex(pattern(n)), expected) << "length " << n;
}

TEST(HashSha256, IncrementalMatchesOneShot) {
  const std::string data = pattern(1000);
  for (std::size_t chunk : {1, 3, 55, 63, 64, 65, 127, 999}) {
    Sha256 h;
    for (std::size_t i = 0; i < data.size(); i += chunk) h.update(std::string_view(data).substr(i, chunk));
    EXPECT_EQ(h.finish_hex(), sha256_hex(data)) << "chunk " << chunk;
  }
}

TEST(HashSha256, FinishTwiceIsABug) {
  Sha256 h;
  h.update("x");
  h.finish();
  EXPECT_ANY_THROW(h.finish());
}

TEST(HashSha256, ToHex) {
  const std::uint8_t bytes[] = {0x00, 0x0f, 0xa5, 0xff};
  EXPECT_EQ(to_hex(bytes, 4), "000fa5ff");
}

}  // namespace
}  // namespace kiln
