/**
 * @file chat.hpp
 * @brief The chat room's test vocabulary (stage 09): members who arrive and
 *        register, lines expected within a deadline, the "/ping" barrier, and
 *        the IRC port's replies by name.
 *
 * A chat test reads as a conversation: `join("alice")` connects and takes a
 * nick, `line_eventually(bob, "<alice> hi")` waits for what bob must see, and
 * `ping(alice, "a")` is the barrier: the server runs one client's lines in
 * order, so when alice reads "PONG a" after her own lines, everything those
 * lines caused has been queued.
 */
#pragma once

#include <string>
#include <vector>

#include "harness/server_test.hpp"

namespace muxlab::test {

/// The greeting every new text connection gets first.
constexpr const char* kChatWelcome = "-!- welcome to muxlab chat; choose a nick with /nick NAME";

// ---- the text protocol ----------------------------------------------------------------

/**
 * Sends "/ping TOKEN" and reads lines until "PONG TOKEN"; the lines before it
 * go to @p before. Fails when no PONG comes back @p within.
 */
::testing::AssertionResult ping(Client& client, const std::string& token,
                                std::vector<std::string>* before = nullptr, Millis within = answer_limit());

/// Reads lines until one equals @p wanted; the lines skipped go to @p skipped.
::testing::AssertionResult line_eventually(Client& client, const std::string& wanted,
                                           std::vector<std::string>* skipped = nullptr,
                                           Millis within = answer_limit());

/// True when @p line has no control byte (below 0x20, or 0x7f): safe for a terminal.
bool is_clean_text(const std::string& line);

/// Reads lines in bulk (cheaper than Client::read_line for thousands of lines).
class LineReader {
public:
    explicit LineReader(Client& client) : client_(client) {}
    /// The next line without its LF, or false at the deadline.
    bool next(std::string* line, const Deadline& deadline);

private:
    Client& client_;
    std::string buffer_;
    size_t start_ = 0;
};

/// Launch options for a chat server with the stage flags @p args.
LaunchOptions chat_flags(std::vector<std::string> args);

/// The server's memory (VmData: its heap and anonymous mappings) in KiB;
/// nullopt for a sanitizer build, whose allocator keeps freed memory on purpose.
std::optional<long> data_kib(pid_t pid);

/**
 * @brief Fixture for the chat room: a fresh server per test, and members who
 *        arrive (connect and get the greeting) or join (arrive and take a nick).
 */
class ChatTest : public ServerTest {
protected:
    /// Connects @p name and checks the greeting.
    Client arrive(const std::string& name);
    /// Connects, takes the nick @p nick and checks the welcome.
    Client join(const std::string& nick);
};

/// The text protocol's tests (text.cpp, framing.cpp).
class Chat : public ChatTest {};
/// The limits and the lifecycle of the room (limits.cpp, shutdown.cpp).
class ChatLimits : public ChatTest {
protected:
    /// The room of the stopped-reader tests.
    struct StoppedReaderRoom {
        Client alice;  ///< a tiny receive window, and she never reads
        Client bob;    ///< talks
        Client carol;  ///< reads everything
    };
    /// Gathers alice, bob and carol (the test has failed when they are not all in the room).
    StoppedReaderRoom stopped_reader_room();
};

// ---- the IRC port ------------------------------------------------------------------------

/// IRC replies by name (RFC 2812, section 5), as they appear on the wire.
namespace irc {
constexpr const char* kWelcome = "001";             ///< RPL_WELCOME
constexpr const char* kYourHost = "002";            ///< RPL_YOURHOST
constexpr const char* kCreated = "003";             ///< RPL_CREATED
constexpr const char* kMyInfo = "004";              ///< RPL_MYINFO
constexpr const char* kISupport = "005";            ///< RPL_ISUPPORT
constexpr const char* kNamesReply = "353";          ///< RPL_NAMREPLY
constexpr const char* kEndOfNames = "366";          ///< RPL_ENDOFNAMES
constexpr const char* kEndOfMotd = "376";           ///< RPL_ENDOFMOTD
constexpr const char* kNoSuchNick = "401";          ///< ERR_NOSUCHNICK
constexpr const char* kNoSuchChannel = "403";       ///< ERR_NOSUCHCHANNEL
constexpr const char* kNoRecipient = "411";         ///< ERR_NORECIPIENT
constexpr const char* kNoTextToSend = "412";        ///< ERR_NOTEXTTOSEND
constexpr const char* kUnknownCommand = "421";      ///< ERR_UNKNOWNCOMMAND
constexpr const char* kNoMotd = "422";              ///< ERR_NOMOTD
constexpr const char* kNoNicknameGiven = "431";     ///< ERR_NONICKNAMEGIVEN
constexpr const char* kErroneousNickname = "432";   ///< ERR_ERRONEUSNICKNAME
constexpr const char* kNicknameInUse = "433";       ///< ERR_NICKNAMEINUSE
constexpr const char* kNotRegistered = "451";       ///< ERR_NOTREGISTERED
constexpr const char* kAlreadyRegistered = "462";   ///< ERR_ALREADYREGISTRED

/// Reads one IRC line (CR LF removed); false at the deadline.
bool read(Client& client, std::string* line, Millis within = answer_limit());

/// The numeric (or command) of an IRC line: ":server 001 nick :text" -> "001".
std::string command_of(const std::string& line);

/// Reads IRC lines until one whose command is @p command (and which contains @p text); it goes to @p found.
::testing::AssertionResult expect(Client& client, const std::string& command, const std::string& text = "",
                                  std::string* found = nullptr);
}  // namespace irc

}  // namespace muxlab::test
