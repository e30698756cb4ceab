/**
 * @file tests/stages/04-select/contract.cpp
 * @brief Stage 04 contract: the echo server for many clients in one process,
 *        one thread, with select().
 */
#include <fcntl.h>
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

class Select : public ServerTest {};

/// True for the system calls that are select(): select and pselect6.
bool is_select(long number) {
#ifdef SYS_select
    if (number == SYS_select) return true;
#endif
    return number == SYS_pselect6;
}

/**
 * @brief The descriptors a process waits on in select(), read from the kernel.
 *
 * /proc/PID/syscall shows the call a blocked thread sits in and its arguments:
 * for select() and pselect6(), nfds and the addresses of the three fd_sets.
 * While the call waits, those sets still hold what the program passed in, and
 * /proc/PID/mem lets a process of the same user read them. The look is taken
 * twice around the read, so a server that woke up meanwhile is not misread.
 * @return the union of the three sets, or nullopt with @p why explaining.
 */
std::optional<std::set<int>> select_wait_set(pid_t pid, std::string* why) {
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
    if (!(words >> number) || !is_select(number)) {
        *why = "the server is not waiting in select() (/proc/" + std::to_string(pid) + "/syscall: \"" +
               before + "\")";
        return std::nullopt;
    }
    unsigned long args[4] = {};
    for (unsigned long& arg : args) {
        std::string hex;
        words >> hex;
        arg = std::strtoul(hex.c_str(), nullptr, 16);
    }
    long nfds = static_cast<long>(args[0]);
    if (nfds < 0 || nfds > 1 << 20) {
        *why = "select() was called with nfds " + std::to_string(nfds);
        return std::nullopt;
    }
    int mem = open((path + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
    if (mem < 0) {
        *why = "cannot open /proc/" + std::to_string(pid) + "/mem";
        return std::nullopt;
    }
    std::set<int> fds;
    size_t words_needed = (static_cast<size_t>(nfds) + 63) / 64;
    bool read_ok = true;
    for (int set = 1; set <= 3 && read_ok; ++set) {
        if (args[set] == 0) continue;
        std::vector<unsigned long> bits(words_needed);
        ssize_t n = pread(mem, bits.data(), bits.size() * sizeof(unsigned long),
                          static_cast<off_t>(args[set]));
        read_ok = n == static_cast<ssize_t>(bits.size() * sizeof(unsigned long));
        for (long fd = 0; read_ok && fd < nfds; ++fd)
            if ((bits[static_cast<size_t>(fd) / 64] >> (fd % 64)) & 1UL) fds.insert(static_cast<int>(fd));
    }
    close(mem);
    if (!read_ok) {
        *why = "cannot read the server's fd_sets from /proc/" + std::to_string(pid) + "/mem";
        return std::nullopt;
    }
    if (syscall_line() != before) {
        *why = "the server woke up while its fd_sets were read";
        return std::nullopt;
    }
    return fds;
}

// ---- the server contract ----------------------------------------------------------

TEST(SelectStart, ReadyLine) {
    ServerProcess server(server_under_test());
    EXPECT_TRUE(server.ready()) << server.failure();
}
TEST(SelectStart, HelpAndBadOptions) {
    battery::help_exits_zero(server_under_test());
    battery::bad_option_exits_two(server_under_test());
}
TEST_F(Select, StopsOnSigterm) { battery::sigterm_stops(server()); }

// ---- the echo contract -------------------------------------------------------------

// The first test a half-done loop fails: the message says where alice's line
// stopped (never waited for, never accepted, never read, never sent back).
TEST_F(Select, EchoesLine) {
    battery::echoes_line(server(), [](const battery::LineStop& stop) -> std::string {
        if (stop.sleeps_in && !is_select(*stop.sleeps_in))
            return "\n  the server sleeps in " + proc::syscall_name(*stop.sleeps_in) + ", not in select()" +
                   stop.queues +
                   "\n  hint: every turn of the loop, build the read and write sets and wait in select() "
                   "until one of them is ready";
        if (stop.never_accepted())
            return stop.queues + "\n  hint: alice's connection was never accepted. When select() says the "
                                 "listener is readable (FD_ISSET), accept what waits";
        if (stop.never_read())
            return stop.queues + "\n  hint: alice was accepted, but her line was never read: put every client "
                                 "that wants input in the read set, and read_from() those FD_ISSET reports";
        return "\n  the server read alice's line (nothing waits in its socket) but sent nothing back"
               "\n  hint: a client with pending echo goes in the write set; write_to() it when FD_ISSET "
               "says it is writable";
    });
}
TEST_F(Select, EchoesBinary) { battery::echoes_binary(endpoint()); }
TEST_F(Select, PipelinedLines) { battery::pipelined_lines(endpoint()); }
TEST_F(Select, MegabyteBurst) { battery::megabyte_burst(endpoint()); }
TEST_F(Select, HalfClose) { battery::half_close(endpoint()); }
TEST_F(Select, SurvivesReset) { battery::survives_reset(server()); }
TEST_F(Select, ShortSessionsNoFdGrowth) { battery::short_sessions_no_fd_growth(server()); }

// ---- concurrency in one thread ----------------------------------------------------------

TEST_F(Select, PartialLineDoesNotBlockOthers) { battery::partial_line_does_not_block_others(endpoint()); }
TEST_F(Select, DripFeederDoesNotBlockOthers) { battery::drip_feeder_does_not_block_others(endpoint()); }
TEST_F(Select, StoppedReaderDoesNotBlockOthers) { battery::stopped_reader_does_not_block_others(endpoint()); }
// One client is served first, so the twenty arrive at a server that has
// already been through accept() once: the listener must still be watched.
TEST_F(Select, TwentyClientsAtOnce) {
    std::vector<Client> clients;
    clients.push_back(connect("first"));
    ASSERT_TRUE(clients.front().send("first\n"));
    ASSERT_TRUE(clients.front().expect("first\n")) << context();
    for (int i = 1; i <= 20; ++i) clients.push_back(connect("client " + std::to_string(i)));
    for (int i = 1; i <= 20; ++i) ASSERT_TRUE(clients[i].send("I am client " + std::to_string(i) + "\n"));
    for (int i = 1; i <= 20; ++i) {
        ::testing::AssertionResult echoed = clients[i].expect("I am client " + std::to_string(i) + "\n");
        if (echoed) continue;
        std::string queues = queue_report(server(), clients), why;
        bool unaccepted = queues.find("accept queue") != std::string::npos;
        auto waiting_on = select_wait_set(server().pid(), &why);
        auto sockets = proc::socket_fds(server().pid());
        bool listener_watched = true;
        if (waiting_on && sockets)
            for (int fd : sockets->listening) listener_watched = listener_watched && waiting_on->count(fd);
        FAIL() << echoed.message() << "\n  after one client had been accepted and served, 20 more "
               << "connected and sent a line each" << queues
               << (unaccepted && !listener_watched
                       ? "\n  the listener is not in the sets the idle select() waits on"
                         "\n  hint: keep the listener in the read set after an accept (stop watching it "
                         "only while accept() fails with EMFILE)"
                       : "\n  hint: accept every pending connection, and keep each client's data separate")
               << context();
    }
}

// A client that sends without ever reading must not make the server buffer
// without limit: once its unsent echo passes a cap, the server stops reading
// it, and TCP flow control blocks the client's sends. Judged two ways: how
// much the client could send, and how much the server's memory grew.
TEST_F(Select, UnreadEchoIsBounded) {
    battery::unread_echo_bounded(server(), "while a client's pending echo is above a cap, stop watching it for input "
                                           "(leave it out of the read set): TCP flow control then makes the client wait");
}

// ---- the lesson: the sets, their limit, and sleeping ------------------------------------

TEST_F(Select, ClosedClientLeavesTheSet) {
    std::vector<Client> clients;
    for (int i = 0; i < 4; ++i) {
        clients.push_back(connect("client " + std::to_string(i + 1)));
        ASSERT_TRUE(clients.back().send("hello\n"));
        ASSERT_TRUE(clients.back().expect("hello\n"));
    }
    clients[1].close();  // leaves from the middle
    clients[2].reset();
    for (int round = 0; round < 3; ++round) {
        for (int i : {0, 3}) {
            std::string line = "round " + std::to_string(round) + "\n";
            ASSERT_TRUE(clients[i].send(line));
            ::testing::AssertionResult echoed = clients[i].expect(line);
            if (echoed) continue;
            // A server that died may still be dying when its client sees the reset.
            if (auto exit = server().wait_exit(quiet_window()))
                FAIL() << echoed.message() << "\n  after two clients left, the server " << exit->describe()
                       << ".\n  hint: select() fails with EBADF when a set holds a closed fd: rebuild the "
                          "sets (FD_ZERO, then FD_SET each open client) before every call" << context();
            FAIL() << echoed.message() << "\n  hint: after two clients left, " << clients[i].name()
                   << " was no longer served: rebuild the sets from the open clients before every "
                      "select() (select() overwrites them with its answer)" << context();
        }
    }
    Client newcomer = connect("newcomer");
    ASSERT_TRUE(newcomer.send("hi\n"));
    EXPECT_TRUE(newcomer.expect("hi\n")) << "\n  hint: keep the listener in the read set" << context();
}

// Reads the fd_sets the idle server passes to select() (see select_wait_set):
// they must hold the listener and every open client, and no closed fd.
TEST_F(Select, WaitSetMatchesOpenClients) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients;
    for (int i = 0; i < 6; ++i) {
        clients.push_back(connect("client " + std::to_string(i + 1)));
        ASSERT_TRUE(clients.back().send("hello\n"));
        ASSERT_TRUE(clients.back().expect("hello\n"));
    }
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
        auto waiting_on = select_wait_set(server().pid(), &problem);
        if (!waiting_on) return false;
        std::set<int> open;
        for (const proc::FdEntry& entry : *open_fds) open.insert(entry.fd);
        for (int fd : *waiting_on)
            if (!open.count(fd)) problem += "fd " + std::to_string(fd) + " is in the set but closed; ";
        for (int fd : sockets->listening)
            if (!waiting_on->count(fd)) problem += "the listener (fd " + std::to_string(fd) + ") is missing; ";
        for (int fd : sockets->connected)
            if (!waiting_on->count(fd)) problem += "client fd " + std::to_string(fd) + " is missing; ";
        return problem.empty();
    });
    if (!matched && problem.rfind("cannot open", 0) == 0) GTEST_SKIP() << "model check skipped: " << problem;
    EXPECT_TRUE(matched && problem.empty())
        << "with 4 clients connected (2 others have left), the idle server's select() sets: " << problem
        << "\n  hint: rebuild the sets before every select(): FD_ZERO, then FD_SET the listener "
           "and each open client; forget a client once you close it" << context();
}

// select() cannot watch an fd >= FD_SETSIZE (1024). With its fd limit raised,
// the server receives such fds from accept(); it must close those clients and
// keep serving the rest.
TEST_F(Select, RefusesFdBeyondFdSetsize) {
    LaunchOptions options;
    options.max_open_files = 2048;
    MUXLAB_RESTART(options);
    constexpr int kClients = 1100;
    std::vector<Client> clients;
    clients.reserve(kClients);
    for (int i = 0; i < kClients; ++i) {
        ::testing::AssertionResult ok = ::testing::AssertionSuccess();
        clients.push_back(Client::try_connect(endpoint(), "client " + std::to_string(i + 1), &ok));
        ASSERT_TRUE(ok) << "client " << i + 1 << " of " << kClients << " could not connect" << context();
    }
    int echoed = 0, closed = 0;
    for (int i = 0; i < kClients; ++i) {
        std::string line = "client " + std::to_string(i + 1) + "\n";
        battery::Outcome outcome = battery::try_echo(clients[i], line);
        if (outcome == battery::Outcome::kEchoed) ++echoed;
        else if (outcome == battery::Outcome::kClosed) ++closed;
        else {
            ADD_FAILURE() << "client " << i + 1 << " of " << kClients << " (after " << echoed
                          << " served and " << closed << " refused) "
                          << (outcome == battery::Outcome::kSilent ? "got no echo and was not closed"
                                                          : "got a wrong echo")
                          << ".\n  hint: a client whose fd is >= FD_SETSIZE must be closed at once "
                             "(FD_SET on it writes past the fd_set); every other client is served"
                          << context();
            break;
        }
    }
    auto exit = server().wait_exit(Millis(0));
    ASSERT_FALSE(exit.has_value()) << "with " << kClients << " clients connected the server "
                                   << exit->describe() << context();
    EXPECT_LE(echoed, FD_SETSIZE - 1)
        << echoed << " clients were served, more than select() can watch (FD_SETSIZE " << FD_SETSIZE
        << "): fds >= FD_SETSIZE were passed to FD_SET.\n  hint: refuse (close) a client whose fd is "
           ">= FD_SETSIZE" << context();
    EXPECT_GE(echoed, 900) << "only " << echoed << " of " << kClients << " clients were served; "
                           << "every client below the FD_SETSIZE limit must be" << context();
    // Those that were served still are.
    for (int i = 0; i < 20 && !HasFailure(); ++i) {
        std::string line = "again " + std::to_string(i) + "\n";
        EXPECT_EQ(battery::try_echo(clients[i], line), battery::Outcome::kEchoed)
            << "client " << i + 1 << " was no longer served after the refusals" << context();
    }
}

TEST_F(Select, WaitsInSelect) {
    MUXLAB_REQUIRE_PROC();
    Client alice = connect("alice");
    ASSERT_TRUE(alice.send("x"));
    ASSERT_TRUE(alice.expect("x"));
    auto idle = proc::idle_syscall(server().pid(), server().pid());
    ASSERT_TRUE(idle.has_value()) << "the idle server never settled in a system call (a busy loop?)";
    EXPECT_TRUE(is_select(*idle))
        << "with a client connected and quiet, the server waits in " << proc::syscall_name(*idle)
        << "; stage 04 waits for all its sockets at once in select() (see /proc/" << server().pid()
        << "/syscall)";
    auto fds = proc::fds(server().pid());
    ASSERT_TRUE(fds.has_value());
    for (const proc::FdEntry& entry : *fds)
        EXPECT_FALSE(entry.is_epoll()) << "fd " << entry.fd << " is an epoll instance; stage 04 uses select()";
}

TEST_F(Select, NoCpuWhileIdle) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients;
    for (int i = 0; i < 3; ++i) {
        clients.push_back(connect("client " + std::to_string(i + 1)));
        ASSERT_TRUE(clients.back().send("x"));
        ASSERT_TRUE(clients.back().expect("x"));
    }
    auto activity = proc::idle_activity(server().pid(), Millis(500));
    ASSERT_TRUE(activity.has_value());
    EXPECT_TRUE(activity->empty())
        << "with 3 quiet clients, " << *activity
        << ".\n  hint: pass NULL as select()'s timeout so it sleeps until a socket is ready; a zero "
           "timeout returns at once and turns the loop into a busy loop" << context();
}

TEST_F(Select, OneProcessOneThread) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients;
    for (int i = 0; i < 3; ++i) {
        clients.push_back(connect("client " + std::to_string(i + 1)));
        ASSERT_TRUE(clients.back().send("x"));
        ASSERT_TRUE(clients.back().expect("x"));
    }
    auto tree = proc::process_tree(server().pid());
    EXPECT_EQ(tree.size(), 1u) << "with 3 clients connected the server has " << tree.size() - 1
                               << " child processes; stage 04 serves everyone from one process";
    EXPECT_EQ(proc::threads(server().pid()).size(), 1u)
        << "with 3 clients connected the server runs several threads; stage 04 has one";
}

}  // namespace
}  // namespace muxlab::test
