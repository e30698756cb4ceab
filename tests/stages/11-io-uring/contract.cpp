/**
 * @file tests/stages/11-io-uring/contract.cpp
 * @brief Stage 11 contract: the echo server on one io_uring instance, one
 *        thread, completion-based.
 *
 * The echo contract and the concurrency battery of stage 07, then the model
 * read from /proc (an io_uring fd, no epoll; idle, it sleeps in
 * io_uring_enter), then one scenario per pitfall of completion-based I/O,
 * each forced rather than hoped for: a buffer ring that runs dry, multishot
 * requests that end (an empty ring, a full completion queue), short sends and
 * sends overtaking each other under a slow reader, and the system calls per
 * echoed message counted with ptrace (harness/syscall_count.hpp).
 *
 * Where io_uring is disabled by the machine's policy, every test is skipped
 * with the reason.
 */
#include <errno.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <vector>

#include "harness/battery.hpp"
#include "harness/event_loop.hpp"
#include "harness/syscall_count.hpp"

namespace muxlab::test {
namespace {

// ---- io_uring on this machine ---------------------------------------------------

/**
 * Why io_uring cannot be used here, or "" when it can: the sysctl
 * kernel.io_uring_disabled (1: only privileged processes, and the grader's
 * servers are not; 2: nobody), or io_uring_setup() refused to this process
 * (a seccomp filter, a container's policy).
 */
const std::string& io_uring_unavailable() {
    static const std::string reason = [] {
        std::ifstream sysctl("/proc/sys/kernel/io_uring_disabled");
        int disabled = 0;
        if (sysctl >> disabled && disabled != 0)
            return "io_uring is disabled on this machine: /proc/sys/kernel/io_uring_disabled = " +
                   std::to_string(disabled) +
                   (disabled == 1 ? " (only privileged processes may create rings)" : "");
        io_uring_params params{};
        long fd = syscall(SYS_io_uring_setup, 1, &params);
        if (fd >= 0) {
            close(static_cast<int>(fd));
            return std::string();
        }
        int error = errno;
        if (error != EPERM && error != ENOSYS && error != EACCES) return std::string();  // the server will say
        return std::string("io_uring is disabled for this process: io_uring_setup() fails with ") +
               strerrorname_np(error) + " (" + std::strerror(error) +
               "), as a seccomp filter or a container's policy makes it";
    }();
    return reason;
}

#define MUXLAB_REQUIRE_IO_URING()                                                  \
    do {                                                                           \
        if (!io_uring_unavailable().empty()) GTEST_SKIP() << io_uring_unavailable(); \
    } while (0)

class IoUring : public ServerTest {
protected:
    void SetUp() override {
        MUXLAB_REQUIRE_IO_URING();
        ServerTest::SetUp();
    }
};

// ---- helpers ------------------------------------------------------------------------

/// The threads of @p pid that run the server's code (not the kernel's io_uring workers).
std::vector<pid_t> server_threads(pid_t pid) {
    std::vector<pid_t> result;
    for (pid_t task : proc::threads(pid)) {
        std::ifstream comm("/proc/" + std::to_string(pid) + "/task/" + std::to_string(task) + "/comm");
        std::string name;
        std::getline(comm, name);
        if (name.rfind("iou-", 0) != 0) result.push_back(task);
    }
    return result;
}

/**
 * Shrinks the send buffer of the server's socket for @p client to a few KiB
 * (SO_SNDBUF, through a copy of the server's descriptor taken with
 * pidfd_getfd), as on a slow link. Loopback TCP grows send buffers to MiBs,
 * so that a send rarely completes short there; with a small buffer a send
 * larger than the room left always does. @return "" or why it could not.
 */
std::string shrink_server_send_buffer(ServerProcess& server, const Client& client) {
    unsigned long inode = 0;
    for (const proc::TcpSocket& socket : proc::tcp_sockets(server.pid()))
        if (socket.state != proc::kTcpListen && socket.local_port == server.endpoint().port &&
            socket.remote_port == client.local_port())
            inode = socket.inode;
    auto entries = proc::fds(server.pid());
    int target = -1;
    if (entries)
        for (const proc::FdEntry& entry : *entries)
            if (inode != 0 && entry.inode == inode) target = entry.fd;
    if (target < 0) return "the server's socket for " + client.name() + " is not among its fds";
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, server.pid(), 0));
    int copy = pidfd < 0 ? -1 : static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, target, 0));
    int error = errno;
    if (pidfd >= 0) close(pidfd);
    if (copy < 0)
        return std::string("cannot reach the server's socket to shrink its send buffer: ") +
               (pidfd < 0 ? "pidfd_open" : "pidfd_getfd") + " fails with " + strerrorname_np(error);
    int bytes = 4096;  // the kernel doubles it: 8 KiB
    setsockopt(copy, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
    close(copy);
    return "";
}

/**
 * A reader that stops, then reads slowly: sends @p data from byte @p sent on
 * without reading until the server stops taking it (its socket buffers and
 * its output queue are full) or all is sent; then reads the echo 4 KiB at a
 * time while sending the rest. While the reader stops, the server's send
 * buffer fills up, so when room comes back it comes a little at a time, and
 * a send of more than that completes short.
 * @return the echo received (short if the server stops answering).
 */
std::string stop_then_read_slowly(Client& client, std::string_view data, size_t sent) {
    Deadline deadline(answer_limit() * 2);
    while (sent < data.size() && !deadline.expired()) {
        size_t now = client.send_some(data.substr(sent, 1 << 16));
        sent += now;
        if (now > 0) continue;
        pollfd p{client.fd(), POLLOUT, 0};
        if (poll(&p, 1, static_cast<int>(quiet_window().count())) == 0) break;  // the server stopped taking
    }
    std::string got;
    char buffer[4096];
    while (got.size() < data.size()) {
        short events = POLLIN;
        if (sent < data.size()) events |= POLLOUT;
        pollfd p{client.fd(), events, 0};
        if (poll(&p, 1, deadline.remaining_ms()) <= 0) break;  // nothing moves: the deadline passed
        if (p.revents & POLLOUT) sent += client.send_some(data.substr(sent, 1 << 16));
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(client.fd(), buffer, sizeof buffer, 0);
            if (n <= 0) break;
            got.append(buffer, static_cast<size_t>(n));
        }
    }
    return got;
}

/**
 * Waits (one deadline for all) until every client has read @p line(client)
 * as its next line. @return how many did not, and the first of them.
 */
template <typename Line>
std::pair<int, std::string> unanswered(std::vector<Client>& clients, Line line) {
    std::vector<bool> done(clients.size(), false);
    std::pair<int, std::string> result{0, ""};
    size_t left = clients.size();
    Deadline deadline(answer_limit());
    while (left > 0 && !deadline.expired()) {
        for (size_t i = 0; i < clients.size(); ++i) {
            std::string got;
            if (done[i] || !clients[i].read_line(&got, Millis(0))) continue;
            done[i] = true;
            --left;
            if (got + "\n" == line(clients[i])) continue;
            if (result.first++ == 0) result.second = clients[i].name() + " got \"" + printable(got) + "\"";
        }
        if (left > 0) pause_between_looks();
    }
    for (size_t i = 0; i < clients.size(); ++i) {
        if (done[i]) continue;
        if (result.first++ == 0) result.second = clients[i].name() + " got nothing";
    }
    return result;
}

/// What a wrong echo of @p sent looks like: bytes lost, repeated, out of order, or cut short.
enum class Damage { kNone, kCut, kLost, kRepeated, kReordered, kGarbled };

struct Diagnosis {
    Damage damage = Damage::kNone;
    std::string text;  // what was seen, in bytes
};

Diagnosis diagnose(std::string_view sent, std::string_view got) {
    Diagnosis result;
    size_t at = 0;
    while (at < got.size() && at < sent.size() && got[at] == sent[at]) ++at;
    if (at == got.size() && got.size() == sent.size()) return result;
    if (at == got.size()) {
        result.damage = Damage::kCut;
        result.text = "the echo stopped after " + std::to_string(got.size()) + " of " +
                      std::to_string(sent.size()) + " bytes, every one of them right";
        return result;
    }
    // The bytes received from the first wrong one on: where were they sent?
    constexpr size_t kProbe = 32;  // the payload's 32-byte windows are unique
    std::string_view probe = got.substr(at, kProbe);
    size_t from = sent.find(probe, at + 1);
    std::string where = "from byte " + std::to_string(at) + " on, the echo ";
    if (from != std::string_view::npos) {
        std::string_view skipped = sent.substr(at, std::min(kProbe, from - at));
        bool later = got.find(skipped, at) != std::string_view::npos;
        result.damage = later ? Damage::kReordered : Damage::kLost;
        result.text = where + "goes on with byte " + std::to_string(from) + " (" +
                      std::to_string(from - at) + " bytes early)" +
                      (later ? ": the skipped bytes come later, out of order"
                             : ": the skipped bytes never come");
    } else if (sent.substr(0, at + 1).find(probe) != std::string_view::npos) {
        result.damage = Damage::kRepeated;
        result.text = where + "repeats bytes it had sent already";
    } else {
        result.damage = Damage::kGarbled;
        result.text = where + "holds bytes that were never sent";
    }
    result.text += " (" + std::to_string(got.size()) + " of " + std::to_string(sent.size()) +
                   " bytes received)";
    return result;
}

constexpr const char* kShortSendHint =
    "\n  hint: a send completion's res can be smaller than the length asked (a short send: the "
    "socket took part of it). Send the rest, from byte res on, before anything queued behind it";
constexpr const char* kOneSendHint =
    "\n  hint: with two sends in flight on one socket, the second can overtake the rest of the "
    "first (after a short send, or when both wait for room). Keep at most one send per socket in "
    "flight: queue the new bytes, and start the next send from the previous one's completion";

/// The hint for @p damage seen under a slow reader.
std::string slow_reader_hint(Damage damage) {
    switch (damage) {
        case Damage::kReordered: return kOneSendHint;
        case Damage::kLost:
        case Damage::kRepeated: return kShortSendHint;
        default:
            return "\n  hint: every byte a client sends comes back, in order, once, however slowly "
                   "it reads";
    }
}

// ---- the server contract ----------------------------------------------------------

TEST(IoUringStart, ReadyLine) {
    MUXLAB_REQUIRE_IO_URING();
    ServerProcess server(server_under_test());
    EXPECT_TRUE(server.ready()) << server.failure();
}
TEST(IoUringStart, HelpAndBadOptions) {
    MUXLAB_REQUIRE_IO_URING();
    battery::help_exits_zero(server_under_test());
    battery::bad_option_exits_two(server_under_test());
}
TEST_F(IoUring, StopsOnSigterm) { battery::sigterm_stops(server()); }

// ---- the echo contract -------------------------------------------------------------

// The first echo needs the whole path: the loop hands the queued requests to
// the kernel, an accept and a recv complete, a send goes out. When it does not
// come back, the failure says where the line stopped.
TEST_F(IoUring, EchoesLine) {
    battery::echoes_line(server(), [](const battery::LineStop& stop) -> std::string {
        if (stop.sleeps_in && *stop.sleeps_in != SYS_io_uring_enter)
            return "\n  the server sleeps in " + proc::syscall_name(*stop.sleeps_in) +
                   ", not in io_uring_enter: the requests it queued (the accept, the recvs) never reach "
                   "the kernel" + stop.queues +
                   "\n  hint: every loop turn, submit what is queued and wait for a completion "
                   "(io_uring_submit_and_wait), then handle every completion that is there";
        if (stop.never_accepted())
            return stop.queues + "\n  hint: no accept request completed: arm a multishot accept, submit it, "
                                 "and handle its completions (res is the new socket)";
        if (stop.never_read())
            return stop.queues + "\n  hint: alice was accepted but her line was never received: arm a recv on "
                                 "every new socket, and submit it";
        return "\n  the server took the connection and received the line (nothing waits in its socket), but "
               "sent nothing back"
               "\n  hint: queue the received bytes for the client and start a send of them; at most one send "
               "per socket in flight, the next one from the previous one's completion";
    });
}
TEST_F(IoUring, EchoesBinary) { battery::echoes_binary(endpoint()); }
TEST_F(IoUring, PipelinedLines) { battery::pipelined_lines(endpoint()); }
// The echo battery speaks of read() and write(); what those checks mean on a ring:
TEST_F(IoUring, MegabyteBurst) {
    SCOPED_TRACE("in this stage: 1 MiB arrives as hundreds of chunks, more than the buffer ring holds; "
                 "the ring can run dry (-ENOBUFS), which ends the multishot recv (a completion without "
                 "IORING_CQE_F_MORE), and a send can complete short");
    battery::megabyte_burst(endpoint());
}
TEST_F(IoUring, HalfClose) {
    SCOPED_TRACE("in this stage: end of input is a recv completion with res 0, the multishot recv's "
                 "last (no IORING_CQE_F_MORE); send what is queued, then close the socket once no "
                 "request uses it");
    battery::half_close(endpoint());
}
TEST_F(IoUring, SurvivesReset) { battery::survives_reset(server()); }
TEST_F(IoUring, ShortSessionsNoFdGrowth) {
    SCOPED_TRACE("in this stage: a leaving client's socket closes once no request uses it: its recv "
                 "has ended (a completion without IORING_CQE_F_MORE) and no send is in flight");
    battery::short_sessions_no_fd_growth(server());
}

// ---- concurrency -------------------------------------------------------------------

TEST_F(IoUring, PartialLineDoesNotBlockOthers) { battery::partial_line_does_not_block_others(endpoint()); }
TEST_F(IoUring, DripFeederDoesNotBlockOthers) { battery::drip_feeder_does_not_block_others(endpoint()); }
TEST_F(IoUring, StoppedReaderDoesNotBlockOthers) { battery::stopped_reader_does_not_block_others(endpoint()); }
TEST_F(IoUring, FiftyClientsAtOnce) { battery::many_clients_at_once(endpoint(), 50); }

TEST_F(IoUring, StoppedReaderMemoryBounded) {
    // A sends and never reads. The kernel's socket buffers hold a few MiB;
    // beyond that, only a server that keeps receiving takes more.
    ConnectOptions small_buffer;
    small_buffer.receive_buffer = 4096;
    Client alice = connect("A (never reads)", small_buffer);
    ASSERT_TRUE(alice.send("hello\n"));
    ASSERT_TRUE(alice.expect("hello\n")) << "\n  (A is served before it stops reading)";
    constexpr size_t kFlood = 64u << 20;
    std::string chunk = binary_payload(1 << 16, 4);
    size_t sent = 0;
    // A capped server stops taking bytes once the socket buffers are full (a
    // few MiB); one still taking them at the deadline, however slowly the
    // machine runs, has no cap either.
    Deadline limit(answer_limit() * 4);
    bool server_stopped_receiving = false;
    while (sent < kFlood && !limit.expired()) {
        size_t now = alice.send_some(chunk);
        sent += now;
        if (now == 0) {
            // A server growing a large buffer can pause for a moment: only a
            // pause that lasts proves that it stopped receiving.
            pollfd p{alice.fd(), POLLOUT, 0};
            if (poll(&p, 1, static_cast<int>(quiet_window().count())) == 0 &&
                poll(&p, 1, static_cast<int>(quiet_window().count()) * 5) == 0) {
                server_stopped_receiving = true;
                break;
            }
        }
    }
    if (!server_stopped_receiving)
        ADD_FAILURE() << "client A sent " << (sent >> 20) << " MiB without reading a byte of its echo, and the "
        << "server kept taking more: it holds that echo in memory, without bound.\n  hint: stop receiving "
           "from a client whose unsent echo passes a cap: do not arm its recv again, and cancel the "
           "multishot recv in flight (io_uring_prep_cancel); arm it again once the echo has drained"
        << context();
}

TEST_F(IoUring, SurvivesFdExhaustion) {
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
    ASSERT_FALSE(server().wait_exit(Millis(0)).has_value())
        << "the server died when it ran out of file descriptors" << context();
    auto activity = proc::idle_activity(server().pid());
    ASSERT_TRUE(activity.has_value());
    EXPECT_EQ(*activity, "")
        << "with RLIMIT_NOFILE 32, " << count << " of " << kClients << " clients served and the "
        << "rest waiting to be accepted, no client active: " << *activity
        << "\n  hint: at EMFILE the multishot accept ends (-EMFILE, no IORING_CQE_F_MORE) and the "
           "connection stays in the backlog; armed again at once, it fails again at once. Arm it "
           "again when a client leaves" << context();
    for (int i = 0; i < kClients; ++i) {
        if (!served[i]) continue;
        ASSERT_TRUE(clients[i].send("still here\n"));
        ASSERT_TRUE(clients[i].expect("still here\n"))
            << "\n  hint: clients accepted before the fd table filled up must keep being served"
            << context();
    }
    int left = 0;
    for (int i = 0; i < kClients; ++i)
        if (!served[i] || left++ < 5) clients[i].close();
    Client newcomer = connect("newcomer");
    ASSERT_TRUE(newcomer.send("anyone home?\n"));
    EXPECT_TRUE(newcomer.expect("anyone home?\n", answer_limit() * 2))
        << "\n  after the fd table had been full and clients left, a new client was not served."
        << queue_report(server(), {})
        << "\n  hint: the multishot accept ended at EMFILE: when a client leaves, a descriptor is "
           "free again: arm the accept again" << context();
}

// ---- the model: io_uring, completion-based -------------------------------------------

TEST_F(IoUring, UsesARing) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_served(3);
    ASSERT_FALSE(HasFailure());
    auto entries = proc::fds(server().pid());
    ASSERT_TRUE(entries.has_value());
    bool ring = false, epoll = false;
    for (const proc::FdEntry& entry : *entries) {
        ring = ring || entry.target == "anon_inode:[io_uring]";
        epoll = epoll || entry.is_epoll();
    }
    ASSERT_TRUE(ring) << "the server holds no io_uring instance (no anon_inode:[io_uring] in /proc/"
                      << server().pid() << "/fd)\n  hint: io_uring_queue_init_params() creates the ring";
    EXPECT_FALSE(epoll) << "the server holds an epoll instance (anon_inode:[eventpoll] in /proc/"
                        << server().pid() << "/fd): in this stage the ring does all the waiting";
    // The calls it makes while echoing: none of them a readiness call.
    SyscallCounter counter(server().pid());
    if (!counter.error().empty()) GTEST_SKIP() << counter.error();
    // Two rounds: the second arrives while the server waits, wherever it waits.
    for (Client& client : clients) ASSERT_TRUE(client.send("are we ready?\n"));
    counter.resume();
    for (Client& client : clients) ASSERT_TRUE(client.expect("are we ready?\n")) << context();
    for (Client& client : clients) ASSERT_TRUE(client.send("still ready?\n"));
    for (Client& client : clients) ASSERT_TRUE(client.expect("still ready?\n")) << context();
    SyscallCounts counts = counter.finish();
    SyscallCounts readiness;
    for (long call : {SYS_select, SYS_pselect6, SYS_poll, SYS_ppoll, SYS_epoll_wait, SYS_epoll_pwait})
        if (counts.count(call)) readiness[call] = counts[call];
    EXPECT_TRUE(readiness.empty())
        << "while echoing two lines for 3 clients, the server asked which sockets were ready ("
        << describe_syscalls(readiness) << "; all its calls: " << describe_syscalls(counts)
        << ")\n  hint: in this stage nothing waits for readiness: submit the operations "
           "themselves and wait for their completions in io_uring_enter";
}

TEST_F(IoUring, IdleInIoUringEnter) {
    MUXLAB_REQUIRE_PROC();
    std::vector<Client> clients = connect_served(2);
    ASSERT_FALSE(HasFailure());
    for (pid_t task : server_threads(server().pid())) {
        auto idle = proc::idle_syscall(server().pid(), task);
        ASSERT_TRUE(idle.has_value()) << "thread " << task << " never settled in a system call "
                                      << "while every client was quiet (a busy loop?)";
        EXPECT_EQ(*idle, SYS_io_uring_enter)
            << "with 2 quiet clients connected, thread " << task << " waits in "
            << proc::syscall_name(*idle) << " (see /proc/" << server().pid() << "/task/" << task
            << "/syscall)\n  hint: the one place this server sleeps is io_uring_enter(), waiting "
               "for a completion (io_uring_submit_and_wait): no poll(), no epoll_wait(), no sleep()";
    }
    auto activity = proc::idle_activity(server().pid());
    ASSERT_TRUE(activity.has_value());
    EXPECT_EQ(*activity, "") << "2 clients connected and quiet, yet " << *activity
                             << "\n  hint: wait for at least one completion (wait_nr 1); never "
                                "peek at the queue in a loop";
}

// ---- the pitfalls of completion-based I/O -----------------------------------------------

TEST_F(IoUring, BufferRingReplenished) {
    // 900 chunks, one at a time: far more than any buffer ring holds.
    constexpr int kClients = 3, kLines = 300;
    std::vector<Client> clients;
    for (int i = 0; i < kClients; ++i) clients.push_back(connect("client " + std::to_string(i + 1)));
    for (int line = 0; line < kLines; ++line) {
        for (Client& client : clients) {
            std::string text = client.name() + " line " + std::to_string(line) + "\n";
            ASSERT_TRUE(client.send(text));
            ASSERT_TRUE(client.expect(text))
                << "\n  " << line * kClients << " lines had been echoed, one at a time, to "
                << kClients << " clients; then the echo stopped." << queue_report(server(), clients)
                << "\n  hint: a multishot recv takes a buffer from the ring for every chunk it "
                   "receives, and ends with -ENOBUFS when the ring is empty. Give each buffer back "
                   "(io_uring_buf_ring_add, then io_uring_buf_ring_advance) once its bytes are "
                   "copied out" << context();
        }
    }
}

TEST_F(IoUring, MultishotRecvRearmed) {
    MUXLAB_REQUIRE_PROC();
    // More chunks at one instant than a ring of buffers holds: some multishot
    // recvs end (-ENOBUFS, no IORING_CQE_F_MORE) and must be armed again.
    constexpr int kClients = 200;
    std::vector<Client> clients = connect_served(kClients);
    ASSERT_FALSE(HasFailure());
    {
        Frozen frozen(server());
        ASSERT_TRUE(frozen.stopped()) << "could not pause the server with SIGSTOP";
        for (Client& client : clients) ASSERT_TRUE(client.send("again from " + client.name() + "\n"));
    }
    auto [silent, first] = unanswered(clients, [](const Client& c) { return "again from " + c.name() + "\n"; });
    if (silent > 0)
        ADD_FAILURE() << kClients << " clients, each served once, sent a second line while the server was paused "
        << "(SIGSTOP); after it resumed, " << silent << " of them got no echo (" << first << ")."
        << queue_report(server(), clients)
        << "\n  hint: a multishot recv ends when the buffer ring runs dry (-ENOBUFS), when the "
           "completion queue is full, or on an error; its last completion comes without "
           "IORING_CQE_F_MORE. Check the flag on every completion and arm a new recv then"
        << context();
}

TEST_F(IoUring, CompletionQueueOverflow) {
    MUXLAB_REQUIRE_PROC();
    // More connections at one instant than a completion queue holds.
    constexpr int kClients = 400;
    std::vector<Client> clients;
    {
        Frozen frozen(server());
        ASSERT_TRUE(frozen.stopped()) << "could not pause the server with SIGSTOP";
        for (int i = 0; i < kClients; ++i) {
            clients.push_back(connect("client " + std::to_string(i + 1)));
            ASSERT_TRUE(clients.back().send("hello from " + clients.back().name() + "\n"));
        }
    }
    auto [silent, first] = unanswered(clients, [](const Client& c) { return "hello from " + c.name() + "\n"; });
    if (silent > 0)
        ADD_FAILURE() << kClients << " clients connected and sent a line while the server was paused (SIGSTOP); "
        << "after it resumed, " << silent << " of them got no echo (" << first << ")."
        << queue_report(server(), clients)
        << "\n  hint: more completions at once than the completion queue holds overflow it, and the "
           "kernel then ends multishot requests: even a successful accept can come without "
           "IORING_CQE_F_MORE. Arm the request again whenever the flag is missing, whatever res "
           "says (and size the completion queue with IORING_SETUP_CQSIZE)"
        << context();
}

TEST_F(IoUring, SlowReaderGetsEveryByte) {
    MUXLAB_REQUIRE_PROC();
    ConnectOptions small_buffer;
    small_buffer.receive_buffer = 4096;
    Client alice = connect("A (slow reader)", small_buffer);
    ASSERT_TRUE(alice.send("hello\n"));
    ASSERT_TRUE(alice.expect("hello\n"));
    std::string why = shrink_server_send_buffer(server(), alice);
    if (!why.empty()) GTEST_SKIP() << why;
    std::string data = binary_payload(2u << 20, 12);
    std::string got = stop_then_read_slowly(alice, data, 0);
    Diagnosis diagnosis = diagnose(data, got);
    if (diagnosis.damage != Damage::kNone)
        ADD_FAILURE() << "client A (4 KiB receive buffer; the server's socket for A: 8 KiB of send buffer) sent "
           "2 MiB without reading until the server stopped "
           "taking more, then read its echo 4 KiB at a time: "
        << diagnosis.text << slow_reader_hint(diagnosis.damage) << context();
}

TEST_F(IoUring, SlowReaderGetsBytesInOrder) {
    MUXLAB_REQUIRE_PROC();
    ConnectOptions small_buffer;
    small_buffer.receive_buffer = 4096;
    Client alice = connect("A (slow reader)", small_buffer);
    ASSERT_TRUE(alice.send("hello\n"));
    ASSERT_TRUE(alice.expect("hello\n"));
    std::string why = shrink_server_send_buffer(server(), alice);
    if (!why.empty()) GTEST_SKIP() << why;
    std::string data = binary_payload(2u << 20, 13);
    size_t sent = 0;
    {
        // While the server is paused, A's bytes pile up in its socket; on
        // resuming it receives many chunks at one instant, each to be echoed
        // to a socket with room for a few KiB.
        Frozen frozen(server());
        ASSERT_TRUE(frozen.stopped()) << "could not pause the server with SIGSTOP";
        for (size_t now = 1; now > 0 && sent < data.size(); sent += now)
            now = alice.send_some(std::string_view(data).substr(sent, 1 << 16));
    }
    std::string got = stop_then_read_slowly(alice, data, sent);
    Diagnosis diagnosis = diagnose(data, got);
    if (diagnosis.damage != Damage::kNone)
        ADD_FAILURE() << "client A (4 KiB receive buffer; the server's socket for A: 8 KiB of send buffer) sent "
        << sent << " bytes while the server was paused "
        << "(SIGSTOP), more without reading until the server stopped taking it, then read its "
           "echo 4 KiB at a time: " << diagnosis.text
        << slow_reader_hint(diagnosis.damage) << context();
}

TEST_F(IoUring, BatchedSubmission) {
    MUXLAB_REQUIRE_PROC();
    constexpr int kClients = 100;
    std::vector<Client> clients = connect_served(kClients);
    ASSERT_FALSE(HasFailure());
    // Hold the server still (ptrace) while every client sends a line, then
    // count the system calls it makes to echo them all.
    SyscallCounter counter(server().pid());
    if (!counter.error().empty()) GTEST_SKIP() << counter.error();
    for (Client& client : clients) ASSERT_TRUE(client.send("batch from " + client.name() + "\n"));
    counter.resume();
    for (Client& client : clients)
        ASSERT_TRUE(client.expect("batch from " + client.name() + "\n")) << context();
    SyscallCounts counts = counter.finish();
    long calls = total_syscalls(counts);
    double per_message = static_cast<double>(calls) / kClients;
    if (per_message >= 0.5)
        ADD_FAILURE() << kClients << " clients each sent a line while the server was held still; it echoed the "
        << kClients << " lines with " << calls << " system calls (" << describe_syscalls(counts)
        << "): " << per_message << " per message, where one io_uring_enter() can carry them all."
        << "\n  hint: queue requests as completions come (io_uring_get_sqe, io_uring_prep_*) and "
           "submit them together: one io_uring_submit_and_wait() per loop turn, not one submit per "
           "request" << context();
}

}  // namespace
}  // namespace muxlab::test
