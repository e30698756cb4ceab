/**
 * @file tests/stages/10-chat-client/contract.cpp
 * @brief Lab 10 contract: `muxlab-chat HOST PORT`, a terminal client for the
 *        chat room's text protocol that multiplexes the keyboard and the socket.
 *
 * The program under test is the client. Each test plays the server itself
 * (a listening socket in the test), and runs the client in a real terminal:
 * a tmux session, whose screen the test reads back with capture-pane. A test
 * that needs tmux is skipped, with a message, when tmux is not installed.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "harness/server_test.hpp"

namespace muxlab::test {
namespace {

using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;

// ---- the test plays the server -------------------------------------------------------

/// The server's end of the client's connection: line in, line out, with deadlines.
class Connection {
public:
    Connection() = default;
    explicit Connection(int fd) : fd_(fd) {}
    ~Connection() { close(); }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    Connection& operator=(Connection&& other) noexcept {
        close();
        std::swap(fd_, other.fd_);
        pending_ = std::move(other.pending_);
        return *this;
    }

    AssertionResult send(const std::string& data) {
        if (fd_ < 0) return AssertionFailure() << "not connected";
        size_t sent = 0;
        Deadline deadline(answer_limit());
        while (sent < data.size()) {
            ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
            if (n > 0) {
                sent += static_cast<size_t>(n);
                continue;
            }
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                return AssertionFailure() << "sending to the client failed: " << std::strerror(errno);
            if (deadline.expired()) return AssertionFailure() << "the client stopped reading the socket";
            pollfd p{fd_, POLLOUT, 0};
            poll(&p, 1, deadline.remaining_ms());
        }
        return AssertionSuccess();
    }
    /// Reads one line from the client and compares it with @p line.
    AssertionResult expect_line(const std::string& line) {
        Deadline deadline(answer_limit());
        size_t newline;
        while ((newline = pending_.find('\n')) == std::string::npos) {
            char buffer[4096];
            ssize_t n = fd_ < 0 ? 0 : recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
            if (n > 0) {
                pending_.append(buffer, static_cast<size_t>(n));
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EINTR) || deadline.expired())
                return AssertionFailure() << "the server expected the line " << printable(line + "\n")
                                          << " from the client but got "
                                          << (pending_.empty() ? "nothing" : printable(pending_))
                                          << (n == 0 ? " (then the client closed)" : "");
            pollfd p{fd_, POLLIN, 0};
            poll(&p, 1, deadline.remaining_ms());
        }
        std::string got = pending_.substr(0, newline);
        pending_.erase(0, newline + 1);
        if (got != line)
            return AssertionFailure() << "the server expected the line " << printable(line + "\n")
                                      << " from the client but got " << printable(got + "\n");
        return AssertionSuccess();
    }
    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    /// Bytes sent to the client that still wait unread in its socket (from
    /// /proc/net/tcp), or -1 when that cannot be seen.
    long unread_by_client() const {
        sockaddr_in peer{};
        socklen_t length = sizeof peer;
        if (fd_ < 0 || getpeername(fd_, reinterpret_cast<sockaddr*>(&peer), &length) != 0) return -1;
        for (const proc::TcpSocket& socket : proc::tcp_sockets(getpid()))
            if (socket.state != proc::kTcpListen && socket.local_port == ntohs(peer.sin_port))
                return static_cast<long>(socket.rx_queue);
        return -1;
    }

private:
    int fd_ = -1;
    std::string pending_;
};

/// A listening socket on 127.0.0.1 and the one connection the client makes.
class FakeServer {
public:
    FakeServer() {
        listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof address;
        if (bind(listener_, reinterpret_cast<sockaddr*>(&address), length) == 0 && listen(listener_, 4) == 0 &&
            getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) == 0)
            port_ = ntohs(address.sin_port);
    }
    ~FakeServer() {
        if (listener_ >= 0) ::close(listener_);
    }
    FakeServer(const FakeServer&) = delete;
    FakeServer& operator=(const FakeServer&) = delete;

    unsigned port() const { return port_; }

    /// Waits for the client to connect; the connection is then a harness Client.
    AssertionResult accept_client(Connection* out) {
        pollfd p{listener_, POLLIN, 0};
        if (poll(&p, 1, answer_limit().count()) != 1)
            return AssertionFailure() << "the client did not connect to 127.0.0.1:" << port_ << " within "
                                      << answer_limit().count() << " ms";
        int fd = accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return AssertionFailure() << "accept failed";
        *out = Connection(fd);
        return AssertionSuccess();
    }

private:
    int listener_ = -1;
    unsigned port_ = 0;
};

// ---- a real terminal: tmux ----------------------------------------------------------------

std::string shell_quote(const std::string& text) {
    std::string quoted = "'";
    for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return quoted + "'";
}

/// Runs @p command with /bin/sh, returns its stdout; @p status gets the exit status.
std::string run(const std::string& command, int* status = nullptr) {
    std::string output;
    FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr) return output;
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
    int rc = pclose(pipe);
    if (status != nullptr) *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    return output;
}

bool have_tmux() {
    int status = -1;
    run("command -v tmux >/dev/null 2>&1", &status);
    return status == 0;
}

/// The row the terminal shows once the client has exited: its status, and
/// the three modes a chat client turns off as `stty` then finds them
/// ("-echo" while echo is still off).
constexpr const char* kExitRow = "[the client exited with status ";

/// One tmux server (its own socket), one 80x24 window running the client.
class Terminal {
public:
    explicit Terminal(const std::string& command) {
        static int counter = 0;
        socket_ = "muxlab-test-" + std::to_string(getpid()) + "-" + std::to_string(++counter);
        // When the client has exited, the shell prints kExitRow and stays: a
        // row written just before a pane dies can be lost, this one cannot.
        std::string then = std::string("status=$?; printf '%s%s; terminal: %s]\\n' '") + kExitRow +
                           "' \"$status\" \"$(stty -a | tr ' ;' '\\n\\n' | grep -x -E '[-]?(icanon|echo|isig)' | "
                           "tr '\\n' ' ')\"; exec sleep 86400";
        run(tmux() + " -f /dev/null new-session -d -x 80 -y 24 " + shell_quote(command + "; " + then) + " 2>&1");
    }
    ~Terminal() { run(tmux() + " kill-server 2>/dev/null"); }
    Terminal(const Terminal&) = delete;
    Terminal& operator=(const Terminal&) = delete;

    /// Types @p text as keys (no Enter).
    void type(const std::string& text) { run(tmux() + " send-keys -l -- " + shell_quote(text)); }
    /// Presses a named key: Enter, C-c...
    void press(const std::string& key) { run(tmux() + " send-keys " + key); }
    /// The screen, one string per row, trailing spaces removed.
    std::vector<std::string> screen() {
        std::vector<std::string> rows;
        std::string text = run(tmux() + " capture-pane -p 2>/dev/null");
        size_t start = 0, newline;
        while ((newline = text.find('\n', start)) != std::string::npos) {
            std::string row = text.substr(start, newline - start);
            while (!row.empty() && row.back() == ' ') row.pop_back();
            rows.push_back(row);
            start = newline + 1;
        }
        return rows;
    }
    /// The row the cursor is on.
    int cursor_row() { return std::atoi(run(tmux() + " display-message -p '#{cursor_y}'").c_str()); }
    /// The client's exit status once it has ended, else -1.
    int exit_status() {
        std::string row = exit_row();
        return row.empty() ? -1 : std::atoi(row.c_str() + std::strlen(kExitRow));
    }
    /// Once the client has ended: the terminal modes it left turned off
    /// ("-icanon -echo"), or "" when it left them all on.
    std::string modes_left_off() {
        std::string row = exit_row(), off;
        size_t at = row.find("terminal: ");
        std::string modes = at == std::string::npos ? "" : row.substr(at + 10);
        for (const char* mode : {"-icanon", "-echo", "-isig"})
            if ((" " + modes).find(std::string(" ") + mode + " ") != std::string::npos) off += std::string(" ") + mode;
        return off.empty() ? off : off.substr(1);
    }
    /// The screen as text for failure messages.
    std::string show() {
        std::string text;
        for (const std::string& row : screen())
            if (!row.empty()) text += "\n    |" + row;
        return text.empty() ? "\n    (the screen is empty)" : text;
    }
    /// The row the shell prints after the client has exited, or "".
    std::string exit_row() {
        for (const std::string& row : screen())
            if (size_t at = row.find(kExitRow); at != std::string::npos) return row.substr(at);
        return "";
    }
    /// Waits until some row of the screen equals @p row.
    bool shows_row(const std::string& row) {
        return eventually(answer_limit(), [&] {
            for (const std::string& r : screen())
                if (r == row) return true;
            return false;
        });
    }

private:
    std::string tmux() const { return "tmux -L " + socket_; }
    std::string socket_;
};

constexpr const char* kWelcome = "-!- welcome to muxlab chat; choose a nick with /nick NAME";

class ChatClient : public ::testing::Test {
protected:
    void SetUp() override {
        if (!have_tmux()) GTEST_SKIP() << "requires tmux (apt-get install tmux): the client is tested in a real terminal";
        ASSERT_NE(server_.port(), 0u);
        terminal_ = std::make_unique<Terminal>(server_under_test() + " 127.0.0.1 " + std::to_string(server_.port()));
        ASSERT_TRUE(server_.accept_client(&connection_));
        // The greeting, and proof that the client and its terminal are up
        // (output written before tmux is ready to draw it can be lost).
        ASSERT_TRUE(connection_.send(std::string(kWelcome) + "\n"));
        if (terminal_->shows_row(kWelcome)) return;
        int status = terminal_->exit_status();
        if (status >= 0)
            FAIL() << "the server sent its welcome line, and the client exited (status " << status
                   << ") without showing it; the screen shows:" << terminal_->show()
                   << "\n  hint: the client runs until the server closes: loop, waiting in poll() on the "
                      "socket AND stdin, and print each line the server sends";
        long unread = connection_.unread_by_client();
        if (unread > 0)
            FAIL() << "the server sent its welcome line; the client is running, but the line's " << unread
                   << " bytes wait unread in its socket (/proc/net/tcp), and its screen shows:" << terminal_->show()
                   << "\n  hint: the client is not reading the socket: wait in poll() on the socket AND stdin "
                      "(a blocking read of the keyboard hides the server)";
        FAIL() << "the server sent its welcome line; the client is running and has read it from the "
                  "socket, but its screen shows:" << terminal_->show()
               << "\n  hint: print each complete line the server sends, as soon as it arrives (keep an "
                  "unfinished line until its LF comes)";
    }
    Terminal& terminal() { return *terminal_; }
    Connection& connection() { return connection_; }

private:
    FakeServer server_;
    std::unique_ptr<Terminal> terminal_;
    Connection connection_;
};

// ---- the contract ----------------------------------------------------------------------

TEST_F(ChatClient, ShowsServerLines) {
    ASSERT_TRUE(connection().send("-!- welcome alice\n<bob> hi alice\n"));
    EXPECT_TRUE(terminal().shows_row("<bob> hi alice"))
        << "the server sent \"<bob> hi alice\"; the client's screen shows:" << terminal().show()
        << "\n  hint: print every complete line the server sends, as soon as it arrives";
}

TEST_F(ChatClient, SendsTypedLines) {
    terminal().type("/nick alice");
    terminal().press("Enter");
    EXPECT_TRUE(connection().expect_line("/nick alice"))
        << "\n  hint: send each line the user types, ended by LF, when Enter is pressed";
    terminal().type("hello, room");
    terminal().press("Enter");
    EXPECT_TRUE(connection().expect_line("hello, room"));
}

// The lesson: a line arriving while the user types must not land in the middle of the typing.
TEST_F(ChatClient, IncomingLineDoesNotGarbleTyping) {
    terminal().type("half typed");
    ASSERT_TRUE(eventually(answer_limit(), [&] {
        for (const std::string& row : terminal().screen())
            if (row.find("half typed") != std::string::npos) return true;
        return false;
    })) << "the user typed \"half typed\" but the screen does not show it:" << terminal().show();
    ASSERT_TRUE(connection().send("<bob> a line from bob\n"));
    bool clean = eventually(answer_limit(), [&] {
        std::vector<std::string> rows = terminal().screen();
        int cursor = terminal().cursor_row();
        bool shown = false;
        for (const std::string& row : rows) shown = shown || row == "<bob> a line from bob";
        return shown && cursor >= 0 && cursor < static_cast<int>(rows.size()) &&
               rows[cursor].find("half typed") != std::string::npos &&
               rows[cursor].find("bob") == std::string::npos;
    });
    EXPECT_TRUE(clean) << "while the user had typed \"half typed\", the server sent \"<bob> a line from bob\"; "
                          "the screen shows:" << terminal().show()
                       << "\n  hint: the server's line must get a row of its own, and the half-typed text "
                          "must be drawn again below it: turn off the terminal's echo and line editing "
                          "(termios), keep the typed text yourself, and on each server line erase the prompt "
                          "row (\\r\\x1b[K), print the line, redraw the prompt";
    terminal().type(" text");
    terminal().press("Enter");
    EXPECT_TRUE(connection().expect_line("half typed text"))
        << "\n  hint: the typed line must survive the interruption intact";
}

TEST_F(ChatClient, Backspace) {
    terminal().type("helo");
    terminal().press("BSpace");
    terminal().press("BSpace");
    terminal().type("llo");
    terminal().press("Enter");
    EXPECT_TRUE(connection().expect_line("hello"))
        << "\n  hint: with line editing off, Backspace (0x7f) reaches you as a byte: remove the last character";
}

TEST_F(ChatClient, ServerCloseEndsClient) {
    ASSERT_TRUE(connection().send("ERROR :bye\n"));
    connection().close();
    bool ended = eventually(answer_limit(), [&] { return terminal().exit_status() >= 0; });
    ASSERT_TRUE(ended) << "the server closed the connection but the client is still running:" << terminal().show()
                       << "\n  hint: read() returning 0 on the socket means the server is gone: say so and exit";
    EXPECT_EQ(terminal().exit_status(), 0) << "the client exited with status " << terminal().exit_status();
    EXPECT_TRUE(terminal().shows_row("ERROR :bye")) << "the server's last line is not on the screen:"
                                                    << terminal().show();
}

// The terminal is the user's, lent to the client: every mode it turned off comes back on exit.
TEST_F(ChatClient, RestoresTerminalOnExit) {
    terminal().type("half typed");  // keys in flight: the client's terminal mode is in use
    ASSERT_TRUE(connection().send("ERROR :bye\n"));
    connection().close();
    ASSERT_TRUE(eventually(answer_limit(), [&] { return terminal().exit_status() >= 0; }))
        << "the server closed the connection but the client is still running:" << terminal().show()
        << "\n  hint: read() returning 0 on the socket means the server is gone: say so and exit";
    ASSERT_NE(terminal().exit_row().find("icanon"), std::string::npos)
        << "stty could not read the terminal's mode after the client exited:" << terminal().show();
    std::string off = terminal().modes_left_off();
    EXPECT_EQ(off, "") << "the server closed the connection and the client exited, leaving the terminal "
                       << "with " << off << " (stty): the user's shell now gets no echo or no line editing. "
                       << "The screen shows:" << terminal().show()
                       << "\n  hint: save the mode with tcgetattr() before changing it, and put it back with "
                          "tcsetattr() on every way out: in the destructor of an object that owns the mode, and "
                          "return from main() rather than call exit(), which skips the destructors of main's "
                          "objects";
}

TEST_F(ChatClient, ControlBytesFromServerFiltered) {
    ASSERT_TRUE(connection().send("<mallory> \x1b[2J\x1b[Hgotcha\n<bob> after\n"));
    ASSERT_TRUE(terminal().shows_row("<bob> after")) << terminal().show();
    bool kept = false;
    for (const std::string& row : terminal().screen()) kept = kept || row.rfind("<mallory>", 0) == 0;
    EXPECT_TRUE(kept) << "an escape sequence from the server cleared the screen:" << terminal().show()
                      << "\n  hint: replace control bytes in what the server sends before printing it";
}

TEST_F(ChatClient, CtrlCQuits) {
    terminal().press("C-c");
    EXPECT_TRUE(connection().expect_line("/quit"))
        << "\n  hint: Ctrl-C sends /quit (with the terminal's ISIG off it arrives as byte 3)";
    ASSERT_TRUE(connection().send("ERROR :bye\n"));
    connection().close();
    EXPECT_TRUE(eventually(answer_limit(), [&] { return terminal().exit_status() == 0; }))
        << "after /quit and the server's close, the client must exit with status 0:" << terminal().show();
}

}  // namespace
}  // namespace muxlab::test
