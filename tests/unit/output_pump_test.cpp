// Issue 20, `--tee` output: the launcher's copy of a worker's output is
// linear in time and bounded in memory whatever the worker writes. A worker
// that writes without newlines (300 MB took 53 s and 1.2 GB of the
// launcher's memory) has its bytes passed on in pieces of at most
// OutputPump::kMaxHeldLine, the rank prefix before the line's first piece
// only, every byte unchanged.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include <gtest/gtest.h>

#include "accel/launch/output_pump.h"
#include "support/files.h"
#include "support/temp_dir.h"

namespace {

using accel::launch::OutputPump;
using accel::testing::read_file;
using accel::testing::TempDir;

// Runs a pump for rank 3 with --tee 1, feeds `chunks` to the worker's stdout
// end, and returns what reached the console (the test's stdout, redirected
// to a file meanwhile) and how long it took.
std::pair<std::string, double> pump(const std::vector<std::string>& chunks) {
  const TempDir dir("pump");
  const auto file = dir / "console";
  std::fflush(stdout);
  const int saved = dup(1);
  const int out = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(out, 1);
  close(out);
  const auto t0 = std::chrono::steady_clock::now();
  {
    OutputPump p(1, "", 0);
    const int worker = dup(p.add_rank(3).first);  // the worker's end, as a child would hold it
    p.start();
    for (const auto& c : chunks) {
      for (size_t done = 0; done < c.size();) {
        const ssize_t n = write(worker, c.data() + done, c.size() - done);
        if (n <= 0) std::abort();  // the pump stopped reading: the test cannot go on
        done += static_cast<size_t>(n);
      }
    }
    close(worker);
    p.finish();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  dup2(saved, 1);
  close(saved);
  return {read_file(file), seconds};
}

TEST(OutputPump, LinesArePrefixed) {
  auto [out, seconds] = pump({"hello\nwor", "ld\n", "no newline at the end"});
  EXPECT_EQ(out, "[rank3]:hello\n[rank3]:world\n[rank3]:no newline at the end\n");
}

TEST(OutputPump, ALineWithoutEndIsPassedOnInPiecesInLinearTime) {
  // 64 MB in 4 KB writes, no newline: every byte arrives, one prefix.
  std::vector<std::string> chunks(16 * 1024, std::string(4096, 'x'));
  chunks.back().back() = 'y';
  auto [out, seconds] = pump(chunks);
  ASSERT_EQ(out.size(), std::string("[rank3]:").size() + 64u * 1024 * 1024 + 1);
  EXPECT_EQ(out.rfind("[rank3]:", 0), 0u);
  EXPECT_EQ(out.find("[rank3]:", 1), std::string::npos);
  EXPECT_EQ(out.substr(out.size() - 2), "y\n");
  EXPECT_LT(seconds, 10.0);  // quadratic: minutes
  // The next line after a long one gets its prefix again.
  auto [mixed, s2] = pump({std::string(200'000, 'a'), "\nshort\n"});
  EXPECT_EQ(mixed, "[rank3]:" + std::string(200'000, 'a') + "\n[rank3]:short\n");
}

}  // namespace
