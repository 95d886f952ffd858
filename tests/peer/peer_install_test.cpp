// The .venv holds every peer that requirements.txt pins, at the pinned
// version: the peer tests compare accel against these exact releases.
#include <fstream>
#include <regex>
#include <string>

#include <gtest/gtest.h>

#include "accel_test_paths.h"
#include "support/peers.h"
#include "support/programs.h"

TEST(PeerInstall, EveryPinnedPackageIsInstalledAtItsVersion) {
  REQUIRE_PEERS("importlib.metadata");
  std::ifstream in(std::string(ACCEL_SOURCE_DIR) + "/requirements.txt");
  ASSERT_TRUE(in) << "cannot read requirements.txt";
  const std::regex pin(R"(^\s*([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)\s*$)");
  std::string line;
  int pins = 0;
  while (std::getline(in, line)) {
    std::smatch m;
    if (!std::regex_match(line, m, pin)) continue;
    ++pins;
    const std::string name = m[1], version = m[2];
    const std::string installed = accel::testing::command_output(
        std::string(ACCEL_PYTHON) + " -c 'import importlib.metadata as md, sys\ntry: print(md.version(sys.argv[1]))\n" +
        "except md.PackageNotFoundError: print(\"not installed\")' " + name + " 2>&1");
    EXPECT_EQ(installed, version + "\n") << name << " in " << ACCEL_PYTHON << ": requirements.txt pins " << version;
  }
  EXPECT_GE(pins, 4) << "requirements.txt pins fewer packages than the peers need";
}
