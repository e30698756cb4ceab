/**
 * @file labs/09-chat/server.cpp
 * @brief Lab 09: a chat room for text and IRC clients on one epoll loop.
 *
 * Your task is the TODOs in this file, in order: README.md says what each
 * one asks. Build with `make labs`, grade with `make grade LAB=09`.
 */
#include <errno.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "muxlab/fd.hpp"
#include "muxlab/net.hpp"
#include "muxlab/options.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

// ---- Protocol constants ------------------------------------------------------

constexpr size_t kMaxLine = 512;            ///< longest input line, LF included
constexpr size_t kMaxNick = 16;             ///< longest nick
constexpr size_t kReadChunk = 16 * 1024;    ///< one read per client per loop turn
constexpr int kMaxEvents = 256;             ///< events taken per epoll_wait
constexpr int kMaxIov = 64;                 ///< messages per sendmsg
constexpr auto kShutdownGrace = seconds(2); ///< how long shutdown waits for slow readers
constexpr const char* kServerName = "muxlab";
constexpr const char* kChannel = "#lobby";

// ---- Messages: formatted once, shared by every queue that sends them -------

/// One line ready to send (terminator included). Immutable, so sharing is safe.
using Message = std::shared_ptr<const std::string>;

Message make_message(std::string line, const char* terminator = "\n") {
    line += terminator;
    return std::make_shared<const std::string>(std::move(line));
}

/// Replaces control bytes (below 0x20, and DEL) so that nothing one client
/// types can move another client's cursor, clear its screen or retitle its
/// terminal (escape sequences start with ESC, 0x1b). Text is otherwise kept
/// byte for byte: UTF-8 passes through.
std::string sanitize(std::string_view text) {
    std::string clean(text);
    for (char& c : clean) {
        auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f) c = '?';
    }
    return clean;
}

bool valid_nick(std::string_view nick) {
    if (nick.empty() || nick.size() > kMaxNick) return false;
    for (char c : nick) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

/// Nicks are unique ignoring ASCII case: "Bob" and "bob" are one nick.
std::string fold(std::string_view text) {
    std::string folded(text);
    for (char& c : folded)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return folded;
}

/// Splits "word rest of line" at the first space.
std::pair<std::string_view, std::string_view> split_word(std::string_view text) {
    size_t space = text.find(' ');
    if (space == std::string_view::npos) return {text, {}};
    return {text.substr(0, space), text.substr(space + 1)};
}

// ---- Clients -----------------------------------------------------------------

/**
 * @brief One connection. Small on purpose: an idle client owns no buffers
 *        (an empty std::string or std::vector allocates nothing), so 10,000
 *        idle clients cost a few hundred bytes each.
 */
struct Client {
    muxlab::Fd fd;
    bool irc = false;              ///< speaks IRC (came in on --irc-port)
    std::string nick;              ///< empty until registered
    bool in_room = false;          ///< receives room traffic (text: once named; IRC: after JOIN)
    bool irc_user_given = false;   ///< IRC: USER received

    // Input: the unfinished tail of the last read, at most one line long
    // (or, while throttled, the lines not yet allowed to run).
    std::string input;
    bool discarding = false;       ///< inside an overlong line: drop bytes up to its LF

    // Output: shared messages waiting for the socket to take them.
    std::vector<Message> output;
    size_t output_head = 0;        ///< first message not fully sent
    size_t output_offset = 0;      ///< bytes of output[output_head] already sent
    size_t output_bytes = 0;       ///< bytes queued and not yet sent (the sendq)
    bool dirty = false;            ///< on the flush list of this loop turn
    uint32_t interest = 0;         ///< events currently registered with epoll

    // Timers.
    Clock::time_point last_heard;              ///< for --idle-timeout
    std::list<Client*>::iterator idle_place;   ///< position in Server::by_last_heard_
    Clock::time_point flood_tat;               ///< flood control: see take_line_credit()
    Clock::time_point resume_at;               ///< when a throttled client may go on
    bool throttled = false;

    // Leaving: closed at the end of the loop turn.
    bool leaving = false;
    bool flush_first = false;      ///< try to send what is queued (ERROR line) before closing
    std::string leave_reason;      ///< shown to the others: "-!- NICK left (REASON)"

    bool registered() const { return !nick.empty(); }
    bool reading() const { return !throttled && !leaving; }
};

// ---- The server ----------------------------------------------------------------

struct Limits {
    long max_users = 0;      ///< 0: as many as the fd limit allows
    long idle_timeout = 0;   ///< seconds; 0: never
    long sendq = 256 * 1024; ///< bytes of unsent output a client may have
    long flood_lines = 20;   ///< lines per second (burst of as many); 0: no limit
};

class Server {
public:
    Server(muxlab::Fd listener, muxlab::Fd irc_listener, muxlab::Fd signals, const Limits& limits);
    int run();

private:
    // Events.
    void accept_clients(int listen_fd, bool irc);
    void on_readable(Client& c);
    void consume(Client& c, std::string_view data);
    void on_line(Client& c, std::string_view line);
    void line_too_long(Client& c);
    void on_signal();
    // The text protocol.
    void on_text_line(Client& c, std::string_view line);
    void text_nick(Client& c, std::string_view name);
    // The IRC protocol.
    void on_irc_line(Client& c, std::string_view line);
    void irc_nick(Client& c, std::string_view name);
    void irc_welcome(Client& c);
    void irc_join(Client& c);
    void irc_names(Client& c);
    void irc_privmsg(Client& c, std::string_view command, std::string_view target,
                     std::string_view text);
    void irc_reply(Client& c, const char* numeric, const std::string& text);
    // Output.
    void send_to(Client& c, const Message& message);
    void send_text(Client& c, std::string line) { send_to(c, make_message(std::move(line))); }
    void broadcast(Client* except, const std::string& text_line, const std::string& irc_line);
    void flush(Client& c);
    void update_interest(Client& c);
    // Leaving.
    void leave(Client& c, std::string reason, bool flush_first);
    void close_leavers();
    // Timers.
    bool take_line_credit(Client& c, Clock::time_point now);
    int next_timeout_ms(Clock::time_point now) const;
    void fire_timers(Clock::time_point now);

    Client* find_nick(std::string_view nick) {
        auto found = nicks_.find(fold(nick));
        return found == nicks_.end() ? nullptr : found->second;
    }
    static std::string irc_prefix(const Client& c) {
        return ":" + c.nick + "!" + c.nick + "@" + kServerName;
    }

    muxlab::Fd epoll_;
    muxlab::Fd listener_, irc_listener_, signals_;
    muxlab::Fd spare_fd_;   ///< kept open to be given up when accept() hits EMFILE
    Limits limits_;

    std::vector<std::unique_ptr<Client>> clients_;   ///< indexed by fd
    long client_count_ = 0;
    std::map<std::string, Client*> nicks_;          ///< folded nick -> client (sorted for /who)
    std::vector<Client*> dirty_;                    ///< clients with output to flush this turn
    std::vector<Client*> leavers_;                  ///< clients to close at the end of this turn
    std::list<Client*> by_last_heard_;              ///< least recently heard first
    std::vector<Client*> throttled_;                ///< clients waiting for flood credit

    bool shutting_down_ = false;
    Clock::time_point shutdown_deadline_;

    // Messages every client may get, allocated once.
    Message welcome_ = make_message("-!- welcome to muxlab chat; choose a nick with /nick NAME");
    Message register_first_ = make_message("ERR 451 register first with /nick NAME");
    Message shutting_down_message_ = make_message("ERROR :server shutting down");
};

Server::Server(muxlab::Fd listener, muxlab::Fd irc_listener, muxlab::Fd signals,
               const Limits& limits)
    : epoll_(epoll_create1(EPOLL_CLOEXEC)),
      listener_(std::move(listener)),
      irc_listener_(std::move(irc_listener)),
      signals_(std::move(signals)),
      spare_fd_(open("/dev/null", O_RDONLY | O_CLOEXEC)),
      limits_(limits) {
    if (!epoll_) {
        muxlab::log_errno("epoll_create1");
        std::exit(1);
    }
    for (int fd : {listener_.get(), irc_listener_.get(), signals_.get()}) {
        if (fd < 0) continue;
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.fd = fd;
        if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) < 0) {
            muxlab::log_errno("epoll_ctl");
            std::exit(1);
        }
    }
}

int Server::run() {
    epoll_event events[kMaxEvents];
    for (;;) {
        int ready = epoll_wait(epoll_.get(), events, kMaxEvents, next_timeout_ms(Clock::now()));
        if (ready < 0 && errno != EINTR) {
            muxlab::log_errno("epoll_wait");
            return 1;
        }
        for (int i = 0; i < ready; ++i) {
            int fd = events[i].data.fd;
            if (fd == listener_.get()) {
                accept_clients(fd, false);
            } else if (fd == irc_listener_.get()) {
                accept_clients(fd, true);
            } else if (fd == signals_.get()) {
                on_signal();
            } else if (static_cast<size_t>(fd) < clients_.size() && clients_[fd] &&
                       !clients_[fd]->leaving) {
                Client& c = *clients_[fd];
                uint32_t happened = events[i].events;
                if ((happened & EPOLLOUT) && !c.dirty) {
                    c.dirty = true;
                    dirty_.push_back(&c);
                }
                if ((happened & EPOLLIN) && c.reading() && !shutting_down_)
                    on_readable(c);
                else if (happened & (EPOLLHUP | EPOLLERR))
                    leave(c, "connection closed", false);
            }
        }
        Clock::time_point now = Clock::now();
        fire_timers(now);

        // Batching: whatever this turn queued goes out now, one sendmsg per client.
        std::vector<Client*> to_flush;
        to_flush.swap(dirty_);
        for (Client* c : to_flush) {
            c->dirty = false;
            if (!c->leaving || c->flush_first) flush(*c);
        }
        close_leavers();

        if (shutting_down_) {
            // Close each client once its goodbye is out; give up on slow readers at the deadline.
            bool deadline_passed = now >= shutdown_deadline_;
            for (auto& slot : clients_)
                if (slot && (slot->output_bytes == 0 || deadline_passed))
                    leave(*slot, "server shutting down", false);
            close_leavers();
            if (client_count_ == 0) return 0;
        }
    }
}

// ---- Accepting -----------------------------------------------------------------

void Server::accept_clients(int listen_fd, bool irc) {
    // Take a bounded batch: a connection storm must not stall the clients
    // already connected. Level-triggered epoll reports the rest next turn.
    for (int batch = 0; batch < 64; ++batch) {
        muxlab::Fd fd(accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) {
            if (errno == EMFILE || errno == ENFILE) {
                // Out of fds: the pending connection would keep the listener
                // readable forever (a busy loop). Free the spare fd, accept
                // the connection and close it at once, then take the spare back.
                muxlab::log_errno("accept");
                spare_fd_.reset();
                muxlab::Fd refused(accept(listen_fd, nullptr, nullptr));
                refused.reset();
                spare_fd_.reset(open("/dev/null", O_RDONLY | O_CLOEXEC));
                return;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                muxlab::log_errno("accept");
            return;
        }
        if (limits_.max_users > 0 && client_count_ >= limits_.max_users) {
            static const char kFull[] = "ERROR :too many users\n";
            (void)send(fd.get(), kFull, sizeof kFull - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            continue;  // fd closes here
        }
        int raw = fd.get();
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.fd = raw;
        if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, raw, &event) < 0) {
            muxlab::log_errno("epoll_ctl");
            continue;
        }
        if (clients_.size() <= static_cast<size_t>(raw)) clients_.resize(raw + 1);
        auto client = std::make_unique<Client>();
        Client& c = *client;
        c.fd = std::move(fd);
        c.irc = irc;
        c.interest = EPOLLIN;
        c.last_heard = Clock::now();
        c.idle_place = by_last_heard_.insert(by_last_heard_.end(), &c);
        clients_[raw] = std::move(client);
        ++client_count_;
        if (!irc) send_to(c, welcome_);
    }
}

// ---- Reading and framing ---------------------------------------------------------

void Server::on_readable(Client& c) {
    static char buffer[kReadChunk];  // shared by all clients: only leftovers are kept per client
    ssize_t received = read(c.fd.get(), buffer, sizeof buffer);
    if (received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (received <= 0) {
        // 0: the client closed; <0: ECONNRESET and friends. Either way it is gone.
        leave(c, "connection closed", false);
        return;
    }
    c.last_heard = Clock::now();
    by_last_heard_.splice(by_last_heard_.end(), by_last_heard_, c.idle_place);
    consume(c, std::string_view(buffer, static_cast<size_t>(received)));
    update_interest(c);
}

/// Splits @p data into lines, joining the leftover of earlier reads. Lines
/// run one by one; a line longer than kMaxLine is dropped up to its LF.
void Server::consume(Client& c, std::string_view data) {
    while (!data.empty() && !c.leaving) {
        size_t lf = data.find('\n');
        if (lf == std::string_view::npos) {
            // An unfinished line: keep it for the next read, unless it is already too long.
            if (c.discarding) return;
            if (c.input.size() + data.size() >= kMaxLine) {
                c.input.clear();
                c.discarding = true;
                line_too_long(c);
                return;
            }
            c.input.append(data);
            return;
        }
        if (c.discarding) {  // the LF that ends an overlong line
            c.discarding = false;
            data.remove_prefix(lf + 1);
            continue;
        }
        if (!take_line_credit(c, Clock::now())) {
            // Flooding: park the rest (this line included) and stop reading
            // this client until it has credit again. TCP flow control then
            // slows the sender down; nothing is lost.
            c.input.append(data);
            c.throttled = true;
            throttled_.push_back(&c);
            return;
        }
        std::string_view piece = data.substr(0, lf);
        data.remove_prefix(lf + 1);
        if (c.input.size() + piece.size() + 1 > kMaxLine) {
            c.input.clear();
            line_too_long(c);
            continue;
        }
        std::string_view line = piece;
        if (!c.input.empty()) {
            c.input.append(piece);
            line = c.input;
        }
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (!line.empty()) on_line(c, line);
        c.input.clear();
    }
    if (c.input.empty() && c.input.capacity() > 64) std::string().swap(c.input);
}

/// The overlong line is dropped; the connection stays usable.
void Server::line_too_long(Client& c) {
    if (c.irc)
        irc_reply(c, "417", ":Input line was too long");
    else
        send_text(c, "ERR 417 line too long");
}

void Server::on_line(Client& c, std::string_view line) {
    if (c.irc)
        on_irc_line(c, line);
    else
        on_text_line(c, line);
}

// ---- The text protocol ------------------------------------------------------------

void Server::on_text_line(Client& c, std::string_view line) {
    bool command = line[0] == '/' && !(line.size() > 1 && line[1] == '/');
    if (!command) {
        if (!c.registered()) return send_to(c, register_first_);
        if (line[0] == '/') line.remove_prefix(1);  // "//text" says "/text"
        std::string text = sanitize(line);
        broadcast(&c, "<" + c.nick + "> " + text,
                  irc_prefix(c) + " PRIVMSG " + kChannel + " :" + text);
        return;
    }
    auto [word, rest] = split_word(line.substr(1));
    std::string name = fold(word);
    if (name == "nick") return text_nick(c, rest);
    if (name == "ping") return send_text(c, "PONG " + sanitize(rest));
    if (name == "help") {
        return send_text(c,
                         "-!- commands: /nick NAME, /who, /msg NICK TEXT, /me TEXT, /ping TOKEN, "
                         "/quit [REASON], /help; //text sends a line starting with /");
    }
    if (name == "quit") {
        send_text(c, "ERROR :bye");
        return leave(c, rest.empty() ? "quit" : "quit: " + sanitize(rest), true);
    }
    if (name != "who" && name != "msg" && name != "me")
        return send_text(c, "ERR 421 " + sanitize(word) + " unknown command");
    if (!c.registered()) return send_to(c, register_first_);

    if (name == "who") {
        std::string list = "-!- users:";
        for (const auto& [key, member] : nicks_)
            if (member->in_room) list += " " + member->nick;
        return send_text(c, list);
    }
    if (name == "me") {
        std::string text = sanitize(rest);
        return broadcast(&c, "* " + c.nick + " " + text,
                         irc_prefix(c) + " PRIVMSG " + kChannel + " :\x01" "ACTION " + text + "\x01");
    }
    // /msg NICK TEXT
    auto [target_nick, text] = split_word(rest);
    Client* target = find_nick(target_nick);
    if (target == nullptr) return send_text(c, "ERR 401 " + sanitize(target_nick) + " no such nick");
    if (text.empty()) return send_text(c, "ERR 412 no text to send");
    if (target->irc)
        send_to(*target, make_message(irc_prefix(c) + " PRIVMSG " + target->nick + " :" +
                                          sanitize(text), "\r\n"));
    else
        send_text(*target, "*" + c.nick + "* " + sanitize(text));
}

void Server::text_nick(Client& c, std::string_view name) {
    if (name.empty()) return send_text(c, "ERR 431 no nickname given");
    if (!valid_nick(name)) return send_text(c, "ERR 432 " + sanitize(name) + " erroneous nickname");
    Client* holder = find_nick(name);
    if (holder != nullptr && holder != &c)
        return send_text(c, "ERR 433 " + std::string(name) + " nickname in use");
    if (!c.registered()) {
        c.nick = name;
        c.in_room = true;
        nicks_[fold(name)] = &c;
        send_text(c, "-!- welcome " + c.nick);
        broadcast(&c, "-!- " + c.nick + " joined", irc_prefix(c) + " JOIN " + kChannel);
        return;
    }
    std::string old_prefix = irc_prefix(c);
    std::string old = c.nick;
    nicks_.erase(fold(old));
    c.nick = name;
    nicks_[fold(name)] = &c;
    broadcast(nullptr, "-!- " + old + " is now " + c.nick, old_prefix + " NICK :" + c.nick);
}

// ---- The IRC protocol (a subset of RFC 2812 that real clients accept) ------------

void Server::irc_reply(Client& c, const char* numeric, const std::string& text) {
    std::string target = c.registered() ? c.nick : "*";
    send_to(c, make_message(std::string(":") + kServerName + " " + numeric + " " + target + " " +
                                text, "\r\n"));
}

/// Splits an IRC line into its command and parameters; a parameter that
/// starts with ':' is the last one and may contain spaces.
std::vector<std::string_view> irc_parse(std::string_view line) {
    std::vector<std::string_view> words;
    if (!line.empty() && line[0] == ':') line = split_word(line).second;  // a prefix: ignored
    while (!line.empty()) {
        if (line[0] == ' ') {
            line.remove_prefix(1);
            continue;
        }
        if (line[0] == ':' && !words.empty()) {
            words.push_back(line.substr(1));
            break;
        }
        auto [word, rest] = split_word(line);
        words.push_back(word);
        line = rest;
    }
    return words;
}

std::string upper(std::string_view text) {
    std::string result(text);
    for (char& c : result)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return result;
}

void Server::on_irc_line(Client& c, std::string_view line) {
    std::vector<std::string_view> words = irc_parse(line);
    if (words.empty()) return;
    std::string command = upper(words[0]);
    auto param = [&](size_t i) { return i < words.size() ? words[i] : std::string_view(); };
    bool ready = c.registered() && c.irc_user_given;

    if (command == "CAP" || command == "PONG") return;  // capabilities: none to negotiate
    if (command == "PING") {
        return send_to(c, make_message(std::string(":") + kServerName + " PONG " + kServerName +
                                           " :" + sanitize(param(1)),
                                       "\r\n"));
    }
    if (command == "QUIT") {
        send_to(c, make_message("ERROR :bye", "\r\n"));
        return leave(c, words.size() > 1 ? "quit: " + sanitize(param(1)) : "quit", true);
    }
    if (command == "NICK") return irc_nick(c, param(1));
    if (command == "USER") {
        if (c.irc_user_given) return irc_reply(c, "462", ":You may not reregister");
        if (words.size() < 5) return irc_reply(c, "461", "USER :Not enough parameters");
        c.irc_user_given = true;
        if (c.registered()) irc_welcome(c);
        return;
    }
    if (!ready) return irc_reply(c, "451", ":You have not registered");

    if (command == "JOIN") {
        if (words.size() < 2) return irc_reply(c, "461", "JOIN :Not enough parameters");
        std::string_view channels = param(1);
        while (!channels.empty()) {
            size_t comma = channels.find(',');
            std::string_view channel = channels.substr(0, comma);
            channels = comma == std::string_view::npos ? std::string_view() : channels.substr(comma + 1);
            if (fold(channel) == kChannel)
                irc_join(c);
            else
                irc_reply(c, "403", sanitize(channel) + " :No such channel");
        }
        return;
    }
    if (command == "PART") {
        if (fold(param(1)) != kChannel) return irc_reply(c, "403", sanitize(param(1)) + " :No such channel");
        if (!c.in_room) return irc_reply(c, "442", std::string(kChannel) + " :You're not on that channel");
        std::string reason = sanitize(param(2));
        std::string part = irc_prefix(c) + " PART " + kChannel + " :" + reason;
        send_to(c, make_message(part, "\r\n"));
        broadcast(&c, "-!- " + c.nick + " left (part" + (reason.empty() ? "" : ": " + reason) + ")",
                  part);
        c.in_room = false;
        return;
    }
    if (command == "PRIVMSG" || command == "NOTICE")
        return irc_privmsg(c, command, param(1), words.size() > 2 ? param(2) : std::string_view());
    if (command == "NAMES") return irc_names(c);
    if (command == "WHO") {
        if (fold(param(1)) == kChannel) {
            for (const auto& [key, member] : nicks_) {
                if (!member->in_room) continue;
                irc_reply(c, "352", std::string(kChannel) + " " + member->nick + " " + kServerName +
                                        " " + kServerName + " " + member->nick + " H :0 " +
                                        member->nick);
            }
        }
        return irc_reply(c, "315", sanitize(param(1)) + " :End of WHO list");
    }
    if (command == "MODE") {
        if (fold(param(1)) == kChannel) {
            if (param(2).find('b') != std::string_view::npos)
                return irc_reply(c, "368", std::string(kChannel) + " :End of channel ban list");
            return irc_reply(c, "324", std::string(kChannel) + " +nt");
        }
        if (fold(param(1)) == fold(c.nick)) {
            if (words.size() == 2) irc_reply(c, "221", "+");
            return;  // user mode changes: accepted silently
        }
        return irc_reply(c, "401", sanitize(param(1)) + " :No such nick/channel");
    }
    if (command == "TOPIC") return irc_reply(c, "331", std::string(kChannel) + " :No topic is set");
    irc_reply(c, "421", sanitize(words[0]) + " :Unknown command");
}

void Server::irc_nick(Client& c, std::string_view name) {
    if (name.empty()) return irc_reply(c, "431", ":No nickname given");
    if (!valid_nick(name)) return irc_reply(c, "432", sanitize(name) + " :Erroneous nickname");
    Client* holder = find_nick(name);
    if (holder != nullptr && holder != &c)
        return irc_reply(c, "433", std::string(name) + " :Nickname is already in use");
    if (!c.registered()) {
        c.nick = name;
        nicks_[fold(name)] = &c;
        if (c.irc_user_given) irc_welcome(c);
        return;
    }
    std::string old_prefix = irc_prefix(c);
    std::string old = c.nick;
    nicks_.erase(fold(old));
    c.nick = name;
    nicks_[fold(name)] = &c;
    if (!c.irc_user_given) return;  // not welcomed yet: nobody knows the old nick
    std::string change = old_prefix + " NICK :" + c.nick;
    send_to(c, make_message(change, "\r\n"));
    if (c.in_room) broadcast(&c, "-!- " + old + " is now " + c.nick, change);
}

void Server::irc_welcome(Client& c) {
    irc_reply(c, "001", ":Welcome to the muxlab chat " + irc_prefix(c).substr(1));
    irc_reply(c, "002", std::string(":Your host is ") + kServerName + ", running muxlab-09");
    irc_reply(c, "003", ":This server was created for the muxlab course");
    irc_reply(c, "004", std::string(kServerName) + " muxlab-09 i nt");
    irc_reply(c, "005", "CHANTYPES=# PREFIX=(o)@ NICKLEN=16 CHANNELLEN=16 CASEMAPPING=ascii "
                        "NETWORK=muxlab :are supported by this server");
    irc_reply(c, "422", ":MOTD File is missing; the room is " + std::string(kChannel));
}

void Server::irc_join(Client& c) {
    if (c.in_room) return;
    c.in_room = true;
    std::string join = irc_prefix(c) + " JOIN " + kChannel;
    send_to(c, make_message(join, "\r\n"));
    broadcast(&c, "-!- " + c.nick + " joined", join);
    irc_names(c);
}

/// 353 lines with every member, then 366; long rooms take several 353 lines.
void Server::irc_names(Client& c) {
    std::string names;
    for (const auto& [key, member] : nicks_) {
        if (!member->in_room) continue;
        if (!names.empty()) names += ' ';
        names += member->nick;
        if (names.size() > 400) {
            irc_reply(c, "353", std::string("= ") + kChannel + " :" + names);
            names.clear();
        }
    }
    if (!names.empty()) irc_reply(c, "353", std::string("= ") + kChannel + " :" + names);
    irc_reply(c, "366", std::string(kChannel) + " :End of NAMES list");
}

void Server::irc_privmsg(Client& c, std::string_view command, std::string_view target,
                         std::string_view text) {
    bool notice = command == "NOTICE";  // NOTICE never triggers an automatic reply
    if (target.empty()) {
        if (!notice) irc_reply(c, "411", ":No recipient given (" + std::string(command) + ")");
        return;
    }
    if (text.empty()) {
        if (!notice) irc_reply(c, "412", ":No text to send");
        return;
    }
    // "\1ACTION waves\1" is /me. Other CTCP requests (VERSION...) are not relayed.
    bool action = false;
    if (text.size() >= 9 && text.substr(0, 8) == "\x01" "ACTION " && text.back() == '\x01') {
        action = true;
        text = text.substr(8, text.size() - 9);
    } else if (text[0] == '\x01') {
        return;
    }
    std::string clean = sanitize(text);
    std::string irc_text = action ? "\x01" "ACTION " + clean + "\x01" : clean;
    if (target[0] == '#') {
        if (fold(target) != kChannel) {
            if (!notice) irc_reply(c, "403", sanitize(target) + " :No such channel");
            return;
        }
        if (!c.in_room) {
            if (!notice) irc_reply(c, "404", std::string(kChannel) + " :Cannot send to channel");
            return;
        }
        std::string text_line = action ? "* " + c.nick + " " + clean : "<" + c.nick + "> " + clean;
        broadcast(&c, text_line, irc_prefix(c) + " " + std::string(command) + " " + kChannel +
                                     " :" + irc_text);
        return;
    }
    Client* to = find_nick(target);
    if (to == nullptr) {
        if (!notice) irc_reply(c, "401", sanitize(target) + " :No such nick/channel");
        return;
    }
    if (to->irc)
        send_to(*to, make_message(irc_prefix(c) + " " + std::string(command) + " " + to->nick +
                                      " :" + irc_text,
                                  "\r\n"));
    else
        send_text(*to, "*" + c.nick + "* " + (action ? "* " + c.nick + " " : "") + clean);
}

// ---- Output -------------------------------------------------------------------------

/// Queues @p message for @p c; it goes out in this turn's flush. Nothing
/// is written here: the socket may be full, and writing now would block the
/// client whose line we are handling, or the whole room.
void Server::send_to(Client& c, const Message& message) {
    if (c.leaving) return;
    // TODO 1: Queue the output
    // Handling alice's line makes output for bob, whose socket may be full right now.
    // Where does that output wait, in what order, and how does this turn's flush
    // find bob once, however many messages he got? What does the flush need to
    // know to start at the right byte, and to tell an empty queue at a glance?
}

/// Sends an event to every room member but @p except: text users get
/// @p text_line, IRC users @p irc_line.
void Server::broadcast(Client* except, const std::string& text_line, const std::string& irc_line) {
    // TODO 3: One message, many queues
    // A line for the room goes to every member but @p except, in the member's own
    // form, and not to clients that have no nick yet or have left the channel. With
    // 1,000 members, how many times do you format each form, and how many copies of
    // it exist while 1,000 queues wait to send it?
}

/// Writes what is queued for @p c, once per loop turn, then checks the
/// client against --sendq and updates its epoll interest.
void Server::flush(Client& c) {
    // TODO 2: One write per client per turn
    // Everything this turn queued for @p c goes out in ONE system call. How do you
    // hand the kernel several queued messages without copying them into one buffer?
    // The socket may take only part of them, or nothing (EAGAIN): what do you
    // remember so that the next flush starts at the right byte? Which errors mean
    // the client is gone, and why must the call never raise SIGPIPE? Once the
    // queue is empty, what memory does an idle client give back?
    // TODO 4: When is a client too slow?
    // A client that stops reading must not grow our memory without end: past
    // --sendq (limits_.sendq) it is dropped with leave(c, "sendq exceeded", false).
    // Which bytes count against the limit: those this turn queued, or those still
    // unsent once the socket has had its chance? Think of a member who reads
    // everything while the whole room pastes at once (Redis asks the same question
    // of its client-output-buffer-limit).
    update_interest(c);
}

/// Keeps the epoll interest set in step with what the client needs: EPOLLIN
/// while we read it, EPOLLOUT only while output waits (level-triggered
/// EPOLLOUT on an idle socket would wake us on every turn).
void Server::update_interest(Client& c) {
    uint32_t wanted = 0;
    if (c.reading() && !shutting_down_) wanted |= EPOLLIN;
    if (c.output_bytes > 0) wanted |= EPOLLOUT;
    if (wanted == c.interest || c.leaving) return;
    epoll_event event{};
    event.events = wanted;
    event.data.fd = c.fd.get();
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &event) < 0) {
        muxlab::log_errno("epoll_ctl");
        return;
    }
    c.interest = wanted;
}

// ---- Leaving --------------------------------------------------------------------------

/// Marks @p c to be closed at the end of this turn. Nothing is freed yet:
/// events for it may still sit in this turn's epoll batch.
void Server::leave(Client& c, std::string reason, bool flush_first) {
    if (c.leaving) return;
    c.leaving = true;
    c.flush_first = flush_first;
    c.leave_reason = std::move(reason);
    by_last_heard_.erase(c.idle_place);
    if (c.throttled) throttled_.erase(std::find(throttled_.begin(), throttled_.end(), &c));
    leavers_.push_back(&c);
}

void Server::close_leavers() {
    while (!leavers_.empty()) {
        std::vector<Client*> leaving;
        leaving.swap(leavers_);
        for (Client* c : leaving) {
            // TODO 5: Leaving at the end of the turn
            // The client is closed here, after every event of this turn was handled,
            // never in the middle of the turn: why? Before its socket closes, what do
            // the nick table and the room need to hear? Telling the room may make more
            // clients leave: which loop here takes care of them?
            int fd = c->fd.get();
            clients_[fd].reset();  // closes the socket; close() also removes it from epoll
            --client_count_;
        }
    }
}

// ---- Signals and timers ---------------------------------------------------------------

/// SIGINT/SIGTERM arrive here as a readable signalfd, in the middle of the
/// loop like any other event: no async-signal-safety puzzles.
void Server::on_signal() {
    // (TODO 7) A stop signal arrived. What does every client get before the server
    // goes, what stops (new connections, reading), and who closes each client once
    // its goodbye is out (look at the end of run())? A second signal changes nothing.
}

/**
 * Flood control, as the "generic cell rate algorithm": each line costs
 * 1/N second of credit and a client may run at most one second ahead of
 * the clock. So N lines may come at once, then N per second. A client
 * over the rate is throttled: we stop reading it until it is back under.
 */
bool Server::take_line_credit(Client& c, Clock::time_point now) {
    if (limits_.flood_lines == 0) return true;
    auto cost = nanoseconds(seconds(1)) / limits_.flood_lines;
    Clock::time_point tat = std::max(c.flood_tat, now);
    if (tat + cost - now > seconds(1)) {
        c.resume_at = tat + cost - seconds(1);
        return false;
    }
    c.flood_tat = tat + cost;
    return true;
}

/// The epoll_wait timeout: time to the nearest timer, or -1 (sleep until
/// an event) when no timer is due. An idle server makes no system calls.
int Server::next_timeout_ms(Clock::time_point now) const {
    if (!dirty_.empty() || !leavers_.empty()) return 0;
    // TODO 6: Timers that cost nothing while idle
    // epoll_wait's timeout is the only clock this loop has. Which deadlines can be
    // due (the longest-idle client's, a throttled client's resume_at, shutdown's)?
    // How long may the loop sleep, rounded which way, and when may it sleep forever?
    // Why not wake every 100 ms and look, as this stub does?
    return 100;
}

void Server::fire_timers(Clock::time_point now) {
    if (shutting_down_) return;
    // (TODO 6) Which clients have been silent for limits_.idle_timeout seconds? The
    // front of by_last_heard_ is the one heard from longest ago. Each gets
    // "ERROR :idle timeout" before it leaves ("idle timeout").
    std::vector<Client*> due;
    for (Client* c : throttled_)
        if (c->resume_at <= now) due.push_back(c);
    for (Client* c : due) {
        throttled_.erase(std::find(throttled_.begin(), throttled_.end(), c));
        c->throttled = false;
        std::string parked = std::move(c->input);
        c->input.clear();
        consume(*c, parked);
        update_interest(*c);
    }
}

}  // namespace

int main(int argc, char** argv) {
    Limits limits;
    long irc_port = -1;
    muxlab::Options options = muxlab::parse_options(
        argc, argv, "Lab 09: chat room for text (nc) and IRC clients on one epoll loop.",
        {
            {"max-users", "most clients at once; 0 = no limit", &limits.max_users, 0, 1000000},
            {"idle-timeout", "seconds of silence before a client is dropped; 0 = never",
             &limits.idle_timeout, 0, 86400},
            {"sendq", "bytes of unsent output before a client is dropped", &limits.sendq, 1024,
             1L << 30},
            {"flood-lines", "lines per second a client may send (bursts of as many); 0 = no limit",
             &limits.flood_lines, 0, 1000000},
            {"irc-port", "also serve IRC on this port (0 = any free port); -1 = no IRC",
             &irc_port, -1, 65535},
        });

    // TODO 7: Signals through the event loop
    // SIGINT and SIGTERM must stop the server cleanly: every client told, output
    // flushed. A signal handler may touch almost nothing (not the client table), and
    // by default these signals kill the process on the spot. How can a signal become
    // one more readable fd in the loop (the idea of stage 06's self-pipe)? Server
    // watches `signals` and calls on_signal() when it is readable.
    muxlab::Fd signals;

    muxlab::Fd listener = muxlab::listen_tcp(options, true);
    muxlab::Fd irc_listener;
    if (irc_port >= 0) {
        muxlab::Options irc_options = options;
        irc_options.port = std::to_string(irc_port);
        irc_listener = muxlab::listen_tcp(irc_options, true);
    }
    muxlab::announce(listener.get());
    if (irc_listener) muxlab::announce(irc_listener.get(), "irc listening on");

    Server server(std::move(listener), std::move(irc_listener), std::move(signals), limits);
    return server.run();
}
