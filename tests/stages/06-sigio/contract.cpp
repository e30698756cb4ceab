/**
 * @file tests/stages/06-sigio/contract.cpp
 * @brief Stage 06 contract: the echo server for many clients, driven by
 *        SIGIO on non-blocking sockets (O_ASYNC, F_SETOWN).
 *
 * The echo contract and the concurrency battery, then the model: sockets are
 * O_ASYNC and O_NONBLOCK, SIGIO is handled, the idle server sleeps waiting
 * for a signal (never in select/poll/epoll, never on a timer), and no event
 * is lost when signals merge or arrive while the server is busy.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "harness/battery.hpp"
#include "harness/event_loop.hpp"

namespace muxlab::test {
namespace {

// ---- helpers -----------------------------------------------------------------------

/// The system calls a SIGIO server may sleep in.
bool is_signal_wait(long call) {
    return call == SYS_pause || call == SYS_rt_sigsuspend || call == SYS_rt_sigtimedwait;
}

class Sigio : public ServerTest {};

/// The file status flags of the server's fd @p fd (from fdinfo), or nullopt.
std::optional<unsigned long> fd_flags(ServerProcess& server, int fd) {
    auto entries = proc::fds(server.pid());
    if (!entries) return std::nullopt;
    for (const proc::FdEntry& entry : *entries)
        if (entry.fd == fd) return entry.flags;
    return std::nullopt;
}

/// True when SIGIO is in the blocked mask of the server's main thread (SigBlk).
bool sigio_blocked(ServerProcess& server) {
    auto blocked = proc::status_field(server.pid(), "SigBlk");
    return blocked && (std::strtoull(blocked->c_str(), nullptr, 16) & (1ULL << (SIGIO - 1)));
}

/// What is missing from @p flags for a socket to raise SIGIO and be tried safely, or "".
std::string missing_flags(unsigned long flags) {
    std::string missing;
    if (!(flags & O_ASYNC)) missing = "O_ASYNC";
    if (!(flags & O_NONBLOCK)) missing += missing.empty() ? "O_NONBLOCK" : " and O_NONBLOCK";
    return missing;
}

/// True for the calls that wait for bytes from one socket (a server blocked in one waits for one client).
bool is_socket_read(long call) {
    return call == SYS_read || call == SYS_readv || call == SYS_recvfrom || call == SYS_recvmsg;
}

/**
 * Waits until @p server holds a connected socket and has settled again (or a
 * few quiet windows pass). A client that speaks only then makes a socket that
 * cannot raise SIGIO fail every time, not only when its bytes happen to come
 * in before the accept. Woken once more after the accept (a connection may
 * raise SIGIO more than once), a server whose new sockets are still blocking
 * goes into read() on the silent client: that fails here, before the client's
 * bytes would free it.
 */
::testing::AssertionResult settles_after_accept(ServerProcess& server) {
    if (!proc::readable(server.pid())) return ::testing::AssertionSuccess();
    eventually(quiet_window() * 4, [&] {
        auto sockets = proc::socket_fds(server.pid());
        return sockets && !sockets->connected.empty();
    });
    std::optional<long> settled_in = proc::idle_syscall(server.pid(), server.pid(), quiet_window() * 4);
    if (!settled_in || !is_socket_read(*settled_in)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "before alice sent anything, the server blocked in " << proc::syscall_name(*settled_in)
           << "(): it waits for her alone, and every other client waits with it";
}

// ---- the server contract ----------------------------------------------------------

TEST(SigioStart, ReadyLine) {
    ServerProcess server(server_under_test());
    EXPECT_TRUE(server.ready()) << server.failure();
}
TEST(SigioStart, HelpAndBadOptions) {
    battery::help_exits_zero(server_under_test());
    battery::bad_option_exits_two(server_under_test());
}
TEST_F(Sigio, StopsOnSigterm) { battery::sigterm_stops(server()); }

// ---- the echo contract -------------------------------------------------------------

// The first test a half-done server fails: the message says where alice's
// line stopped, from the flags of the server's sockets and what waits in them.
TEST_F(Sigio, EchoesLine) {
    // alice arrives once the server sleeps: a line that came before its first
    // sleep would be served by the turn before it, hiding how it sleeps.
    proc::idle_syscall(server().pid(), server().pid(), quiet_window() * 4);
    battery::echoes_line(server(), [&](const battery::LineStop& stop) -> std::string {
        if (stop.exit)
            return "\n  the server " + stop.exit->describe() +
                   "\n  hint: the default action of SIGIO ends the process: catch it with sigaction() "
                   "before any socket can raise it";
        auto sockets = proc::socket_fds(server().pid());
        std::string listener_missing, client_missing;
        int client_fd = -1;
        if (sockets && !sockets->listening.empty())
            if (auto flags = fd_flags(server(), sockets->listening.front())) listener_missing = missing_flags(*flags);
        if (sockets && !sockets->connected.empty()) {
            client_fd = sockets->connected.front();
            if (auto flags = fd_flags(server(), client_fd)) client_missing = missing_flags(*flags);
        }
        if (stop.sleeps_in && !is_signal_wait(*stop.sleeps_in)) {
            std::string seen = "\n  the server is blocked in " + proc::syscall_name(*stop.sleeps_in) +
                               ", not waiting for a signal" + stop.queues;
            if (!listener_missing.empty())
                seen += "\n  the listening socket has no " + listener_missing +
                        ": once the waiting connections are taken, accept() blocks the whole server";
            else if (!client_missing.empty())
                return seen + "\n  alice's socket (fd " + std::to_string(client_fd) + ") has no " +
                       client_missing +
                       "\n  hint: accepted sockets do not inherit O_ASYNC, O_NONBLOCK or the owner from the "
                       "listener: make each one signal-driven as soon as it is accepted";
            return seen + "\n  hint: make_signal_driven() names this process as the owner (F_SETOWN) and turns "
                          "on O_ASYNC | O_NONBLOCK, on the listener and on every accepted socket";
        }
        if (stop.sleeps_in && *stop.sleeps_in == SYS_pause && sigio_blocked(server()))
            return "\n  the server sleeps in pause() with SIGIO blocked: the signal stays pending and never "
                   "wakes it" + stop.queues +
                   "\n  hint: sleep with sigsuspend() and the mask without SIGIO: it lets the pending signal "
                   "in and sleeps in one step";
        if (stop.never_accepted() && !listener_missing.empty())
            return stop.queues + "\n  the listening socket has no " + listener_missing +
                   ", so no SIGIO announced the connection"
                   "\n  hint: make_signal_driven() the listener: F_SETOWN to this process, then O_ASYNC "
                   "| O_NONBLOCK";
        if (stop.never_accepted())
            return stop.queues + "\n  hint: on every SIGIO, accept until accept() fails with EAGAIN";
        if (stop.never_read() && !client_missing.empty())
            return stop.queues + "\n  alice's connection was accepted, but her socket (fd " +
                   std::to_string(client_fd) + ") has no " + client_missing + ", so her line raised no SIGIO"
                   "\n  hint: accepted sockets do not inherit O_ASYNC, O_NONBLOCK or the owner from the "
                   "listener: make each one signal-driven, and serve it at once (bytes that came before "
                   "raised no signal)";
        if (stop.never_read())
            return stop.queues + "\n  alice's socket raises SIGIO, but her line was never read"
                                 "\n  hint: on every signal, read each socket until read() fails with EAGAIN";
        return "\n  the server read alice's line (nothing waits in its socket) but sent nothing back"
               "\n  hint: echo what was read: send() what the socket takes, keep the rest pending";
    }, [&] { return settles_after_accept(server()); });
}
TEST_F(Sigio, EchoesBinary) { battery::echoes_binary(endpoint()); }
TEST_F(Sigio, PipelinedLines) { battery::pipelined_lines(endpoint()); }
TEST_F(Sigio, MegabyteBurst) { battery::megabyte_burst(endpoint()); }
TEST_F(Sigio, HalfClose) { battery::half_close(endpoint()); }
TEST_F(Sigio, SurvivesReset) { battery::survives_reset(server()); }
TEST_F(Sigio, ShortSessionsNoFdGrowth) { battery::short_sessions_no_fd_growth(server()); }

// ---- concurrency -------------------------------------------------------------------

TEST_F(Sigio, PartialLineDoesNotBlockOthers) { battery::partial_line_does_not_block_others(endpoint()); }
TEST_F(Sigio, DripFeederDoesNotBlockOthers) { battery::drip_feeder_does_not_block_others(endpoint()); }
TEST_F(Sigio, StoppedReaderDoesNotBlockOthers) { battery::stopped_reader_does_not_block_others(endpoint()); }
TEST_F(Sigio, FiftyClientsAtOnce) { battery::many_clients_at_once(endpoint(), 50); }

TEST_F(Sigio, FiftySimultaneousConnects) {
    MUXLAB_REQUIRE_PROC();
    battery::fifty_simultaneous_connects(server(), [](ServerProcess& server, const std::vector<Client>& clients) {
        return queue_report(server, clients) +
               "\n  hint: one SIGIO may stand for many connections: accept in a loop until accept() fails "
               "with EAGAIN, and serve each new socket at once";
    });
}

// ---- the model: signals ------------------------------------------------------------

TEST_F(Sigio, SocketsAreAsyncAndNonBlocking) {
    MUXLAB_REQUIRE_PROC();
    // No echo needed: the flags are read as soon as the server holds the
    // three connections, so a server that does not echo yet is judged too.
    std::vector<Client> clients;
    for (int i = 0; i < 3; ++i) clients.push_back(connect("client " + std::to_string(i + 1)));
    std::optional<proc::SocketFds> sockets;
    bool accepted = eventually(answer_limit(), [&] {
        sockets = proc::socket_fds(server().pid());
        return sockets && sockets->connected.size() >= 3;
    });
    auto entries = proc::fds(server().pid());
    ASSERT_TRUE(sockets && entries);
    ASSERT_EQ(sockets->listening.size(), 1u) << "the server should hold one listening socket";
    std::vector<int> all = sockets->connected;
    all.push_back(sockets->listening.front());
    for (const proc::FdEntry& entry : *entries) {
        if (std::find(all.begin(), all.end(), entry.fd) == all.end()) continue;
        std::string role = entry.fd == sockets->listening.front() ? "the listening socket"
                                                                  : "the client socket";
        EXPECT_TRUE(entry.flags & O_ASYNC)
            << role << " (fd " << entry.fd << ") lacks O_ASYNC (flags " << std::oct << entry.flags
            << std::dec << " in /proc/" << server().pid() << "/fdinfo/" << entry.fd << ")"
            << "\n  hint: fcntl(fd, F_SETOWN, getpid()) then fcntl(fd, F_SETFL, flags | O_ASYNC | "
               "O_NONBLOCK), on the listener and on every accepted socket (accepted sockets do not "
               "inherit these flags)";
        EXPECT_TRUE(entry.flags & O_NONBLOCK)
            << role << " (fd " << entry.fd << ") is blocking (no O_NONBLOCK in /proc/" << server().pid()
            << "/fdinfo/" << entry.fd << ")"
            << "\n  hint: a signal does not say which socket is ready, so the server tries them "
               "all: a try on a socket with nothing to read must return EAGAIN, not block";
    }
    EXPECT_TRUE(accepted) << "3 clients connected, and the server accepted " << sockets->connected.size()
                          << " of them" << queue_report(server(), clients)
                          << "\n  hint: on every SIGIO, accept until accept() fails with EAGAIN";
}

TEST_F(Sigio, HandlesSigio) {
    MUXLAB_REQUIRE_PROC();
    // SigCgt/SigBlk in /proc/PID/status tell whether SIGIO is caught or blocked,
    // except while the server sleeps in sigwaitinfo(): that call unblocks the
    // signals it waits for until it returns. So the proof is a real SIGIO.
    auto handled = proc::signal_caught_or_blocked(server().pid(), SIGIO);
    for (int i = 0; i < 3; ++i) kill(server().pid(), SIGIO);
    auto exit = server().wait_exit(quiet_window());  // how long a dying server gets to die
    ASSERT_FALSE(exit.has_value())
        << "the server got SIGIO (kill -IO) and " << exit->describe()
        << (handled && !*handled ? "; SIGIO was neither caught nor blocked (SigCgt, SigBlk in /proc/" +
                                       std::to_string(server().pid()) + "/status)"
                                 : "")
        << "\n  hint: the default action of SIGIO ends the process: install a handler with "
           "sigaction(), or block SIGIO and take it with sigwaitinfo(). With F_SETSIG the kernel "
           "still sends SIGIO when its signal queue overflows";
    Client alice = connect("alice");
    ASSERT_TRUE(alice.send("after three stray signals\n"));
    EXPECT_TRUE(alice.expect("after three stray signals\n"))
        << "\n  after the server got three SIGIO with nothing to read, a new client was not served"
        << context();
}

TEST_F(Sigio, IdleInSignalWait) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_served(2);
    ASSERT_FALSE(HasFailure());
    for (pid_t task : proc::threads(server().pid())) {
        auto idle = proc::idle_syscall(server().pid(), task);
        ASSERT_TRUE(idle.has_value()) << "thread " << task << " never settled in a system call "
                                      << "while every client was quiet (a busy loop?)";
        EXPECT_TRUE(is_signal_wait(*idle))
            << "with 2 quiet clients connected, thread " << task << " waits in "
            << proc::syscall_name(*idle) << " (see /proc/" << server().pid() << "/task/" << task
            << "/syscall)"
            << "\n  hint: this stage never waits in select/poll/epoll: readiness arrives as a "
               "signal, and the server sleeps in sigsuspend(), pause() or sigwaitinfo()";
    }
}

TEST_F(Sigio, IdleMeansIdle) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_served(3);
    ASSERT_FALSE(HasFailure());
    auto activity = proc::idle_activity(server().pid());
    ASSERT_TRUE(activity.has_value());
    EXPECT_EQ(*activity, "")
        << "with 3 quiet clients connected, " << *activity
        << "\n  hint: do not loop over the sockets or sleep on a timer: sleep until a signal "
           "comes (sigsuspend), then serve what is ready";
}

TEST_F(Sigio, BurstsFromManyClientsLoseNothing) {
    MUXLAB_REQUIRE_PROC();
    constexpr int kClients = 20;
    std::vector<Client> clients = connect_served(kClients);
    ASSERT_FALSE(HasFailure());
    // While the server is paused, each client sends what the kernel buffers
    // for it (well over one read's worth). When it resumes, every arrival of
    // all 20 clients is behind the one SIGIO it finds pending.
    std::vector<std::string> sent(kClients);
    {
        Frozen frozen(server());
        ASSERT_TRUE(frozen.stopped()) << "could not pause the server with SIGSTOP";
        for (int i = 0; i < kClients; ++i) {
            std::string burst = binary_payload(512 * 1024, static_cast<unsigned>(i + 11));
            sent[i] = burst.substr(0, clients[i].send_some(burst));
        }
    }
    for (int i = 0; i < kClients; ++i) {
        if (clients[i].expect(sent[i])) continue;
        ADD_FAILURE() << kClients << " clients each sent a burst (" << clients[i].name() << ": "
                      << sent[i].size() << " bytes) while the server was paused; after it resumed, "
                      << clients[i].name() << " did not get its burst back in full."
                      << queue_report(server(), clients)
                      << "\n  hint: signals of one kind merge while pending: one SIGIO may stand "
                         "for every socket and for many arrivals on each. On every signal, read "
                         "each socket until read() fails with EAGAIN"
                      << context();
        break;
    }
}

TEST_F(Sigio, RoundsOfSimultaneousLines) {
    constexpr int kQuiet = 200;
    constexpr int kClients = 20;
    constexpr int kRounds = 300;
    const char* lost_wakeup_hint =
        "\n  hint: a SIGIO that arrives while the server is serving other sockets must not be lost. "
        "Block SIGIO while you work and sleep with sigsuspend(), which unblocks it and sleeps in one "
        "step; test your flag only while it is blocked";
    // Connecting is already a race of its own: a connection or a line that
    // arrives while the server is busy must not be slept through either.
    auto connect_echoing = [&](int count, const std::string& prefix) {
        std::vector<Client> connected;
        for (int i = 1; i <= count && !HasFailure(); ++i) {
            connected.push_back(connect(prefix + " " + std::to_string(i)));
            std::string hello = "hello from " + connected.back().name() + "\n";
            ::testing::AssertionResult echoed = connected.back().send(hello);
            if (echoed) echoed = connected.back().expect(hello);
            if (!echoed)
                ADD_FAILURE() << echoed.message() << "\n  (connecting " << count << " clients, each echoing "
                              << "one line first): the server went to sleep with its data unread."
                              << queue_report(server(), connected) << lost_wakeup_hint << context();
        }
        return connected;
    };
    // 200 quiet clients make every pass over the sockets long; 20 others send.
    std::vector<Client> quiet = connect_echoing(kQuiet, "quiet client");
    ASSERT_FALSE(HasFailure());
    std::vector<Client> clients = connect_echoing(kClients, "client");
    ASSERT_FALSE(HasFailure());
    // Each round the 20 send a line each, in a shuffled order, microseconds
    // apart: lines keep arriving while the server is serving the earlier ones,
    // some after it has already tried their sockets. A server that then goes
    // to sleep without noticing loses them, and their clients wait for an echo.
    std::vector<int> order(kClients);
    for (int i = 0; i < kClients; ++i) order[i] = i;
    unsigned shuffle = 12345;
    for (int round = 1; round <= kRounds; ++round) {
        for (int i = kClients - 1; i > 0; --i) {
            shuffle = shuffle * 1103515245u + 12345u;
            std::swap(order[i], order[(shuffle >> 8) % static_cast<unsigned>(i + 1)]);
        }
        auto spacing = std::chrono::microseconds(10 * (round % 6));
        for (int i : order) {
            for (auto until = Clock::now() + spacing; Clock::now() < until;) {
            }
            ASSERT_TRUE(clients[i].send("round " + std::to_string(round) + " from " + clients[i].name() + "\n"));
        }
        for (Client& client : clients) {
            std::string line = "round " + std::to_string(round) + " from " + client.name() + "\n";
            ASSERT_TRUE(client.expect(line))
                << "\n  in round " << round << " of " << kRounds << ", " << kClients
                << " clients sent a line each, microseconds apart; " << client.name()
                << " got no echo: the server went to sleep with its data unread."
                << queue_report(server(), clients) << lost_wakeup_hint << context();
        }
    }
}

}  // namespace
}  // namespace muxlab::test
