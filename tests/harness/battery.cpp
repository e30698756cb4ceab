#include "harness/battery.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <sys/epoll.h>

#include <cstdlib>
#include <ios>
#include <set>
#include <thread>
#include <vector>

#include "harness/event_loop.hpp"

namespace muxlab::test::battery {
namespace {

std::string seconds(Millis limit) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(limit.count()) / 1000.0);
    return text;
}

/// Runs @p program with @p flag, waits for it to exit; returns the process for its output.
std::unique_ptr<ServerProcess> run_with_flag(const std::string& program, const std::string& flag,
                                             std::optional<ExitReport>* exit) {
    LaunchOptions options;
    options.args = {flag};
    options.ready_prefixes = {};
    auto process = std::make_unique<ServerProcess>(program, options);
    *exit = process->wait_exit(answer_limit());
    process->wait_output_closed(answer_limit());
    return process;
}

}  // namespace

void drip(Client& client, std::string_view data) {
    int on = 1;
    setsockopt(client.fd(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);  // one segment per byte
    for (size_t i = 0; i < data.size(); ++i) {
        if (i > 0) std::this_thread::sleep_for(Millis(10));  // the scenario is a slow sender, not a wait
        ASSERT_TRUE(client.send(data.substr(i, 1)));
    }
}

void help_exits_zero(const std::string& program) {
    std::optional<ExitReport> exit;
    auto process = run_with_flag(program, "--help", &exit);
    ASSERT_TRUE(process->failure().empty()) << process->failure();
    ASSERT_TRUE(exit.has_value()) << "`SERVER --help` was still running after " << seconds(answer_limit())
                                  << ": --help must print the usage and exit";
    EXPECT_TRUE(exit->exited && exit->exit_status == 0)
        << "`SERVER --help` " << exit->describe() << "; it must exit with status 0"
        << process->stderr_tail();
    EXPECT_NE(process->stdout_text().find("usage"), std::string::npos)
        << "`SERVER --help` must print a usage text (containing \"usage\") on stdout; stdout was "
        << printable(process->stdout_text());
}

void bad_option_exits_two(const std::string& program) {
    std::optional<ExitReport> exit;
    auto process = run_with_flag(program, "--no-such-option", &exit);
    ASSERT_TRUE(process->failure().empty()) << process->failure();
    ASSERT_TRUE(exit.has_value()) << "`SERVER --no-such-option` was still running after "
                                  << seconds(answer_limit()) << ": a bad option must be rejected at once";
    EXPECT_TRUE(exit->exited && exit->exit_status == 2)
        << "`SERVER --no-such-option` " << exit->describe()
        << "; a bad option must exit with status 2 (the usage-error convention)";
    EXPECT_FALSE(process->stderr_text().empty())
        << "`SERVER --no-such-option` must say what is wrong on stderr";
}

void sigterm_stops(ServerProcess& server) {
    auto exit = server.terminate(answer_limit());
    EXPECT_TRUE(exit.has_value()) << "the server was still running " << seconds(answer_limit())
                                  << " after SIGTERM: do not block or ignore SIGTERM (or, if you "
                                     "handle it, make the main loop notice it and exit)";
}

void echoes_line(const Endpoint& server) {
    Client alice = Client::connect(server, "alice");
    ASSERT_TRUE(alice.send("hello, echo\n"));
    EXPECT_TRUE(alice.expect("hello, echo\n")) << "\n  hint: read from the client and write the same bytes back";
}

void echoes_line(ServerProcess& server, const LineStopHint& explain, const BeforeLine& before_line) {
    std::vector<Client> clients;
    ::testing::AssertionResult echoed = ::testing::AssertionSuccess();
    clients.push_back(Client::try_connect(server.endpoint(), "alice", &echoed));
    if (echoed && before_line) echoed = before_line();
    if (echoed) echoed = clients.front().send("hello, echo\n");
    if (echoed) echoed = clients.front().expect("hello, echo\n");
    if (echoed) return;
    LineStop stop;
    stop.exit = server.wait_exit(Millis(0));
    stop.queues = queue_report(server, clients);
    if (!stop.exit) stop.sleeps_in = proc::idle_syscall(server.pid(), server.pid(), quiet_window() * 4);
    ADD_FAILURE() << echoed.message() << explain(stop) << server.stderr_tail();
}

void echoes_binary(const Endpoint& server) {
    Client alice = Client::connect(server, "alice");
    std::string all_bytes = binary_payload(256);
    all_bytes += std::string("\0\0\n\0", 4);
    ASSERT_TRUE(alice.send(all_bytes));
    EXPECT_TRUE(alice.expect(all_bytes))
        << "\n  hint: echo is binary-safe: use the byte count read() returned, never strlen() or "
           "string functions that stop at NUL";
}

void echoes_drip_fed(const Endpoint& server) {
    Client alice = Client::connect(server, "alice");
    std::string message = "one byte at a time\n";
    drip(alice, message);
    EXPECT_TRUE(alice.expect(message))
        << "\n  hint: TCP delivers a byte stream, not messages: one read() may return a single byte";
}

void half_close(const Endpoint& server) {
    Client alice = Client::connect(server, "alice");
    ASSERT_TRUE(alice.send("last words"));
    alice.shutdown_write();
    EXPECT_TRUE(alice.expect("last words"))
        << "\n  hint: after the client's shutdown(SHUT_WR), echo what is left before closing";
    EXPECT_TRUE(alice.expect_closed())
        << "\n  hint: read() returning 0 means the client is done sending: close the socket then "
           "(every process holding it must close it)";
}

void sequential_clients(const Endpoint& server) {
    for (int i = 0; i < 3; ++i) {
        std::string name = "client" + std::to_string(i + 1);
        const char* hint = "\n  hint: after one client leaves, go back to accept() the next";
        ::testing::AssertionResult connected = ::testing::AssertionSuccess();
        Client client = Client::try_connect(server, name, &connected);
        ASSERT_TRUE(connected) << hint << " (the server stopped listening)";
        std::string line = "hello from " + name + "\n";
        ASSERT_TRUE(client.send(line)) << hint;
        ASSERT_TRUE(client.expect(line)) << hint;
    }
}

void pipelined_lines(const Endpoint& server) {
    Client alice = Client::connect(server, "alice");
    ASSERT_TRUE(alice.send("first line\nsecond line\n"));
    EXPECT_TRUE(alice.expect("first line\nsecond line\n"))
        << "\n  hint: one read() may hold two lines: echo everything it returned";
}

void megabyte_burst(const Endpoint& server) {
    Client alice = Client::connect(server, "alice");
    std::string burst = binary_payload(1 << 20, 7);
    ASSERT_TRUE(alice.send(burst, answer_limit() * 2))
        << "\n  hint: the server stopped reading during a 1 MiB burst";
    EXPECT_TRUE(alice.expect(burst, answer_limit() * 2))
        << "\n  hint: after a 1 MiB burst the echo was incomplete or wrong: handle partial writes "
           "(write() may take fewer bytes than asked) and keep reading until the data ends";
}

size_t flood_until_stalled(Client& client, std::string_view flood) {
    size_t sent = 0;
    Deadline limit(answer_limit());
    while (sent < flood.size() && !limit.expired()) {
        size_t now = client.send_some(flood.substr(sent, 1 << 16));
        sent += now;
        if (now == 0) {
            pollfd p{client.fd(), POLLOUT, 0};
            if (poll(&p, 1, static_cast<int>(quiet_window().count())) == 0) break;  // the server stopped reading
        }
    }
    return sent;
}

namespace {

/// A client sends until the server stops reading from it (blocked writing
/// the echo, or holding as much as it will queue), then aborts with RST. The
/// server's next write fails with ECONNRESET, which raises no signal.
void abort_while_server_writes(ServerProcess& server) {
    ConnectOptions small_buffer;
    small_buffer.receive_buffer = 4096;  // fills fast, so the server ends up blocked writing to us
    Client rude = Client::connect(server.endpoint(), "rude", small_buffer);
    flood_until_stalled(rude, binary_payload(16u << 20, 3));
    rude.reset();
}

/// A client sends a line, shuts down its sending side and aborts with RST,
/// all while the server is stopped: when it resumes, the connection is in
/// CLOSE_WAIT with the RST already in, and the server's first write of the
/// echo fails with EPIPE, which raises SIGPIPE. (Left to timing, the server
/// would usually echo before the RST came, and only a second write would
/// fail that way.)
::testing::AssertionResult abort_after_half_close(ServerProcess& server) {
    Client rude = Client::connect(server.endpoint(), "rude");
    if (!rude.send("first line\n") || !rude.expect("first line\n"))
        return ::testing::AssertionFailure() << "the client that was to abort was not served";
    Frozen frozen(server);
    if (!frozen.stopped()) return ::testing::AssertionSuccess();  // cannot force the order: nothing to check
    rude.send("second line\n");
    rude.shutdown_write();
    // The server's kernel acknowledges the FIN for the stopped server: its
    // side is in CLOSE_WAIT before the RST comes.
    auto fin_acknowledged = [&] {
        tcp_info info{};
        socklen_t size = sizeof info;
        return getsockopt(rude.fd(), IPPROTO_TCP, TCP_INFO, &info, &size) == 0 && info.tcpi_state == TCP_FIN_WAIT2;
    };
    if (!eventually(answer_limit(), fin_acknowledged))
        return ::testing::AssertionFailure() << "the server's kernel never acknowledged rude's half-close";
    rude.reset();
    return ::testing::AssertionSuccess();
}

}  // namespace

void survives_reset(ServerProcess& server) {
    for (bool half_close_first : {false, true}) {
        if (half_close_first)
            ASSERT_TRUE(abort_after_half_close(server));
        else
            abort_while_server_writes(server);
        const char* what = half_close_first
                               ? "a client sent a line, shut down its sending side and aborted with RST "
                                 "(SO_LINGER 0) before the server echoed it, and the server "
                               : "a client sent data and then aborted with RST (SO_LINGER 0) while the "
                                 "server was writing to it, and the server ";
        ::testing::AssertionResult answered = ::testing::AssertionSuccess();
        Client polite = Client::try_connect(server.endpoint(), "polite", &answered);
        if (answered) answered = polite.send("still there?\n");
        if (answered) answered = polite.expect("still there?\n");
        // A server that died may not be reaped yet when its client notices.
        auto exit = server.wait_exit(answered ? Millis(0) : quiet_window());
        ASSERT_FALSE(exit.has_value())
            << what << exit->describe()
            << ".\n  hint: a write to a connection the peer has reset fails with ECONNRESET or, once the "
               "peer had shut down its sending side, with EPIPE, which also raises SIGPIPE and kills the "
               "process: use send(..., MSG_NOSIGNAL) or ignore SIGPIPE, and treat EPIPE/ECONNRESET as "
               "the end of that one client"
            << server.stderr_tail();
        ASSERT_TRUE(answered) << "\n  after one client aborted with RST, the next client was not served"
                              << server.stderr_tail();
    }
}

void short_sessions_no_fd_growth(ServerProcess& server, int sessions) {
    auto count_fds = [&] {
        auto entries = proc::fds(server.pid());
        return entries ? static_cast<long>(entries->size()) : -1L;
    };
    long baseline = count_fds();
    for (int i = 0; i < sessions; ++i) {
        Client client = Client::connect(server.endpoint(), "session " + std::to_string(i + 1));
        ASSERT_TRUE(client.send("hi\n"));
        ASSERT_TRUE(client.expect("hi\n")) << "(session " << i + 1 << " of " << sessions << ")";
        client.close();
    }
    if (baseline < 0) GTEST_SKIP() << "fd growth check skipped: cannot read /proc/" << server.pid() << "/fd";
    long now = count_fds();
    bool settled = eventually(answer_limit(), [&] {
        now = count_fds();
        return now <= baseline + 2;
    });
    EXPECT_TRUE(settled) << "after " << sessions << " short sessions, all closed by the clients, the server "
                         << "holds " << now << " fds (it held " << baseline << " when idle at start)."
                         << "\n  hint: close each client's socket when the client leaves (read() "
                            "returned 0 or an error); see /proc/" << server.pid() << "/fd";
}

void partial_line_does_not_block_others(const Endpoint& server) {
    Client alice = Client::connect(server, "A");
    ASSERT_TRUE(alice.send("half a li"));
    Client bob = Client::connect(server, "B");
    ASSERT_TRUE(bob.send("ping\n"));
    EXPECT_TRUE(bob.expect("ping\n"))
        << "\n  hint: client B waited " << seconds(answer_limit())
        << " while client A had sent half a line: your server blocks reading A (waiting for "
           "the rest of a line, or in a blocking read()); serve whatever is ready";
    ASSERT_TRUE(alice.send("ne\n"));
    EXPECT_TRUE(alice.expect("half a line\n"));
}

void drip_feeder_does_not_block_others(const Endpoint& server) {
    Client alice = Client::connect(server, "A");
    Client bob = Client::connect(server, "B");
    std::string slow = "drip";
    for (size_t i = 0; i < slow.size(); ++i) {
        ASSERT_TRUE(alice.send(slow.substr(i, 1)));
        std::string line = "B's line " + std::to_string(i) + "\n";
        ASSERT_TRUE(bob.send(line));
        ASSERT_TRUE(bob.expect(line))
            << "\n  hint: while A sends one byte at a time, B must still be served promptly";
    }
    EXPECT_TRUE(alice.expect(slow));
}

void stopped_reader_does_not_block_others(const Endpoint& server) {
    ConnectOptions small_buffer;
    small_buffer.receive_buffer = 4096;
    Client alice = Client::connect(server, "A (never reads)", small_buffer);
    std::string flood = binary_payload(16u << 20, 5);
    size_t sent = flood_until_stalled(alice, flood);
    Client bob = Client::connect(server, "B");
    ASSERT_TRUE(bob.send("are you there?\n"));
    EXPECT_TRUE(bob.expect("are you there?\n"))
        << "\n  hint: client A sent " << sent << " bytes and stopped reading; then client B waited "
        << seconds(answer_limit()) << " for its echo: your server is stuck writing to A. Never "
        << "block on one client's write: queue the rest and wait until the socket is writable";
    EXPECT_TRUE(alice.expect(std::string_view(flood).substr(0, sent), answer_limit() * 2))
        << "\n  hint: once A reads again it must get every byte it sent, in order, exactly once";
}

void many_clients_at_once(const Endpoint& server, int count) {
    std::vector<Client> clients;
    for (int i = 0; i < count; ++i) clients.push_back(Client::connect(server, "client " + std::to_string(i + 1)));
    for (int i = 0; i < count; ++i) ASSERT_TRUE(clients[i].send("I am client " + std::to_string(i + 1) + "\n"));
    for (int i = 0; i < count; ++i)
        ASSERT_TRUE(clients[i].expect("I am client " + std::to_string(i + 1) + "\n"))
            << "\n  hint: " << count << " clients connected and sent at once; each must get its own "
            << "line back (accept every pending connection; keep each client's data separate)";
}

Outcome try_echo(Client& client, const std::string& line) {
    client.send_some(line);  // a refused client may already be reset: ignore errors
    std::string got;
    Deadline deadline(answer_limit());
    while (got.size() < line.size()) {
        pollfd p{client.fd(), POLLIN, 0};
        if (poll(&p, 1, deadline.remaining_ms()) <= 0) return Outcome::kSilent;
        char buffer[256];
        ssize_t n = recv(client.fd(), buffer, sizeof buffer, 0);
        if (n <= 0) return got.empty() ? Outcome::kClosed : Outcome::kWrong;
        got.append(buffer, static_cast<size_t>(n));
    }
    return got == line ? Outcome::kEchoed : Outcome::kWrong;
}

// ---- one thread, many clients ----------------------------------------------------------

void unread_echo_bounded(ServerProcess& server, const std::string& hint) {
    auto resident_kib = [&] {
        auto field = proc::status_field(server.pid(), "VmRSS");  // "1234 kB"
        return field ? std::strtol(field->c_str(), nullptr, 10) : 0L;
    };
    long memory_before = resident_kib();
    ConnectOptions small_buffer;
    small_buffer.receive_buffer = 4096;
    ::testing::AssertionResult connected = ::testing::AssertionSuccess();
    Client hog = Client::try_connect(server.endpoint(), "hog (never reads)", &connected, small_buffer);
    ASSERT_TRUE(connected) << server.stderr_tail();
    const size_t limit = 48u << 20;
    std::string chunk = binary_payload(1 << 16, 9);
    size_t sent = 0;
    int quiet_looks = 0;  // consecutive windows in which the server took nothing
    Deadline deadline(answer_limit() * 2);
    while (sent < limit && quiet_looks < 2 && !deadline.expired()) {
        size_t now = hog.send_some(chunk);
        sent += now;
        if (now < chunk.size()) {
            pollfd p{hog.fd(), POLLOUT, 0};
            quiet_looks = poll(&p, 1, static_cast<int>(quiet_window().count())) == 0 ? quiet_looks + 1 : 0;
        }
    }
    long growth_kib = resident_kib() - memory_before;
    EXPECT_TRUE(sent < limit && growth_kib < (32L << 10))
        << "a client sent " << (sent >> 20) << " MiB without reading any echo, and the server's "
        << "memory grew by " << (growth_kib >> 10) << " MiB: it keeps reading a client whose "
        << "echo piles up.\n  hint: " << hint << server.stderr_tail();
    Client bob = Client::try_connect(server.endpoint(), "bob", &connected);
    ASSERT_TRUE(connected) << server.stderr_tail();
    ASSERT_TRUE(bob.send("still serving?\n"));
    EXPECT_TRUE(bob.expect("still serving?\n")) << server.stderr_tail();
}

void fifty_simultaneous_connects(ServerProcess& server, const Diagnosis& diagnose) {
    std::vector<Client> clients;
    {
        Frozen frozen(server);
        ASSERT_TRUE(frozen.stopped()) << "could not pause the server with SIGSTOP";
        for (int i = 0; i < 50; ++i) {
            ::testing::AssertionResult connected = ::testing::AssertionSuccess();
            clients.push_back(Client::try_connect(server.endpoint(), "client " + std::to_string(i + 1), &connected));
            ASSERT_TRUE(connected) << server.stderr_tail();
            ASSERT_TRUE(clients.back().send("hello from " + clients.back().name() + "\n"));
        }
    }
    for (Client& client : clients) {
        if (client.expect("hello from " + client.name() + "\n")) continue;
        ADD_FAILURE() << "50 clients connected and sent a line while the server was paused (SIGSTOP); "
                      << "after it resumed, " << client.name() << " got no echo."
                      << diagnose(server, clients) << server.stderr_tail();
        break;
    }
}

// ---- epoll --------------------------------------------------------------------------------

void interest_list_tracks_clients(ServerProcess& server, std::vector<Client>& clients, Trigger trigger) {
    const bool edge = trigger == Trigger::kEdge;
    const char* mode = edge ? "this stage is edge-triggered" : "this stage is level-triggered";
    std::string where = "/proc/" + std::to_string(server.pid()) + "/fdinfo";
    auto list = interest_list(server);
    ASSERT_TRUE(list.has_value());
    ASSERT_TRUE(list->has_epoll) << "the server has no epoll fd (anon_inode:[eventpoll] in /proc/"
                                 << server.pid() << "/fd)\n  hint: epoll_create1(), then "
                                 << "epoll_ctl(EPOLL_CTL_ADD) the listener and each client";
    EXPECT_TRUE(list->listener_watched)
        << "the listening socket is not in the epoll interest list (" << where << ")";
    if (!edge) {
        EXPECT_FALSE(list->listener_events & EPOLLET)
            << "the listening socket is registered with EPOLLET: " << mode;
    }
    for (const Client& client : clients) {
        auto found = list->clients.find(client.local_port());
        if (found == list->clients.end()) {
            ADD_FAILURE() << client.name() << " is connected and served, but its socket is not in "
                          << "the epoll interest list (the tfd lines of " << where << ")";
            continue;
        }
        bool registered_edge = (found->second & EPOLLET) != 0;
        EXPECT_TRUE(registered_edge == edge)
            << client.name() << "'s socket is registered " << (registered_edge ? "with" : "without")
            << " EPOLLET (events 0x" << std::hex << found->second << std::dec << " in " << where << "): " << mode
            << (edge ? "\n  hint: OR EPOLLET into the events of every registration (EPOLL_CTL_ADD and "
                       "EPOLL_CTL_MOD, the listener and each client)"
                     : "\n  hint: register for EPOLLIN (and EPOLLOUT while output waits), without EPOLLET");
    }
    std::set<unsigned> leaving;
    for (size_t i = 0; i < 3 && i < clients.size(); ++i) {
        leaving.insert(clients[i].local_port());
        clients[i].close();
    }
    std::vector<std::string> stale;
    bool cleaned = eventually(answer_limit(), [&] {
        stale.clear();
        auto now = interest_list(server);
        if (!now) return false;
        for (const auto& [port, events] : now->clients)
            if (leaving.count(port)) stale.push_back("port " + std::to_string(port));
        return stale.empty();
    });
    EXPECT_TRUE(cleaned) << "3 of " << clients.size() << " clients left, and their sockets are still in the "
                         << "interest list (" << stale.size() << " stale entries, " << where << ")"
                         << "\n  hint: when a client leaves, close its socket (close() removes it from "
                            "epoll, as long as no other fd refers to it) and forget it";
}

void idle_in_epoll_wait(ServerProcess& server) {
    for (pid_t task : proc::threads(server.pid())) {
        auto idle = proc::idle_syscall(server.pid(), task);
        ASSERT_TRUE(idle.has_value()) << "thread " << task << " never settled in a system call "
                                      << "while every client was quiet (a busy loop?)";
        EXPECT_TRUE(is_epoll_wait(*idle))
            << "with its clients connected and quiet, thread " << task << " waits in "
            << proc::syscall_name(*idle) << ", not in epoll_wait (see /proc/" << server.pid() << "/task/" << task
            << "/syscall)\n  hint: the one place this server sleeps is epoll_wait() with no "
               "timeout: no sleep(), no poll(), no timer";
    }
}

void idle_after_backpressure(ServerProcess& server, const std::string& hint) {
    // A floods the server without reading until the server stops reading A;
    // then A reads everything back. After that, nothing is left to write.
    ConnectOptions small_buffer;
    small_buffer.receive_buffer = 4096;
    ::testing::AssertionResult connected = ::testing::AssertionSuccess();
    Client alice = Client::try_connect(server.endpoint(), "A (slow reader)", &connected, small_buffer);
    ASSERT_TRUE(connected) << server.stderr_tail();
    std::string flood = binary_payload(8u << 20, 9);
    size_t sent = flood_until_stalled(alice, flood);
    ASSERT_TRUE(alice.expect(std::string_view(flood).substr(0, sent), answer_limit() * 2))
        << "\n  hint: A stopped reading, then read again: it must get every byte it sent, once";
    auto activity = proc::idle_activity(server.pid());
    ASSERT_TRUE(activity.has_value());
    EXPECT_EQ(*activity, "")
        << "A's echo was held back by a full socket buffer and has all been delivered; now the "
           "server is idle, yet " << *activity << "\n  hint: " << hint;
    auto list = interest_list(server);
    ASSERT_TRUE(list.has_value());
    auto found = list->clients.find(alice.local_port());
    if (found != list->clients.end()) {
        EXPECT_FALSE(found->second & EPOLLOUT)
            << "A has nothing left to receive, yet its socket is still watched for EPOLLOUT "
               "(/proc/" << server.pid() << "/fdinfo): disarm it once the output queue is empty";
    }
}

}  // namespace muxlab::test::battery
