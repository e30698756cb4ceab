/**
 * @file tests/stages/08-epoll-et/contract.cpp
 * @brief Stage 08 contract: the stage 07 echo server with epoll
 *        edge-triggered.
 *
 * Everything stage 07 checks, with EPOLLET required on the client sockets
 * instead of forbidden, and the edge-triggered traps made certain: the test
 * pauses the server (SIGSTOP) while 50 clients connect or one client sends a
 * long burst, so one edge stands for all of it when the server resumes; what
 * a server leaves unaccepted or unread shows in /proc/net/tcp.
 */
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>

#include <string>
#include <vector>

#include "harness/battery.hpp"
#include "harness/event_loop.hpp"
#include "harness/tcp_window.hpp"

namespace muxlab::test {
namespace {

class EpollEt : public ServerTest {};

// ---- what an edge-triggered server leaves behind ---------------------------------

constexpr int kTcpCloseWait = 0x08;  // the client shut down its side; the server has not closed

constexpr const char* kDrainHint =
    "\n  hint: edge-triggered epoll reported these bytes once, and never reports what a read() "
    "leaves behind: read until read() fails with EAGAIN (or returns less than asked), and when "
    "you stop before that (a fair share), come back to the client yourself";
constexpr const char* kAcceptHint =
    "\n  hint: connections that arrive together may raise a single edge on the listener: "
    "accept in a loop until accept() fails with EAGAIN";

/**
 * What /proc shows that @p server left behind for @p clients (connections
 * never accepted, bytes never read), each with the edge-triggered rule it
 * breaks; "" when nothing is left.
 */
std::string left_behind(ServerProcess& server, const std::vector<Client>& clients) {
    std::string seen = queue_report(server, clients);
    if (seen.find("accept queue") != std::string::npos) return seen + kAcceptHint;
    if (seen.find("sit unread") != std::string::npos) return seen + kDrainHint;
    return seen;
}

/// How this stage arms EPOLLOUT, for output_stalled().
constexpr const char* kEpolloutHint =
    "while output is queued, watch the socket for EPOLLOUT (EPOLL_CTL_MOD); edge-triggered epoll reports it when room frees up";

/// True when the server's socket for @p client is in CLOSE_WAIT: its end of file was never read.
bool end_of_file_unread(ServerProcess& server, const Client& client) {
    for (const proc::TcpSocket& socket : proc::tcp_sockets(server.pid()))
        if (socket.local_port == server.endpoint().port && socket.remote_port == client.local_port())
            return socket.state == kTcpCloseWait;
    return false;
}

// ---- the server contract ----------------------------------------------------------

TEST(EpollEtStart, ReadyLine) {
    ServerProcess server(server_under_test());
    EXPECT_TRUE(server.ready()) << server.failure();
}
TEST(EpollEtStart, HelpAndBadOptions) {
    battery::help_exits_zero(server_under_test());
    battery::bad_option_exits_two(server_under_test());
}
TEST_F(EpollEt, StopsOnSigterm) { battery::sigterm_stops(server()); }

// ---- the echo contract -------------------------------------------------------------

TEST_F(EpollEt, EchoesLine) { battery::echoes_line(endpoint()); }
TEST_F(EpollEt, EchoesBinary) { battery::echoes_binary(endpoint()); }
TEST_F(EpollEt, PipelinedLines) { battery::pipelined_lines(endpoint()); }
// The echo battery's burst, with what the server left unread when it fails.
TEST_F(EpollEt, MegabyteBurst) {
    std::vector<Client> clients;
    clients.push_back(connect("alice"));
    Client& alice = clients.front();
    std::string burst = binary_payload(1 << 20, 7);
    ::testing::AssertionResult echoed = alice.send(burst, answer_limit() * 2);
    if (echoed) echoed = alice.expect(burst, answer_limit() * 2);
    if (echoed) return;
    std::string seen = left_behind(server(), clients);
    if (seen.empty())
        seen = "\n  hint: nothing waits unread in the server's socket: the server read the burst, and "
               "sent only part of it back. What a send() does not take waits for EPOLLOUT, which "
               "edge-triggered epoll reports when room frees up";
    FAIL() << "alice sent a 1 MiB burst while reading her echo: " << echoed.message() << seen
           << context();
}

// The last bytes and the end of input arrive while the server is paused, so
// they raise one edge: a read() that returns the bytes (a short read) is not
// the end of the story.
TEST_F(EpollEt, HalfClose) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_served(1, "alice");
    ASSERT_FALSE(HasFailure());
    Client& alice = clients.front();
    {
        Frozen frozen(server());
        ASSERT_TRUE(frozen.stopped()) << "could not pause the server with SIGSTOP";
        ASSERT_TRUE(alice.send("last words"));
        alice.shutdown_write();
    }
    ::testing::AssertionResult done = alice.expect("last words");
    if (done) done = alice.expect_closed();
    if (done) return;
    std::string seen = left_behind(server(), clients);
    if (end_of_file_unread(server(), alice))
        seen += "\n  the server's socket for alice is in CLOSE_WAIT: her end of input came with her "
                "last bytes, in the same edge, and the server never read it (no read() returned 0)"
                "\n  hint: a short read says the socket is empty now, not that the peer is done: "
                "when epoll reports EPOLLRDHUP (register it), read until read() returns 0, or "
                "simply read until EAGAIN";
    FAIL() << "alice sent her last words and shut down her side (shutdown(SHUT_WR)) while the "
              "server was paused: " << done.message() << seen << context();
}
TEST_F(EpollEt, SurvivesReset) { battery::survives_reset(server()); }
TEST_F(EpollEt, ShortSessionsNoFdGrowth) { battery::short_sessions_no_fd_growth(server()); }

// ---- concurrency -------------------------------------------------------------------

TEST_F(EpollEt, PartialLineDoesNotBlockOthers) {
    std::vector<Client> clients;
    clients.push_back(connect("A"));
    ASSERT_TRUE(clients[0].send("half a li"));
    clients.push_back(connect("B"));
    ASSERT_TRUE(clients[1].send("ping\n"));
    ::testing::AssertionResult echoed = clients[1].expect("ping\n");
    if (!echoed)
        FAIL() << "while client A had sent half a line, client B got no echo: " << echoed.message()
               << left_behind(server(), clients) << context();
    ASSERT_TRUE(clients[0].send("ne\n"));
    EXPECT_TRUE(clients[0].expect("half a line\n")) << left_behind(server(), clients) << context();
}
TEST_F(EpollEt, DripFeederDoesNotBlockOthers) { battery::drip_feeder_does_not_block_others(endpoint()); }
// The battery's stopped reader, with what the interest list says when the echo stalls.
TEST_F(EpollEt, StoppedReaderDoesNotBlockOthers) {
    ConnectOptions small_buffer;
    small_buffer.receive_buffer = 4096;
    std::vector<Client> clients;
    clients.push_back(connect("A (never reads)", small_buffer));
    std::string flood = binary_payload(16u << 20, 5);
    size_t sent = battery::flood_until_stalled(clients[0], flood);
    clients.push_back(connect("B"));
    ASSERT_TRUE(clients[1].send("are you there?\n"));
    ::testing::AssertionResult echoed = clients[1].expect("are you there?\n");
    if (!echoed)
        FAIL() << "client A sent " << sent << " bytes and stopped reading; then client B got no echo: "
               << echoed.message() << left_behind(server(), clients) << context();
    echoed = clients[0].expect(std::string_view(flood).substr(0, sent), answer_limit() * 2);
    if (echoed) return;
    // Bytes unread while the socket is still watched for input: a missed edge.
    // Otherwise, echo waiting with no EPOLLOUT to send it.
    std::string seen = left_behind(server(), clients);
    auto list = interest_list(server());
    auto found = list ? list->clients.find(clients[0].local_port()) : decltype(list->clients.end())();
    bool reading = list && found != list->clients.end() && (found->second & EPOLLIN);
    std::string stalled = output_stalled(server(), clients[0], kEpolloutHint);
    if (!stalled.empty() && !(reading && seen.find("sit unread") != std::string::npos))
        seen = queue_report(server(), clients) + stalled;
    FAIL() << "client A sent " << sent << " bytes without reading, then read again and did not get "
           << "them all back: " << echoed.message() << seen << context();
}
TEST_F(EpollEt, FiftyClientsAtOnce) { battery::many_clients_at_once(endpoint(), 50); }

TEST_F(EpollEt, FiftySimultaneousConnects) {
    MUXLAB_REQUIRE_PROC();
    battery::fifty_simultaneous_connects(server(), left_behind);
}

TEST_F(EpollEt, BurstFullyRead) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_served(1, "alice");
    ASSERT_FALSE(HasFailure());
    Client& alice = clients.front();
    // First 2 MiB in rounds of 64 KiB: the kernel grows the server's receive
    // window as the server reads (to several hundred KiB).
    std::string round = binary_payload(64 << 10, 12);
    for (int i = 0; i < 32; ++i) {
        ASSERT_TRUE(alice.send(round)) << "\n  the server stopped reading alice" << left_behind(server(), clients);
        ASSERT_TRUE(alice.expect(round)) << "\n  (alice sends 64 KiB and waits for its echo, 32 times)"
                                         << left_behind(server(), clients) << context();
    }
    // While the server is paused, alice sends exactly what its receive window
    // takes (far more than one read() takes, and more than a fair share): all
    // of it sits in the server's socket, none in hers, and the server resumes
    // to a single edge. She sends nothing more until all of it is back: no
    // later arrival raises an edge that would cover a mistake.
    std::string burst = binary_payload(1 << 20, 13);
    size_t queued = 0;
    {
        Frozen frozen(server());
        ASSERT_TRUE(frozen.stopped()) << "could not pause the server with SIGSTOP";
        size_t window = peer_receive_window(alice.fd()).value_or(64 << 10);
        queued = alice.send_some(std::string_view(burst).substr(0, std::min(window, burst.size())));
    }
    auto report = [&](const std::string& what) {
        auto idle = proc::idle_syscall(server().pid(), server().pid(), quiet_window() * 3);
        return what + "; the server now " +
               (idle ? "waits in " + proc::syscall_name(*idle) : std::string("is running")) +
               left_behind(server(), clients) + context();
    };
    if (!alice.expect(std::string_view(burst).substr(0, queued), answer_limit() * 2))
        FAIL() << report("alice sent " + std::to_string(queued) + " bytes of a 1 MiB burst while the "
                         "server was paused, then waited, and did not get them all back");
    ASSERT_TRUE(alice.send(std::string_view(burst).substr(queued), answer_limit() * 2))
        << "\n  the server stopped reading alice during a 1 MiB burst" << left_behind(server(), clients)
        << context();
    if (!alice.expect(std::string_view(burst).substr(queued), answer_limit() * 2))
        FAIL() << report("alice sent a 1 MiB burst (" + std::to_string(queued) + " bytes of it while "
                         "the server was paused) and did not get it all back");
}

// ---- the model: epoll, edge-triggered ----------------------------------------------

TEST_F(EpollEt, InterestListIsEdgeTriggered) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_served(5);
    ASSERT_FALSE(HasFailure());
    battery::interest_list_tracks_clients(server(), clients, battery::Trigger::kEdge);
}

TEST_F(EpollEt, IdleInEpollWait) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_served(2);
    ASSERT_FALSE(HasFailure());
    battery::idle_in_epoll_wait(server());
}

TEST_F(EpollEt, IdleAfterBackpressure) {
    MUXLAB_REQUIRE_PROC();
    battery::idle_after_backpressure(
        server(), "sleep in epoll_wait() until something happens; arm EPOLLOUT only while output is "
                  "queued, and disarm it (EPOLL_CTL_MOD) once the queue is empty");
}

TEST_F(EpollEt, SurvivesFdExhaustion) {
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
    // Did it stop accepting because it ran out of descriptors, or before?
    auto open = proc::fds(server().pid());
    size_t open_fds = open ? open->size() : 0;
    auto activity = proc::idle_activity(server().pid());
    ASSERT_TRUE(activity.has_value());
    ASSERT_FALSE(server().wait_exit(Millis(0)).has_value())
        << "the server died when it ran out of file descriptors" << context();
    EXPECT_EQ(*activity, "")
        << "with RLIMIT_NOFILE 32, " << count << " of " << kClients << " clients served and the "
        << "rest waiting to be accepted, no client active: " << *activity
        << "\n  hint: at EMFILE the connection stays in the backlog: stop accepting until a "
           "client leaves (or keep a spare fd to close, accept and close the newcomer)" << context();
    if (open && open_fds + 4 < static_cast<size_t>(*limited.max_open_files)) {
        ADD_FAILURE() << "with RLIMIT_NOFILE 32 and " << kClients << " clients connecting at once, "
                      << "the server served " << count << " and holds " << open_fds
                      << " descriptors: it stopped accepting long before it ran out"
                      << queue_report(server(), {}) << kAcceptHint << context();
        return;
    }
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
        << "\n  hint: when a client leaves, a descriptor is free again: resume accepting. The "
           "connections that waited raise no new edge: re-arm the listener (EPOLL_CTL_MOD "
           "makes epoll look again) or accept right away" << context();
}

}  // namespace
}  // namespace muxlab::test
