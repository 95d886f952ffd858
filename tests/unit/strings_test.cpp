// util/strings.h: case changed byte by byte as the "C" locale does, every
// byte that is not an ASCII letter left as it is (a UTF-8 character's bytes
// are >= 0x80, negative as a char: std::tolower of those is undefined).
#include <gtest/gtest.h>

#include "accel/util/strings.h"

TEST(Strings, LowerAndUpperChangeAsciiLettersOnly) {
  EXPECT_EQ(accel::lower("FULL_Shard-2"), "full_shard-2");
  EXPECT_EQ(accel::upper("fp8_backend"), "FP8_BACKEND");
  EXPECT_EQ(accel::lower(""), "");
  // "ÉTÉ" in UTF-8: the letters' bytes pass through, the T is lowered.
  EXPECT_EQ(accel::lower("\xC3\x89T\xC3\x89"), "\xC3\x89t\xC3\x89");
  for (int byte = 0x80; byte <= 0xFF; ++byte) {
    const std::string text(1, static_cast<char>(byte));
    EXPECT_EQ(accel::lower(text), text) << byte;
    EXPECT_EQ(accel::upper(text), text) << byte;
  }
  const std::string with_nul("A\0B", 3);
  EXPECT_EQ(accel::lower(with_nul), std::string("a\0b", 3));
}

TEST(Strings, JoinPutsTheSeparatorBetweenItems) {
  EXPECT_EQ(accel::join({}), "");
  EXPECT_EQ(accel::join({"cpu"}), "cpu");
  EXPECT_EQ(accel::join({"none", "cpu", "nvme"}), "none, cpu, nvme");
  EXPECT_EQ(accel::join({"a", "", "b"}, ","), "a,,b");
}
