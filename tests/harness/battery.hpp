/**
 * @file battery.hpp
 * @brief Checks shared by every echo stage (01, 02, 04-08): the echo
 *        contract itself and the concurrency battery.
 *
 * Each function is one scenario; a stage's test file calls the ones that
 * apply to it, so the same scenario gives the same verdict in every stage.
 * Where the cause of a failure depends on the stage's system call, the
 * stage passes its hint (or a Diagnosis) in.
 */
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "harness/server_test.hpp"

namespace muxlab::test::battery {

// ---- the contract every server shares -----------------------------------------------

/// `SERVER --help` exits 0 and prints a usage text on stdout.
void help_exits_zero(const std::string& program);
/// `SERVER --no-such-option` exits 2 with a message on stderr.
void bad_option_exits_two(const std::string& program);
/// SIGTERM ends the server within a few seconds.
void sigterm_stops(ServerProcess& server);

// ---- the echo contract (RFC 862) ----------------------------------------------------

/// A line comes back unchanged.
void echoes_line(const Endpoint& server);
/**
 * @brief Where a line stopped inside a server that did not echo it, as the
 *        kernel shows it: whether the server still runs, the call it sleeps
 *        in, and what waits in its sockets.
 */
struct LineStop {
    std::optional<ExitReport> exit;  ///< set when the server has exited
    std::optional<long> sleeps_in;   ///< the system call its idle main thread sleeps in (nullopt: none seen)
    std::string queues;              ///< queue_report(): connections never accepted, bytes never read
    /// The connection still waits in the listener's accept queue.
    bool never_accepted() const { return queues.find("accept queue") != std::string::npos; }
    /// The connection was accepted, and what the client sent waits unread.
    bool never_read() const { return !queues.empty() && !never_accepted(); }
};
/// A stage's words for where a line stopped: what it saw, and its hint.
using LineStopHint = std::function<std::string(const LineStop& stop)>;
/// A stage's step between alice's connect and her line: a failure ends the test there.
using BeforeLine = std::function<::testing::AssertionResult()>;
/**
 * alice's line comes back unchanged; when it does not, the failure tells
 * where it stopped (see LineStop) in the stage's words, @p explain.
 * @p before_line, when given, runs once alice is connected, before she speaks.
 */
void echoes_line(ServerProcess& server, const LineStopHint& explain, const BeforeLine& before_line = {});
/// All 256 byte values, NUL included, come back unchanged.
void echoes_binary(const Endpoint& server);
/// Sends @p data one byte per TCP segment, a few milliseconds apart (a slow typist).
void drip(Client& client, std::string_view data);
/// Bytes sent one at a time come back in order.
void echoes_drip_fed(const Endpoint& server);
/// After shutdown(SHUT_WR) the server sends what remains, then closes.
void half_close(const Endpoint& server);
/// Several clients one after the other are each served.
void sequential_clients(const Endpoint& server);
/// Two lines in one write come back as both lines.
void pipelined_lines(const Endpoint& server);
/// 1 MiB sent in one write (the client reading as it goes) comes back exactly.
void megabyte_burst(const Endpoint& server);
/**
 * Sends @p flood on @p client, 64 KiB at a time, until the server stops
 * reading it (the socket takes nothing for the quiet window), all of it is
 * sent, or answer_limit() has passed; returns how many bytes were sent.
 */
size_t flood_until_stalled(Client& client, std::string_view flood);
/**
 * A client sends until the server is blocked writing its echo, then aborts
 * with RST; then another does the same after shutting down its sending side
 * (so the server's write fails with EPIPE and raises SIGPIPE). The server
 * must survive both and serve the next client.
 */
void survives_reset(ServerProcess& server);
/// 200 short sessions in a row; the server's fd count returns to its baseline.
void short_sessions_no_fd_growth(ServerProcess& server, int sessions = 200);

/// What happened to one client among many: echoed, closed by the server, or neither.
enum class Outcome { kEchoed, kClosed, kSilent, kWrong };

/// Sends @p line on @p client and sees whether it comes back or the connection is closed
/// (for tests where the server may refuse some clients).
Outcome try_echo(Client& client, const std::string& line);

// ---- concurrency (every stage from 02 on) ----------------------------------------

/// While client A has sent half a line (and stays), client B is served on time.
void partial_line_does_not_block_others(const Endpoint& server);
/// While client A sends one byte at a time, client B is served on time.
void drip_feeder_does_not_block_others(const Endpoint& server);
/**
 * Client A floods the server and never reads; client B is still served on
 * time; then A reads and gets every byte it sent, exactly.
 */
void stopped_reader_does_not_block_others(const Endpoint& server);
/// @p count clients connected at once each get their own data back.
void many_clients_at_once(const Endpoint& server, int count);

// ---- one thread, many clients (stages 04-08) --------------------------------------

/**
 * A client sends without ever reading its echo: the server must stop reading
 * it once its unsent echo passes a cap (TCP flow control then blocks the
 * client), judged by how much the client could send and how much the
 * server's memory grew; then another client is served. @p hint says how this
 * stage stops reading a client (it follows "hint: " in the failure).
 */
void unread_echo_bounded(ServerProcess& server, const std::string& hint);

/// What a stage says about its server when clients got no echo: what /proc shows, and its hint.
using Diagnosis = std::function<std::string(ServerProcess& server, const std::vector<Client>& clients)>;

/**
 * 50 clients connect and send a line while the server is paused (SIGSTOP),
 * so that they all wait at one instant when it resumes; each must get its
 * line back. @p diagnose explains the first client that did not.
 */
void fifty_simultaneous_connects(ServerProcess& server, const Diagnosis& diagnose);

// ---- epoll (stages 07 and 08) ----------------------------------------------------------

/// How a stage registers its sockets with epoll.
enum class Trigger { kLevel, kEdge };

/**
 * @p clients (connected and served) are in the server's epoll interest list,
 * registered as @p trigger asks (level-triggered: EPOLLET on neither the
 * listener nor a client; edge-triggered: EPOLLET on every client); once
 * three of them leave, their entries are gone.
 */
void interest_list_tracks_clients(ServerProcess& server, std::vector<Client>& clients, Trigger trigger);

/// With its clients connected and quiet, every thread of the server sleeps in epoll_wait.
void idle_in_epoll_wait(ServerProcess& server);

/**
 * A client floods the server without reading until the server stops reading
 * it, then reads all its echo back; after that the server is idle (no CPU,
 * no wakeups) and no longer watches the client for EPOLLOUT. @p hint says how
 * this stage sleeps and arms EPOLLOUT (it follows "hint: " in the failure).
 */
void idle_after_backpressure(ServerProcess& server, const std::string& hint);

}  // namespace muxlab::test::battery
