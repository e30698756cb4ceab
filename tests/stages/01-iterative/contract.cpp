/**
 * @file tests/stages/01-iterative/contract.cpp
 * @brief Stage 01 contract: an iterative echo server (one client at a time,
 *        one process, one thread, blocking calls).
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/syscall.h>

#include <thread>

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

TEST_F(Iterative, EchoesLine) {
    Client alice = connect("alice");
    ASSERT_TRUE(alice.send("hello, echo\n"));
    ::testing::AssertionResult echoed = alice.expect("hello, echo\n");
    if (echoed) return;
    // Where did the line stop? In the listen backlog, or inside the server?
    std::string hint = "\n  hint: accept() the client, then read from it and write the same bytes back";
    if (proc::readable(server().pid())) {
        bool waiting = false;
        for (const proc::TcpSocket& socket : proc::tcp_sockets(server().pid()))
            waiting = waiting || (socket.state == proc::kTcpListen && socket.local_port == endpoint().port &&
                                  socket.rx_queue > 0);
        hint = waiting ? "\n  hint: alice's connection still waits in the listen backlog: the server never "
                         "accept()ed it. Take the next connection with accept() and serve it"
                       : "\n  hint: the server accepted alice but did not send her line back: read() what "
                         "the client sends and write the same bytes back, until read() returns 0";
    }
    EXPECT_TRUE(echoed) << hint;
}

TEST_F(Iterative, EchoesBinary) { battery::echoes_binary(endpoint()); }
TEST_F(Iterative, EchoesDripFed) {
    Client alice = connect("alice");
    int on = 1;
    setsockopt(alice.fd(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);  // one segment per byte
    std::string message = "one byte at a time\n";
    for (size_t i = 0; i < message.size(); ++i) {
        if (i > 0) std::this_thread::sleep_for(Millis(10));  // the scenario is a slow sender, not a wait
        ASSERT_TRUE(alice.send(message.substr(i, 1)))
            << "\n  hint: alice sends one byte at a time, and after " << i << " of them the server had "
               "closed the connection: one read() returns what has arrived so far, perhaps a single "
               "byte; keep reading until read() returns 0";
    }
    EXPECT_TRUE(alice.expect(message))
        << "\n  hint: TCP delivers a byte stream, not messages: one read() may return a single byte";
}

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
    ASSERT_TRUE(idle.has_value())
        << "the idle server never settled in a system call: it keeps running on the CPU (a busy loop?)."
           "\n  hint: with no client, an iterative server sleeps in a blocking accept(); a "
           "non-blocking listener polled in a loop burns a whole CPU";
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
