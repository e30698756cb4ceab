/**
 * @file tests/stages/09-chat/irc.cpp
 * @brief Stage 09, the IRC port (--irc-port): registration (NICK, USER and
 *        the 001-005 welcome), PING, JOIN #lobby with NAMES, one room and one
 *        nick space shared with text users, the error replies, PART and QUIT,
 *        and a real IRC client (ii) talking with a text client.
 */
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>

#include "harness/chat.hpp"
#include "harness/process.hpp"

namespace muxlab::test {
namespace {

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
        EXPECT_TRUE(irc::expect(c, irc::kWelcome)) << "\n  hint: NICK and USER complete registration: answer 001-005, "
                                              "then 422 (no MOTD)" << context();
        if (join_lobby) {
            EXPECT_TRUE(c.send("JOIN #lobby\r\n"));
            EXPECT_TRUE(irc::expect(c, irc::kEndOfNames)) << "\n  hint: JOIN #lobby ends with 366 (end of NAMES)";
        }
        return c;
    }
};

TEST_F(ChatIrc, Registration) {
    Client carol = Client::connect(server().endpoint(1), "carol");
    ASSERT_TRUE(carol.send("CAP LS 302\r\nNICK carol\r\nUSER carol 0 * :Carol C\r\n"));
    std::string line;
    ASSERT_TRUE(irc::expect(carol, irc::kWelcome, "", &line))
        << "\n  hint: ignore CAP; NICK + USER register the client, answered by 001 RPL_WELCOME" << context();
    EXPECT_EQ(line.find(" 001 carol "), line.find(' ')) << "001 must be addressed to the nick: " << printable(line);
    for (const char* numeric : {irc::kYourHost, irc::kCreated, irc::kMyInfo, irc::kISupport})
        EXPECT_TRUE(irc::expect(carol, numeric)) << "\n  hint: clients wait for 001-004 and read 005 (ISUPPORT)";
    bool motd = false;
    while (!motd && irc::read(carol, &line)) motd = irc::command_of(line) == irc::kNoMotd || irc::command_of(line) == irc::kEndOfMotd;
    EXPECT_TRUE(motd) << "\n  hint: end the welcome with 422 (no MOTD) or a MOTD ending in 376";
}

TEST_F(ChatIrc, PingPong) {
    Client carol = irc_user("carol", false);
    ASSERT_TRUE(carol.send("PING :token-4242\r\n"));
    EXPECT_TRUE(irc::expect(carol, "PONG", "token-4242"))
        << "\n  hint: PING TOKEN is answered PONG with the same token (clients disconnect otherwise)";
}

TEST_F(ChatIrc, JoinLobby) {
    Client alice = join("alice");
    Client carol = irc_user("carol", false);
    ASSERT_TRUE(carol.send("JOIN #lobby\r\n"));
    std::string line;
    ASSERT_TRUE(irc::expect(carol, "JOIN", "#lobby", &line)) << "\n  hint: JOIN is confirmed by echoing it";
    EXPECT_EQ(line.rfind(":carol", 0), 0u) << "the JOIN must come from carol's prefix: " << printable(line);
    ASSERT_TRUE(irc::expect(carol, irc::kNamesReply, "#lobby", &line)) << "\n  hint: 353 RPL_NAMREPLY lists the members";
    EXPECT_NE(line.find("alice"), std::string::npos) << "the text user alice is in the room: " << printable(line);
    EXPECT_TRUE(irc::expect(carol, irc::kEndOfNames)) << "\n  hint: 366 ends the NAMES list";
    EXPECT_TRUE(alice.expect_line("-!- carol joined")) << "\n  hint: text users see IRC users join";
    ASSERT_TRUE(carol.send("JOIN #elsewhere\r\n"));
    EXPECT_TRUE(irc::expect(carol, irc::kNoSuchChannel, "#elsewhere")) << "\n  hint: there is one channel, #lobby: 403 otherwise";
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
    ASSERT_TRUE(irc::expect(carol, "PRIVMSG", "#lobby", &line))
        << "\n  hint: a text user's chat line reaches IRC users as PRIVMSG #lobby";
    EXPECT_EQ(line.rfind(":alice!", 0), 0u) << printable(line);
    EXPECT_NE(line.find("#lobby :hello irc"), std::string::npos) << printable(line);
    ASSERT_TRUE(carol.send("PRIVMSG #lobby :hello text\r\n"));
    EXPECT_TRUE(alice.expect_line("<carol> hello text")) << "\n  hint: an IRC user's PRIVMSG #lobby reaches text users as <nick> text";
    ASSERT_TRUE(carol.send("PRIVMSG alice :psst\r\n"));
    EXPECT_TRUE(alice.expect_line("*carol* psst"));
    ASSERT_TRUE(alice.send("/msg carol hey\n"));
    ASSERT_TRUE(irc::expect(carol, "PRIVMSG", "carol :hey", &line));
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
    EXPECT_TRUE(irc::expect(other, irc::kNicknameInUse, "ALICE")) << "\n  hint: one nick space for both protocols, ignoring case";
    Client carol = irc_user("carol");
    Client bob = arrive("bob");
    ASSERT_TRUE(bob.send("/nick Carol\n"));
    EXPECT_TRUE(bob.expect_line("ERR 433 Carol nickname in use"));
    ASSERT_TRUE(carol.send("NICK caroline\r\n"));
    EXPECT_TRUE(irc::expect(carol, "NICK", "caroline")) << "\n  hint: a nick change is confirmed with NICK";
    EXPECT_TRUE(line_eventually(alice, "-!- carol is now caroline"));
}

TEST_F(ChatIrc, Errors) {
    Client carol = Client::connect(server().endpoint(1), "carol");
    ASSERT_TRUE(carol.send("JOIN #lobby\r\n"));
    EXPECT_TRUE(irc::expect(carol, irc::kNotRegistered)) << "\n  hint: before NICK+USER, commands get 451 ERR_NOTREGISTERED";
    ASSERT_TRUE(carol.send("NICK\r\n"));
    EXPECT_TRUE(irc::expect(carol, irc::kNoNicknameGiven)) << "\n  hint: 431 ERR_NONICKNAMEGIVEN";
    ASSERT_TRUE(carol.send("NICK bad!nick\r\n"));
    EXPECT_TRUE(irc::expect(carol, irc::kErroneousNickname)) << "\n  hint: 432 ERR_ERRONEUSNICKNAME";
    ASSERT_TRUE(carol.send("NICK carol\r\nUSER carol 0 * :Carol\r\n"));
    ASSERT_TRUE(irc::expect(carol, irc::kWelcome));
    ASSERT_TRUE(carol.send("USER carol 0 * :Carol\r\n"));
    EXPECT_TRUE(irc::expect(carol, irc::kAlreadyRegistered)) << "\n  hint: 462 ERR_ALREADYREGISTRED";
    ASSERT_TRUE(carol.send("PRIVMSG nobody :hi\r\n"));
    EXPECT_TRUE(irc::expect(carol, irc::kNoSuchNick)) << "\n  hint: 401 ERR_NOSUCHNICK";
    ASSERT_TRUE(carol.send("PRIVMSG\r\n"));
    EXPECT_TRUE(irc::expect(carol, irc::kNoRecipient)) << "\n  hint: 411 ERR_NORECIPIENT";
    ASSERT_TRUE(carol.send("JOIN #lobby\r\nPRIVMSG #lobby\r\n"));
    EXPECT_TRUE(irc::expect(carol, irc::kNoTextToSend)) << "\n  hint: 412 ERR_NOTEXTTOSEND";
    ASSERT_TRUE(carol.send("FROBNICATE now\r\n"));
    EXPECT_TRUE(irc::expect(carol, irc::kUnknownCommand)) << "\n  hint: 421 ERR_UNKNOWNCOMMAND";
    ASSERT_TRUE(carol.send("MODE #lobby\r\nWHO #lobby\r\nPING :still\r\n"));
    EXPECT_TRUE(irc::expect(carol, "PONG", "still")) << "\n  hint: MODE and WHO must not break the connection";
}

TEST_F(ChatIrc, QuitAndPart) {
    Client alice = join("alice");
    Client carol = irc_user("carol");
    Client dave = irc_user("dave");
    ASSERT_TRUE(line_eventually(alice, "-!- dave joined"));
    ASSERT_TRUE(carol.send("PART #lobby :later\r\n"));
    EXPECT_TRUE(irc::expect(carol, "PART", "#lobby")) << "\n  hint: PART is confirmed by echoing it";
    EXPECT_TRUE(irc::expect(dave, "PART", "#lobby")) << "\n  hint: the other IRC members see the PART";
    ASSERT_TRUE(dave.send("QUIT :gone fishing\r\n"));
    EXPECT_TRUE(irc::expect(dave, "ERROR")) << "\n  hint: QUIT is answered by ERROR, then the server closes";
    EXPECT_TRUE(dave.expect_closed());
    EXPECT_TRUE(line_eventually(alice, "-!- dave left (quit: gone fishing)"));
}

// A real IRC client (ii, the suckless FIFO client) and a text client chat with each other.
TEST_F(ChatIrc, RealClient) {
    if (!have_program("ii")) GTEST_SKIP() << "requires ii, a real IRC client (apt-get install ii)";
    ScratchDirectory root("muxlab-ii");  // declared first: removed after ii has stopped
    ASSERT_TRUE(root.made()) << root.failure();
    const Endpoint& irc_port = server().endpoint(1);
    ChildProcess ii({"ii", "-s", irc_port.host, "-p", std::to_string(irc_port.port), "-n", "iiuser", "-i",
                     root.path()});
    ASSERT_TRUE(ii.started()) << ii.failure();
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
    std::string server_dir = root.path() + "/" + irc_port.host;
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
