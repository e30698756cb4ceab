/**
 * @file labs/10-chat-client/muxlab-chat.cpp
 * @brief Lab 10: a terminal client for the chat room, multiplexing the
 *        keyboard and the server with poll().
 *
 * Your task is the TODOs in this file, in order: README.md says what each
 * one asks. Build with `make labs`, grade with `make grade LAB=10`.
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

namespace {

constexpr const char* kPrompt = "> ";
constexpr size_t kMaxTyped = 510;  ///< the server takes lines of 512 bytes, LF included

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
        // TODO 4: The terminal is yours until you give it back
        // In its normal (canonical) mode the terminal driver echoes each key and keeps the
        // line to itself until Enter, so a server line printed meanwhile lands inside the
        // half-typed text. Which modes (termios) must be off so that each key reaches you
        // as it is typed, you draw the typed line yourself, and Ctrl-C arrives as a byte?
        // The user's shell needs its terminal back as it was, however the client ends:
        // what must you keep, where do you put it back, and which ways out would skip that?
        // And when stdin is not a terminal (a pipe, a script)?
    }
    ~TerminalMode() {
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
    sigset_t wait_mask_;         ///< the signal mask during ppoll(): SIGTERM and SIGHUP allowed
    std::string typed_;          ///< the line being typed (interactive) or read (piped)
    std::string from_server_;    ///< an unfinished line from the server
    std::string to_server_;      ///< lines not yet taken by the socket
    bool keyboard_open_ = true;
    bool quitting_ = false;      ///< /quit sent: keep showing what the server says until it closes
    bool server_open_ = true;
};

int ChatClient::run() {
    muxlab::set_nonblocking(server_.get());
    redraw_prompt();
    // TODO 1: Wait for the keyboard and the server at once
    // The user types and the server talks, in any order. A blocking read of either one
    // hides the other. How does one call wait for both, and for which events on each?
    // When is stdin no longer worth watching, and when do you ask for room to send?
    // SIGTERM and SIGHUP only set a flag: what keeps one from arriving just after you
    // tested the flag and just before you went to sleep (wait_mask_ is the mask to
    // sleep with)? When does the loop end, and what is left to say on the screen then?
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
    // TODO 3: The line being typed is yours to edit
    // With line editing off, every key arrives here as bytes, Enter and Backspace
    // included, and nothing appears on the screen unless you draw it. What must each
    // key do to typed_ and to what the server receives? Which bytes end the line, and
    // what do Backspace (0x7f) and a multi-byte UTF-8 character mean for typed_?
    // Ctrl-C and Ctrl-D are bytes too (3 and 4): how does the user quit politely?
    // And when stdin is a pipe (not interactive_), what is a line?
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
    // TODO 2: Show the server's lines without garbling the typed one
    // One read may bring half a line, or several lines: where does an unfinished one
    // wait? A server (broken or hostile) can send escape sequences: what reaches the
    // screen? The user may be half-way through a line, drawn after the prompt on the
    // last row: how does each server line get a row of its own, with the typed text
    // drawn again below it? And what does a read of 0 say?
    char buffer[512];
    if (read(server_.get(), buffer, sizeof buffer) <= 0) server_open_ = false;
}

}  // namespace

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
