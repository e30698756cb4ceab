/**
 * @file 08_epoll_et.cpp
 * @brief Stage 08 contract: the stage 07 echo server with epoll
 *        edge-triggered.
 *
 * Everything stage 07 checks, with EPOLLET required on the client sockets
 * instead of forbidden, and the edge-triggered traps made certain: the test
 * pauses the server (SIGSTOP) while 50 clients connect or one client sends a
 * long burst, so one edge stands for all of it when the server resumes; what
 * a server leaves unaccepted or unread shows in /proc/net/tcp.
 */
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>

#include <map>
#include <set>
#include <vector>

#include "harness/battery.hpp"
#include "harness/event_loop.hpp"

namespace muxlab::test {
namespace {

class EpollEt : public ServerTest {};

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
TEST_F(EpollEt, MegabyteBurst) { battery::megabyte_burst(endpoint()); }
TEST_F(EpollEt, HalfClose) { battery::half_close(endpoint()); }
TEST_F(EpollEt, SurvivesReset) { battery::survives_reset(server()); }
TEST_F(EpollEt, ShortSessionsNoFdGrowth) { battery::short_sessions_no_fd_growth(server()); }

// ---- concurrency -------------------------------------------------------------------

TEST_F(EpollEt, PartialLineDoesNotBlockOthers) { battery::partial_line_does_not_block_others(endpoint()); }
TEST_F(EpollEt, DripFeederDoesNotBlockOthers) { battery::drip_feeder_does_not_block_others(endpoint()); }
TEST_F(EpollEt, StoppedReaderDoesNotBlockOthers) { battery::stopped_reader_does_not_block_others(endpoint()); }
TEST_F(EpollEt, FiftyClientsAtOnce) { battery::many_clients_at_once(endpoint(), 50); }

TEST_F(EpollEt, FiftySimultaneousConnects) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients;
    {
        Frozen frozen(server());
        ASSERT_TRUE(frozen.stopped()) << "could not pause the server with SIGSTOP";
        for (int i = 0; i < 50; ++i) {
            clients.push_back(connect("client " + std::to_string(i + 1)));
            ASSERT_TRUE(clients.back().send("hello from " + clients.back().name() + "\n"));
        }
    }
    for (Client& client : clients) {
        if (client.expect("hello from " + client.name() + "\n")) continue;
        ADD_FAILURE() << "50 clients connected and sent a line while the server was paused (SIGSTOP); "
                      << "after it resumed, " << client.name() << " got no echo."
                      << queue_report(server(), clients)
                      << "\n  hint: 50 connections that arrive together may raise one edge on "
                         "the listener: accept in a loop until accept() fails with EAGAIN"
                      << context();
        break;
    }
}

TEST_F(EpollEt, BurstFullyRead) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_served(1, "alice");
    ASSERT_FALSE(HasFailure());
    Client& alice = clients.front();
    // While the server is paused, alice sends what the kernel will buffer (far
    // more than one read() takes); the server resumes to a single edge.
    std::string burst = binary_payload(1 << 20, 13);
    size_t queued = 0;
    {
        Frozen frozen(server());
        ASSERT_TRUE(frozen.stopped()) << "could not pause the server with SIGSTOP";
        queued = alice.send_some(burst);
    }
    ASSERT_TRUE(alice.send(std::string_view(burst).substr(queued), answer_limit() * 2))
        << "\n  hint: the server stopped reading alice during a 1 MiB burst"
        << queue_report(server(), clients) << context();
    if (alice.expect(burst, answer_limit() * 2)) return;
    auto idle = proc::idle_syscall(server().pid(), server().pid(), quiet_window() * 3);
    ADD_FAILURE() << "alice sent a 1 MiB burst (" << queued << " bytes of it while the server was "
                  << "paused) and did not get it all back; the server now "
                  << (idle ? "waits in " + proc::syscall_name(*idle) : std::string("is running"))
                  << queue_report(server(), clients)
                  << "\n  hint: edge-triggered epoll reports new data once; bytes one read() leaves "
                     "behind are never reported again. Read until read() fails with EAGAIN (or "
                     "returns less than asked)" << context();
}

// ---- the model: epoll, edge-triggered ----------------------------------------------

TEST_F(EpollEt, InterestListIsEdgeTriggered) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_served(5);
    ASSERT_FALSE(HasFailure());
    std::string where = "/proc/" + std::to_string(server().pid()) + "/fdinfo";
    auto list = interest_list(server());
    ASSERT_TRUE(list.has_value());
    ASSERT_TRUE(list->has_epoll) << "the server has no epoll fd (anon_inode:[eventpoll] in /proc/"
                                 << server().pid() << "/fd)\n  hint: epoll_create1(), then "
                                 << "epoll_ctl(EPOLL_CTL_ADD) the listener and each client";
    EXPECT_TRUE(list->listener_watched)
        << "the listening socket is not in the epoll interest list (" << where << ")";
    for (const Client& client : clients) {
        auto found = list->clients.find(client.local_port());
        if (found == list->clients.end()) {
            ADD_FAILURE() << client.name() << " is connected and served, but its socket is not in "
                          << "the epoll interest list (the tfd lines of " << where << ")";
            continue;
        }
        EXPECT_TRUE(found->second & EPOLLET)
            << client.name() << "'s socket is registered without EPOLLET (events 0x" << std::hex
            << found->second << std::dec << " in " << where << "): this stage is edge-triggered";
    }
    std::set<unsigned> leaving;
    for (int i = 0; i < 3; ++i) {
        leaving.insert(clients[i].local_port());
        clients[i].close();
    }
    std::vector<std::string> stale;
    bool cleaned = eventually(answer_limit(), [&] {
        stale.clear();
        auto now = interest_list(server());
        if (!now) return false;
        for (const auto& [port, events] : now->clients)
            if (leaving.count(port)) stale.push_back("port " + std::to_string(port));
        return stale.empty();
    });
    EXPECT_TRUE(cleaned) << "3 of 5 clients left, and their sockets are still in the interest list ("
                         << stale.size() << " stale entries, " << where << ")"
                         << "\n  hint: when a client leaves, close its socket (close() removes it from "
                            "epoll, as long as no other fd refers to it) and forget it";
}

TEST_F(EpollEt, IdleInEpollWait) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_served(2);
    ASSERT_FALSE(HasFailure());
    for (pid_t task : proc::threads(server().pid())) {
        auto idle = proc::idle_syscall(server().pid(), task);
        ASSERT_TRUE(idle.has_value()) << "thread " << task << " never settled in a system call "
                                      << "while every client was quiet (a busy loop?)";
        EXPECT_TRUE(is_epoll_wait(*idle))
            << "with 2 quiet clients connected, thread " << task << " waits in "
            << proc::syscall_name(*idle) << " (see /proc/" << server().pid() << "/task/" << task
            << "/syscall)\n  hint: the one place this server sleeps is epoll_wait() with no "
               "timeout: no sleep(), no poll(), no timer";
    }
}

TEST_F(EpollEt, IdleAfterBackpressure) {
    MUXLAB_REQUIRE_PROC();
    // A floods the server without reading until the server stops reading A;
    // then A reads everything back. After that, nothing is left to write.
    ConnectOptions small_buffer;
    small_buffer.receive_buffer = 4096;
    Client alice = connect("A (slow reader)", small_buffer);
    std::string flood = binary_payload(8u << 20, 9);
    size_t sent = 0;
    Deadline limit(answer_limit());
    while (sent < flood.size() && !limit.expired()) {
        size_t now = alice.send_some(std::string_view(flood).substr(sent, 1 << 16));
        sent += now;
        if (now == 0) {
            pollfd p{alice.fd(), POLLOUT, 0};
            if (poll(&p, 1, static_cast<int>(quiet_window().count())) == 0) break;
        }
    }
    ASSERT_TRUE(alice.expect(std::string_view(flood).substr(0, sent), answer_limit() * 2))
        << "\n  hint: A stopped reading, then read again: it must get every byte it sent, once";
    auto activity = proc::idle_activity(server().pid());
    ASSERT_TRUE(activity.has_value());
    EXPECT_EQ(*activity, "")
        << "A's echo was held back by a full socket buffer and has all been delivered; now the "
           "server is idle, yet " << *activity
        << "\n  hint: sleep in epoll_wait() until something happens; arm EPOLLOUT only while "
           "output is queued, and disarm it (EPOLL_CTL_MOD) once the queue is empty";
    auto list = interest_list(server());
    ASSERT_TRUE(list.has_value());
    auto found = list->clients.find(alice.local_port());
    if (found != list->clients.end()) {
        EXPECT_FALSE(found->second & EPOLLOUT)
            << "A has nothing left to receive, yet its socket is still watched for EPOLLOUT "
               "(/proc/" << server().pid() << "/fdinfo): disarm it once the output queue is empty";
    }
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
    auto activity = proc::idle_activity(server().pid());
    ASSERT_TRUE(activity.has_value());
    ASSERT_FALSE(server().wait_exit(Millis(0)).has_value())
        << "the server died when it ran out of file descriptors" << context();
    EXPECT_EQ(*activity, "")
        << "with RLIMIT_NOFILE 32, " << count << " of " << kClients << " clients served and the "
        << "rest waiting to be accepted, no client active: " << *activity
        << "\n  hint: at EMFILE the connection stays in the backlog: stop accepting until a "
           "client leaves (or keep a spare fd to close, accept and close the newcomer)" << context();
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
