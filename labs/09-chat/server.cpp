/**
 * @file labs/09-chat/server.cpp
 * @brief Lab 09: the chat room, on one epoll loop. Read README.md first.
 *
 * The loop, accepting, reading and the data structures are here; the
 * numbered TODOs are the chat room: framing (1), the text protocol (2),
 * output queues and batching (3), leaving (4), limits (5), signals and
 * shutdown (6), and the IRC port (7). Each TODO says which tests check it.
 * Build: make labs        Grade: make grade LAB=09
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

// (A named namespace in the skeleton, so that helpers your TODOs will call
// are not "defined but not used" errors yet; the reference uses namespace {}.)
namespace chat {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

// ---- Protocol constants ------------------------------------------------------

[[maybe_unused]] constexpr size_t kMaxLine = 512;            ///< longest input line, LF included
constexpr size_t kMaxNick = 16;             ///< longest nick
constexpr size_t kReadChunk = 16 * 1024;    ///< one read per client per loop turn
constexpr int kMaxEvents = 256;             ///< events taken per epoll_wait
[[maybe_unused]] constexpr int kMaxIov = 64;                 ///< messages per sendmsg
[[maybe_unused]] constexpr auto kShutdownGrace = seconds(2); ///< how long shutdown waits for slow readers
constexpr const char* kServerName = "muxlab";
[[maybe_unused]] constexpr const char* kChannel = "#lobby";

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
    // TODO 2c: replace every byte below 0x20, and 0x7f (DEL), so that one
    // client cannot send escape sequences to the others' terminals.
    return std::string(text);
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
        // TODO 5b: over limits_.max_users, send "ERROR :too many users\n" and close.
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
    // TODO 1: framing. Split data into lines at each LF, joining the
    // unfinished line kept in c.input from earlier reads. For each complete
    // line: drop one CR before the LF, ignore it if empty, else on_line().
    // Keep the unfinished tail in c.input for the next read.
    // A line over kMaxLine bytes (LF included) is dropped up to its LF with
    // line_too_long(c) (c.discarding remembers you are inside one); never let
    // c.input grow past kMaxLine.
    // Later (TODO 5d, flood control): before running a line, call
    // take_line_credit(); without credit, park the rest of data in c.input,
    // set c.throttled, add c to throttled_ and return.
    (void)c;
    (void)data;
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
    // TODO 2: the text protocol (README.md has the table).
    //  a. A line not starting with '/' (or starting with "//") is chat:
    //     refuse it with register_first_ before /nick; otherwise
    //     broadcast it to the OTHERS as "<nick> text" (sanitized).
    //  b. Commands: /nick (text_nick), /who, /msg, /me, /ping, /quit, /help;
    //     anything else is "ERR 421 word unknown command". Only /nick, /ping,
    //     /help and /quit work before registering.
    //  /quit: queue "ERROR :bye", then leave(c, "quit: REASON", true).
    (void)c;
    (void)line;
}

void Server::text_nick(Client& c, std::string_view name) {
    // TODO 2d: validate (valid_nick, else ERR 432), check that nobody else
    // holds the nick ignoring case (find_nick, else ERR 433), then either
    // register (nicks_, in_room, "-!- welcome NAME" to c, "-!- NAME joined"
    // to the others) or rename ("-!- OLD is now NEW" to everyone).
    (void)c;
    (void)name;
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
    // TODO 7: the IRC port (README.md, part C). irc_parse() splits a line.
    // Registration (NICK + USER, then 001-005 and 422), PING/PONG, JOIN and
    // PART #lobby, PRIVMSG/NOTICE, QUIT, WHO/MODE/NAMES/TOPIC replies, errors.
    (void)c;
    (void)line;
}

void Server::irc_nick(Client& c, std::string_view name) {
    (void)c;
    (void)name;
}

void Server::irc_welcome(Client& c) {
    (void)c;
}

void Server::irc_join(Client& c) {
    (void)c;
}

/// 353 lines with every member, then 366; long rooms take several 353 lines.
void Server::irc_names(Client& c) {
    (void)c;
}

void Server::irc_privmsg(Client& c, std::string_view command, std::string_view target,
                         std::string_view text) {
    (void)c;
    (void)command;
    (void)target;
    (void)text;
}

// ---- Output -------------------------------------------------------------------------

/// Queues @p message for @p c; it goes out in this turn's flush. A client
/// whose queue would pass --sendq is not reading: it is dropped, so one
/// stalled reader can neither block the room nor grow our memory.
void Server::send_to(Client& c, const Message& message) {
    // TODO 3a: append message to c.output (add its size to c.output_bytes)
    // and put c on dirty_ once per turn (c.dirty). Nothing is written here.
    // TODO 5a: if the queue would pass limits_.sendq, the client is not
    // reading: leave(c, "sendq exceeded", false) instead.
    (void)c;
    (void)message;
}

/// Sends an event to every room member but @p except. Each form of the line
/// (text, IRC) is built once and shared.
void Server::broadcast(Client* except, const std::string& text_line, const std::string& irc_line) {
    Message text, irc;
    for (const auto& [key, member] : nicks_) {
        if (member == except || !member->in_room) continue;
        if (member->irc) {
            if (!irc) irc = make_message(irc_line, "\r\n");
            send_to(*member, irc);
        } else {
            if (!text) text = make_message(text_line);
            send_to(*member, text);
        }
    }
}

/// One sendmsg() with everything queued (up to kMaxIov messages): a writev
/// that hands the kernel the shared buffers themselves, no copying.
void Server::flush(Client& c) {
    // TODO 3b: ONE sendmsg() (MSG_NOSIGNAL | MSG_DONTWAIT) with an iovec per
    // queued message (at most kMaxIov), starting at c.output_head and
    // skipping c.output_offset bytes of the first. Then account for what
    // was sent (it may be a partial write): advance output_head/offset,
    // lower output_bytes, and when everything is out clear the vector (and
    // give its memory back if it grew). EAGAIN: try again when writable.
    // Any other error: leave(c, "connection closed", false).
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
    // TODO 4: for each client in leavers_: free its nick, tell the room
    // "-!- NICK left (REASON)" if it was in the room (not while shutting
    // down), close it (clients_[fd].reset()) and count it out. Notices may
    // make more clients leave (sendq): loop until leavers_ stays empty.
    while (!leavers_.empty()) {
        std::vector<Client*> leaving;
        leaving.swap(leavers_);
        for (Client* c : leaving) {
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
    // TODO 6b: read the signalfd_siginfo. The first time: set shutting_down_
    // and shutdown_deadline_ (now + kShutdownGrace), close the listeners,
    // queue shutting_down_message_ to every client and stop reading them
    // (update_interest). run() closes each client once its queue is empty.
    signalfd_siginfo info{};
    (void)read(signals_.get(), &info, sizeof info);
}

/**
 * Flood control, as the "generic cell rate algorithm": each line costs
 * 1/N second of credit and a client may run at most one second ahead of
 * the clock. So N lines may come at once, then N per second. A client
 * over the rate is throttled: we stop reading it until it is back under.
 */
bool Server::take_line_credit(Client& c, Clock::time_point now) {
    // TODO 5d: flood control. Each line costs 1/limits_.flood_lines second;
    // c.flood_tat is when the client's credit is used up. Allow the line
    // while flood_tat (at least now) + cost is at most one second ahead of
    // now; otherwise set c.resume_at to when it will be and return false.
    (void)c;
    (void)now;
    return true;
}

/// The epoll_wait timeout: time to the nearest timer, or -1 (sleep until
/// an event) when no timer is due. An idle server makes no system calls.
int Server::next_timeout_ms(Clock::time_point now) const {
    if (!dirty_.empty() || !leavers_.empty()) return 0;
    // TODO 5c: the time to the NEAREST timer (the longest-idle client's
    // deadline, a throttled client's resume_at, the shutdown deadline), in
    // milliseconds rounded up; -1 when no timer is due.
    (void)now;
    return -1;
}

void Server::fire_timers(Clock::time_point now) {
    // TODO 5c: drop clients idle for limits_.idle_timeout seconds (the front
    // of by_last_heard_ is the longest idle): "ERROR :idle timeout" to it,
    // leave(c, "idle timeout", true).
    // TODO 5d: resume throttled clients whose resume_at has come: run their
    // parked input (consume) and read them again (update_interest).
    (void)now;
}

}  // namespace chat

using chat::Limits;
using chat::Server;

int main(int argc, char** argv) {
    Limits limits;
    long irc_port = -1;
    muxlab::Options options = muxlab::parse_options(
        argc, argv, "Stage 09: chat room for text (nc) and IRC clients on one epoll loop.",
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

    // TODO 6a: block SIGINT and SIGTERM (sigprocmask) and create a signalfd
    // for them (SFD_NONBLOCK | SFD_CLOEXEC); Server registers it with epoll.
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
