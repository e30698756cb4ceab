/**
 * @file tests/stages/09-chat/limits.cpp
 * @brief Stage 09, the room's limits: a member who stops reading never
 *        stalls the others and is dropped past --sendq (but a burst to
 *        readers drops nobody), --max-users, --idle-timeout with no wakeups
 *        while idle, --flood-lines, and idle members that cost little memory.
 */
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "harness/chat.hpp"
#include "harness/event_loop.hpp"

namespace muxlab::test {
namespace {

using ::testing::AssertionResult;

/// The largest send buffer TCP autotuning may give a socket (tcp_wmem's max).
size_t max_send_buffer() {
    std::ifstream wmem("/proc/sys/net/ipv4/tcp_wmem");
    size_t low = 0, initial = 0, max = 4u << 20;
    wmem >> low >> initial >> max;
    return max;
}

/// bob talks in chunks while alice, who never reads, falls behind; carol
/// reads everything. Sends at most @p max_bytes, or until carol's line
/// @p stop_at arrives; fails if carol misses or misorders a line.
void flood_past_stopped_reader(ServerProcess& server, Client& bob, Client& carol, size_t max_bytes,
                               const std::string& stop_at, bool* stopped) {
    *stopped = false;
    std::string text(480, 'x');
    constexpr int kChunk = 100;
    size_t sent = 0;
    int number = 0;
    LineReader reader(carol);
    std::string line;
    while (sent < max_bytes && !*stopped) {
        std::string chunk;
        for (int i = 0; i < kChunk; ++i) chunk += std::to_string(number + i) + " " + text + "\n";
        ASSERT_TRUE(bob.send(chunk))
            << "\n  hint: the server stopped reading bob while alice (who reads nothing) fell behind: "
               "is it blocked writing to alice? Queue output per client and write only when writable"
            << server.stderr_tail();
        sent += chunk.size();
        Deadline deadline(answer_limit());
        for (int i = 0; i < kChunk; ++i, ++number) {
            for (;;) {
                ASSERT_TRUE(reader.next(&line, deadline))
                    << "carol waited " << answer_limit().count() << " ms for bob's line " << number
                    << " while alice was not reading\n  hint: one client that does not read must not "
                       "stall the others: never block in write(); queue, and write when writable"
                    << server.stderr_tail();
                if (line == stop_at) {
                    *stopped = true;
                    continue;
                }
                break;
            }
            std::string due = "<bob> " + std::to_string(number) + " " + text;
            ASSERT_EQ(line, due) << "carol's line " << number << " from bob is wrong (lost or reordered)";
        }
    }
    if (!*stopped) {
        // The notice may come right after the last chunk.
        std::vector<std::string> before;
        ASSERT_TRUE(ping(carol, "c", &before));
        *stopped = std::find(before.begin(), before.end(), stop_at) != before.end();
    }
}

TEST_F(ChatLimits, StoppedReaderDoesNotBlockOthers) {
    MUXLAB_RESTART(chat_flags({"--sendq", "33554432", "--flood-lines", "1000000"}));
    auto [alice, bob, carol] = stopped_reader_room();
    if (HasFailure()) return;
    bool stopped = false;
    // More than the kernel buffers of alice's connection can hold (her
    // receive buffer is tiny; the server's send buffer grows to tcp_wmem's max).
    flood_past_stopped_reader(server(), bob, carol, std::max<size_t>(8u << 20, 2 * max_send_buffer()),
                              "-!- alice left (sendq exceeded)", &stopped);
}

TEST_F(ChatLimits, SendqDropsStoppedReader) {
    MUXLAB_RESTART(chat_flags({"--sendq", "65536", "--flood-lines", "1000000"}));
    auto [alice, bob, carol] = stopped_reader_room();
    if (HasFailure()) return;
    auto memory_before = data_kib(server().pid());
    bool dropped = false;
    flood_past_stopped_reader(server(), bob, carol, 48u << 20, "-!- alice left (sendq exceeded)", &dropped);
    if (HasFatalFailure()) return;
    EXPECT_TRUE(dropped) << "bob sent 48 MB to the room; alice read none of it and was never dropped"
                         << "\n  hint: with --sendq 65536, drop a client whose unsent output passes 64 KiB, "
                            "and tell the others \"-!- alice left (sendq exceeded)\"";
    auto memory_after = data_kib(server().pid());
    if (memory_before && memory_after) {
        EXPECT_LT(*memory_after - *memory_before, 32 * 1024)
            << "the server's memory grew from " << *memory_before << " KiB to " << *memory_after
            << " KiB while one client did not read\n  hint: a queue must never grow without bound";
    }
    // alice finally reads: what was queued for her, then the end of the connection.
    Deadline deadline(answer_limit());
    while (!alice.read_some(1 << 20, Millis(deadline.remaining_ms())).empty()) {}
    EXPECT_TRUE(alice.expect_closed(Millis(100))) << "\n  hint: close the dropped client's socket";
}

// The whole room pastes at once, and every member reads. The burst each
// member is owed passes --sendq when it is queued, but the socket takes part
// of it at once: what stays unsent is under the limit, so nobody is dropped.
TEST_F(ChatLimits, BurstToReadersDropsNobody) {
    MUXLAB_REQUIRE_PROC();
    constexpr int kMembers = 10, kLines = 15;
    const std::string text(480, 'x');
    // Each relayed line is "<mK> NN xxx...\n": 5 + 3 + 480 + 1 bytes.
    const size_t owed = (kMembers - 1) * kLines * (5 + 3 + text.size() + 1);
    const size_t sendq = owed - 2000;  // over the limit by what any socket takes at once
    MUXLAB_RESTART(chat_flags({"--sendq", std::to_string(sendq), "--flood-lines", "1000"}));
    std::vector<Client> members;
    for (int i = 0; i < kMembers && !HasFailure(); ++i) members.push_back(join("m" + std::to_string(i)));
    if (HasFailure()) return;
    for (Client& member : members) ASSERT_TRUE(ping(member, "settled"));
    {
        // Paused, so that every paste is there when the server looks: one loop turn queues them all.
        Frozen frozen(server());
        ASSERT_TRUE(frozen.stopped()) << "could not pause the server with SIGSTOP";
        std::string paste;
        for (int k = 10; k < 10 + kLines; ++k) paste += std::to_string(k) + " " + text + "\n";
        std::set<unsigned> ports;
        for (Client& member : members) {
            ASSERT_TRUE(member.send(paste));
            ports.insert(member.local_port());
        }
        bool all_there = eventually(answer_limit(), [&] {
            unsigned long unread = 0;
            for (const proc::TcpSocket& socket : proc::tcp_sockets(server().pid()))
                if (socket.local_port == endpoint().port && ports.count(socket.remote_port)) unread += socket.rx_queue;
            return unread >= kMembers * paste.size();
        });
        ASSERT_TRUE(all_there) << "the pastes did not all reach the paused server's sockets";
    }
    std::string hint = "\n  hint: each member was owed " + std::to_string(owed) + " bytes in one loop turn, over "
                       "--sendq " + std::to_string(sendq) + ", but its socket takes part of that at once: measure "
                       "--sendq against what is still unsent after the turn's flush tried the socket, not when "
                       "a message is queued";
    // Each member reads until it has every line the others pasted. (A /ping
    // would not do as the end mark: a server may read a member's paste and a
    // ping sent after it in one turn, before the others' pastes.)
    const int expected = (kMembers - 1) * kLines;
    for (Client& member : members) {
        int relayed = 0;
        std::string line;
        Deadline deadline(answer_limit() * 2);
        while (relayed < expected && member.read_line(&line, Millis(deadline.remaining_ms()))) {
            bool dropped = line.find("left (sendq exceeded)") != std::string::npos;
            ASSERT_FALSE(dropped) << kMembers << " members each pasted " << kLines << " lines at once, and every "
                                  << "member was reading; " << member.name() << " got " << printable(line) << hint;
            if (line[0] == '<') ++relayed;
        }
        ASSERT_EQ(relayed, expected)
            << member.name() << " got " << relayed << " of the " << expected << " lines the others pasted"
            << (member.closed() ? ", then the server closed its connection" : "") << "\n  " << kMembers
            << " members each pasted " << kLines << " lines at once, and every member was reading: was "
            << member.name() << " dropped?" << hint << context();
    }
    for (Client& member : members)
        ASSERT_TRUE(ping(member, "after")) << "\n  after the burst, " << member.name() << " was not answered" << context();
}

TEST_F(ChatLimits, MaxUsers) {
    MUXLAB_RESTART(chat_flags({"--max-users", "3"}));
    Client a = arrive("a");
    Client b = arrive("b");
    Client c = join("c");
    Client extra = connect("extra");
    EXPECT_TRUE(extra.expect_line("ERROR :too many users"))
        << "\n  hint: with --max-users 3, the fourth client gets \"ERROR :too many users\" and is closed";
    EXPECT_TRUE(extra.expect_closed());
    ASSERT_TRUE(ping(c, "still")) << "\n  hint: refusing a client must not disturb the others";
    a.close();
    // a's slot is free once the server has seen it close: try until then.
    bool admitted = eventually(answer_limit(), [&] {
        Client next = Client::connect(endpoint(), "next");
        std::string line;
        if (!next.read_line(&line) || line != kChatWelcome) return false;
        return true;
    });
    EXPECT_TRUE(admitted) << "after one of the three clients left, a new client was still refused"
                          << "\n  hint: count a client out when it leaves";
}

TEST_F(ChatLimits, IdleTimeout) {
    MUXLAB_RESTART(chat_flags({"--idle-timeout", "2"}));
    Client alice = join("alice");
    Client bob = join("bob");
    ASSERT_TRUE(alice.expect_line("-!- bob joined"));
    EXPECT_TRUE(alice.expect_silence(Millis(1000)))
        << "\n  hint: --idle-timeout is in seconds; alice was idle for less than 1 s";
    // bob stays busy while alice stays silent. Her deadline falls near a
    // round's start (1 s of silence, then rounds of 200 ms), so the notice
    // of her leaving may reach bob before one of his PONGs: keep what he saw.
    Deadline deadline(answer_limit() + Millis(2000));
    std::string line;
    std::vector<std::string> bob_saw;
    bool got = false;
    for (int round = 0; !got && !deadline.expired(); ++round) {
        ASSERT_TRUE(ping(bob, "busy" + std::to_string(round), &bob_saw));
        got = alice.read_line(&line, Millis(200));
    }
    ASSERT_TRUE(got) << "alice was idle for " << (answer_limit().count() + 3000) / 1000
                     << " s with --idle-timeout 2 and nothing came\n  hint: use the epoll_wait timeout: "
                        "the time until the oldest client's deadline";
    EXPECT_EQ(line, "ERROR :idle timeout");
    EXPECT_TRUE(alice.expect_closed());
    const std::string left = "-!- alice left (idle timeout)";
    if (std::find(bob_saw.begin(), bob_saw.end(), left) == bob_saw.end()) {
        EXPECT_TRUE(line_eventually(bob, left));
    }
}

TEST_F(ChatLimits, NoWakeupsWhileIdle) {
    MUXLAB_REQUIRE_PROC();
    MUXLAB_RESTART(chat_flags({"--idle-timeout", "3600"}));
    std::vector<Client> members;
    for (int i = 0; i < 20 && !HasFailure(); ++i) members.push_back(join("idle" + std::to_string(i)));
    if (HasFailure()) return;
    ASSERT_TRUE(ping(members.back(), "settled"));
    auto activity = proc::idle_activity(server().pid(), Millis(1000));
    ASSERT_TRUE(activity.has_value());
    EXPECT_EQ(*activity, "") << "with 20 quiet clients and --idle-timeout 3600, " << *activity
                             << "\n  hint: wait in epoll_wait with the time to the NEAREST timer, or -1 "
                                "when none is due; never poll on a short timeout";
}

// A client that sends faster than --flood-lines lines per second is slowed
// down: its lines wait (the server stops reading it) and all arrive, in
// order, at the rate. The room is not flooded, and nothing is lost.
TEST_F(ChatLimits, FloodControl) {
    constexpr int kRate = 20, kLines = 60;  // a burst of 20, then 2 s of waiting lines
    MUXLAB_RESTART(chat_flags({"--flood-lines", std::to_string(kRate)}));
    Client alice = join("alice");
    Client bob = join("bob");
    ASSERT_TRUE(alice.expect_line("-!- bob joined"));
    std::string flood;
    for (int i = 0; i < kLines; ++i) flood += "flood " + std::to_string(i) + "\n";
    auto start = Clock::now();
    alice.send_some(flood);
    // Within one second: at most a burst and a second's worth of lines.
    int relayed = 0;
    std::string line;
    Deadline window(Millis(1000));
    while (bob.read_line(&line, Millis(window.remaining_ms()))) {
        if (line.rfind("<alice> flood", 0) == 0) ++relayed;
        double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
        char after[32];
        std::snprintf(after, sizeof after, "%.2f", elapsed);
        ASSERT_TRUE(relayed <= kRate + kRate * elapsed + 5)
            << "alice sent " << kLines << " lines at once with --flood-lines " << kRate << "; after " << after
            << " s bob had " << relayed << "\n  hint: allow bursts of N lines, then N per second; stop reading "
            << "a client over the rate until it is back under";
    }
    // Then the rest, in order, at the rate: lines over the rate wait.
    std::string expected = "<alice> flood " + std::to_string(relayed);
    Deadline rest(answer_limit() + Millis(1000 * kLines / kRate));
    while (relayed < kLines && bob.read_line(&line, Millis(std::max(1, rest.remaining_ms())))) {
        if (line.rfind("<alice> flood", 0) != 0) continue;
        ASSERT_TRUE(line == expected) << "alice's lines over the rate must wait, not be dropped: bob got \"" << line
                                  << "\" where \"" << expected << "\" was next\n  hint: when a client is over the rate, "
                                  << "keep the rest of its input and stop reading it (drop EPOLLIN) until it has "
                                  << "credit again";
        expected = "<alice> flood " + std::to_string(++relayed);
    }
    ASSERT_TRUE(relayed == kLines) << "bob got " << relayed << " of alice's " << kLines << " lines: lines over the "
                               << "rate must wait, not be dropped\n  hint: keep the rest of a throttled client's "
                               << "input and read it again once it has credit" << context();
}


// Lazy buffers: an idle connection owns no read or write buffer.
TEST_F(ChatLimits, IdleClientsAreCheap) {
    MUXLAB_REQUIRE_PROC();
    MUXLAB_RESTART(chat_flags({"--max-users", "5000"}));
    constexpr int kIdle = 2000;
    std::vector<Client> warmup;
    for (int i = 0; i < 100 && !HasFailure(); ++i) warmup.push_back(join("w" + std::to_string(i)));
    if (HasFailure()) return;
    auto before = data_kib(server().pid());
    if (!before) GTEST_SKIP() << "memory check skipped: sanitizer build (or /proc unreadable)";
    std::vector<Client> idle;
    idle.reserve(kIdle);
    for (int i = 0; i < kIdle; ++i) {
        idle.push_back(connect("idle" + std::to_string(i)));
        ASSERT_TRUE(idle.back().send("/nick i" + std::to_string(i) + "\n"));
    }
    Deadline deadline(scaled(Millis(20000)));
    for (Client& c : idle) {
        LineReader reader(c);
        std::string line;
        while (reader.next(&line, deadline) && line.rfind("-!- welcome", 0) != 0) {}
        ASSERT_EQ(line.rfind("-!- welcome", 0), 0u) << c.name() << " was never welcomed" << context();
    }
    ASSERT_TRUE(ping(warmup[0], "settled"));
    auto after = data_kib(server().pid());
    ASSERT_TRUE(after.has_value());
    long per_client = (*after - *before) * 1024 / kIdle;
    EXPECT_LE(per_client, 2048) << kIdle << " idle clients grew the server's memory (VmData) from " << *before
                                << " KiB to " << *after << " KiB: " << per_client << " bytes each"
                                << "\n  hint: allocate a client's input and output buffers only while they "
                                   "hold data; an idle client should cost a few hundred bytes";
}


}  // namespace
}  // namespace muxlab::test
