/**
 * @file 01_iterative.cpp
 * @brief Stage 01 contract: an iterative echo server (one client at a time,
 *        one process, one thread, blocking calls).
 */
#include <sys/syscall.h>

#include "harness/battery.hpp"

namespace muxlab::test {
namespace {

class Iterative : public ServerTest {};

// ---- the server contract ----------------------------------------------------------

TEST(IterativeStart, ReadyLine) {
    ServerProcess server(server_under_test());
    EXPECT_TRUE(server.ready()) << server.failure()
        << "\n  hint: after listen(), print exactly 'listening on HOST:PORT' with the real port "
           "(getsockname) on stdout, and flush it";
}
TEST(IterativeStart, HelpAndBadOptions) {
    battery::help_exits_zero(server_under_test());
    battery::bad_option_exits_two(server_under_test());
}
TEST_F(Iterative, StopsOnSigterm) { battery::sigterm_stops(server()); }

// ---- the echo contract -------------------------------------------------------------

TEST_F(Iterative, EchoesLine) { battery::echoes_line(endpoint()); }
TEST_F(Iterative, EchoesBinary) { battery::echoes_binary(endpoint()); }
TEST_F(Iterative, EchoesDripFed) { battery::echoes_drip_fed(endpoint()); }
TEST_F(Iterative, PipelinedLines) { battery::pipelined_lines(endpoint()); }
TEST_F(Iterative, MegabyteBurst) { battery::megabyte_burst(endpoint()); }
TEST_F(Iterative, HalfClose) { battery::half_close(endpoint()); }
TEST_F(Iterative, SequentialClients) { battery::sequential_clients(endpoint()); }
TEST_F(Iterative, SurvivesReset) { battery::survives_reset(server()); }
TEST_F(Iterative, ShortSessionsNoFdGrowth) { battery::short_sessions_no_fd_growth(server()); }

// ---- the model: iterative, blocking ----------------------------------------------

// The lesson of this stage is the limit of the model: while one client is
// connected, the next one waits. A server that already serves clients
// concurrently belongs to a later stage.
TEST_F(Iterative, ServesOneClientAtATime) {
    Client alice = connect("alice");
    ASSERT_TRUE(alice.send("alice first\n"));
    ASSERT_TRUE(alice.expect("alice first\n"));
    Client bob = connect("bob");
    ASSERT_TRUE(bob.send("bob waits\n"));
    EXPECT_TRUE(bob.expect_silence())
        << "\n  hint: stage 01 serves one client at a time: while alice is connected, bob must "
           "wait in the listen backlog (no fork, no threads, no select yet)";
    alice.close();
    EXPECT_TRUE(bob.expect("bob waits\n"))
        << "\n  hint: once alice left, bob (waiting in the backlog) must be accepted and served";
}

TEST_F(Iterative, IdleInAccept) {
    MUXLAB_REQUIRE_PROC();
    auto tasks = proc::threads(server().pid());
    EXPECT_EQ(tasks.size(), 1u) << "the server runs " << tasks.size()
                                << " threads; stage 01 is one process with one thread";
    auto idle = proc::idle_syscall(server().pid(), server().pid());
    ASSERT_TRUE(idle.has_value()) << "the idle server never settled in a system call (busy loop?)";
    EXPECT_TRUE(*idle == SYS_accept || *idle == SYS_accept4)
        << "with no client, the server waits in " << proc::syscall_name(*idle)
        << "; an iterative server waits in accept() (see /proc/" << server().pid() << "/syscall)";
}

TEST_F(Iterative, OneProcessOneThread) {
    MUXLAB_REQUIRE_PROC();
    Client alice = connect("alice");
    ASSERT_TRUE(alice.send("x"));
    ASSERT_TRUE(alice.expect("x"));
    auto tree = proc::process_tree(server().pid());
    EXPECT_EQ(tree.size(), 1u) << "with a client connected the server has " << tree.size() - 1
                               << " child processes; stage 01 does not fork";
    EXPECT_EQ(proc::threads(server().pid()).size(), 1u)
        << "with a client connected the server runs several threads; stage 01 has one";
    auto idle = proc::idle_syscall(server().pid(), server().pid());
    ASSERT_TRUE(idle.has_value());
    EXPECT_TRUE(*idle == SYS_read || *idle == SYS_recvfrom || *idle == SYS_recvmsg)
        << "with a connected, quiet client the server waits in " << proc::syscall_name(*idle)
        << "; an iterative server blocks in read()/recv() on that client";
}

}  // namespace
}  // namespace muxlab::test
