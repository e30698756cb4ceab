#include "harness/chat.hpp"

#include <algorithm>
#include <cstdlib>

#include "harness/sandbox.hpp"

namespace muxlab::test {

using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;

// ---- the text protocol ----------------------------------------------------------------

AssertionResult ping(Client& client, const std::string& token, std::vector<std::string>* before, Millis within) {
    AssertionResult sent = client.send("/ping " + token + "\n");
    if (!sent) return sent;
    Deadline deadline(within);
    std::string line;
    while (client.read_line(&line, Millis(deadline.remaining_ms()))) {
        if (line == "PONG " + token) return AssertionSuccess();
        if (before != nullptr) before->push_back(line);
    }
    return AssertionFailure() << client.name() << " sent \"/ping " << token << "\" but no \"PONG " << token
                              << "\" came back in " << within.count() << " ms"
                              << (client.unread().empty() ? "" : " (partial data: " + printable(client.unread()) + ")")
                              << "\n  hint: /ping TOKEN answers PONG TOKEN; it is how tests wait without sleeping";
}

AssertionResult line_eventually(Client& client, const std::string& wanted, std::vector<std::string>* skipped,
                                Millis within) {
    Deadline deadline(within);
    std::string line;
    std::vector<std::string> seen;
    while (client.read_line(&line, Millis(deadline.remaining_ms()))) {
        if (line == wanted) {
            if (skipped != nullptr) *skipped = seen;
            return AssertionSuccess();
        }
        seen.push_back(line);
    }
    std::string got;
    for (size_t i = 0; i < seen.size() && i < 6; ++i) got += "\n    " + printable(seen[i] + "\n");
    if (seen.size() > 6) got += "\n    ... (" + std::to_string(seen.size()) + " lines)";
    return AssertionFailure() << client.name() << " waited " << within.count() << " ms for the line "
                              << printable(wanted + "\n") << (seen.empty() ? " and got nothing" : " and got instead:")
                              << got;
}

bool is_clean_text(const std::string& line) {
    return std::none_of(line.begin(), line.end(), [](char c) {
        auto byte = static_cast<unsigned char>(c);
        return byte < 0x20 || byte == 0x7f;
    });
}

bool LineReader::next(std::string* line, const Deadline& deadline) {
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

LaunchOptions chat_flags(std::vector<std::string> args) {
    LaunchOptions options;
    options.args = std::move(args);
    return options;
}

std::optional<long> data_kib(pid_t pid) {
    if (is_sanitizer_build(server_under_test())) return std::nullopt;
    auto field = proc::status_field(pid, "VmData");
    if (!field) return std::nullopt;
    return std::strtol(field->c_str(), nullptr, 10);
}

Client ChatTest::arrive(const std::string& name) {
    Client c = connect(name);
    EXPECT_TRUE(c.expect_line(kChatWelcome))
        << "\n  hint: greet every new connection with exactly " << printable(std::string(kChatWelcome) + "\n")
        << context();
    return c;
}

Client ChatTest::join(const std::string& nick) {
    Client c = arrive(nick);
    if (HasFailure()) return c;  // no greeting: do not wait a second time
    EXPECT_TRUE(c.send("/nick " + nick + "\n"));
    EXPECT_TRUE(c.expect_line("-!- welcome " + nick))
        << "\n  hint: the first /nick NAME is answered with \"-!- welcome NAME\"" << context();
    return c;
}

ChatLimits::StoppedReaderRoom ChatLimits::stopped_reader_room() {
    ConnectOptions tiny_window;
    tiny_window.receive_buffer = 4096;
    Client alice = connect("alice", tiny_window);
    EXPECT_TRUE(alice.send("/nick alice\n"));
    Client bob = join("bob");
    Client carol = join("carol");
    if (!HasFailure()) {
        EXPECT_TRUE(line_eventually(bob, "-!- carol joined"));
    }
    return {std::move(alice), std::move(bob), std::move(carol)};
}

// ---- the IRC port ------------------------------------------------------------------------

namespace irc {

bool read(Client& client, std::string* line, Millis within) {
    if (!client.read_line(line, within)) return false;
    if (!line->empty() && line->back() == '\r') line->pop_back();
    return true;
}

std::string command_of(const std::string& line) {
    size_t start = 0;
    if (!line.empty() && line[0] == ':') start = line.find(' ') + 1;
    size_t end = line.find(' ', start);
    return line.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

AssertionResult expect(Client& client, const std::string& command, const std::string& text, std::string* found) {
    Deadline deadline(answer_limit());
    std::string line;
    std::vector<std::string> seen;
    while (read(client, &line, Millis(deadline.remaining_ms()))) {
        if (command_of(line) == command && line.find(text) != std::string::npos) {
            if (found != nullptr) *found = line;
            return AssertionSuccess();
        }
        seen.push_back(line);
    }
    std::string got;
    for (size_t i = 0; i < seen.size() && i < 8; ++i) got += "\n    " + printable(seen[i]);
    return AssertionFailure() << client.name() << " waited for an IRC " << command
                              << (text.empty() ? "" : " line containing " + printable(text))
                              << (seen.empty() ? " and got nothing" : "; it got instead:") << got;
}

}  // namespace irc
}  // namespace muxlab::test
