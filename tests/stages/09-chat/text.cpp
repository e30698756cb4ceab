/**
 * @file tests/stages/09-chat/text.cpp
 * @brief Stage 09, the text protocol: the server starts and greets, members
 *        register a nick (unique ignoring case, freed when they leave), and
 *        talk: chat lines to the others, /who, /msg, /me, /ping, /quit, /help.
 *
 * Tests read like the conversation they check: who connects, what each one
 * types, what each one must see (the vocabulary is in harness/chat.hpp).
 */
#include <sys/epoll.h>

#include <string>
#include <vector>

#include "harness/battery.hpp"
#include "harness/chat.hpp"
#include "harness/event_loop.hpp"

namespace muxlab::test {
namespace {

using ::testing::AssertionResult;

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
    AssertionResult greeted = alice.expect_line(kChatWelcome);
    if (greeted) return;
    bool silent = std::string(greeted.message()).find("nothing complete arrived") != std::string::npos;
    std::string seen = silent ? output_report(server(), alice) : "";
    EXPECT_TRUE(greeted) << seen << "\n  hint: "
                  << (seen.find("EPOLLOUT (output is queued") != std::string::npos
                          ? "the welcome is queued when a client is accepted; write what is queued in the "
                            "turn's flush (one sendmsg per client), and keep EPOLLOUT for what the socket "
                            "did not take"
                          : "as soon as a client connects, queue it " +
                                printable(std::string(kChatWelcome) + "\n") +
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

}  // namespace
}  // namespace muxlab::test
