/**
 * @file tests/stages/07-epoll-lt/contract.cpp
 * @brief Stage 07 contract: the echo server for many clients on one epoll
 *        instance, level-triggered, with non-blocking writes.
 *
 * The echo contract and the concurrency battery, then the model read from
 * /proc: an eventpoll fd whose interest list (fdinfo) follows the clients,
 * without EPOLLET; an idle server sleeping in epoll_wait; EPOLLOUT armed only
 * while output waits; and accept() surviving a full fd table (EMFILE).
 */
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>

#include <string>
#include <vector>

#include "harness/battery.hpp"
#include "harness/event_loop.hpp"

namespace muxlab::test {
namespace {

class EpollLt : public ServerTest {};

// ---- where an echo stopped --------------------------------------------------------

/// How this stage arms EPOLLOUT, for output_stalled().
constexpr const char* kEpolloutHint =
    "while output is queued, watch the socket for EPOLLOUT too (EPOLL_CTL_MOD), and send the rest when it is reported";

/**
 * Why the first of @p clients got no echo back, as /proc shows the server: no epoll
 * instance, a loop that sleeps elsewhere than epoll_wait, a connection never
 * accepted, a socket not in the interest list, bytes never read, or echo
 * waiting in the server with no EPOLLOUT to send it.
 */
std::string where_the_echo_stopped(ServerProcess& server, const std::vector<Client>& clients) {
    const Client& client = clients.front();
    auto list = interest_list(server);
    if (!list) return "";
    std::string queues = queue_report(server, clients);
    if (!list->has_epoll)
        return "\n  the server has no epoll instance (no anon_inode:[eventpoll] among its "
               "descriptors)\n  hint: create one (epoll_create1), and put the listener on its "
               "interest list (epoll_ctl, EPOLL_CTL_ADD) for EPOLLIN";
    auto idle = proc::idle_syscall(server.pid(), server.pid(), quiet_window() * 4);
    if (idle && (*idle == SYS_accept || *idle == SYS_accept4))
        return "\n  the server is blocked in " + proc::syscall_name(*idle) + ", not in epoll_wait: "
               "a blocking listener with an empty backlog stops the whole loop" + queues +
               "\n  hint: keep the listener non-blocking, so that accept() returns EAGAIN when no "
               "connection waits, and accept only what epoll_wait() reported";
    if (idle && !is_epoll_wait(*idle))
        return "\n  the server sleeps in " + proc::syscall_name(*idle) + ", not in epoll_wait: "
               "nothing asks epoll which sockets are ready" + queues +
               "\n  hint: the loop sleeps in epoll_wait() until some watched socket is ready, "
               "then handles each descriptor it returned";
    if (!list->listener_watched)
        return "\n  the listening socket is not in the epoll interest list" + queues +
               "\n  hint: epoll_ctl(EPOLL_CTL_ADD) the listener for EPOLLIN";
    if (queues.find("accept queue") != std::string::npos)
        return queues + "\n  hint: when epoll_wait() reports the listener, accept the connection";
    auto found = list->clients.find(client.local_port());
    if (found == list->clients.end())
        return "\n  " + client.name() + " was accepted, but the socket for " + client.name() +
               " is not in the epoll interest list" + queues +
               "\n  hint: put each new client on the interest list (EPOLL_CTL_ADD) for EPOLLIN";
    if (!queues.empty())
        return queues + "\n  hint: when epoll_wait() reports a client's socket, read what it sent";
    return output_stalled(server, client, kEpolloutHint);
}

// ---- the server contract ----------------------------------------------------------

TEST(EpollLtStart, ReadyLine) {
    ServerProcess server(server_under_test());
    EXPECT_TRUE(server.ready()) << server.failure();
}
TEST(EpollLtStart, HelpAndBadOptions) {
    battery::help_exits_zero(server_under_test());
    battery::bad_option_exits_two(server_under_test());
}
TEST_F(EpollLt, StopsOnSigterm) { battery::sigterm_stops(server()); }

// ---- the echo contract -------------------------------------------------------------

// The first echo needs the whole path: an epoll instance that watches the
// listener, a loop that waits in it, the client's socket registered. When it
// does not come back, the failure says where the line stopped.
TEST_F(EpollLt, EchoesLine) {
    std::vector<Client> clients;
    clients.push_back(connect("alice"));
    ASSERT_TRUE(clients[0].send("hello, echo\n"));
    ::testing::AssertionResult echoed = clients[0].expect("hello, echo\n");
    if (!echoed) FAIL() << echoed.message() << where_the_echo_stopped(server(), clients) << context();
}
TEST_F(EpollLt, EchoesBinary) { battery::echoes_binary(endpoint()); }
TEST_F(EpollLt, PipelinedLines) { battery::pipelined_lines(endpoint()); }
TEST_F(EpollLt, MegabyteBurst) {
    std::vector<Client> clients;
    clients.push_back(connect("alice"));
    Client& alice = clients.front();
    std::string burst = binary_payload(1 << 20, 7);
    ::testing::AssertionResult echoed = alice.send(burst, answer_limit() * 2);
    if (echoed) echoed = alice.expect(burst, answer_limit() * 2);
    if (echoed) return;
    std::string seen = where_the_echo_stopped(server(), clients);
    if (seen.empty())
        seen = "\n  hint: send() on a non-blocking socket may take fewer bytes than asked: queue "
               "the rest, and keep reading until the data ends";
    FAIL() << "alice sent a 1 MiB burst while reading her echo: " << echoed.message() << seen
           << context();
}
TEST_F(EpollLt, HalfClose) { battery::half_close(endpoint()); }
TEST_F(EpollLt, SurvivesReset) { battery::survives_reset(server()); }
TEST_F(EpollLt, ShortSessionsNoFdGrowth) { battery::short_sessions_no_fd_growth(server()); }

// ---- concurrency -------------------------------------------------------------------

TEST_F(EpollLt, PartialLineDoesNotBlockOthers) { battery::partial_line_does_not_block_others(endpoint()); }
TEST_F(EpollLt, DripFeederDoesNotBlockOthers) { battery::drip_feeder_does_not_block_others(endpoint()); }
// The battery's stopped reader, with what the interest list says when A's echo stalls.
TEST_F(EpollLt, StoppedReaderDoesNotBlockOthers) {
    ConnectOptions small_buffer;
    small_buffer.receive_buffer = 4096;
    std::vector<Client> clients;
    clients.push_back(connect("A (never reads)", small_buffer));
    std::string flood = binary_payload(16u << 20, 5);
    size_t sent = battery::flood_until_stalled(clients[0], flood);
    clients.push_back(connect("B"));
    ASSERT_TRUE(clients[1].send("are you there?\n"));
    EXPECT_TRUE(clients[1].expect("are you there?\n"))
        << "\n  hint: client A sent " << sent << " bytes and stopped reading; then client B waited "
        << answer_limit().count() << " ms for its echo: your server is stuck writing to A. Never "
        << "block on one client's write: queue the rest and wait until the socket is writable"
        << context();
    ::testing::AssertionResult echoed =
        clients[0].expect(std::string_view(flood).substr(0, sent), answer_limit() * 2);
    if (echoed) return;
    std::string seen = output_stalled(server(), clients[0], kEpolloutHint);
    if (seen.empty()) seen = "\n  hint: once A reads again it must get every byte it sent, in order, exactly once";
    FAIL() << "client A sent " << sent << " bytes without reading, then read again and did not get "
           << "them all back: " << echoed.message() << queue_report(server(), clients) << seen << context();
}
TEST_F(EpollLt, FiftyClientsAtOnce) { battery::many_clients_at_once(endpoint(), 50); }

TEST_F(EpollLt, FiftySimultaneousConnects) {
    MUXLAB_REQUIRE_PROC();
    battery::fifty_simultaneous_connects(server(), [](ServerProcess& server, const std::vector<Client>& clients) {
        return queue_report(server, clients) +
               "\n  hint: the listener is ready while connections wait: accept them (level-triggered epoll "
               "reports it again as long as one is left), and keep the listener non-blocking so accept() "
               "never blocks the loop";
    });
}

// ---- the model: epoll, level-triggered ----------------------------------------------

TEST_F(EpollLt, InterestListTracksClients) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_served(5);
    ASSERT_FALSE(HasFailure());
    battery::interest_list_tracks_clients(server(), clients, battery::Trigger::kLevel);
}

TEST_F(EpollLt, IdleInEpollWait) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_served(2);
    ASSERT_FALSE(HasFailure());
    battery::idle_in_epoll_wait(server());
}

TEST_F(EpollLt, IdleAfterBackpressure) {
    MUXLAB_REQUIRE_PROC();
    battery::idle_after_backpressure(
        server(), "an empty socket buffer is writable nearly all the time: arm EPOLLOUT only while output "
                  "is queued, and disarm it (EPOLL_CTL_MOD) once the queue is empty");
}

TEST_F(EpollLt, SurvivesFdExhaustion) {
    MUXLAB_REQUIRE_PROC();
    LaunchOptions limited;
    limited.max_open_files = 32;
    MUXLAB_RESTART(limited);
    // 48 clients for a server that may open 32 fds in all: some must wait.
    constexpr int kClients = 48;
    std::vector<Client> clients;
    for (int i = 0; i < kClients; ++i) {
        clients.push_back(connect("client " + std::to_string(i + 1)));
        ASSERT_TRUE(clients.back().send("hello from " + clients.back().name() + "\n"));
    }
    // Who was served: keep looking until no new echo arrives for a while.
    std::vector<bool> served(kClients, false);
    int count = 0;
    Deadline deadline(answer_limit());
    for (Deadline quiet(quiet_window() * 2); !deadline.expired() && (count == 0 || !quiet.expired());) {
        for (int i = 0; i < kClients; ++i) {
            std::string line;
            if (served[i] || !clients[i].read_line(&line, Millis(0))) continue;
            ASSERT_EQ(line, "hello from " + clients[i].name()) << context();
            served[i] = true;
            ++count;
            quiet = Deadline(quiet_window() * 2);
        }
        pause_between_looks();
    }
    ASSERT_GT(count, 0) << "with RLIMIT_NOFILE 32 and " << kClients << " clients, none was served"
                        << context();
    auto activity = proc::idle_activity(server().pid());
    ASSERT_TRUE(activity.has_value());
    ASSERT_FALSE(server().wait_exit(Millis(0)).has_value())
        << "the server died when it ran out of file descriptors" << context();
    EXPECT_EQ(*activity, "")
        << "with RLIMIT_NOFILE 32, " << count << " of " << kClients << " clients served and the "
        << "rest waiting to be accepted, no client active: " << *activity
        << "\n  hint: at EMFILE the connection stays in the backlog and the listener stays ready; "
           "level-triggered epoll reports it on every call and accept() fails every time. Stop "
           "watching the listener until a client leaves (or keep a spare fd to close, accept "
           "and close the newcomer)" << context();
    for (int i = 0; i < kClients; ++i) {
        if (!served[i]) continue;
        ASSERT_TRUE(clients[i].send("still here\n"));
        ASSERT_TRUE(clients[i].expect("still here\n"))
            << "\n  hint: clients accepted before the fd table filled up must keep being served"
            << context();
    }
    // The waiting clients give up, and 5 served ones leave: descriptors free up.
    int left = 0;
    for (int i = 0; i < kClients; ++i)
        if (!served[i] || left++ < 5) clients[i].close();
    Client newcomer = connect("newcomer");
    ASSERT_TRUE(newcomer.send("anyone home?\n"));
    EXPECT_TRUE(newcomer.expect("anyone home?\n", answer_limit() * 2))
        << "\n  after the fd table had been full and clients left, a new client was not served."
        << queue_report(server(), {})
        << "\n  hint: when a client leaves, a descriptor is free again: resume accepting" << context();
}

}  // namespace
}  // namespace muxlab::test
