/**
 * @file tests/stages/09-chat/contract.cpp
 * @brief Stage 09 contract: the chat room (text protocol, limits and
 *        lifecycle, IRC port), one process and one event loop.
 *
 * Tests read like the conversation they check: who connects, what each one
 * types, what each one must see. "/ping TOKEN" is the barrier: the server
 * runs one client's lines in order, so when alice reads "PONG x" after her
 * own lines, everything those lines caused has been queued.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "harness/battery.hpp"
#include "harness/event_loop.hpp"

namespace muxlab::test {
namespace {

using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;

constexpr const char* kWelcome = "-!- welcome to muxlab chat; choose a nick with /nick NAME";

// ---- conversation helpers ----------------------------------------------------------

/// Sends "/ping TOKEN" and reads lines until "PONG TOKEN"; the lines before it go to @p before.
AssertionResult ping(Client& c, const std::string& token, std::vector<std::string>* before = nullptr,
                     Millis within = answer_limit()) {
    AssertionResult sent = c.send("/ping " + token + "\n");
    if (!sent) return sent;
    Deadline deadline(within);
    std::string line;
    while (c.read_line(&line, Millis(deadline.remaining_ms()))) {
        if (line == "PONG " + token) return AssertionSuccess();
        if (before != nullptr) before->push_back(line);
    }
    return AssertionFailure() << c.name() << " sent \"/ping " << token << "\" but no \"PONG " << token
                              << "\" came back in " << within.count() << " ms"
                              << (c.unread().empty() ? "" : " (partial data: " + printable(c.unread()) + ")")
                              << "\n  hint: /ping TOKEN answers PONG TOKEN; it is how tests wait without sleeping";
}

/// Reads lines until one equals @p wanted; the lines skipped go to @p skipped.
AssertionResult line_eventually(Client& c, const std::string& wanted,
                                std::vector<std::string>* skipped = nullptr,
                                Millis within = answer_limit()) {
    Deadline deadline(within);
    std::string line;
    std::vector<std::string> seen;
    while (c.read_line(&line, Millis(deadline.remaining_ms()))) {
        if (line == wanted) {
            if (skipped != nullptr) *skipped = seen;
            return AssertionSuccess();
        }
        seen.push_back(line);
    }
    std::string got;
    for (size_t i = 0; i < seen.size() && i < 6; ++i) got += "\n    " + printable(seen[i] + "\n");
    if (seen.size() > 6) got += "\n    ... (" + std::to_string(seen.size()) + " lines)";
    return AssertionFailure() << c.name() << " waited " << within.count() << " ms for the line "
                              << printable(wanted + "\n") << (seen.empty() ? " and got nothing" : " and got instead:")
                              << got;
}

/// True when @p line has no control byte (below 0x20, or 0x7f).
bool clean(const std::string& line) {
    return std::none_of(line.begin(), line.end(), [](char c) {
        auto byte = static_cast<unsigned char>(c);
        return byte < 0x20 || byte == 0x7f;
    });
}

/// Reads lines in bulk (cheaper than Client::read_line for thousands of lines).
class LineReader {
public:
    explicit LineReader(Client& c) : client_(c) {}
    /// The next line without its LF, or false at the deadline.
    bool next(std::string* line, const Deadline& deadline) {
        for (;;) {
            size_t newline = buffer_.find('\n', start_);
            if (newline != std::string::npos) {
                line->assign(buffer_, start_, newline - start_);
                start_ = newline + 1;
                return true;
            }
            buffer_.erase(0, start_);
            start_ = 0;
            if (deadline.expired()) return false;
            std::string more = client_.read_some(1 << 20, Millis(deadline.remaining_ms()));
            if (more.empty()) return false;
            buffer_ += more;
        }
    }

private:
    Client& client_;
    std::string buffer_;
    size_t start_ = 0;
};

/// The largest send buffer TCP autotuning may give a socket (tcp_wmem's max).
size_t max_send_buffer() {
    std::ifstream wmem("/proc/sys/net/ipv4/tcp_wmem");
    size_t low = 0, initial = 0, max = 4u << 20;
    wmem >> low >> initial >> max;
    return max;
}

/// Launch options with stage flags @p args.
LaunchOptions with_args(std::vector<std::string> args) {
    LaunchOptions options;
    options.args = std::move(args);
    return options;
}

/// The server's memory (VmData: its heap and anonymous mappings) in KiB;
/// nullopt for a sanitizer build, whose allocator keeps freed memory on purpose.
std::optional<long> data_kib(pid_t pid) {
    if (is_sanitizer_build(server_under_test())) return std::nullopt;
    auto field = proc::status_field(pid, "VmData");
    if (!field) return std::nullopt;
    return std::strtol(field->c_str(), nullptr, 10);
}

/**
 * What the server's side of @p c looks like when nothing came back: never
 * accepted, or accepted with output waiting to be written (its socket is
 * watched for EPOLLOUT), or accepted with nothing queued at all. Empty when
 * /proc cannot say.
 */
std::string output_report(ServerProcess& server, const Client& c) {
    auto list = interest_list(server);
    if (!list || !list->has_epoll) return queue_report(server, {});
    auto found = list->clients.find(c.local_port());
    if (found == list->clients.end()) return queue_report(server, {});
    if (found->second & EPOLLOUT)
        return "\n  the server accepted " + c.name() + " and watches its socket for EPOLLOUT (output is "
               "queued for it) but wrote nothing: the queued message never reaches the socket";
    return "\n  the server accepted " + c.name() + " and wrote nothing, and no output waits for it "
           "(its socket is not watched for EPOLLOUT): nothing was queued";
}

// ---- the fixture -----------------------------------------------------------------------

class ChatTest : public ServerTest {
protected:
    /// Connects and checks the greeting.
    Client arrive(const std::string& name) {
        Client c = connect(name);
        EXPECT_TRUE(c.expect_line(kWelcome))
            << "\n  hint: greet every new connection with exactly " << printable(std::string(kWelcome) + "\n")
            << context();
        return c;
    }
    /// Connects, takes @p nick and checks the welcome.
    Client join(const std::string& nick) {
        Client c = arrive(nick);
        if (HasFailure()) return c;  // no greeting: do not wait a second time
        EXPECT_TRUE(c.send("/nick " + nick + "\n"));
        EXPECT_TRUE(c.expect_line("-!- welcome " + nick))
            << "\n  hint: the first /nick NAME is answered with \"-!- welcome NAME\"" << context();
        return c;
    }
};

class Chat : public ChatTest {};

// ---- the server contract ----------------------------------------------------------------

TEST(ChatStart, ReadyLine) {
    ServerProcess server(server_under_test());
    EXPECT_TRUE(server.ready()) << server.failure()
        << "\n  hint: after listen(), print exactly 'listening on HOST:PORT' with the real port on stdout, "
           "and flush it";
}
TEST(ChatStart, HelpAndBadOptions) {
    battery::help_exits_zero(server_under_test());
    battery::bad_option_exits_two(server_under_test());
}

// ---- the text protocol: registering ----------------------------------------------------------

TEST_F(Chat, Welcome) {
    Client alice = connect("alice");
    AssertionResult greeted = alice.expect_line(kWelcome);
    if (greeted) return;
    bool silent = std::string(greeted.message()).find("nothing complete arrived") != std::string::npos;
    std::string seen = silent ? output_report(server(), alice) : "";
    EXPECT_TRUE(greeted) << seen << "\n  hint: "
                  << (seen.find("EPOLLOUT (output is queued") != std::string::npos
                          ? "the welcome is queued when a client is accepted; write what is queued in the "
                            "turn's flush (one sendmsg per client), and keep EPOLLOUT for what the socket "
                            "did not take"
                          : "as soon as a client connects, queue it " +
                                printable(std::string(kWelcome) + "\n") +
                                " (its output queue), and put the client on this turn's flush list")
                  << context();
}

TEST_F(Chat, NickRegistersAndAnnounces) {
    Client alice = join("alice");
    Client bob = join("bob");
    EXPECT_TRUE(alice.expect_line("-!- bob joined"))
        << "\n  hint: when bob takes his first nick, everyone else gets \"-!- bob joined\": a broadcast queues "
           "the line for every other member of the room";
    std::vector<std::string> before;
    ASSERT_TRUE(ping(bob, "b", &before));
    EXPECT_TRUE(before.empty()) << "bob got " << printable(before.empty() ? "" : before[0])
                                << " about his own arrival; \"joined\" goes to the others only";
}

TEST_F(Chat, RegisterFirst) {
    Client alice = arrive("alice");
    ASSERT_TRUE(alice.send("hello?\n"));
    EXPECT_TRUE(alice.expect_line("ERR 451 register first with /nick NAME"))
        << "\n  hint: before /nick, every line but /nick is refused with ERR 451";
    ASSERT_TRUE(alice.send("/who\n"));
    EXPECT_TRUE(alice.expect_line("ERR 451 register first with /nick NAME"))
        << "\n  hint: commands too (here /who) need a nick first";
}

TEST_F(Chat, NickChange) {
    Client alice = join("alice");
    Client bob = join("bob");
    ASSERT_TRUE(alice.expect_line("-!- bob joined"));
    ASSERT_TRUE(alice.send("/nick alicia\n"));
    EXPECT_TRUE(alice.expect_line("-!- alice is now alicia"))
        << "\n  hint: a nick change is announced to everyone, the sender included";
    EXPECT_TRUE(bob.expect_line("-!- alice is now alicia"));
    ASSERT_TRUE(bob.send("/msg alicia hi\n"));
    EXPECT_TRUE(alice.expect_line("*bob* hi")) << "\n  hint: after the change, the new nick reaches alice";
    Client carol = join("alice");  // the old nick is free again
}

TEST_F(Chat, BadNick) {
    Client alice = arrive("alice");
    ASSERT_TRUE(alice.send("/nick bad!nick\n"));
    EXPECT_TRUE(alice.expect_line("ERR 432 bad!nick erroneous nickname"))
        << "\n  hint: nicks are 1-16 of A-Z a-z 0-9 _ -";
    ASSERT_TRUE(alice.send("/nick abcdefghijklmnopq\n"));
    EXPECT_TRUE(alice.expect_line("ERR 432 abcdefghijklmnopq erroneous nickname"))
        << "\n  hint: 17 characters is one too many";
    ASSERT_TRUE(alice.send("/nick abcdefghijklmnop\n"));
    EXPECT_TRUE(alice.expect_line("-!- welcome abcdefghijklmnop")) << "\n  hint: 16 characters is allowed";
}

TEST_F(Chat, NickInUse) {
    Client alice = join("alice");
    Client bob = arrive("bob");
    ASSERT_TRUE(bob.send("/nick alice\n"));
    EXPECT_TRUE(bob.expect_line("ERR 433 alice nickname in use"))
        << "\n  hint: a nick belongs to one client at a time";
    ASSERT_TRUE(bob.send("/nick ALICE\n"));
    EXPECT_TRUE(bob.expect_line("ERR 433 ALICE nickname in use"))
        << "\n  hint: nicks are unique ignoring ASCII case: ALICE and alice are the same nick";
    ASSERT_TRUE(bob.send("/nick bob\n"));
    EXPECT_TRUE(bob.expect_line("-!- welcome bob"));
    ASSERT_TRUE(bob.send("/nick Alice\n"));
    EXPECT_TRUE(bob.expect_line("ERR 433 Alice nickname in use")) << "\n  hint: a rename must check too";
}

// Two clients ask for one nick in the same instant: exactly one may win.
TEST_F(Chat, NickRace) {
    for (int round = 0; round < 5; ++round) {
        std::string nick = "racer" + std::to_string(round);
        Client first = arrive("first");
        Client second = arrive("second");
        std::string command = "/nick " + nick + "\n";
        first.send_some(command);
        second.send_some(command);
        std::string a, b;
        ASSERT_TRUE(first.read_line(&a)) << "first got no answer to " << printable(command);
        ASSERT_TRUE(second.read_line(&b)) << "second got no answer to " << printable(command);
        std::string won = "-!- welcome " + nick, lost = "ERR 433 " + nick + " nickname in use";
        EXPECT_TRUE((a == won && b == lost) || (a == lost && b == won))
            << "two clients asked for " << nick << " at once; they got " << printable(a) << " and "
            << printable(b) << ": exactly one must win\n  hint: check and take the nick in one step";
    }
}

TEST_F(Chat, NickFreedOnDisconnect) {
    Client alice = join("alice");
    Client bob = join("bob");
    ASSERT_TRUE(alice.expect_line("-!- bob joined"));
    alice.close();
    ASSERT_TRUE(bob.expect_line("-!- alice left (connection closed)"))
        << "\n  alice closed her connection and bob got no notice"
        << "\n  hint: read() returning 0 (or an error) makes a client leave; when a leaver is closed at the end "
           "of the turn, tell the others \"-!- NICK left (connection closed)\"";
    // A newcomer first: were alice's nick kept, pointing to her freed client,
    // the newcomer's client could take that memory and, with it, the nick.
    Client newcomer = arrive("newcomer");
    Client again = arrive("again");
    ASSERT_TRUE(again.send("/nick alice\n"));
    EXPECT_TRUE(again.expect_line("-!- welcome alice"))
        << "\n  alice left, and a new client asked for her nick"
        << "\n  hint: the nick of a client that left is free again: when a leaver is closed at the end of "
           "the turn, take its nick out of the nick table";
    EXPECT_TRUE(bob.expect_line("-!- alice joined")) << "\n  hint: the nick of a client that left is free again";
}

// ---- the text protocol: talking --------------------------------------------------------------

TEST_F(Chat, ChatLineReachesOthers) {
    Client alice = join("alice");
    Client bob = join("bob");
    Client carol = join("carol");
    ASSERT_TRUE(alice.send("hello, room\n"));
    EXPECT_TRUE(line_eventually(bob, "<alice> hello, room"))
        << "\n  hint: a plain line goes to every other member as \"<SENDER> line\"";
    EXPECT_TRUE(line_eventually(carol, "<alice> hello, room"));
}

TEST_F(Chat, ChatLineNotEchoed) {
    Client alice = join("alice");
    Client bob = join("bob");
    ASSERT_TRUE(alice.expect_line("-!- bob joined"));
    std::vector<std::string> before;
    ASSERT_TRUE(alice.send("hello, room\n"));
    ASSERT_TRUE(ping(alice, "a", &before));
    EXPECT_TRUE(before.empty()) << "alice said \"hello, room\" and got back " << printable(before[0])
                                << "\n  hint: a chat line goes to the others, never back to its sender "
                                   "(her terminal already shows what she typed)";
    EXPECT_TRUE(bob.expect_line("<alice> hello, room"));
}

TEST_F(Chat, Who) {
    Client bob = join("bob");
    Client alice = join("Alice");
    Client carol = join("carol");
    ASSERT_TRUE(line_eventually(bob, "-!- carol joined"));
    ASSERT_TRUE(bob.send("/who\n"));
    EXPECT_TRUE(bob.expect_line("-!- users: Alice bob carol"))
        << "\n  hint: /who lists every nick, sorted ignoring case, as \"-!- users: a b c\"";
}

TEST_F(Chat, PrivateMessage) {
    Client alice = join("alice");
    Client bob = join("bob");
    Client carol = join("carol");
    ASSERT_TRUE(line_eventually(alice, "-!- carol joined"));
    ASSERT_TRUE(line_eventually(bob, "-!- carol joined"));
    ASSERT_TRUE(alice.send("/msg bob meet me at noon\n"));
    EXPECT_TRUE(bob.expect_line("*alice* meet me at noon")) << "\n  hint: /msg NICK TEXT gives NICK \"*SENDER* TEXT\"";
    ASSERT_TRUE(alice.send("/msg BOB case does not matter\n"));
    EXPECT_TRUE(bob.expect_line("*alice* case does not matter")) << "\n  hint: nick lookups ignore case";
    std::vector<std::string> before;
    ASSERT_TRUE(ping(alice, "a"));
    ASSERT_TRUE(ping(carol, "c", &before));
    EXPECT_TRUE(before.empty()) << "carol saw " << printable(before.empty() ? "" : before[0])
                                << ": a private message goes to its target only";
    ASSERT_TRUE(alice.send("/msg nobody hello\n"));
    EXPECT_TRUE(alice.expect_line("ERR 401 nobody no such nick"));
}

TEST_F(Chat, Me) {
    Client alice = join("alice");
    Client bob = join("bob");
    ASSERT_TRUE(alice.expect_line("-!- bob joined"));
    ASSERT_TRUE(alice.send("/me waves\n"));
    EXPECT_TRUE(bob.expect_line("* alice waves")) << "\n  hint: /me TEXT gives the others \"* SENDER TEXT\"";
    std::vector<std::string> before;
    ASSERT_TRUE(ping(alice, "a", &before));
    EXPECT_TRUE(before.empty()) << "alice got " << printable(before.empty() ? "" : before[0])
                                << "; /me goes to the others";
}

TEST_F(Chat, Ping) {
    Client alice = join("alice");
    ASSERT_TRUE(alice.send("/ping 12345\n"));
    EXPECT_TRUE(alice.expect_line("PONG 12345"));
}

TEST_F(Chat, Quit) {
    Client alice = join("alice");
    Client bob = join("bob");
    ASSERT_TRUE(alice.expect_line("-!- bob joined"));
    ASSERT_TRUE(alice.send("/quit time for lunch\n"));
    EXPECT_TRUE(alice.expect_line("ERROR :bye")) << "\n  hint: /quit answers \"ERROR :bye\", then closes";
    EXPECT_TRUE(alice.expect_closed()) << "\n  hint: after \"ERROR :bye\", close the connection";
    EXPECT_TRUE(bob.expect_line("-!- alice left (quit: time for lunch)"));
}

TEST_F(Chat, Help) {
    Client alice = join("alice");
    ASSERT_TRUE(alice.send("/help\n"));
    std::vector<std::string> lines;
    ASSERT_TRUE(ping(alice, "h", &lines));
    std::string all;
    for (const std::string& line : lines) all += line + "\n";
    for (const char* command : {"/nick", "/who", "/msg", "/me", "/quit"})
        EXPECT_NE(all.find(command), std::string::npos)
            << "/help answered " << printable(all) << ", which does not mention " << command;
}

TEST_F(Chat, SlashEscapeAndUnknownCommand) {
    Client alice = join("alice");
    Client bob = join("bob");
    ASSERT_TRUE(alice.expect_line("-!- bob joined"));
    ASSERT_TRUE(alice.send("//etc/passwd is a path\n"));
    EXPECT_TRUE(bob.expect_line("<alice> /etc/passwd is a path"))
        << "\n  hint: \"//text\" is the chat line \"/text\"";
    ASSERT_TRUE(alice.send("/dance\n"));
    EXPECT_TRUE(alice.expect_line("ERR 421 dance unknown command"));
}

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
        EXPECT_TRUE(clean(line))
            << "bob's terminal received " << printable(line)
            << "\n  hint: replace or escape bytes below 0x20 and 0x7f in relayed text: ESC sequences "
               "clear screens, move cursors and retitle windows";
    }
}

TEST_F(Chat, BinaryGarbage) {
    MUXLAB_RESTART(with_args({"--flood-lines", "1000"}));
    Client alice = join("alice");
    Client bob = join("bob");
    ASSERT_TRUE(alice.expect_line("-!- bob joined"));
    ASSERT_TRUE(alice.send(binary_payload(8192, 7) + "\n"));
    ASSERT_TRUE(ping(alice, "alive")) << "\n  hint: NUL bytes and binary junk are just bytes: use lengths, not strlen()"
                                      << context();
    std::vector<std::string> received;
    ASSERT_TRUE(ping(bob, "b", &received));
    for (const std::string& line : received) {
        EXPECT_TRUE(clean(line)) << "bob's terminal received " << printable(line);
        if (!clean(line)) break;
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
    MUXLAB_RESTART(with_args({"--max-users", "5000", "--flood-lines", "1000"}));
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


// ---- limits and lifecycle ---------------------------------------------------------------

class ChatLimits : public ChatTest {
protected:
    /// bob talks in chunks while alice, who never reads, falls behind; carol
    /// reads everything. Sends at most @p max_bytes, or until carol's line
    /// @p stop_at arrives; fails if carol misses or misorders a line.
    void flood_past_stopped_reader(Client& bob, Client& carol, size_t max_bytes, const std::string& stop_at,
                                   bool* stopped) {
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
                << context();
            sent += chunk.size();
            Deadline deadline(answer_limit());
            for (int i = 0; i < kChunk; ++i, ++number) {
                for (;;) {
                    ASSERT_TRUE(reader.next(&line, deadline))
                        << "carol waited " << answer_limit().count() << " ms for bob's line " << number
                        << " while alice was not reading\n  hint: one client that does not read must not "
                           "stall the others: never block in write(); queue, and write when writable"
                        << context();
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
};

TEST_F(ChatLimits, StoppedReaderDoesNotBlockOthers) {
    MUXLAB_RESTART(with_args({"--sendq", "33554432", "--flood-lines", "1000000"}));
    ConnectOptions tiny_window;
    tiny_window.receive_buffer = 4096;
    Client alice = connect("alice", tiny_window);
    ASSERT_TRUE(alice.send("/nick alice\n"));
    Client bob = join("bob");
    Client carol = join("carol");
    ASSERT_TRUE(line_eventually(bob, "-!- carol joined"));
    bool stopped = false;
    // More than the kernel buffers of alice's connection can hold (her
    // receive buffer is tiny; the server's send buffer grows to tcp_wmem's max).
    flood_past_stopped_reader(bob, carol, std::max<size_t>(8u << 20, 2 * max_send_buffer()),
                              "-!- alice left (sendq exceeded)", &stopped);
}

TEST_F(ChatLimits, SendqDropsStoppedReader) {
    MUXLAB_RESTART(with_args({"--sendq", "65536", "--flood-lines", "1000000"}));
    ConnectOptions tiny_window;
    tiny_window.receive_buffer = 4096;
    Client alice = connect("alice", tiny_window);
    ASSERT_TRUE(alice.send("/nick alice\n"));
    Client bob = join("bob");
    Client carol = join("carol");
    ASSERT_TRUE(line_eventually(bob, "-!- carol joined"));
    auto memory_before = data_kib(server().pid());
    bool dropped = false;
    flood_past_stopped_reader(bob, carol, 48u << 20, "-!- alice left (sendq exceeded)", &dropped);
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
    MUXLAB_RESTART(with_args({"--sendq", std::to_string(sendq), "--flood-lines", "1000"}));
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
    for (Client& member : members) {
        std::vector<std::string> lines;
        AssertionResult answered = ping(member, "after", &lines, answer_limit() * 2);
        ASSERT_TRUE(answered) << "\n  " << kMembers << " members each pasted " << kLines << " lines at once, "
                              << "and every member was reading: was " << member.name() << " dropped?" << hint
                              << context();
        int relayed = 0;
        for (const std::string& line : lines) {
            bool dropped = line.find("left (sendq exceeded)") != std::string::npos;
            ASSERT_FALSE(dropped) << kMembers << " members each pasted " << kLines << " lines at once, and every "
                                  << "member was reading; " << member.name() << " got " << printable(line) << hint;
            if (line[0] == '<') ++relayed;
        }
        EXPECT_EQ(relayed, (kMembers - 1) * kLines)
            << member.name() << " got " << relayed << " of the " << (kMembers - 1) * kLines
            << " lines the others pasted\n  hint: every member reads, so every line reaches every other member"
            << context();
    }
}

TEST_F(ChatLimits, MaxUsers) {
    MUXLAB_RESTART(with_args({"--max-users", "3"}));
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
        if (!next.read_line(&line) || line != kWelcome) return false;
        return true;
    });
    EXPECT_TRUE(admitted) << "after one of the three clients left, a new client was still refused"
                          << "\n  hint: count a client out when it leaves";
}

TEST_F(ChatLimits, IdleTimeout) {
    MUXLAB_RESTART(with_args({"--idle-timeout", "2"}));
    Client alice = join("alice");
    Client bob = join("bob");
    ASSERT_TRUE(alice.expect_line("-!- bob joined"));
    EXPECT_TRUE(alice.expect_silence(Millis(1000)))
        << "\n  hint: --idle-timeout is in seconds; alice was idle for less than 1 s";
    // bob stays busy while alice stays silent.
    Deadline deadline(answer_limit() + Millis(2000));
    std::string line;
    bool got = false;
    for (int round = 0; !got && !deadline.expired(); ++round) {
        ASSERT_TRUE(ping(bob, "busy" + std::to_string(round)));
        got = alice.read_line(&line, Millis(200));
    }
    ASSERT_TRUE(got) << "alice was idle for " << (answer_limit().count() + 3000) / 1000
                     << " s with --idle-timeout 2 and nothing came\n  hint: use the epoll_wait timeout: "
                        "the time until the oldest client's deadline";
    EXPECT_EQ(line, "ERROR :idle timeout");
    EXPECT_TRUE(alice.expect_closed());
    EXPECT_TRUE(line_eventually(bob, "-!- alice left (idle timeout)"));
}

TEST_F(ChatLimits, NoWakeupsWhileIdle) {
    MUXLAB_REQUIRE_PROC();
    MUXLAB_RESTART(with_args({"--idle-timeout", "3600"}));
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
    MUXLAB_RESTART(with_args({"--flood-lines", std::to_string(kRate)}));
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

TEST_F(ChatLimits, GracefulShutdown) {
    std::vector<Client> members;
    for (int i = 0; i < 5 && !HasFailure(); ++i) members.push_back(join("member" + std::to_string(i)));
    for (int i = 0; i < 5 && !HasFailure(); ++i) members.push_back(arrive("anonymous" + std::to_string(i)));
    if (HasFailure()) return;
    ASSERT_TRUE(ping(members[0], "settled"));
    auto exit = server().terminate(answer_limit());
    ASSERT_TRUE(exit.has_value()) << "the server was still running " << answer_limit().count()
                                  << " ms after SIGTERM\n  hint: read SIGTERM from a signalfd (or a self-pipe) "
                                     "in the event loop, flush, and exit";
    EXPECT_TRUE(exit->exited && exit->exit_status == 0)
        << "after SIGTERM the server " << exit->describe() << "; it must exit with status 0" << context();
    for (Client& c : members) {
        ASSERT_TRUE(line_eventually(c, "ERROR :server shutting down"))
            << "\n  hint: on SIGINT/SIGTERM, queue \"ERROR :server shutting down\" to every client and "
               "flush before exiting";
        ASSERT_TRUE(c.expect_closed());
    }
}

TEST_F(ChatLimits, SignalsThroughEventLoop) {
    MUXLAB_REQUIRE_PROC();
    Client alice = join("alice");
    auto term = proc::signal_caught_or_blocked(server().pid(), SIGTERM);
    auto interrupt = proc::signal_caught_or_blocked(server().pid(), SIGINT);
    ASSERT_TRUE(term.has_value() && interrupt.has_value());
    EXPECT_TRUE(*term && *interrupt)
        << "SIGTERM and SIGINT keep their default action (the process dies on the spot)"
        << "\n  hint: block them and read a signalfd in the loop, or catch them with a handler that "
           "writes to a self-pipe";
}

// 1,000 sessions in a row (the benchmark runs 10,000): fds and memory return to where they were.
TEST_F(ChatLimits, ShortSessionsNoGrowth) {
    MUXLAB_REQUIRE_PROC();
    auto count_fds = [&] {
        auto entries = proc::fds(server().pid());
        return entries ? static_cast<long>(entries->size()) : -1L;
    };
    auto session = [&](int i) {
        Client c = connect("session " + std::to_string(i));
        ASSERT_TRUE(c.expect_line(kWelcome));
        ASSERT_TRUE(c.send("/nick s" + std::to_string(i) + "\nhello\n"));
        ASSERT_TRUE(c.expect_line("-!- welcome s" + std::to_string(i)));
        if (i % 2 == 0) {
            ASSERT_TRUE(c.send("/quit\n"));
            ASSERT_TRUE(c.expect_line("ERROR :bye"));
        }
    };
    for (int i = 0; i < 200; ++i) {
        session(i);
        if (HasFatalFailure()) return;
    }
    long fds_before = count_fds();
    auto memory_before = data_kib(server().pid());
    for (int i = 200; i < 1200; ++i) {
        session(i);
        if (HasFatalFailure()) return;
    }
    long fds_after = fds_before;
    bool settled = eventually(answer_limit(), [&] { return (fds_after = count_fds()) <= fds_before; });
    EXPECT_TRUE(settled) << "after 1,000 more short sessions the server holds " << fds_after
                         << " fds (it held " << fds_before << ")\n  hint: close every client that leaves";
    auto memory_after = data_kib(server().pid());
    if (memory_before && memory_after) {
        EXPECT_LT(*memory_after - *memory_before, 1024)
            << "after 1,000 more short sessions the server's memory grew from " << *memory_before
            << " KiB to " << *memory_after << " KiB\n  hint: free everything a client owned when it leaves";
    }
}

// Lazy buffers: an idle connection owns no read or write buffer.
TEST_F(ChatLimits, IdleClientsAreCheap) {
    MUXLAB_REQUIRE_PROC();
    MUXLAB_RESTART(with_args({"--max-users", "5000"}));
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


// ---- the IRC port ---------------------------------------------------------------------

/// Reads one IRC line (CR LF removed); false at the deadline.
bool irc_read(Client& c, std::string* line, Millis within = answer_limit()) {
    if (!c.read_line(line, within)) return false;
    if (!line->empty() && line->back() == '\r') line->pop_back();
    return true;
}

/// The numeric (or command) of an IRC line: ":server 001 nick :text" -> "001".
std::string irc_command(const std::string& line) {
    size_t start = 0;
    if (!line.empty() && line[0] == ':') start = line.find(' ') + 1;
    size_t end = line.find(' ', start);
    return line.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

/// Reads IRC lines until one whose command is @p command (and which contains @p text).
AssertionResult irc_expect(Client& c, const std::string& command, const std::string& text = "",
                           std::string* found = nullptr) {
    Deadline deadline(answer_limit());
    std::string line;
    std::vector<std::string> seen;
    while (irc_read(c, &line, Millis(deadline.remaining_ms()))) {
        if (irc_command(line) == command && line.find(text) != std::string::npos) {
            if (found != nullptr) *found = line;
            return AssertionSuccess();
        }
        seen.push_back(line);
    }
    std::string got;
    for (size_t i = 0; i < seen.size() && i < 8; ++i) got += "\n    " + printable(seen[i]);
    return AssertionFailure() << c.name() << " waited for an IRC " << command
                              << (text.empty() ? "" : " line containing " + printable(text))
                              << (seen.empty() ? " and got nothing" : "; it got instead:") << got;
}

class ChatIrc : public ChatTest {
protected:
    LaunchOptions launch_options() const override {
        LaunchOptions options;
        options.args = {"--irc-port", "0", "--flood-lines", "1000"};
        options.ready_prefixes = {"listening on", "irc listening on"};
        return options;
    }
    /// Connects to the IRC port and registers as @p nick.
    Client irc_user(const std::string& nick, bool join_lobby = true) {
        Client c = Client::connect(server().endpoint(1), nick);
        EXPECT_TRUE(c.send("NICK " + nick + "\r\nUSER " + nick + " 0 * :" + nick + "\r\n"));
        EXPECT_TRUE(irc_expect(c, "001")) << "\n  hint: NICK and USER complete registration: answer 001-005, "
                                              "then 422 (no MOTD)" << context();
        if (join_lobby) {
            EXPECT_TRUE(c.send("JOIN #lobby\r\n"));
            EXPECT_TRUE(irc_expect(c, "366")) << "\n  hint: JOIN #lobby ends with 366 (end of NAMES)";
        }
        return c;
    }
};

TEST_F(ChatIrc, Registration) {
    Client carol = Client::connect(server().endpoint(1), "carol");
    ASSERT_TRUE(carol.send("CAP LS 302\r\nNICK carol\r\nUSER carol 0 * :Carol C\r\n"));
    std::string line;
    ASSERT_TRUE(irc_expect(carol, "001", "", &line))
        << "\n  hint: ignore CAP; NICK + USER register the client, answered by 001 RPL_WELCOME" << context();
    EXPECT_EQ(line.find(" 001 carol "), line.find(' ')) << "001 must be addressed to the nick: " << printable(line);
    for (const char* numeric : {"002", "003", "004", "005"})
        EXPECT_TRUE(irc_expect(carol, numeric)) << "\n  hint: clients wait for 001-004 and read 005 (ISUPPORT)";
    bool motd = false;
    while (!motd && irc_read(carol, &line)) motd = irc_command(line) == "422" || irc_command(line) == "376";
    EXPECT_TRUE(motd) << "\n  hint: end the welcome with 422 (no MOTD) or a MOTD ending in 376";
}

TEST_F(ChatIrc, PingPong) {
    Client carol = irc_user("carol", false);
    ASSERT_TRUE(carol.send("PING :token-4242\r\n"));
    EXPECT_TRUE(irc_expect(carol, "PONG", "token-4242"))
        << "\n  hint: PING TOKEN is answered PONG with the same token (clients disconnect otherwise)";
}

TEST_F(ChatIrc, JoinLobby) {
    Client alice = join("alice");
    Client carol = irc_user("carol", false);
    ASSERT_TRUE(carol.send("JOIN #lobby\r\n"));
    std::string line;
    ASSERT_TRUE(irc_expect(carol, "JOIN", "#lobby", &line)) << "\n  hint: JOIN is confirmed by echoing it";
    EXPECT_EQ(line.rfind(":carol", 0), 0u) << "the JOIN must come from carol's prefix: " << printable(line);
    ASSERT_TRUE(irc_expect(carol, "353", "#lobby", &line)) << "\n  hint: 353 RPL_NAMREPLY lists the members";
    EXPECT_NE(line.find("alice"), std::string::npos) << "the text user alice is in the room: " << printable(line);
    EXPECT_TRUE(irc_expect(carol, "366")) << "\n  hint: 366 ends the NAMES list";
    EXPECT_TRUE(alice.expect_line("-!- carol joined")) << "\n  hint: text users see IRC users join";
    ASSERT_TRUE(carol.send("JOIN #elsewhere\r\n"));
    EXPECT_TRUE(irc_expect(carol, "403", "#elsewhere")) << "\n  hint: there is one channel, #lobby: 403 otherwise";
}

TEST_F(ChatIrc, TextAndIrcShareRoom) {
    Client alice = join("alice");
    Client carol = irc_user("carol");
    ASSERT_TRUE(alice.expect_line("-!- carol joined"))
        << "\n  carol joined #lobby on the IRC port; alice is a text user in the same room"
        << "\n  hint: text users and IRC users are in one room: a broadcast goes to every member, whatever "
           "protocol each speaks (each in its own form)";
    ASSERT_TRUE(alice.send("hello irc\n"));
    std::string line;
    ASSERT_TRUE(irc_expect(carol, "PRIVMSG", "#lobby", &line))
        << "\n  hint: a text user's chat line reaches IRC users as PRIVMSG #lobby";
    EXPECT_EQ(line.rfind(":alice!", 0), 0u) << printable(line);
    EXPECT_NE(line.find("#lobby :hello irc"), std::string::npos) << printable(line);
    ASSERT_TRUE(carol.send("PRIVMSG #lobby :hello text\r\n"));
    EXPECT_TRUE(alice.expect_line("<carol> hello text")) << "\n  hint: an IRC user's PRIVMSG #lobby reaches text users as <nick> text";
    ASSERT_TRUE(carol.send("PRIVMSG alice :psst\r\n"));
    EXPECT_TRUE(alice.expect_line("*carol* psst"));
    ASSERT_TRUE(alice.send("/msg carol hey\n"));
    ASSERT_TRUE(irc_expect(carol, "PRIVMSG", "carol :hey", &line));
    EXPECT_EQ(line.rfind(":alice!", 0), 0u) << printable(line);
    ASSERT_TRUE(carol.send("NOTICE #lobby :a notice\r\n"));
    std::string text;
    ASSERT_TRUE(alice.read_line(&text));
    EXPECT_NE(text.find("a notice"), std::string::npos) << "alice got " << printable(text);
}

TEST_F(ChatIrc, NicksSharedAcrossProtocols) {
    Client alice = join("alice");
    Client other = Client::connect(server().endpoint(1), "irc-alice");
    ASSERT_TRUE(other.send("NICK ALICE\r\n"));
    EXPECT_TRUE(irc_expect(other, "433", "ALICE")) << "\n  hint: one nick space for both protocols, ignoring case";
    Client carol = irc_user("carol");
    Client bob = arrive("bob");
    ASSERT_TRUE(bob.send("/nick Carol\n"));
    EXPECT_TRUE(bob.expect_line("ERR 433 Carol nickname in use"));
    ASSERT_TRUE(carol.send("NICK caroline\r\n"));
    EXPECT_TRUE(irc_expect(carol, "NICK", "caroline")) << "\n  hint: a nick change is confirmed with NICK";
    EXPECT_TRUE(line_eventually(alice, "-!- carol is now caroline"));
}

TEST_F(ChatIrc, Errors) {
    Client carol = Client::connect(server().endpoint(1), "carol");
    ASSERT_TRUE(carol.send("JOIN #lobby\r\n"));
    EXPECT_TRUE(irc_expect(carol, "451")) << "\n  hint: before NICK+USER, commands get 451 ERR_NOTREGISTERED";
    ASSERT_TRUE(carol.send("NICK\r\n"));
    EXPECT_TRUE(irc_expect(carol, "431")) << "\n  hint: 431 ERR_NONICKNAMEGIVEN";
    ASSERT_TRUE(carol.send("NICK bad!nick\r\n"));
    EXPECT_TRUE(irc_expect(carol, "432")) << "\n  hint: 432 ERR_ERRONEUSNICKNAME";
    ASSERT_TRUE(carol.send("NICK carol\r\nUSER carol 0 * :Carol\r\n"));
    ASSERT_TRUE(irc_expect(carol, "001"));
    ASSERT_TRUE(carol.send("USER carol 0 * :Carol\r\n"));
    EXPECT_TRUE(irc_expect(carol, "462")) << "\n  hint: 462 ERR_ALREADYREGISTRED";
    ASSERT_TRUE(carol.send("PRIVMSG nobody :hi\r\n"));
    EXPECT_TRUE(irc_expect(carol, "401")) << "\n  hint: 401 ERR_NOSUCHNICK";
    ASSERT_TRUE(carol.send("PRIVMSG\r\n"));
    EXPECT_TRUE(irc_expect(carol, "411")) << "\n  hint: 411 ERR_NORECIPIENT";
    ASSERT_TRUE(carol.send("JOIN #lobby\r\nPRIVMSG #lobby\r\n"));
    EXPECT_TRUE(irc_expect(carol, "412")) << "\n  hint: 412 ERR_NOTEXTTOSEND";
    ASSERT_TRUE(carol.send("FROBNICATE now\r\n"));
    EXPECT_TRUE(irc_expect(carol, "421")) << "\n  hint: 421 ERR_UNKNOWNCOMMAND";
    ASSERT_TRUE(carol.send("MODE #lobby\r\nWHO #lobby\r\nPING :still\r\n"));
    EXPECT_TRUE(irc_expect(carol, "PONG", "still")) << "\n  hint: MODE and WHO must not break the connection";
}

TEST_F(ChatIrc, QuitAndPart) {
    Client alice = join("alice");
    Client carol = irc_user("carol");
    Client dave = irc_user("dave");
    ASSERT_TRUE(line_eventually(alice, "-!- dave joined"));
    ASSERT_TRUE(carol.send("PART #lobby :later\r\n"));
    EXPECT_TRUE(irc_expect(carol, "PART", "#lobby")) << "\n  hint: PART is confirmed by echoing it";
    EXPECT_TRUE(irc_expect(dave, "PART", "#lobby")) << "\n  hint: the other IRC members see the PART";
    ASSERT_TRUE(dave.send("QUIT :gone fishing\r\n"));
    EXPECT_TRUE(irc_expect(dave, "ERROR")) << "\n  hint: QUIT is answered by ERROR, then the server closes";
    EXPECT_TRUE(dave.expect_closed());
    EXPECT_TRUE(line_eventually(alice, "-!- dave left (quit: gone fishing)"));
}

// A real IRC client (ii, the suckless FIFO client) and a text client chat with each other.
TEST_F(ChatIrc, RealClient) {
    if (std::system("command -v ii >/dev/null 2>&1") != 0)
        GTEST_SKIP() << "requires ii, a real IRC client (apt-get install ii)";
    char directory[] = "/tmp/muxlab-ii-XXXXXX";
    ASSERT_NE(mkdtemp(directory), nullptr);
    std::string root = directory, host = server().endpoint(1).host;
    std::string port = std::to_string(server().endpoint(1).port);
    /// ii runs while this object lives; its files go with it.
    struct IiProcess {
        pid_t pid;
        std::string root;
        ~IiProcess() {
            if (pid > 0) {
                kill(pid, SIGTERM);
                waitpid(pid, nullptr, 0);
            }
            if (std::system(("rm -rf '" + root + "'").c_str()) != 0) {}
        }
    } ii{fork(), root};
    if (ii.pid == 0) {
        execlp("ii", "ii", "-s", host.c_str(), "-p", port.c_str(), "-n", "iiuser", "-i", root.c_str(),
               static_cast<char*>(nullptr));
        _exit(127);
    }
    ASSERT_GT(ii.pid, 0);
    // ii's interface is files: a FIFO "in" to write commands to, a file "out" to read.
    auto write_fifo = [&](const std::string& path, const std::string& text) {
        return eventually(answer_limit(), [&] {
            int fd = open(path.c_str(), O_WRONLY | O_NONBLOCK);
            if (fd < 0) return false;
            bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
            close(fd);
            return ok;
        });
    };
    auto file_has = [&](const std::string& path, const std::string& text) {
        return eventually(answer_limit(), [&] {
            std::ifstream file(path);
            std::string content((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
            return content.find(text) != std::string::npos;
        });
    };
    std::string server_dir = root + "/" + host;
    Client alice = join("alice");
    bool joined = write_fifo(server_dir + "/in", "/j #lobby\n") && file_has(server_dir + "/#lobby/out", "iiuser");
    EXPECT_TRUE(joined) << "ii could not register and join #lobby" << context();
    if (joined) {
        EXPECT_TRUE(line_eventually(alice, "-!- iiuser joined"));
        EXPECT_TRUE(write_fifo(server_dir + "/#lobby/in", "hello from ii\n"));
        EXPECT_TRUE(line_eventually(alice, "<iiuser> hello from ii")) << "\n  hint: ii's PRIVMSG #lobby must reach text users";
        ASSERT_TRUE(alice.send("hello ii\n"));
        EXPECT_TRUE(file_has(server_dir + "/#lobby/out", "<alice> hello ii"))
            << "\n  hint: ii shows PRIVMSG #lobby from :alice!user@host as <alice> text";
    }
}

}  // namespace
}  // namespace muxlab::test
