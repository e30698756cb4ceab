/**
 * @file battery.hpp
 * @brief Checks shared by every echo stage (01, 02, 04-08): the echo
 *        contract itself and the concurrency battery.
 *
 * Each function is one scenario; a stage's test file calls the ones that
 * apply to it, so the same scenario gives the same verdict in every stage.
 */
#pragma once

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

}  // namespace muxlab::test::battery
