/**
 * @file tests/stages/09-chat/framing.cpp
 * @brief Stage 09, lines on the wire: CR LF and empty lines, a line sent a
 *        byte at a time, several lines in one read, overlong lines, control
 *        bytes and binary junk, a reset in the middle of a line, and a room
 *        of 1,000 members where every line reaches everyone, in order.
 */
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "harness/chat.hpp"

namespace muxlab::test {
namespace {

// ---- framing ---------------------------------------------------------------------------------

TEST_F(Chat, CrLfAndEmptyLines) {
    Client alice = join("alice");
    Client bob = join("bob");
    ASSERT_TRUE(alice.expect_line("-!- bob joined"));
    ASSERT_TRUE(alice.send("\n\r\n\ntelnet says hi\r\n\n"));
    std::vector<std::string> before;
    ASSERT_TRUE(ping(alice, "a"));
    ASSERT_TRUE(ping(bob, "b", &before));
    ASSERT_EQ(before.size(), 1u) << "alice sent empty lines and one line \"telnet says hi\\r\\n\"; bob got "
                                 << before.size() << " lines\n  hint: empty lines are ignored";
    EXPECT_EQ(before[0], "<alice> telnet says hi")
        << "\n  hint: drop the CR before the LF (telnet sends CR LF)";
}

TEST_F(Chat, ByteAtATime) {
    Client alice = join("alice");
    Client bob = join("bob");
    ASSERT_TRUE(alice.expect_line("-!- bob joined"));
    for (char c : std::string("slow typist\n/msg bob psst\n")) {
        ASSERT_TRUE(alice.send(std::string(1, c)));
        std::this_thread::sleep_for(Millis(2));  // pacing the drip, not waiting for an answer
    }
    EXPECT_TRUE(bob.expect_line("<alice> slow typist"))
        << "\n  hint: a line may arrive in many reads; keep the partial line per client until its LF";
    EXPECT_TRUE(bob.expect_line("*alice* psst"));
}

TEST_F(Chat, PipelinedCommands) {
    Client bob = join("bob");
    Client alice = arrive("alice");
    ASSERT_TRUE(alice.send("/nick alice\n/who\n/me stretches\nhello\n/ping p\n"));
    EXPECT_TRUE(alice.expect_line("-!- welcome alice"));
    EXPECT_TRUE(alice.expect_line("-!- users: alice bob"))
        << "\n  hint: one read may bring several lines: run every complete line, in order";
    EXPECT_TRUE(alice.expect_line("PONG p"));
    EXPECT_TRUE(bob.expect_line("-!- alice joined"));
    EXPECT_TRUE(bob.expect_line("* alice stretches"));
    EXPECT_TRUE(bob.expect_line("<alice> hello"));
}

TEST_F(Chat, OverlongLine) {
    Client alice = join("alice");
    Client bob = join("bob");
    ASSERT_TRUE(alice.expect_line("-!- bob joined"));
    std::string longest(511, 'a');  // 512 bytes with its LF: still allowed
    ASSERT_TRUE(alice.send(longest + "\n"));
    EXPECT_TRUE(bob.expect_line("<alice> " + longest)) << "\n  hint: 512 bytes, LF included, is a legal line";
    ASSERT_TRUE(alice.send(std::string(512, 'b') + "\n"));  // 513 bytes
    EXPECT_TRUE(alice.expect_line("ERR 417 line too long"))
        << "\n  hint: a line over 512 bytes (LF included) is dropped with ERR 417";
    ASSERT_TRUE(alice.send(std::string(100000, 'c') + "\nstill here\n"));
    EXPECT_TRUE(alice.expect_line("ERR 417 line too long"))
        << "\n  hint: never let one line grow a buffer without bound; discard up to the LF";
    std::vector<std::string> before;
    ASSERT_TRUE(ping(alice, "a", &before)) << "\n  hint: after an overlong line the connection stays usable";
    EXPECT_TRUE(before.empty()) << "alice got an extra " << printable(before.empty() ? "" : before[0]);
    std::string line;
    ASSERT_TRUE(bob.read_line(&line));
    EXPECT_EQ(line, "<alice> still here")
        << "\n  hint: the overlong lines must not reach the room, and the line after them must";
    EXPECT_TRUE(server().running()) << "the server died on an overlong line" << context();
}

TEST_F(Chat, ControlBytesFiltered) {
    Client alice = join("alice");
    Client bob = join("bob");
    ASSERT_TRUE(alice.expect_line("-!- bob joined"));
    ASSERT_TRUE(alice.send(std::string("look\x1b[2J\x1b]0;pwned\x07 here\x7f\0!\n", 27)));
    ASSERT_TRUE(alice.send(std::string("/me \x1b[31mred\n/msg bob \x08\x08\x08hidden\n")));
    for (const char* start : {"<alice> look", "* alice ", "*alice* "}) {
        std::string line;
        ASSERT_TRUE(bob.read_line(&line)) << "bob expected a line starting " << printable(start);
        EXPECT_EQ(line.rfind(start, 0), 0u) << "bob got " << printable(line);
        EXPECT_TRUE(is_clean_text(line))
            << "bob's terminal received " << printable(line)
            << "\n  hint: replace or escape bytes below 0x20 and 0x7f in relayed text: ESC sequences "
               "clear screens, move cursors and retitle windows";
    }
}

TEST_F(Chat, BinaryGarbage) {
    MUXLAB_RESTART(chat_flags({"--flood-lines", "1000"}));
    Client alice = join("alice");
    Client bob = join("bob");
    ASSERT_TRUE(alice.expect_line("-!- bob joined"));
    ASSERT_TRUE(alice.send(binary_payload(8192, 7) + "\n"));
    ASSERT_TRUE(ping(alice, "alive")) << "\n  hint: NUL bytes and binary junk are just bytes: use lengths, not strlen()"
                                      << context();
    std::vector<std::string> received;
    ASSERT_TRUE(ping(bob, "b", &received));
    for (const std::string& line : received) {
        EXPECT_TRUE(is_clean_text(line)) << "bob's terminal received " << printable(line);
        if (!is_clean_text(line)) break;
    }
}

TEST_F(Chat, ResetMidLine) {
    Client alice = join("alice");
    Client bob = join("bob");
    ASSERT_TRUE(alice.expect_line("-!- bob joined"));
    ASSERT_TRUE(alice.send("half a li"));
    alice.reset();
    EXPECT_TRUE(bob.expect_line("-!- alice left (connection closed)"))
        << "\n  hint: ECONNRESET from read() is a client leaving like any other";
    Client carol = join("carol");
    EXPECT_TRUE(bob.expect_line("-!- carol joined")) << context();
}

// 1,000 members; 10 of them each say 5 lines. Every member gets every line
// of every other sender, each sender's lines in order.
TEST_F(Chat, ThousandClients) {
    MUXLAB_RESTART(chat_flags({"--max-users", "5000", "--flood-lines", "1000"}));
    constexpr int kMembers = 1000, kSenders = 10, kLines = 5;
    std::vector<Client> members;
    members.reserve(kMembers);
    for (int i = 0; i < kMembers; ++i) {
        members.push_back(connect("m" + std::to_string(i)));
        ASSERT_TRUE(members.back().send("/nick m" + std::to_string(i) + "\n")) << context();
    }
    std::vector<LineReader> readers;
    readers.reserve(kMembers);
    for (Client& c : members) readers.emplace_back(c);
    Deadline deadline(scaled(Millis(20000)));
    std::string line;
    for (int i = 0; i < kMembers; ++i) {
        std::string wanted = "-!- welcome m" + std::to_string(i);
        while (readers[i].next(&line, deadline) && line != wanted) {}
        ASSERT_EQ(line, wanted) << "member " << i << " of " << kMembers << " was never welcomed" << context();
    }
    for (int s = 0; s < kSenders; ++s) {
        std::string burst;
        for (int k = 0; k < kLines; ++k) burst += "line " + std::to_string(k) + " from sender\n";
        ASSERT_TRUE(members[s * (kMembers / kSenders)].send(burst));
    }
    for (int i = 0; i < kMembers; ++i) {
        std::map<std::string, int> next_line;  // sender -> next line number due
        int expected = (i % (kMembers / kSenders) == 0 ? kSenders - 1 : kSenders) * kLines;
        int got = 0;
        while (got < expected && readers[i].next(&line, deadline)) {
            if (line.rfind("-!- ", 0) == 0) continue;  // joins of later members
            size_t close = line.find("> line ");
            ASSERT_TRUE(line[0] == '<' && close != std::string::npos)
                << "member m" << i << " got an unexpected line " << printable(line);
            std::string sender = line.substr(1, close - 1);
            int number = std::atoi(line.c_str() + close + 7);
            ASSERT_EQ(number, next_line[sender]++)
                << "member m" << i << " got " << printable(line) << " out of order from " << sender
                << "\n  hint: keep one FIFO queue per client; never reorder or drop queued lines";
            ++got;
        }
        ASSERT_EQ(got, expected) << "member m" << i << " received " << got << " of the " << expected
                                 << " chat lines sent to the room" << context();
    }
}


}  // namespace
}  // namespace muxlab::test
