// What `accel launch` reports while ranks gather: the line, and the watcher
// against a real c10d store on loopback where ranks mark their arrival as
// accel's workers do (dist/process_group.cpp).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <regex>
#include <string>
#include <thread>

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "accel/dist/launcher.h"
#include "accel/launch/rendezvous_progress.h"
#include "support/errors.h"
#include "support/files.h"

namespace {

using accel::testing::contents;

using accel::launch::rendezvous_line;
using accel::launch::RendezvousProgress;
using accel::launch::RendezvousProgressOptions;
using namespace std::chrono_literals;

c10::intrusive_ptr<c10d::TCPStore> host_store(int port) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(port);
  o.isServer = true;
  o.waitWorkers = false;
  return c10::make_intrusive<c10d::TCPStore>("127.0.0.1", o);
}

TEST(RendezvousProgress, TheLineNamesWhoIsMissing) {
  EXPECT_EQ(rendezvous_line("h:1", 1, 2, 5.7, {1}),
            "accel launch: rendezvous at h:1: 1/2 ranks arrived after 5 s (waiting for rank 1)");
  EXPECT_EQ(rendezvous_line("h:1", 4, 4, 12, {}), "accel launch: rendezvous at h:1: 4/4 ranks arrived after 12 s");
  EXPECT_EQ(rendezvous_line("h:1", 0, 12, 3, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}),
            "accel launch: rendezvous at h:1: 0/12 ranks arrived after 3 s (waiting for ranks 0, 1, 2, 3, 4, 5, 6, 7, "
            "...)");
  accel::testing::expect_error<std::invalid_argument>([] { RendezvousProgress("127.0.0.1", 0, 2); }, {"port", "0"});
  accel::testing::expect_error<std::invalid_argument>([] { RendezvousProgress("127.0.0.1", 80, 0); },
                                                      {"world_size", "0"});
}

TEST(RendezvousProgress, ReportsArrivalsUntilAllAreThere) {
  const int port = accel::find_free_port();
  auto store = host_store(port);
  store->set("accel/arrived/0", std::vector<uint8_t>{1});
  std::FILE* out = std::tmpfile();
  {
    RendezvousProgress progress(
        "127.0.0.1", port, 3, RendezvousProgressOptions().delay(0ms).interval(300ms).poll(50ms).enabled(true).out(out));
    std::this_thread::sleep_for(700ms);
    store->set("accel/arrived/2", std::vector<uint8_t>{1});
    std::this_thread::sleep_for(700ms);
    store->set("accel/arrived/1", std::vector<uint8_t>{1});
    store->set("accel/all_arrived", std::vector<uint8_t>{1});
    std::this_thread::sleep_for(500ms);
  }
  const std::string text = contents(out);
  // Not a terminal (a file): whole lines, none redrawn.
  EXPECT_EQ(text.find('\r'), std::string::npos) << text;
  EXPECT_TRUE(std::regex_search(text, std::regex("1/3 ranks arrived after 0 s \\(waiting for ranks 1, 2\\)\n")))
      << text;
  EXPECT_TRUE(std::regex_search(text, std::regex("2/3 ranks arrived after [0-9]+ s \\(waiting for rank 1\\)\n")))
      << text;
  // The last line says all arrived; nothing follows it.
  EXPECT_TRUE(std::regex_search(text, std::regex("\n[^\n]*: 3/3 ranks arrived after [0-9]+ s\n$"))) << text;
  std::fclose(out);
}

TEST(RendezvousProgress, SaysNothingForAStoreWithoutAccelsMarksOrWhenTurnedOff) {
  const int port = accel::find_free_port();
  auto store = host_store(port);  // another program's rendezvous: no accel/arrived/0
  std::FILE* out = std::tmpfile();
  {
    RendezvousProgress progress(
        "127.0.0.1", port, 2, RendezvousProgressOptions().delay(0ms).interval(100ms).poll(50ms).enabled(true).out(out));
    std::this_thread::sleep_for(800ms);
  }
  EXPECT_EQ(contents(out), "");
  store->set("accel/arrived/0", std::vector<uint8_t>{1});
  {
    RendezvousProgress progress(
        "127.0.0.1", port, 2,
        RendezvousProgressOptions().delay(0ms).interval(100ms).poll(50ms).enabled(false).out(out));
    std::this_thread::sleep_for(500ms);
  }
  EXPECT_EQ(contents(out), "");
  std::fclose(out);
}

}  // namespace
