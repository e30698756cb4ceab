/**
 * @file tests/stages/02-fork/contract.cpp
 * @brief Stage 02 contract: the echo server, one child process per client.
 */
#include <signal.h>
#include <sys/syscall.h>

#include <algorithm>
#include <vector>

#include "harness/battery.hpp"

namespace muxlab::test {
namespace {

class Fork : public ServerTest {
protected:
    /// The server's child processes (its whole tree minus itself).
    std::vector<pid_t> children() {
        auto tree = proc::process_tree(server().pid());
        if (!tree.empty()) tree.erase(tree.begin());
        return tree;
    }

    /// What keeps the parent from accepting new clients, and the hint for it.
    std::string parent_stuck() {
        const std::string otherwise =
            "\n  hint: the parent must never wait for one client (or for a child): fork() a child "
            "per client and go straight back to accept()";
        auto idle = proc::idle_syscall(server().pid(), server().pid(), quiet_window() * 3);
        if (!idle) return otherwise;
        if (*idle == SYS_wait4 || *idle == SYS_waitid)
            return "\n  the parent is blocked in " + proc::syscall_name(*idle) +
                   "() (a blocking waitpid()): while it waits for a child to exit, it accepts nobody."
                   "\n  hint: reap only in the SIGCHLD handler, with WNOHANG; the parent's loop only "
                   "accepts and forks";
        if (*idle == SYS_read || *idle == SYS_recvfrom)
            return "\n  the parent is blocked in " + proc::syscall_name(*idle) +
                   "() on a client: it serves clients itself, one at a time, as in stage 01."
                   "\n  hint: fork() a child for each accepted client; the parent only accepts";
        return otherwise;
    }
};

// ---- the server contract ----------------------------------------------------------

TEST(ForkStart, ReadyLine) {
    ServerProcess server(server_under_test());
    EXPECT_TRUE(server.ready()) << server.failure();
}
TEST(ForkStart, HelpAndBadOptions) {
    battery::help_exits_zero(server_under_test());
    battery::bad_option_exits_two(server_under_test());
}
TEST_F(Fork, StopsOnSigterm) { battery::sigterm_stops(server()); }

// ---- the echo contract -------------------------------------------------------------

TEST_F(Fork, EchoesLine) { battery::echoes_line(endpoint()); }
TEST_F(Fork, EchoesBinary) { battery::echoes_binary(endpoint()); }
TEST_F(Fork, MegabyteBurst) { battery::megabyte_burst(endpoint()); }
TEST_F(Fork, HalfClose) { battery::half_close(endpoint()); }
TEST_F(Fork, SurvivesReset) { battery::survives_reset(server()); }
TEST_F(Fork, ShortSessionsNoFdGrowth) { battery::short_sessions_no_fd_growth(server()); }

// ---- concurrency: what fork buys ----------------------------------------------------

// A's half line keeps A's child waiting in read(); B must be served anyway.
TEST_F(Fork, PartialLineDoesNotBlockOthers) {
    Client alice = connect("A");
    ASSERT_TRUE(alice.send("half a li"));
    Client bob = connect("B");
    ASSERT_TRUE(bob.send("ping\n"));
    ::testing::AssertionResult served = bob.expect("ping\n");
    ASSERT_TRUE(served) << "\n  client B waited " << answer_limit().count()
                        << " ms while client A had sent half a line." << parent_stuck();
    ASSERT_TRUE(alice.send("ne\n"));
    EXPECT_TRUE(alice.expect("half a line\n"));
}

TEST_F(Fork, StoppedReaderDoesNotBlockOthers) { battery::stopped_reader_does_not_block_others(endpoint()); }
TEST_F(Fork, TwentyClientsAtOnce) {
    std::vector<Client> clients;
    for (int i = 0; i < 20; ++i) clients.push_back(connect("client " + std::to_string(i + 1)));
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(clients[i].send("I am client " + std::to_string(i + 1) + "\n"));
    for (int i = 0; i < 20; ++i) {
        ::testing::AssertionResult served = clients[i].expect("I am client " + std::to_string(i + 1) + "\n");
        ASSERT_TRUE(served) << "\n  20 clients connected and sent a line at once; client " << i + 1
                            << " got no answer while the first " << i << " stayed connected."
                            << parent_stuck();
    }
}

// ---- the model: processes, and what they share --------------------------------------

TEST_F(Fork, ChildPerClient) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients;
    for (int i = 0; i < 3; ++i) {
        clients.push_back(connect("client " + std::to_string(i + 1)));
        ASSERT_TRUE(clients.back().send("x"));
        ::testing::AssertionResult served = clients.back().expect("x");
        ASSERT_TRUE(served) << "\n  client " << i + 1 << " got no echo while the clients before it "
                            << "stayed connected." << parent_stuck();
    }
    size_t count = 0;
    bool enough = eventually(answer_limit(), [&] { return (count = children().size()) >= 3; });
    EXPECT_TRUE(enough) << "with 3 clients connected the server has " << count
                        << " child processes; stage 02 forks one child per client";
    EXPECT_EQ(proc::threads(server().pid()).size(), 1u) << "stage 02 uses processes, not threads";
}

TEST_F(Fork, NoZombies) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients;
    for (int i = 0; i < 20; ++i) {
        clients.push_back(connect("client " + std::to_string(i + 1)));
        ASSERT_TRUE(clients.back().send("bye\n"));
    }
    for (Client& client : clients) ASSERT_TRUE(client.expect("bye\n"));
    // All 20 leave while the parent is stopped (only the parent: its children
    // run on and exit), so their SIGCHLDs merge into one pending signal every
    // time, not only when the exits happen to come close enough together.
    kill(server().pid(), SIGSTOP);
    bool parent_stopped = eventually(answer_limit(), [&] { return proc::state(server().pid()) == 'T'; });
    for (Client& client : clients) client.close();
    eventually(answer_limit(), [&] {
        for (pid_t child : children())
            if (proc::state(child) != 'Z') return false;
        return true;
    });
    kill(server().pid(), SIGCONT);
    ASSERT_TRUE(parent_stopped) << "could not stop the server with SIGSTOP";
    std::vector<pid_t> left;
    bool reaped = eventually(answer_limit(), [&] { return (left = children()).empty(); });
    size_t zombie_count = proc::zombies(server().pid()).size();
    bool handled = proc::signal_caught_or_blocked(server().pid(), SIGCHLD).value_or(false);
    if (left.size() >= 20 && zombie_count >= 20 && !handled)
        EXPECT_TRUE(reaped) << "20 clients left at the same instant; none of their 20 child processes "
                               "was reaped (" << zombie_count << " zombies), and the server does not "
                               "catch SIGCHLD."
                            << "\n  hint: a child that exits stays a zombie until its parent collects "
                               "it with waitpid(): install a SIGCHLD handler (sigaction) that reaps";
    else if (left.size() >= 20 && zombie_count >= 20)
        EXPECT_TRUE(reaped) << "20 clients left at the same instant; none of their 20 child processes "
                               "was reaped (" << zombie_count << " zombies), although the server "
                               "catches SIGCHLD."
                            << "\n  hint: the SIGCHLD handler runs but reaps nobody: collect exited "
                               "children in it with waitpid(-1, NULL, WNOHANG), in a loop";
    else
        EXPECT_TRUE(reaped) << "20 clients left at the same instant; " << left.size()
                            << " child processes remain (" << zombie_count << " of them zombies)."
                            << "\n  hint: SIGCHLD does not queue: one signal may stand for many exited "
                               "children. Reap in a loop: while (waitpid(-1, NULL, WNOHANG) > 0)";
}

TEST_F(Fork, ParentClosesClientSockets) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients;
    for (int i = 0; i < 3; ++i) {
        clients.push_back(connect("client " + std::to_string(i + 1)));
        ASSERT_TRUE(clients.back().send("x"));
        ASSERT_TRUE(clients.back().expect("x"));
    }
    std::optional<proc::SocketFds> sockets;
    bool closed = eventually(answer_limit(), [&] {
        sockets = proc::socket_fds(server().pid());
        return sockets && sockets->connected.empty();
    });
    EXPECT_TRUE(closed) << "with 3 clients connected, the parent holds "
                        << (sockets ? sockets->connected.size() : 0) << " connected sockets."
                        << "\n  hint: after fork() the parent must close its copy of the client "
                           "socket: the child serves it";
}

TEST_F(Fork, ChildClosesListener) {
    MUXLAB_REQUIRE_PROC();
    Client alice = connect("alice");
    ASSERT_TRUE(alice.send("x"));
    ASSERT_TRUE(alice.expect("x"));
    std::vector<pid_t> holding;
    bool closed = eventually(answer_limit(), [&] {
        holding.clear();
        auto kids = children();
        for (pid_t child : kids) {
            auto sockets = proc::socket_fds(child);
            if (sockets && !sockets->listening.empty()) holding.push_back(child);
        }
        return !kids.empty() && holding.empty();
    });
    EXPECT_TRUE(closed) << (holding.empty() ? std::string("no child process serves the client")
                                            : "child process " + std::to_string(holding.front()) +
                                                  " still holds the listening socket")
                        << ".\n  hint: a child serves one client and never accepts: close its "
                           "copy of the listening socket right after fork()";
}

TEST_F(Fork, SurvivesChildExits) {
    // Each client that leaves ends a child, and the parent gets SIGCHLD while
    // it waits in accept(): the call fails with EINTR unless it is restarted.
    auto died = [&](int left, const ExitReport& exit) {
        return "after client " + std::to_string(left) + " left (its child exited, SIGCHLD arrived), the "
               "server " + exit.describe() + ".\n  hint: a signal interrupts accept() with EINTR: retry "
               "it (or set SA_RESTART), never treat EINTR as fatal" + server().stderr_tail();
    };
    for (int i = 0; i < 5; ++i) {
        ::testing::AssertionResult connected = ::testing::AssertionSuccess();
        Client client = Client::try_connect(endpoint(), "client " + std::to_string(i + 1), &connected);
        if (!connected && i > 0) {
            auto exit = server().wait_exit(answer_limit());  // the connection was refused: did it die?
            ASSERT_FALSE(exit.has_value()) << died(i, *exit);
        }
        ASSERT_TRUE(connected);
        ::testing::AssertionResult echoed = client.send("hello\n");
        if (echoed) echoed = client.expect("hello\n");
        if (!echoed && i > 0) {
            // The listener may outlive the signal by a moment: a connection
            // taken into the backlog is reset when the dying parent closes it.
            auto exit = server().wait_exit(answer_limit());
            ASSERT_FALSE(exit.has_value()) << died(i, *exit);
        }
        ASSERT_TRUE(echoed);
        if (i == 0) {
            MUXLAB_REQUIRE_PROC();
            bool forked = eventually(answer_limit(), [&] { return !children().empty(); });
            ASSERT_TRUE(forked) << "no child process serves client 1: this test needs a child per client "
                                   "(fork) to exit";
        }
        client.close();
        eventually(answer_limit(), [&] { return proc::process_tree(server().pid()).size() <= 1; });
        auto exit = server().wait_exit(Millis(0));
        ASSERT_FALSE(exit.has_value()) << died(i + 1, *exit);
    }
}

}  // namespace
}  // namespace muxlab::test
