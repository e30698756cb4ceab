/**
 * @file tests/stages/05-poll/contract.cpp
 * @brief Stage 05 contract: the echo server with poll(), for thousands of
 *        clients, with a client limit (`--max-clients N`).
 */
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "harness/battery.hpp"
#include "harness/event_loop.hpp"

namespace muxlab::test {
namespace {

class Poll : public ServerTest {
protected:
    /// Connects @p count clients, each checked with one echo.
    std::vector<Client> connect_echoing(int count, const std::string& prefix = "client") {
        std::vector<Client> clients;
        for (int i = 0; i < count; ++i) {
            clients.push_back(connect(prefix + " " + std::to_string(i + 1)));
            std::string line = "hello from " + clients.back().name() + "\n";
            EXPECT_TRUE(clients.back().send(line));
            EXPECT_TRUE(clients.back().expect(line)) << context();
        }
        return clients;
    }

    /// Waits until the server holds exactly @p count client sockets.
    bool wait_for_client_sockets(size_t count) {
        return eventually(answer_limit(), [&] {
            auto sockets = proc::socket_fds(server().pid());
            return sockets && sockets->connected.size() == count;
        });
    }
};

bool is_poll(long number) { return number == SYS_ppoll
#ifdef SYS_poll
    || number == SYS_poll
#endif
    ; }

/**
 * @brief The fds in the pollfd array a process waits on, read from the kernel.
 *
 * Like the fd_set probe of stage 04: /proc/PID/syscall gives poll()'s
 * arguments (the array's address and length), /proc/PID/mem its contents.
 * @return every fd >= 0 in the array (entries < 0 are ignored by poll), or
 *         nullopt with @p why explaining.
 */
std::optional<std::vector<int>> poll_wait_set(pid_t pid, std::string* why) {
    std::string path = "/proc/" + std::to_string(pid);
    auto syscall_line = [&] {
        std::ifstream file(path + "/syscall");
        std::string line;
        std::getline(file, line);
        return line;
    };
    std::string before = syscall_line();
    std::istringstream words(before);
    long number = -1;
    if (!(words >> number) || !is_poll(number)) {
        *why = "the server is not waiting in poll() (/proc/" + std::to_string(pid) + "/syscall: \"" +
               before + "\")";
        return std::nullopt;
    }
    std::string array_hex, count_hex;
    words >> array_hex >> count_hex;
    unsigned long address = std::strtoul(array_hex.c_str(), nullptr, 16);
    unsigned long count = std::strtoul(count_hex.c_str(), nullptr, 16);
    if (count > 1000000) {
        *why = "poll() was called with nfds " + std::to_string(count);
        return std::nullopt;
    }
    int mem = open((path + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
    if (mem < 0) {
        *why = "cannot open /proc/" + std::to_string(pid) + "/mem";
        return std::nullopt;
    }
    std::vector<pollfd> entries(count);
    ssize_t n = pread(mem, entries.data(), count * sizeof(pollfd), static_cast<off_t>(address));
    close(mem);
    if (n != static_cast<ssize_t>(count * sizeof(pollfd))) {
        *why = "cannot read the server's pollfd array from /proc/" + std::to_string(pid) + "/mem";
        return std::nullopt;
    }
    if (syscall_line() != before) {
        *why = "the server woke up while its pollfd array was read";
        return std::nullopt;
    }
    std::vector<int> fds;
    for (const pollfd& entry : entries)
        if (entry.fd >= 0) fds.push_back(entry.fd);
    return fds;
}

// ---- the server contract ----------------------------------------------------------

TEST(PollStart, ReadyLine) {
    ServerProcess server(server_under_test());
    EXPECT_TRUE(server.ready()) << server.failure();
}
TEST(PollStart, HelpAndBadOptions) {
    battery::help_exits_zero(server_under_test());
    battery::bad_option_exits_two(server_under_test());
}
TEST_F(Poll, StopsOnSigterm) { battery::sigterm_stops(server()); }

// ---- the echo contract -------------------------------------------------------------

// The first test a half-done loop fails: the message says where alice's line
// stopped (never waited for, never accepted, not in the array, never read).
TEST_F(Poll, EchoesLine) {
    battery::echoes_line(server(), [&](const battery::LineStop& stop) -> std::string {
        if (stop.sleeps_in && !is_poll(*stop.sleeps_in))
            return "\n  the server sleeps in " + proc::syscall_name(*stop.sleeps_in) + ", not in poll()" +
                   stop.queues + "\n  hint: every turn of the loop, wait in poll() on the whole pollfd array";
        if (stop.never_accepted())
            return stop.queues + "\n  hint: alice's connection was never accepted. When poll() reports POLLIN "
                                 "in the listener's revents (slot 0), accept what waits";
        if (stop.never_read()) {
            std::string why;
            auto watched = poll_wait_set(server().pid(), &why);
            auto sockets = proc::socket_fds(server().pid());
            bool in_array = false;
            if (watched && sockets)
                for (int fd : sockets->connected)
                    in_array = in_array || std::find(watched->begin(), watched->end(), fd) != watched->end();
            if (watched && sockets && !sockets->connected.empty() && !in_array)
                return stop.queues + "\n  alice's connection was accepted, but her socket is not in the pollfd "
                                     "array poll() waits on"
                                     "\n  hint: give every client you keep an entry (its fd, events POLLIN) in "
                                     "the array, and keep its state at the same index";
            return stop.queues + "\n  alice's socket is in the pollfd array, but her line was never read"
                                 "\n  hint: act on each entry's revents: POLLIN (or POLLHUP) means read now";
        }
        return "\n  the server read alice's line (nothing waits in its socket) but sent nothing back"
               "\n  hint: a client with pending echo asks for POLLOUT; write when revents has it";
    });
}
TEST_F(Poll, EchoesBinary) { battery::echoes_binary(endpoint()); }
TEST_F(Poll, PipelinedLines) { battery::pipelined_lines(endpoint()); }
// The echo battery speaks of writes; what they mean with a pollfd array:
TEST_F(Poll, MegabyteBurst) {
    SCOPED_TRACE("in this stage: the echo a send() does not take waits in pending until poll() reports "
                 "POLLOUT, which it reports only while the client's events ask for it");
    battery::megabyte_burst(endpoint());
}
// After the client's shutdown(SHUT_WR): its echo, then the server closes. A
// client that is done leaves the array too; the message says whether the
// server still holds its socket, and whether poll() still watches it.
TEST_F(Poll, HalfClose) {
    Client alice = connect("alice");
    ASSERT_TRUE(alice.send("last words"));
    alice.shutdown_write();
    ASSERT_TRUE(alice.expect("last words"))
        << "\n  hint: after the client's shutdown(SHUT_WR), echo what is left before closing" << context();
    ::testing::AssertionResult closed = alice.expect_closed();
    if (closed) return;
    std::string seen, why;
    auto sockets = proc::socket_fds(server().pid());
    if (sockets && !sockets->connected.empty()) {
        int fd = sockets->connected.front();
        seen = "\n  the server still holds alice's socket (fd " + std::to_string(fd) +
               ") after her echo and her end of input";
        if (auto watched = poll_wait_set(server().pid(), &why))
            if (std::find(watched->begin(), watched->end(), fd) != watched->end())
                seen += ", and it is still in the pollfd array";
        seen += "\n  hint: read() returned 0 and nothing is pending: serve() says the client is done, "
                "and the loop must then take its entry out of the array (both arrays) and close its socket";
    } else {
        seen = "\n  hint: read() returning 0 means the client is done sending: close the socket once "
               "its echo is sent";
    }
    FAIL() << closed.message() << seen << context();
}
TEST_F(Poll, SurvivesReset) { battery::survives_reset(server()); }
TEST_F(Poll, ShortSessionsNoFdGrowth) { battery::short_sessions_no_fd_growth(server()); }

// ---- concurrency in one thread ----------------------------------------------------------

TEST_F(Poll, PartialLineDoesNotBlockOthers) { battery::partial_line_does_not_block_others(endpoint()); }
TEST_F(Poll, DripFeederDoesNotBlockOthers) { battery::drip_feeder_does_not_block_others(endpoint()); }
TEST_F(Poll, StoppedReaderDoesNotBlockOthers) {
    SCOPED_TRACE("in this stage: the echo a send() does not take waits in pending until poll() reports "
                 "POLLOUT, which it reports only while the client's events ask for it");
    battery::stopped_reader_does_not_block_others(endpoint());
}

// A client that sends without ever reading must not make the server buffer
// without limit: once its unsent echo passes a cap, the server stops reading
// it, and TCP flow control blocks the client's sends. Judged two ways: how
// much the client could send, and how much the server's memory grew.
TEST_F(Poll, UnreadEchoIsBounded) {
    battery::unread_echo_bounded(server(), "while a client's pending echo is above a cap, stop watching it for input "
                                           "(clear POLLIN in its events with events &= ~POLLIN; events |= ~POLLIN sets "
                                           "every other bit and clears nothing): TCP flow control then makes the client "
                                           "wait");
}

// ---- the lesson: the client limit, thousands of clients, the array -------------------------

TEST_F(Poll, RefusesClientsBeyondMax) {
    LaunchOptions options;
    options.args = {"--max-clients", "3"};
    MUXLAB_RESTART(options);
    std::vector<Client> clients = connect_echoing(3);
    ASSERT_FALSE(HasFailure());
    Client extra = connect("client 4 (one too many)");
    EXPECT_TRUE(extra.expect("ERROR too many clients\n"))
        << "\n  hint: with --max-clients 3 and 3 clients connected, tell the next one "
           "\"ERROR too many clients\" (with a LF) and close it" << context();
    EXPECT_TRUE(extra.expect_closed()) << "\n  hint: close the refused client after the message" << context();
    for (Client& client : clients) {
        ASSERT_TRUE(client.send("still here\n"));
        EXPECT_TRUE(client.expect("still here\n"))
            << "\n  hint: refusing one client must not affect the others" << context();
    }
    // A client leaves: there is room again.
    clients[1].close();
    bool admitted = false;
    Deadline deadline(answer_limit());
    while (!admitted && !deadline.expired()) {
        Client newcomer = connect("newcomer");
        admitted = battery::try_echo(newcomer, "room for me?\n") == battery::Outcome::kEchoed;
    }
    EXPECT_TRUE(admitted) << "after one of the 3 clients left, a new client was still refused"
                          << "\n  hint: count only the clients still connected" << context();
}

TEST_F(Poll, FiveThousandClients) {
    constexpr int kClients = 5000;
    LaunchOptions options;
    options.args = {"--max-clients", "6000"};
    options.max_open_files = 8192;
    MUXLAB_RESTART(options);
    std::vector<Client> clients;
    clients.reserve(kClients);
    for (int i = 0; i < kClients; ++i) {
        ::testing::AssertionResult ok = ::testing::AssertionSuccess();
        clients.push_back(Client::try_connect(endpoint(), "client " + std::to_string(i + 1), &ok));
        ASSERT_TRUE(ok) << "client " << i + 1 << " of " << kClients << " could not connect" << context();
    }
    for (int i = 0; i < kClients; ++i) ASSERT_TRUE(clients[i].send("I am client " + std::to_string(i + 1) + "\n"));
    for (int i = 0; i < kClients; ++i)
        ASSERT_TRUE(clients[i].expect("I am client " + std::to_string(i + 1) + "\n"))
            << "\n  hint: " << kClients << " clients are connected at once (the server may open "
            << "8192 fds): poll() has no FD_SETSIZE limit, so every one must be served" << context();
}

// Clients leave from the middle of the array while the others keep talking:
// every remaining client must still get its own echo.
TEST_F(Poll, RemovingFromTheMiddleKeepsEveryone) {
    constexpr int kClients = 30;
    std::vector<Client> clients = connect_echoing(kClients);
    ASSERT_FALSE(HasFailure());
    std::vector<bool> gone(kClients, false);
    for (int wave = 0; wave < 3; ++wave) {
        // Every third client leaves (half by close, half by RST); in the same
        // instant the others send, so one poll() round sees both.
        for (int i = wave; i < kClients; i += 3) {
            if (i % 2 == 0) clients[i].close();
            else clients[i].reset();
            gone[i] = true;
            if (wave == 2 && i > kClients / 2) break;  // keep some clients to the end
        }
        for (int i = 0; i < kClients; ++i) {
            if (gone[i]) continue;
            ASSERT_TRUE(clients[i].send("wave " + std::to_string(wave) + " " + clients[i].name() + "\n"));
        }
        for (int i = 0; i < kClients; ++i) {
            if (gone[i]) continue;
            EXPECT_TRUE(clients[i].expect("wave " + std::to_string(wave) + " " + clients[i].name() + "\n"))
                << "\n  hint: after clients left from the middle of the pollfd array, "
                << clients[i].name() << " lost its echo (or its connection). When you remove entry "
                   "i, whatever you move into slot i (the last entry, with its client state) "
                   "must move together, and must still be served" << context();
            if (HasFailure()) return;
        }
    }
}

TEST_F(Poll, NoCpuAfterClientsLeave) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_echoing(8);
    ASSERT_FALSE(HasFailure());
    for (int i : {1, 3, 4, 6}) clients[i].close();
    ASSERT_TRUE(wait_for_client_sockets(4)) << "4 clients left but the server did not close their sockets"
                                            << context();
    auto activity = proc::idle_activity(server().pid(), Millis(500));
    ASSERT_TRUE(activity.has_value());
    EXPECT_TRUE(activity->empty())
        << "after 4 of 8 clients left, with 4 quiet clients, " << *activity
        << ".\n  hint: a closed fd left in the pollfd array makes poll() report POLLNVAL at once, "
           "on every call: remove the entry when you close its socket" << context();
}

TEST_F(Poll, NoCpuAfterBackpressure) {
    MUXLAB_REQUIRE_PROC();
    ConnectOptions small_buffer;
    small_buffer.receive_buffer = 4096;
    Client hog = connect("hog", small_buffer);
    // Send without reading until the server stops reading (or 16 MiB)...
    std::string data = binary_payload(16u << 20, 11);
    size_t sent = 0;
    Deadline deadline(answer_limit());
    while (sent < data.size() && !deadline.expired()) {
        size_t now = hog.send_some(std::string_view(data).substr(sent, 1 << 16));
        sent += now;
        if (now == 0) {
            pollfd p{hog.fd(), POLLOUT, 0};
            if (poll(&p, 1, static_cast<int>(quiet_window().count())) == 0) break;
        }
    }
    // ...then read every byte back, and go quiet.
    ASSERT_TRUE(hog.expect(std::string_view(data).substr(0, sent), answer_limit() * 2)) << context();
    auto activity = proc::idle_activity(server().pid(), Millis(500));
    ASSERT_TRUE(activity.has_value());
    EXPECT_TRUE(activity->empty())
        << "a client sent " << (sent >> 10) << " KiB without reading, then read it all back; now it "
        << "is quiet, and " << *activity
        << ".\n  hint: check the events you leave in the array: clear a bit with events &= ~FLAG "
           "(events |= ~FLAG sets every other bit, POLLOUT and POLLWRNORM included, so a writable "
           "socket wakes poll() forever)" << context();
}

// Reads the pollfd array the idle server passes to poll() (see poll_wait_set):
// it must hold the listener and every open client, and no closed fd.
TEST_F(Poll, PollSetMatchesOpenClients) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_echoing(6);
    ASSERT_FALSE(HasFailure());
    clients[1].close();
    clients[4].close();
    std::string problem = "never looked";
    bool matched = eventually(answer_limit(), [&] {
        problem.clear();
        if (server().wait_exit(Millis(0))) {
            problem = "the server exited";
            return true;
        }
        auto sockets = proc::socket_fds(server().pid());
        auto open_fds = proc::fds(server().pid());
        if (!sockets || !open_fds) {
            problem = "cannot read /proc/" + std::to_string(server().pid());
            return false;
        }
        if (sockets->connected.size() != 4) {
            problem = "the server holds " + std::to_string(sockets->connected.size()) +
                      " client sockets; 4 clients are connected";
            return false;
        }
        auto watched = poll_wait_set(server().pid(), &problem);
        if (!watched) return false;
        std::set<int> open, in_array(watched->begin(), watched->end());
        for (const proc::FdEntry& entry : *open_fds) open.insert(entry.fd);
        for (int fd : *watched)
            if (!open.count(fd)) problem += "fd " + std::to_string(fd) + " is in the array but closed; ";
        for (int fd : sockets->listening)
            if (!in_array.count(fd)) problem += "the listener (fd " + std::to_string(fd) + ") is missing; ";
        for (int fd : sockets->connected)
            if (!in_array.count(fd)) problem += "client fd " + std::to_string(fd) + " is missing; ";
        if (in_array.size() != watched->size()) problem += "an fd appears twice; ";
        return problem.empty();
    });
    if (!matched && problem.rfind("cannot open", 0) == 0) GTEST_SKIP() << "model check skipped: " << problem;
    EXPECT_TRUE(matched && problem.empty())
        << "with 4 clients connected (2 others have left), the idle server's pollfd array: " << problem
        << "\n  hint: when a client leaves, close its socket and remove its entry from the array "
           "(or set the entry's fd to -1)" << context();
}

TEST_F(Poll, WaitsInPoll) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_echoing(2);
    ASSERT_FALSE(HasFailure());
    auto idle = proc::idle_syscall(server().pid(), server().pid());
    ASSERT_TRUE(idle.has_value()) << "the idle server never settled in a system call (a busy loop?)";
    EXPECT_TRUE(is_poll(*idle))
        << "with clients connected and quiet, the server waits in " << proc::syscall_name(*idle)
        << "; stage 05 waits in poll() (see /proc/" << server().pid() << "/syscall)";
    auto fds = proc::fds(server().pid());
    ASSERT_TRUE(fds.has_value());
    for (const proc::FdEntry& entry : *fds)
        EXPECT_FALSE(entry.is_epoll()) << "fd " << entry.fd << " is an epoll instance; stage 05 uses poll()";
}

TEST_F(Poll, OneProcessOneThread) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_echoing(3);
    ASSERT_FALSE(HasFailure());
    auto tree = proc::process_tree(server().pid());
    EXPECT_EQ(tree.size(), 1u) << "with 3 clients connected the server has " << tree.size() - 1
                               << " child processes; stage 05 serves everyone from one process";
    EXPECT_EQ(proc::threads(server().pid()).size(), 1u)
        << "with 3 clients connected the server runs several threads; stage 05 has one";
}

}  // namespace
}  // namespace muxlab::test
