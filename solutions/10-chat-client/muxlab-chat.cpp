/**
 * @file solutions/10-chat-client/muxlab-chat.cpp
 * @brief Stage 10: a terminal client for the chat room, multiplexing the
 *        keyboard and the server with poll().
 *
 *     muxlab-chat HOST PORT
 *
 * The other side of the socket. A chat client waits for two things at once:
 * the user typing and the server talking. Blocking in fgets() would hide
 * incoming lines until the user presses Enter; blocking in read() on the
 * socket would freeze the keyboard. So, like every server since stage 04,
 * the client waits in poll() on both descriptors and handles whichever is
 * ready.
 *
 * The terminal is the second lesson. In its normal ("canonical") mode the
 * terminal driver echoes keys and keeps the line being typed to itself, so a
 * line arriving from the server is printed in the middle of it: garbled. The
 * client turns echo and line editing off (termios), keeps the typed line in
 * its own buffer, and whenever a server line arrives it erases the prompt
 * line, prints the server line, and draws the prompt and the typed text
 * again. When stdin is not a terminal (a pipe, a script), it simply sends
 * each line it reads. See notes/10-chat-client.md and notes/05-poll.md.
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
        //@hole 4 The terminal is yours until you give it back
        //@ In its normal (canonical) mode the terminal driver echoes each key and keeps the
        //@ line to itself until Enter, so a server line printed meanwhile lands inside the
        //@ half-typed text. Which modes (termios) must be off so that each key reaches you
        //@ as it is typed, you draw the typed line yourself, and Ctrl-C arrives as a byte?
        //@ The user's shell needs its terminal back as it was, however the client ends:
        //@ what must you keep, where do you put it back, and which ways out would skip that?
        //@ And when stdin is not a terminal (a pipe, a script)?
        if (tcgetattr(fd_, &saved_) != 0) return;  // not a terminal
        termios raw = saved_;
        // ICANON off: read() returns each key, not whole lines.
        // ECHO off: the client draws the typed line itself.
        // ISIG off: Ctrl-C arrives as byte 3, and is handled as /quit.
        raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO | ISIG));
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        active_ = tcsetattr(fd_, TCSANOW, &raw) == 0;
        //@end
    }
    ~TerminalMode() {
        //@hole 4
        if (active_) tcsetattr(fd_, TCSANOW, &saved_);
        //@end
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
    //@hole 1 Wait for the keyboard and the server at once
    //@ The user types and the server talks, in any order. A blocking read of either one
    //@ hides the other. How does one call wait for both, and for which events on each?
    //@ When is stdin no longer worth watching, and when do you ask for room to send?
    //@ SIGTERM and SIGHUP only set a flag: what keeps one from arriving just after you
    //@ tested the flag and just before you went to sleep (wait_mask_ is the mask to
    //@ sleep with)? When does the loop end, and what is left to say on the screen then?
    while (server_open_ && !stop_requested) {
        // Wait for whichever comes first: a key, a server line, room in the
        // socket for what we still have to send.
        pollfd fds[2] = {};
        fds[0].fd = keyboard_open_ && !quitting_ ? STDIN_FILENO : -1;  // negative fd: ignored
        fds[0].events = POLLIN;
        fds[1].fd = server_.get();
        fds[1].events = static_cast<short>(POLLIN | (to_server_.empty() ? 0 : POLLOUT));
        // ppoll: SIGTERM and SIGHUP are blocked except during the wait, so a
        // signal cannot slip in between the loop test and the wait (the
        // flag/sleep race of notes/06) and leave us asleep.
        if (ppoll(fds, 2, nullptr, &wait_mask_) < 0) {
            if (errno == EINTR) continue;  // SIGTERM/SIGHUP: the loop condition decides
            muxlab::log_errno("poll");
            return 1;
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) on_server();
        if (fds[1].revents & POLLOUT) flush_to_server();
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) on_keyboard();
    }
    if (interactive_) show("\r\x1b[K");
    show(stop_requested ? "-!- stopped\n" : "-!- connection closed by the server\n");
    //@end
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
    //@hole 3 The line being typed is yours to edit
    //@ With line editing off, every key arrives here as bytes, Enter and Backspace
    //@ included, and nothing appears on the screen unless you draw it. What must each
    //@ key do to typed_ and to what the server receives? Which bytes end the line, and
    //@ what do Backspace (0x7f) and a multi-byte UTF-8 character mean for typed_?
    //@ Ctrl-C and Ctrl-D are bytes too (3 and 4): how does the user quit politely?
    //@ And when stdin is a pipe (not interactive_), what is a line?
    for (char c : bytes) {
        if (c == '\n' || c == '\r') {
            if (interactive_) show("\r\x1b[K" + std::string(kPrompt) + typed_ + "\n");
            if (!typed_.empty()) send_line(typed_);
            typed_.clear();
        } else if (!interactive_) {
            typed_ += c;
        } else if (c == 3 || (c == 4 && typed_.empty())) {  // Ctrl-C, or Ctrl-D on an empty line
            typed_.clear();
            send_line("/quit");
            quitting_ = true;
        } else if (c == 0x7f || c == '\b') {
            // Backspace: remove one character, that is, one UTF-8 sequence.
            while (!typed_.empty() && (static_cast<unsigned char>(typed_.back()) & 0xC0) == 0x80)
                typed_.pop_back();
            if (!typed_.empty()) typed_.pop_back();
        } else if (c == 0x15) {  // Ctrl-U: erase the line
            typed_.clear();
        } else if (static_cast<unsigned char>(c) >= 0x20 && typed_.size() < kMaxTyped) {
            typed_ += c;  // other control keys (arrows send ESC sequences) are ignored
        }
    }
    //@end
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
    //@hole 2 Show the server's lines without garbling the typed one
    //@ One read may bring half a line, or several lines: where does an unfinished one
    //@ wait? A server (broken or hostile) can send escape sequences: what reaches the
    //@ screen? The user may be half-way through a line, drawn after the prompt on the
    //@ last row: how does each server line get a row of its own, with the typed text
    //@ drawn again below it? And what does a read of 0 say?
    //@stub char buffer[512];
    //@stub if (read(server_.get(), buffer, sizeof buffer) <= 0) server_open_ = false;
    char buffer[16 * 1024];
    ssize_t n = read(server_.get(), buffer, sizeof buffer);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
        if (!from_server_.empty()) {  // a last line without its LF
            if (interactive_) show("\r\x1b[K");
            show(printable(from_server_) + "\n");
        }
        server_open_ = false;
        return;
    }
    from_server_.append(buffer, static_cast<size_t>(n));
    size_t start = 0, newline;
    std::string lines;
    while ((newline = from_server_.find('\n', start)) != std::string::npos) {
        std::string_view line(from_server_.data() + start, newline - start);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        lines += printable(line) + "\n";
        start = newline + 1;
    }
    from_server_.erase(0, start);
    if (lines.empty()) return;
    // Erase the prompt line, print the server's lines where it was, and draw
    // the prompt with the half-typed text again below them: never garbled.
    if (interactive_) show("\r\x1b[K");
    show(lines);
    redraw_prompt();
    //@end
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
