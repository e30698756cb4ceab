/**
 * @file labs/10-chat-client/muxlab-chat.cpp
 * @brief Lab 10: a terminal client for the chat room, multiplexing the
 *        keyboard and the server with poll(). Read README.md first.
 *
 *     muxlab-chat HOST PORT
 *
 * Connecting, the terminal mode class and the output helpers are done; the
 * numbered TODOs are the lesson. Build: make labs   Grade: make grade LAB=10
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "muxlab/fd.hpp"
#include "muxlab/net.hpp"

// (A named namespace in the skeleton, so that functions your TODOs will call
// are not "defined but not used" errors yet; the reference uses namespace {}.)
namespace chat_client {

constexpr const char* kPrompt = "> ";
[[maybe_unused]] constexpr size_t kMaxTyped = 510;  ///< the server takes lines of 512 bytes, LF included

volatile sig_atomic_t stop_requested = 0;
void request_stop(int) { stop_requested = 1; }

/// Connects to HOST:PORT (IPv4 or IPv6). Exits with a message on failure.
muxlab::Fd connect_to(const char* host, const char* port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    int rc = getaddrinfo(host, port, &hints, &found);
    if (rc != 0) {
        std::fprintf(stderr, "muxlab-chat: %s: %s\n", host, gai_strerror(rc));
        std::exit(1);
    }
    muxlab::Fd server;
    int saved_errno = 0;
    for (addrinfo* ai = found; ai != nullptr && !server; ai = ai->ai_next) {
        muxlab::Fd candidate(socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
        if (candidate && connect(candidate.get(), ai->ai_addr, ai->ai_addrlen) == 0)
            server = std::move(candidate);
        else
            saved_errno = errno;
    }
    freeaddrinfo(found);
    if (!server) {
        std::fprintf(stderr, "muxlab-chat: cannot connect to %s port %s: %s\n", host, port,
                     std::strerror(saved_errno));
        std::exit(1);
    }
    return server;
}

/**
 * @brief Puts the terminal in "cbreak" mode (no echo, no line editing, keys
 *        delivered one by one) and restores it on destruction, on every path.
 */
class TerminalMode {
public:
    explicit TerminalMode(int fd) : fd_(fd) {
        // TODO 2: save the terminal's mode (tcgetattr; it fails when stdin is
        // not a terminal: then do nothing), then turn off ICANON (keys arrive
        // one by one), ECHO (you draw the typed line) and ISIG (Ctrl-C arrives
        // as byte 3) with tcsetattr. Set active_ when it worked.
        (void)saved_;
}
    ~TerminalMode() {
        if (active_) tcsetattr(fd_, TCSANOW, &saved_);
    }
    TerminalMode(const TerminalMode&) = delete;
    TerminalMode& operator=(const TerminalMode&) = delete;
    bool active() const { return active_; }

private:
    int fd_;
    termios saved_{};
    bool active_ = false;
};

/// Writes all of @p text to stdout (a terminal or a pipe: blocking is fine there).
void show(std::string_view text) {
    while (!text.empty()) {
        ssize_t n = write(STDOUT_FILENO, text.data(), text.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        text.remove_prefix(static_cast<size_t>(n));
    }
}

/// A line from the server, made safe for the terminal: a (broken or hostile)
/// server must not be able to send escape sequences either.
std::string printable(std::string_view line) {
    std::string clean(line);
    for (char& c : clean) {
        auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f) c = '?';
    }
    return clean;
}

class ChatClient {
public:
    ChatClient(muxlab::Fd server, bool interactive, const sigset_t& wait_mask)
        : server_(std::move(server)), interactive_(interactive), wait_mask_(wait_mask) {}
    int run();

private:
    void on_keyboard();
    void on_typed_bytes(std::string_view bytes);
    void on_server();
    void send_line(std::string_view line);
    void flush_to_server();
    void redraw_prompt() {
        if (interactive_) show("\r\x1b[K" + std::string(kPrompt) + typed_);
    }

    muxlab::Fd server_;
    bool interactive_;
    [[maybe_unused]] sigset_t wait_mask_;         ///< the signal mask during ppoll(): SIGTERM and SIGHUP allowed
    std::string typed_;          ///< the line being typed (interactive) or read (piped)
    std::string from_server_;    ///< an unfinished line from the server
    std::string to_server_;      ///< lines not yet taken by the socket
    bool keyboard_open_ = true;
    [[maybe_unused]] bool quitting_ = false;      ///< /quit sent: keep showing what the server says until it closes
    bool server_open_ = true;
};

int ChatClient::run() {
    muxlab::set_nonblocking(server_.get());
    redraw_prompt();
    // TODO 1: the loop. Wait in ppoll() (with wait_mask_) on stdin (unless
    // the keyboard is closed or you are quitting) and on the server socket
    // (POLLIN, and POLLOUT while to_server_ holds data); then call
    // on_server(), flush_to_server() and on_keyboard() for what is ready.
    // Stop when the server has closed (server_open_) or a signal asked to.
    // TODO 5: then clear the prompt row and say the connection is closed.
    return 0;
}

void ChatClient::on_keyboard() {
    char buffer[4096];
    ssize_t n = read(STDIN_FILENO, buffer, sizeof buffer);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
        // End of input (a pipe ran dry, or the terminal went away): send what
        // is left, then half-close. The server sees end-of-file and closes;
        // we keep printing what it says until then.
        if (!interactive_ && !typed_.empty()) send_line(typed_);
        typed_.clear();
        keyboard_open_ = false;
        flush_to_server();
        if (to_server_.empty()) shutdown(server_.get(), SHUT_WR);
        return;
    }
    on_typed_bytes(std::string_view(buffer, static_cast<size_t>(n)));
}

void ChatClient::on_typed_bytes(std::string_view bytes) {
    // TODO 4: the keys. Enter sends typed_ (send_line) and keeps the line on
    // screen; Backspace (0x7f) removes the last character (a whole UTF-8
    // sequence); Ctrl-U erases; Ctrl-C, or Ctrl-D on an empty line, sends
    // /quit and sets quitting_; other bytes from 0x20 up are typed. When not
    // interactive_ (stdin is a pipe), just collect bytes into lines.
    (void)bytes;
    redraw_prompt();
}

void ChatClient::send_line(std::string_view line) {
    to_server_.append(line);
    to_server_ += '\n';
    flush_to_server();
}

/// Non-blocking send: what the socket does not take waits for POLLOUT, so a
/// server that stops reading never freezes the keyboard or the display.
void ChatClient::flush_to_server() {
    while (!to_server_.empty()) {
        ssize_t n = send(server_.get(), to_server_.data(), to_server_.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) server_open_ = false;
            break;
        }
        to_server_.erase(0, static_cast<size_t>(n));
    }
    if (to_server_.empty() && !keyboard_open_) shutdown(server_.get(), SHUT_WR);
}

void ChatClient::on_server() {
    // TODO 3: read what the server sent (0: it closed; set server_open_ to
    // false). Split it into lines, keeping an unfinished line in from_server_;
    // clean each with printable(). Then, when interactive_: erase the prompt
    // row ("\r\x1b[K"), show the lines, and redraw the prompt and the typed
    // text below them, so the user's half-typed line is never garbled.
    server_open_ = false;
}

}  // namespace chat_client

using chat_client::ChatClient;
using chat_client::TerminalMode;
using chat_client::connect_to;
using chat_client::request_stop;

int main(int argc, char** argv) {
    if (argc == 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
        std::printf("usage: muxlab-chat HOST PORT\n"
                    "A terminal client for the muxlab chat room. Type a line and press Enter;\n"
                    "/help lists the server's commands; Ctrl-C or Ctrl-D quits.\n");
        return 0;
    }
    if (argc != 3) {
        std::fprintf(stderr, "usage: muxlab-chat HOST PORT\n");
        return 2;
    }
    // SIGTERM and SIGHUP (terminal closed) end the loop so the terminal mode
    // is restored. They stay blocked except inside ppoll().
    struct sigaction action {};
    action.sa_handler = request_stop;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGHUP, &action, nullptr);
    signal(SIGPIPE, SIG_IGN);
    sigset_t stop_signals, wait_mask;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGHUP);
    sigprocmask(SIG_BLOCK, &stop_signals, &wait_mask);

    muxlab::Fd server = connect_to(argv[1], argv[2]);
    TerminalMode terminal(STDIN_FILENO);
    ChatClient client(std::move(server), terminal.active(), wait_mask);
    return client.run();
}
