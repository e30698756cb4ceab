/**
 * @file server_test.hpp
 * @brief The GoogleTest fixture every stage's tests derive from: it starts
 *        the server under test before each test and stops it after.
 */
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "harness/client.hpp"
#include "harness/proc_probe.hpp"
#include "harness/server_process.hpp"

namespace muxlab::test {

/// The server binary being graded (set once by the grader's main()).
const std::string& server_under_test();
/// Sets the server binary being graded.
void set_server_under_test(const std::string& path);

/**
 * @brief Fixture: a fresh server per test, started with launch_options().
 *
 * When the server cannot start (no ready line), the test fails with what
 * the harness saw. The rubric makes every test that starts a server need the
 * stage's ReadyLine test, so a server that never starts fails that one test
 * and the others are reported as not run, instead of a wall of failures.
 */
class ServerTest : public ::testing::Test {
protected:
    void SetUp() override;
    void TearDown() override;

    /// Options for the server this fixture starts; override for stage flags or limits.
    virtual LaunchOptions launch_options() const { return {}; }

    /// Stops the current server and starts a new one with @p options (fails the test if it does not start).
    void restart(const LaunchOptions& options);

    /// The running server.
    ServerProcess& server() { return *server_; }
    /// Where it listens.
    const Endpoint& endpoint() const { return server_->endpoint(); }
    /// Connects a new client named @p name; fails the test if it cannot.
    Client connect(const std::string& name = "client", const ConnectOptions& options = {});

    /// Connects @p count clients and has each echo one line, so the server
    /// has accepted and registered every one of them.
    std::vector<Client> connect_served(int count, const std::string& prefix = "client");

    /// Skips the test ("model check skipped") when /proc of the server cannot be read.
    void require_proc();
    /// Text appended to failures: the server's recent stderr.
    std::string context() const;

private:
    std::unique_ptr<ServerProcess> server_;
};

/// In a ServerTest body: skip the rest of the test unless /proc can be read.
#define MUXLAB_REQUIRE_PROC()         \
    do {                              \
        require_proc();               \
        if (IsSkipped()) return;      \
    } while (0)

/// In a ServerTest body: restart the server with @p options, or end the test (failed) if it does not start.
#define MUXLAB_RESTART(options)       \
    do {                              \
        restart(options);             \
        if (HasFailure()) return;     \
    } while (0)

/// Repeats a short pattern into @p size bytes covering all 256 byte values.
std::string binary_payload(size_t size, unsigned seed = 1);

}  // namespace muxlab::test
