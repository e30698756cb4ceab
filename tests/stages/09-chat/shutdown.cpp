/**
 * @file tests/stages/09-chat/shutdown.cpp
 * @brief Stage 09, how things end: SIGTERM flushes a goodbye to every client
 *        and exits 0, SIGTERM and SIGINT reach the event loop instead of
 *        killing the process, and 1,000 short sessions that end leave no fds
 *        or memory behind.
 */
#include <signal.h>

#include <string>
#include <vector>

#include "harness/chat.hpp"

namespace muxlab::test {
namespace {

TEST_F(ChatLimits, GracefulShutdown) {
    std::vector<Client> members;
    for (int i = 0; i < 5 && !HasFailure(); ++i) members.push_back(join("member" + std::to_string(i)));
    for (int i = 0; i < 5 && !HasFailure(); ++i) members.push_back(arrive("anonymous" + std::to_string(i)));
    if (HasFailure()) return;
    ASSERT_TRUE(ping(members[0], "settled"));
    auto exit = server().terminate(answer_limit());
    ASSERT_TRUE(exit.has_value()) << "the server was still running " << answer_limit().count()
                                  << " ms after SIGTERM\n  hint: read SIGTERM from a signalfd (or a self-pipe) "
                                     "in the event loop, flush, and exit";
    EXPECT_TRUE(exit->exited && exit->exit_status == 0)
        << "after SIGTERM the server " << exit->describe() << "; it must exit with status 0" << context();
    for (Client& c : members) {
        ASSERT_TRUE(line_eventually(c, "ERROR :server shutting down"))
            << "\n  hint: on SIGINT/SIGTERM, queue \"ERROR :server shutting down\" to every client and "
               "flush before exiting";
        ASSERT_TRUE(c.expect_closed());
    }
}

TEST_F(ChatLimits, SignalsThroughEventLoop) {
    MUXLAB_REQUIRE_PROC();
    Client alice = join("alice");
    auto term = proc::signal_caught_or_blocked(server().pid(), SIGTERM);
    auto interrupt = proc::signal_caught_or_blocked(server().pid(), SIGINT);
    ASSERT_TRUE(term.has_value() && interrupt.has_value());
    EXPECT_TRUE(*term && *interrupt)
        << "SIGTERM and SIGINT keep their default action (the process dies on the spot)"
        << "\n  hint: block them and read a signalfd in the loop, or catch them with a handler that "
           "writes to a self-pipe";
}

// 1,000 sessions in a row (the benchmark runs 10,000): fds and memory return to where they were.
TEST_F(ChatLimits, ShortSessionsNoGrowth) {
    MUXLAB_REQUIRE_PROC();
    auto count_fds = [&] {
        auto entries = proc::fds(server().pid());
        return entries ? static_cast<long>(entries->size()) : -1L;
    };
    auto session = [&](int i) {
        Client c = connect("session " + std::to_string(i));
        ASSERT_TRUE(c.expect_line(kChatWelcome));
        ASSERT_TRUE(c.send("/nick s" + std::to_string(i) + "\nhello\n"));
        ASSERT_TRUE(c.expect_line("-!- welcome s" + std::to_string(i)));
        if (i % 2 == 0) {
            ASSERT_TRUE(c.send("/quit\n"));
            ASSERT_TRUE(c.expect_line("ERROR :bye"));
        }
    };
    for (int i = 0; i < 200; ++i) {
        session(i);
        if (HasFatalFailure()) return;
    }
    long fds_before = count_fds();
    auto memory_before = data_kib(server().pid());
    for (int i = 200; i < 1200; ++i) {
        session(i);
        if (HasFatalFailure()) return;
    }
    long fds_after = fds_before;
    bool settled = eventually(answer_limit(), [&] { return (fds_after = count_fds()) <= fds_before; });
    EXPECT_TRUE(settled) << "after 1,000 more short sessions the server holds " << fds_after
                         << " fds (it held " << fds_before << ")\n  hint: close every client that leaves";
    auto memory_after = data_kib(server().pid());
    if (memory_before && memory_after) {
        EXPECT_LT(*memory_after - *memory_before, 1024)
            << "after 1,000 more short sessions the server's memory grew from " << *memory_before
            << " KiB to " << *memory_after << " KiB\n  hint: free everything a client owned when it leaves";
    }
}

}  // namespace
}  // namespace muxlab::test
