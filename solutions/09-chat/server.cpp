/**
 * @file solutions/09-chat/server.cpp
 * @brief Stage 09: a chat room for text and IRC clients on one epoll loop.
 *
 * Everything the earlier stages taught, in one process and one thread:
 * non-blocking sockets, one level-triggered epoll set (stage 07), signals
 * delivered as readable events (a signalfd, the idea of stage 06's
 * self-pipe), per-client output queues flushed when the socket is writable,
 * and the limits that keep one bad client from hurting the others.
 *
 * Why level-triggered here: every client gets at most ONE read per loop
 * turn, so a fast sender cannot starve the others, and a client we stop
 * reading (flood control, shutdown) simply drops EPOLLIN from its interest
 * set. Level-triggered epoll reminds us of whatever we left unread, so
 * nothing is lost; edge-triggered would make us keep that list ourselves.
 *
 * The file reads top to bottom in layers, each knowing only the ones above:
 *   - room events (Event): what happened in the room, before any wire format;
 *   - one renderer per protocol (render_text, render_irc): the only places
 *     that know what a text client or an IRC client reads;
 *   - clients and the loop (Server::run): sockets, output queues, timers;
 *     the loop moves bytes and never looks inside a message;
 *   - the room (join_room, say, rename, ...): who hears an event;
 *   - one command parser per protocol (on_text_line, on_irc_line): turn a
 *     client's line into room actions and replies.
 *
 * The loop turn, in order (see Server::run):
 *   1. epoll_wait, with a timeout that is the nearest timer, or forever;
 *   2. handle every ready fd: accept, read and run complete lines, note
 *      writable clients; output is only QUEUED here;
 *   3. fire due timers (idle clients, throttled clients, shutdown);
 *   4. flush: each client with queued output gets one sendmsg() carrying
 *      all of it (a writev of shared messages), however many messages
 *      arrived during the turn; a client whose output still unsent passes
 *      --sendq is dropped (measured after the socket took what it could, so
 *      a burst that a reading client takes at once drops nobody);
 *   5. close the clients that left, and queue the "left" notices;
 *   6. every 100 ms, give back the queues that got no output since the last time.
 *
 * A room event is rendered at most once per protocol, into a
 * reference-counted immutable buffer (Message), and every member's queue
 * holds a pointer to it: a line to 1,000 members costs two allocations at
 * most (one per protocol), not 1,000 copies. See notes/09-chat-room.md.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
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

/// The sooner of two epoll_wait timeouts, where -1 means none.
int sooner(int a, int b) { return a < 0 ? b : b < 0 ? a : std::min(a, b); }

// ---- Protocol constants ------------------------------------------------------

constexpr size_t kMaxLine = 512;            ///< longest input line, LF included
constexpr size_t kMaxNick = 16;             ///< longest nick
constexpr size_t kReadChunk = 16 * 1024;    ///< one read per client per loop turn
constexpr int kMaxEvents = 256;             ///< events taken per epoll_wait
constexpr int kMaxIov = 64;                 ///< messages per sendmsg
constexpr size_t kKeptQueue = 64;           ///< queue entries an emptied queue may keep for reuse
constexpr auto kQueueKeep = milliseconds(100); ///< how long an emptied queue waits for more output
constexpr size_t kTrimAfter = 1 << 20;      ///< bytes freed before the heap is trimmed
constexpr auto kShutdownGrace = seconds(2); ///< how long shutdown waits for slow readers
constexpr const char* kServerName = "muxlab";
constexpr const char* kChannel = "#lobby";

/// The reply codes both protocols use: IRC's numerics (RFC 2812), which the
/// text protocol borrows for its errors ("ERR 433 bob nickname in use").
enum class Reply : int {
    Welcome = 1,            ///< RPL_WELCOME: registration is complete
    YourHost = 2,
    Created = 3,
    MyInfo = 4,
    ISupport = 5,           ///< what the server supports (nick length, case mapping...)
    UserModeIs = 221,
    EndOfWho = 315,
    ChannelModeIs = 324,
    NoTopic = 331,
    WhoReply = 352,
    NamesReply = 353,       ///< RPL_NAMREPLY: a line of channel members
    EndOfNames = 366,
    EndOfBanList = 368,
    NoSuchNick = 401,
    NoSuchChannel = 403,
    CannotSendToChannel = 404,
    NoRecipient = 411,
    NoTextToSend = 412,
    InputTooLong = 417,
    UnknownCommand = 421,
    NoMotd = 422,
    NoNicknameGiven = 431,
    ErroneousNickname = 432,
    NicknameInUse = 433,
    NotOnChannel = 442,
    NotRegistered = 451,
    NeedMoreParams = 461,
    AlreadyRegistered = 462,
};

/// A reply code on the wire: always three digits ("001", "433").
std::string code(Reply reply) {
    char digits[8];
    std::snprintf(digits, sizeof digits, "%03d", static_cast<int>(reply));
    return digits;
}

// ---- Text helpers ---------------------------------------------------------------

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

char fold(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

/// Nicks (and the channel name) are compared ignoring ASCII case: "Bob"
/// and "bob" are one nick.
bool same_nick(std::string_view a, std::string_view b) {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return fold(x) == fold(y); });
}

/// Splits "word rest of line" at the first space.
std::pair<std::string_view, std::string_view> split_word(std::string_view text) {
    size_t space = text.find(' ');
    if (space == std::string_view::npos) return {text, {}};
    return {text.substr(0, space), text.substr(space + 1)};
}

std::string upper(std::string_view text) {
    std::string result(text);
    for (char& c : result)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return result;
}

// ---- Messages: formatted once, shared by every queue that sends them -------

/// One line ready to send (terminator included). Immutable, so sharing is safe.
using Message = std::shared_ptr<const std::string>;

/// The two wire formats a client may speak; which one is fixed by the port
/// it came in on.
enum class Protocol : uint8_t { Text = 0, Irc = 1 };
constexpr size_t kProtocols = 2;

/// IRC ends lines with CR LF; the text protocol with LF (nc, telnet).
Message make_message(std::string line, Protocol protocol) {
    line += protocol == Protocol::Irc ? "\r\n" : "\n";
    return std::make_shared<const std::string>(std::move(line));
}

// ---- Room events, and how each protocol renders them ------------------------

/**
 * @brief Something that happened in the room, or to one client, before any
 *        wire format. The room decides who hears an event; render() decides
 *        what each of them reads.
 */
struct Event {
    enum class Kind : uint8_t {
        Joined,       ///< nick entered the room
        Said,         ///< nick said text to the room
        Renamed,      ///< old_nick is now nick
        Parted,       ///< nick left the room and stays connected (text: its reason)
        Left,         ///< nick disconnected (text: the reason)
        Whispered,    ///< nick said text to target alone
        Closing,      ///< the server closes this connection (text: why)
        LineTooLong,  ///< the line just received was longer than kMaxLine
    };
    Kind kind;
    std::string_view nick;            ///< who did it ("*" before a client has one)
    std::string_view text = {};
    std::string_view old_nick = {};   ///< Renamed: the nick before
    std::string_view target = {};     ///< Whispered: the receiver's nick
    bool action = false;              ///< "/me waves" (IRC: CTCP ACTION)
    bool notice = false;              ///< IRC NOTICE: never answered automatically
};

/// What a text client (nc, telnet) reads for @p event: lines for people.
std::string render_text(const Event& event) {
    std::string nick(event.nick);
    std::string text(event.text);
    switch (event.kind) {
    case Event::Kind::Joined:
        return "-!- " + nick + " joined";
    case Event::Kind::Said:
        return event.action ? "* " + nick + " " + text : "<" + nick + "> " + text;
    case Event::Kind::Renamed:
        return "-!- " + std::string(event.old_nick) + " is now " + nick;
    case Event::Kind::Parted:
        return "-!- " + nick + " left (part" + (text.empty() ? "" : ": " + text) + ")";
    case Event::Kind::Left:
        return "-!- " + nick + " left (" + text + ")";
    case Event::Kind::Whispered:
        return "*" + nick + "* " + (event.action ? "* " + nick + " " : "") + text;
    case Event::Kind::Closing:
        return "ERROR :" + text;
    case Event::Kind::LineTooLong:
        return "ERR " + code(Reply::InputTooLong) + " line too long";
    }
    return {};
}

/// ":nick!user@host", the source IRC puts in front of what a client did.
std::string irc_prefix(std::string_view nick) {
    std::string name(nick);
    return ":" + name + "!" + name + "@" + kServerName;
}

/// A numeric reply from the server: ":muxlab 433 NICK text".
std::string irc_numeric(Reply reply, std::string_view nick, const std::string& text) {
    return std::string(":") + kServerName + " " + code(reply) + " " + std::string(nick) + " " +
           text;
}

/// What an IRC client reads for @p event: RFC 2812 commands from the
/// client that caused it.
std::string render_irc(const Event& event) {
    std::string text(event.text);
    if (event.action) text = "\x01" "ACTION " + text + "\x01";
    const char* verb = event.notice ? "NOTICE" : "PRIVMSG";
    switch (event.kind) {
    case Event::Kind::Joined:
        return irc_prefix(event.nick) + " JOIN " + kChannel;
    case Event::Kind::Said:
        return irc_prefix(event.nick) + " " + verb + " " + kChannel + " :" + text;
    case Event::Kind::Renamed:
        return irc_prefix(event.old_nick) + " NICK :" + std::string(event.nick);
    case Event::Kind::Parted:
        return irc_prefix(event.nick) + " PART " + kChannel + " :" + text;
    case Event::Kind::Left:
        return irc_prefix(event.nick) + " QUIT :" + text;
    case Event::Kind::Whispered:
        return irc_prefix(event.nick) + " " + verb + " " + std::string(event.target) + " :" + text;
    case Event::Kind::Closing:
        return "ERROR :" + text;
    case Event::Kind::LineTooLong:
        return irc_numeric(Reply::InputTooLong, event.nick, ":Input line was too long");
    }
    return {};
}

/// @p event as a line of @p protocol, ready to queue.
Message render(Protocol protocol, const Event& event) {
    if (protocol == Protocol::Irc) return make_message(render_irc(event), protocol);
    return make_message(render_text(event), protocol);
}

// ---- Clients -----------------------------------------------------------------

/**
 * @brief One connection. Small on purpose (136 bytes): a room of 10,000
 *        members is 10,000 of these. The nick is stored inline (nicks are at
 *        most kMaxNick bytes), flags are single bits, the idle timer is two
 *        pointers, and an idle client owns no buffers (an empty std::string
 *        or std::vector allocates nothing).
 */
struct Client {
    // Bit-fields take no default member initializers before C++20: the
    // constructor clears them.
    Client()
        : in_room(false), irc_user_given(false), discarding(false), dirty(false),
          throttled(false), leaving(false), flush_first(false), queue_used(false),
          queue_kept(false) {}

    muxlab::Fd fd;
    uint32_t interest = 0;           ///< events currently registered with epoll
    Protocol protocol = Protocol::Text;
    uint8_t nick_length = 0;         ///< 0 until registered
    bool in_room : 1;                ///< receives room traffic (text: once named; IRC: after JOIN)
    bool irc_user_given : 1;         ///< IRC: USER received
    bool discarding : 1;             ///< inside an overlong line: drop bytes up to its LF
    bool dirty : 1;                  ///< on the flush list of this loop turn
    bool throttled : 1;              ///< over the flood rate: not read until resume_time()
    bool leaving : 1;                ///< closed at the end of the loop turn
    bool flush_first : 1;            ///< try to send what is queued (ERROR line) before closing
    bool queue_used : 1;             ///< got output since the last sweep: keep its queue's memory
    bool queue_kept : 1;             ///< on Server::emptied_: an empty queue that kept its memory
    char nick_chars[kMaxNick];       ///< the nick as typed; its case is kept for display

    // Output: shared messages waiting for the socket to take them.
    uint32_t output_head = 0;        ///< first message not fully sent
    uint32_t output_offset = 0;      ///< bytes of output[output_head] already sent
    size_t output_bytes = 0;         ///< bytes queued and not yet sent (the sendq)
    std::vector<Message> output;

    // Input: the unfinished tail of the last read, at most one line long
    // (or, while throttled, the lines not yet allowed to run).
    std::string input;

    // Timers.
    Clock::time_point last_heard;    ///< for --idle-timeout
    Client* idle_prev = nullptr;     ///< neighbours in the idle list (least recently heard first)
    Client* idle_next = nullptr;
    Clock::time_point flood_tat;     ///< flood control: see take_line_credit()

    std::string_view nick() const { return {nick_chars, nick_length}; }
    void set_nick(std::string_view name) {
        std::memcpy(nick_chars, name.data(), name.size());
        nick_length = static_cast<uint8_t>(name.size());
    }
    bool registered() const { return nick_length > 0; }
    bool reading() const { return !throttled && !leaving; }
    /// The name a reply addresses: the nick, or "*" before there is one (IRC's rule).
    std::string_view addressee() const { return registered() ? nick() : "*"; }
};

/**
 * @brief Where clients live: blocks of kBlock clients, each one allocation,
 *        and a list of the free places. A client is 136 bytes with no malloc
 *        header, and the clients sit side by side instead of between the
 *        short-lived queues and messages of a busy turn, so the pages that
 *        those leave behind are whole and can go back to the system. A block
 *        is kept when its clients leave: the next ones reuse it.
 */
class ClientPool {
public:
    /// A client in its initial state.
    Client& take() {
        if (free_.empty()) grow();
        Client* client = free_.back();
        free_.pop_back();
        return *client;
    }
    /// Closes @p client's socket and makes its place free for the next one.
    void put_back(Client& client) {
        client = Client();
        free_.push_back(&client);
    }
    /// Gives back the free list's spare capacity (after a burst of leavers).
    void shrink() { free_.shrink_to_fit(); }

private:
    static constexpr size_t kBlock = 256;
    void grow() {
        blocks_.push_back(std::make_unique<Client[]>(kBlock));
        for (size_t i = kBlock; i-- > 0;) free_.push_back(&blocks_.back()[i]);
    }
    std::vector<std::unique_ptr<Client[]>> blocks_;
    std::vector<Client*> free_;
};

/**
 * @brief A row of the nick table: the nick folded to lower case (padded
 *        with NULs) and its client. The row holds the name itself, so a
 *        nick is taken exactly as long as its row exists; 24 bytes, where a
 *        std::map<std::string, Client*> node costs 80.
 */
struct NickEntry {
    char folded[kMaxNick];
    Client* client;

    std::string_view name() const { return {folded, strnlen(folded, kMaxNick)}; }
    bool operator<(const NickEntry& other) const { return name() < other.name(); }
};

/// The row @p nick (at most kMaxNick bytes) has, or would have, in the table.
NickEntry nick_entry(std::string_view nick, Client* client) {
    NickEntry entry{};
    for (size_t i = 0; i < nick.size() && i < kMaxNick; ++i) entry.folded[i] = fold(nick[i]);
    entry.client = client;
    return entry;
}

// ---- The server ----------------------------------------------------------------

struct Limits {
    long max_users = 0;      ///< 0: as many as the fd limit allows
    long idle_timeout = 0;   ///< seconds; 0: never
    long sendq = 256 * 1024; ///< bytes of unsent output a client may have
    long flood_lines = 20;   ///< lines per second (burst of as many); 0: no limit
};

/// A client to close at the end of the turn, and what the room is told.
struct Leaver {
    Client* client;
    std::string reason;      ///< shown to the others: "-!- NICK left (REASON)"
};

class Server {
public:
    Server(muxlab::Fd listener, muxlab::Fd irc_listener, muxlab::Fd signals, const Limits& limits);
    int run();

private:
    // Events.
    void accept_clients(int listen_fd, Protocol protocol);
    void on_readable(Client& c);
    void consume(Client& c, std::string_view data);
    void line_too_long(Client& c);
    void on_line(Client& c, std::string_view line);
    void on_signal();
    // The room.
    void join_room(Client& c);
    void say(Client& c, std::string_view text, bool action, bool notice);
    void whisper(Client& from, Client& to, std::string_view text, bool action, bool notice);
    void rename(Client& c, std::string_view name, bool announce);
    void part_room(Client& c, std::string_view reason);
    Client* find_nick(std::string_view nick);
    void add_nick(Client& c);
    void remove_nick(Client& c);
    // The text protocol.
    void on_text_line(Client& c, std::string_view line);
    void text_nick(Client& c, std::string_view name);
    void text_error(Client& c, Reply reply, const std::string& text);
    // The IRC protocol.
    void on_irc_line(Client& c, std::string_view line);
    void irc_nick(Client& c, std::string_view name);
    void irc_welcome(Client& c);
    void irc_join(Client& c);
    void irc_names(Client& c);
    void irc_privmsg(Client& c, std::string_view command, std::string_view target,
                     std::string_view text);
    void irc_reply(Client& c, Reply reply, const std::string& text);
    // Output.
    void send_to(Client& c, const Message& message);
    void send_line(Client& c, std::string line) { send_to(c, make_message(std::move(line), c.protocol)); }
    void deliver(Client& c, const Event& event) { send_to(c, render(c.protocol, event)); }
    void broadcast(Client* except, const Event& event);
    void flush(Client& c);
    void queue_emptied(Client& c);
    void release_queue(Client& c);
    void release_unused_queues(Clock::time_point now);
    int sweep_timeout_ms(Clock::time_point now) const;
    void give_back_memory();
    void update_interest(Client& c);
    // Leaving.
    void leave(Client& c, std::string reason, bool flush_first);
    void close_leavers();
    // Timers.
    void idle_append(Client& c);
    void idle_remove(Client& c);
    bool take_line_credit(Client& c, Clock::time_point now);
    Clock::time_point resume_time(const Client& c) const;
    int next_timeout_ms(Clock::time_point now) const;
    void fire_timers(Clock::time_point now);

    muxlab::Fd epoll_;
    muxlab::Fd listener_, irc_listener_, signals_;
    muxlab::Fd spare_fd_;   ///< kept open to be given up when accept() hits EMFILE
    Limits limits_;

    ClientPool pool_;
    std::vector<Client*> clients_;     ///< indexed by fd; nullptr: not a client
    long client_count_ = 0;
    std::vector<NickEntry> nicks_;     ///< registered clients, sorted by folded nick (for /who)
    std::vector<Client*> dirty_;       ///< clients with output to flush this turn
    std::vector<Client*> to_flush_;    ///< the turn's flush list (dirty_ swapped in, reused)
    std::vector<Leaver> leavers_;      ///< clients to close at the end of this turn
    std::vector<Client*> emptied_;     ///< clients whose queue emptied: freed unless used again
    Clock::time_point next_sweep_;     ///< when emptied_ is next looked at
    Client* idle_first_ = nullptr;     ///< the idle list: least recently heard first...
    Client* idle_last_ = nullptr;      ///< ...and most recently heard last
    std::vector<Client*> throttled_;   ///< clients waiting for flood credit
    size_t freed_since_trim_ = 0;      ///< queue bytes freed since the heap was last trimmed

    bool shutting_down_ = false;
    Clock::time_point shutdown_deadline_;

    // Text lines every text client may get, allocated once.
    Message welcome_ = make_message("-!- welcome to muxlab chat; choose a nick with /nick NAME",
                                    Protocol::Text);
    Message register_first_ = make_message("ERR " + code(Reply::NotRegistered) +
                                               " register first with /nick NAME",
                                           Protocol::Text);
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
        Clock::time_point before_wait = Clock::now();
        int timeout = sooner(next_timeout_ms(before_wait), sweep_timeout_ms(before_wait));
        if (timeout != 0 && emptied_.empty() && freed_since_trim_ >= kTrimAfter) give_back_memory();
        int ready = epoll_wait(epoll_.get(), events, kMaxEvents, timeout);
        if (ready < 0 && errno != EINTR) {
            muxlab::log_errno("epoll_wait");
            return 1;
        }
        for (int i = 0; i < ready; ++i) {
            int fd = events[i].data.fd;
            if (fd == listener_.get()) {
                accept_clients(fd, Protocol::Text);
            } else if (fd == irc_listener_.get()) {
                accept_clients(fd, Protocol::Irc);
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
        to_flush_.swap(dirty_);
        for (Client* c : to_flush_) {
            c->dirty = false;
            if (!c->leaving || c->flush_first) flush(*c);
        }
        to_flush_.clear();
        close_leavers();
        if (now >= next_sweep_) release_unused_queues(now);

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

void Server::accept_clients(int listen_fd, Protocol protocol) {
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
        // The loop already batches: one sendmsg per client per turn. Nagle's
        // algorithm would hold the next turn's lines until the client ACKs
        // the last, and a client that delays its ACK stalls them 40 ms.
        int on = 1;
        setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        int raw = fd.get();
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.fd = raw;
        if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, raw, &event) < 0) {
            muxlab::log_errno("epoll_ctl");
            continue;
        }
        if (clients_.size() <= static_cast<size_t>(raw)) clients_.resize(raw + 1);
        Client& c = pool_.take();
        c.fd = std::move(fd);
        c.protocol = protocol;
        c.interest = EPOLLIN;
        c.last_heard = Clock::now();
        idle_append(c);
        clients_[raw] = &c;
        ++client_count_;
        if (protocol == Protocol::Text) send_to(c, welcome_);  // IRC clients speak first
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
    idle_remove(c);  // heard from now: to the back of the idle list
    idle_append(c);
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
    deliver(c, Event{Event::Kind::LineTooLong, c.addressee()});
}

/// A complete line goes to the parser of the client's protocol.
void Server::on_line(Client& c, std::string_view line) {
    if (c.protocol == Protocol::Irc)
        on_irc_line(c, line);
    else
        on_text_line(c, line);
}

// ---- The room: who hears what ------------------------------------------------------
// The room knows members and events, never wire formats: each member reads
// an event in its own protocol (broadcast and deliver render it).

/// @p c enters the room; every other member hears of it.
void Server::join_room(Client& c) {
    c.in_room = true;
    broadcast(&c, Event{Event::Kind::Joined, c.nick()});
}

/// @p c says @p text (already sanitized) to the room.
void Server::say(Client& c, std::string_view text, bool action, bool notice) {
    Event said{Event::Kind::Said, c.nick(), text};
    said.action = action;
    said.notice = notice;
    broadcast(&c, said);
}

/// A private message: only @p to hears it.
void Server::whisper(Client& from, Client& to, std::string_view text, bool action, bool notice) {
    Event whispered{Event::Kind::Whispered, from.nick(), text};
    whispered.target = to.nick();
    whispered.action = action;
    whispered.notice = notice;
    deliver(to, whispered);
}

/// Gives @p c the nick @p name (checked: valid and free). With @p announce,
/// @p c and, if it is in the room, every member hear of the change.
void Server::rename(Client& c, std::string_view name, bool announce) {
    char old_chars[kMaxNick];
    std::string_view old(old_chars, c.nick_length);
    std::memcpy(old_chars, c.nick_chars, c.nick_length);
    remove_nick(c);
    c.set_nick(name);
    add_nick(c);
    if (!announce) return;
    Event renamed{Event::Kind::Renamed, c.nick()};
    renamed.old_nick = old;
    deliver(c, renamed);
    if (c.in_room) broadcast(&c, renamed);
}

/// @p c leaves the room and stays connected; it hears its own PART too.
void Server::part_room(Client& c, std::string_view reason) {
    Event parted{Event::Kind::Parted, c.nick(), reason};
    deliver(c, parted);
    broadcast(&c, parted);
    c.in_room = false;
}

/// The nick table is a vector of rows sorted by folded nick, searched by
/// bisection. Adding or removing a row moves the rows after it (a memmove of
/// at most 240 KB in a room of 10,000): cheap next to telling the room.
Client* Server::find_nick(std::string_view nick) {
    if (nick.size() > kMaxNick) return nullptr;  // no such nick can exist
    NickEntry key = nick_entry(nick, nullptr);
    auto place = std::lower_bound(nicks_.begin(), nicks_.end(), key);
    return place != nicks_.end() && place->name() == key.name() ? place->client : nullptr;
}

void Server::add_nick(Client& c) {
    NickEntry entry = nick_entry(c.nick(), &c);
    nicks_.insert(std::lower_bound(nicks_.begin(), nicks_.end(), entry), entry);
}

void Server::remove_nick(Client& c) {
    if (!c.registered()) return;
    auto place = std::lower_bound(nicks_.begin(), nicks_.end(), nick_entry(c.nick(), &c));
    if (place != nicks_.end() && place->client == &c) nicks_.erase(place);
}

// ---- The text protocol: a line is a command (/nick bob) or text for the room ----

/// "ERR 433 bob nickname in use": a code for programs, words for people.
void Server::text_error(Client& c, Reply reply, const std::string& text) {
    send_line(c, "ERR " + code(reply) + " " + text);
}

void Server::on_text_line(Client& c, std::string_view line) {
    bool command = line[0] == '/' && !(line.size() > 1 && line[1] == '/');
    if (!command) {
        if (!c.registered()) return send_to(c, register_first_);
        if (line[0] == '/') line.remove_prefix(1);  // "//text" says "/text"
        return say(c, sanitize(line), false, false);
    }
    auto [word, rest] = split_word(line.substr(1));
    std::string name(word);
    for (char& letter : name) letter = fold(letter);
    if (name == "nick") return text_nick(c, rest);
    if (name == "ping") return send_line(c, "PONG " + sanitize(rest));
    if (name == "help") {
        return send_line(c,
                         "-!- commands: /nick NAME, /who, /msg NICK TEXT, /me TEXT, /ping TOKEN, "
                         "/quit [REASON], /help; //text sends a line starting with /");
    }
    if (name == "quit") {
        deliver(c, Event{Event::Kind::Closing, c.nick(), "bye"});
        return leave(c, rest.empty() ? "quit" : "quit: " + sanitize(rest), true);
    }
    if (name != "who" && name != "msg" && name != "me")
        return text_error(c, Reply::UnknownCommand, sanitize(word) + " unknown command");
    if (!c.registered()) return send_to(c, register_first_);

    if (name == "who") {
        std::string list = "-!- users:";
        for (const NickEntry& entry : nicks_)
            if (entry.client->in_room) list += " " + std::string(entry.client->nick());
        return send_line(c, list);
    }
    if (name == "me") return say(c, sanitize(rest), true, false);
    // /msg NICK TEXT
    auto [target_nick, text] = split_word(rest);
    Client* target = find_nick(target_nick);
    if (target == nullptr)
        return text_error(c, Reply::NoSuchNick, sanitize(target_nick) + " no such nick");
    if (text.empty()) return text_error(c, Reply::NoTextToSend, "no text to send");
    whisper(c, *target, sanitize(text), false, false);
}

void Server::text_nick(Client& c, std::string_view name) {
    if (name.empty()) return text_error(c, Reply::NoNicknameGiven, "no nickname given");
    if (!valid_nick(name))
        return text_error(c, Reply::ErroneousNickname, sanitize(name) + " erroneous nickname");
    Client* holder = find_nick(name);
    if (holder != nullptr && holder != &c)
        return text_error(c, Reply::NicknameInUse, std::string(name) + " nickname in use");
    if (!c.registered()) {
        c.set_nick(name);
        add_nick(c);
        send_line(c, "-!- welcome " + std::string(c.nick()));
        return join_room(c);  // a text client is in the room once it has a name
    }
    rename(c, name, true);
}

// ---- The IRC protocol (a subset of RFC 2812 that real clients accept) ------------

void Server::irc_reply(Client& c, Reply reply, const std::string& text) {
    send_line(c, irc_numeric(reply, c.addressee(), text));
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

void Server::on_irc_line(Client& c, std::string_view line) {
    std::vector<std::string_view> words = irc_parse(line);
    if (words.empty()) return;
    std::string command = upper(words[0]);
    auto param = [&](size_t i) { return i < words.size() ? words[i] : std::string_view(); };
    auto is_channel = [](std::string_view name) { return same_nick(name, kChannel); };
    bool ready = c.registered() && c.irc_user_given;

    if (command == "CAP" || command == "PONG") return;  // capabilities: none to negotiate
    if (command == "PING")
        return send_line(c, std::string(":") + kServerName + " PONG " + kServerName + " :" +
                                sanitize(param(1)));
    if (command == "QUIT") {
        deliver(c, Event{Event::Kind::Closing, c.addressee(), "bye"});
        return leave(c, words.size() > 1 ? "quit: " + sanitize(param(1)) : "quit", true);
    }
    if (command == "NICK") return irc_nick(c, param(1));
    if (command == "USER") {
        if (c.irc_user_given) return irc_reply(c, Reply::AlreadyRegistered, ":You may not reregister");
        if (words.size() < 5) return irc_reply(c, Reply::NeedMoreParams, "USER :Not enough parameters");
        c.irc_user_given = true;
        if (c.registered()) irc_welcome(c);
        return;
    }
    if (!ready) return irc_reply(c, Reply::NotRegistered, ":You have not registered");

    if (command == "JOIN") {
        if (words.size() < 2) return irc_reply(c, Reply::NeedMoreParams, "JOIN :Not enough parameters");
        std::string_view channels = param(1);
        while (!channels.empty()) {
            size_t comma = channels.find(',');
            std::string_view channel = channels.substr(0, comma);
            channels = comma == std::string_view::npos ? std::string_view() : channels.substr(comma + 1);
            if (is_channel(channel))
                irc_join(c);
            else
                irc_reply(c, Reply::NoSuchChannel, sanitize(channel) + " :No such channel");
        }
        return;
    }
    if (command == "PART") {
        if (!is_channel(param(1)))
            return irc_reply(c, Reply::NoSuchChannel, sanitize(param(1)) + " :No such channel");
        if (!c.in_room)
            return irc_reply(c, Reply::NotOnChannel, std::string(kChannel) + " :You're not on that channel");
        return part_room(c, sanitize(param(2)));
    }
    if (command == "PRIVMSG" || command == "NOTICE")
        return irc_privmsg(c, command, param(1), words.size() > 2 ? param(2) : std::string_view());
    if (command == "NAMES") return irc_names(c);
    if (command == "WHO") {
        if (is_channel(param(1))) {
            for (const NickEntry& entry : nicks_) {
                const Client* member = entry.client;
                if (!member->in_room) continue;
                std::string nick(member->nick());
                irc_reply(c, Reply::WhoReply, std::string(kChannel) + " " + nick + " " + kServerName +
                                                  " " + kServerName + " " + nick + " H :0 " + nick);
            }
        }
        return irc_reply(c, Reply::EndOfWho, sanitize(param(1)) + " :End of WHO list");
    }
    if (command == "MODE") {
        if (is_channel(param(1))) {
            if (param(2).find('b') != std::string_view::npos)
                return irc_reply(c, Reply::EndOfBanList, std::string(kChannel) + " :End of channel ban list");
            return irc_reply(c, Reply::ChannelModeIs, std::string(kChannel) + " +nt");
        }
        if (same_nick(param(1), c.nick())) {
            if (words.size() == 2) irc_reply(c, Reply::UserModeIs, "+");
            return;  // user mode changes: accepted silently
        }
        return irc_reply(c, Reply::NoSuchNick, sanitize(param(1)) + " :No such nick/channel");
    }
    if (command == "TOPIC") return irc_reply(c, Reply::NoTopic, std::string(kChannel) + " :No topic is set");
    irc_reply(c, Reply::UnknownCommand, sanitize(words[0]) + " :Unknown command");
}

void Server::irc_nick(Client& c, std::string_view name) {
    if (name.empty()) return irc_reply(c, Reply::NoNicknameGiven, ":No nickname given");
    if (!valid_nick(name)) return irc_reply(c, Reply::ErroneousNickname, sanitize(name) + " :Erroneous nickname");
    Client* holder = find_nick(name);
    if (holder != nullptr && holder != &c)
        return irc_reply(c, Reply::NicknameInUse, std::string(name) + " :Nickname is already in use");
    if (!c.registered()) {
        c.set_nick(name);
        add_nick(c);
        if (c.irc_user_given) irc_welcome(c);
        return;
    }
    // Not welcomed yet (no USER): nobody knows the old nick, so nobody is told.
    rename(c, name, c.irc_user_given);
}

void Server::irc_welcome(Client& c) {
    irc_reply(c, Reply::Welcome, ":Welcome to the muxlab chat " + irc_prefix(c.nick()).substr(1));
    irc_reply(c, Reply::YourHost, std::string(":Your host is ") + kServerName + ", running muxlab-09");
    irc_reply(c, Reply::Created, ":This server was created for the muxlab course");
    irc_reply(c, Reply::MyInfo, std::string(kServerName) + " muxlab-09 i nt");
    irc_reply(c, Reply::ISupport, "CHANTYPES=# PREFIX=(o)@ NICKLEN=16 CHANNELLEN=16 CASEMAPPING=ascii "
                                  "NETWORK=muxlab :are supported by this server");
    irc_reply(c, Reply::NoMotd, ":MOTD File is missing; the room is " + std::string(kChannel));
}

/// IRC confirms a JOIN by echoing it, then lists the members (NAMES).
void Server::irc_join(Client& c) {
    if (c.in_room) return;
    deliver(c, Event{Event::Kind::Joined, c.nick()});
    join_room(c);
    irc_names(c);
}

/// 353 lines with every member, then 366; long rooms take several 353 lines.
void Server::irc_names(Client& c) {
    std::string names;
    for (const NickEntry& entry : nicks_) {
        const Client* member = entry.client;
        if (!member->in_room) continue;
        if (!names.empty()) names += ' ';
        names += member->nick();
        if (names.size() > 400) {
            irc_reply(c, Reply::NamesReply, std::string("= ") + kChannel + " :" + names);
            names.clear();
        }
    }
    if (!names.empty()) irc_reply(c, Reply::NamesReply, std::string("= ") + kChannel + " :" + names);
    irc_reply(c, Reply::EndOfNames, std::string(kChannel) + " :End of NAMES list");
}

void Server::irc_privmsg(Client& c, std::string_view command, std::string_view target,
                         std::string_view text) {
    bool notice = command == "NOTICE";  // NOTICE never triggers an automatic reply
    if (target.empty()) {
        if (!notice) irc_reply(c, Reply::NoRecipient, ":No recipient given (" + std::string(command) + ")");
        return;
    }
    if (text.empty()) {
        if (!notice) irc_reply(c, Reply::NoTextToSend, ":No text to send");
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
    if (target[0] == '#') {
        if (!same_nick(target, kChannel)) {
            if (!notice) irc_reply(c, Reply::NoSuchChannel, sanitize(target) + " :No such channel");
            return;
        }
        if (!c.in_room) {
            if (!notice) irc_reply(c, Reply::CannotSendToChannel, std::string(kChannel) + " :Cannot send to channel");
            return;
        }
        return say(c, clean, action, notice);
    }
    Client* to = find_nick(target);
    if (to == nullptr) {
        if (!notice) irc_reply(c, Reply::NoSuchNick, sanitize(target) + " :No such nick/channel");
        return;
    }
    whisper(c, *to, clean, action, notice);
}

// ---- Output: queues the loop flushes, blind to what the messages say ---------------

/// Queues @p message for @p c; it goes out in this turn's flush. Nothing
/// is written here: the socket may be full, and writing now would block the
/// client whose line we are handling, or the whole room.
void Server::send_to(Client& c, const Message& message) {
    if (c.leaving) return;
    c.queue_used = true;
    //@hole 1 Queue the output
    //@ Handling alice's line makes output for bob, whose socket may be full right now.
    //@ Where does that output wait, in what order, and how does this turn's flush
    //@ find bob once, however many messages he got? What does the flush need to
    //@ know to start at the right byte, and to tell an empty queue at a glance?
    c.output.push_back(message);
    c.output_bytes += message->size();
    if (!c.dirty) {
        c.dirty = true;
        dirty_.push_back(&c);
    }
    //@end
}

/// Tells @p event to every room member but @p except, each in its own protocol.
void Server::broadcast(Client* except, const Event& event) {
    //@hole 3 One message, many queues
    //@ An event for the room goes to every member but @p except, rendered for the
    //@ member's protocol (render()), and not to clients that have no nick yet or have
    //@ left the channel. With 1,000 members, how many times do you render each form,
    //@ and how many copies of it exist while 1,000 queues wait to send it?
    // Each form is rendered once, on first use, and every queue shares it.
    Message forms[kProtocols];
    for (const NickEntry& entry : nicks_) {
        Client* member = entry.client;
        if (member == except || !member->in_room) continue;
        Message& form = forms[static_cast<size_t>(member->protocol)];
        if (!form) form = render(member->protocol, event);
        send_to(*member, form);
    }
    //@end
}

/// Writes what is queued for @p c, once per loop turn, then checks the
/// client against --sendq and updates its epoll interest.
void Server::flush(Client& c) {
    //@hole 2 One write per client per turn
    //@ Everything this turn queued for @p c goes out in ONE system call. How do you
    //@ hand the kernel several queued messages without copying them into one buffer?
    //@ The socket may take only part of them, or nothing (EAGAIN): what do you
    //@ remember so that the next flush starts at the right byte? Which errors mean
    //@ the client is gone, and why must the call never raise SIGPIPE? Once the
    //@ queue is empty, what happens to its memory (queue_emptied())?
    // One sendmsg() with everything queued (up to kMaxIov messages): a writev
    // that hands the kernel the shared buffers themselves, no copying.
    if (c.output_bytes > 0) {
        iovec iov[kMaxIov];
        int count = 0;
        for (size_t i = c.output_head; i < c.output.size() && count < kMaxIov; ++i, ++count) {
            size_t skip = i == c.output_head ? c.output_offset : 0;
            iov[count].iov_base = const_cast<char*>(c.output[i]->data() + skip);
            iov[count].iov_len = c.output[i]->size() - skip;
        }
        msghdr header{};
        header.msg_iov = iov;
        header.msg_iovlen = count;
        // MSG_NOSIGNAL: a vanished reader gives EPIPE, not a SIGPIPE that kills us.
        ssize_t sent = sendmsg(c.fd.get(), &header, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                c.output_bytes = 0;  // nothing more will be sent
                leave(c, "connection closed", false);
                return;
            }
            sent = 0;
        }
        auto left = static_cast<size_t>(sent);
        c.output_bytes -= left;
        while (left > 0) {
            size_t rest = c.output[c.output_head]->size() - c.output_offset;
            if (left < rest) {
                c.output_offset += static_cast<uint32_t>(left);
                break;
            }
            left -= rest;
            c.output[c.output_head++].reset();
            c.output_offset = 0;
        }
        if (c.output_bytes == 0) {
            queue_emptied(c);
        } else if (c.output_head > 1024) {
            c.output.erase(c.output.begin(), c.output.begin() + c.output_head);
            c.output_head = 0;
        }
    }
    //@end
    //@hole 4 When is a client too slow?
    //@ A client that stops reading must not grow our memory without end: past
    //@ --sendq (limits_.sendq) it is dropped with leave(c, "sendq exceeded", false).
    //@ Which bytes count against the limit: those this turn queued, or those still
    //@ unsent once the socket has had its chance? Think of a member who reads
    //@ everything while the whole room pastes at once (Redis asks the same question
    //@ of its client-output-buffer-limit).
    // Measured after the socket took what it could: a burst queued within one
    // turn that a reading client takes at once drops nobody.
    if (c.output_bytes > static_cast<size_t>(limits_.sendq)) {
        leave(c, "sendq exceeded", false);
        return;
    }
    //@end
    update_interest(c);
}

/**
 * An emptied queue keeps its memory while the client keeps getting output:
 * in a busy room every member gets lines every few milliseconds, and
 * freeing the vector each time only to grow it again for the next line
 * would put a malloc and a free per member into every line of the fan-out.
 * A queue that grew past kKeptQueue entries (a burst) is freed at once, so
 * the burst's memory is not held; a smaller one waits on emptied_ and is
 * freed once kQueueKeep passed with no output for it
 * (release_unused_queues()), so a client in a quiet room owns no buffer.
 */
void Server::queue_emptied(Client& c) {
    c.output.clear();
    c.output_head = 0;
    if (c.output.capacity() > kKeptQueue) {
        release_queue(c);
    } else if (!c.queue_kept) {
        c.queue_kept = true;
        emptied_.push_back(&c);
    }
}

void Server::release_queue(Client& c) {
    freed_since_trim_ += c.output.capacity() * sizeof(Message);
    std::vector<Message>().swap(c.output);
}

/// The sweep, every kQueueKeep while queues wait on emptied_: a queue that
/// got output since the last sweep is kept until the next; one that got
/// nothing gives its memory back.
void Server::release_unused_queues(Clock::time_point now) {
    next_sweep_ = now + kQueueKeep;
    size_t kept = 0;
    for (Client* c : emptied_) {
        if (c->output_bytes == 0 && c->queue_used) {
            c->queue_used = false;  // used lately: ask again at the next sweep
            emptied_[kept++] = c;
            continue;
        }
        c->queue_kept = false;
        // Still waiting for the socket: queue_emptied() brings it back once drained.
        if (c->output_bytes == 0) release_queue(*c);
    }
    emptied_.resize(kept);
}

/**
 * Called when the loop is about to sleep after a burst (a room filling up:
 * every join told to every member). The turn's lists, sized for the burst,
 * are empty now and give their memory back. The burst's queues were freed
 * in the middle of the heap, between live clients, where free() cannot
 * return memory to the system; malloc_trim() returns every whole free page.
 * It walks the heap, so it runs once per burst (kTrimAfter bytes freed),
 * never per turn.
 */
void Server::give_back_memory() {
    for (std::vector<Client*>* list : {&dirty_, &to_flush_, &emptied_})
        if (list->empty()) std::vector<Client*>().swap(*list);
    pool_.shrink();
    malloc_trim(0);
    freed_since_trim_ = 0;
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
    idle_remove(c);
    if (c.throttled) throttled_.erase(std::find(throttled_.begin(), throttled_.end(), &c));
    leavers_.push_back(Leaver{&c, std::move(reason)});
}

void Server::close_leavers() {
    while (!leavers_.empty()) {
        std::vector<Leaver> leaving;
        leaving.swap(leavers_);
        // No list may keep a pointer to a client about to be freed.
        emptied_.erase(std::remove_if(emptied_.begin(), emptied_.end(),
                                      [](const Client* c) { return c->leaving; }),
                       emptied_.end());
        for (Leaver& leaver : leaving) {
            Client* c = leaver.client;
            //@hole 5 Leaving at the end of the turn
            //@ The client is closed here, after every event of this turn was handled,
            //@ never in the middle of the turn: why? Before its socket closes, what do
            //@ the nick table and the room need to hear (an Event::Kind::Left with
            //@ leaver.reason)? Telling the room may make more clients leave: which loop
            //@ here takes care of them?
            if (c->registered()) {
                remove_nick(*c);
                if (c->in_room && !shutting_down_) {
                    // Queued now, flushed next turn (epoll_wait will not sleep: dirty_ is not empty).
                    broadcast(c, Event{Event::Kind::Left, c->nick(), leaver.reason});
                }
            }
            //@end
            int fd = c->fd.get();
            clients_[fd] = nullptr;
            pool_.put_back(*c);  // closes the socket; close() also removes it from epoll
            --client_count_;
        }
    }
}

// ---- Signals and timers ---------------------------------------------------------------

/// SIGINT/SIGTERM arrive here as a readable signalfd, in the middle of the
/// loop like any other event: no async-signal-safety puzzles.
void Server::on_signal() {
    //@hole 7
    //@ (TODO 7) A stop signal arrived. What does every client get before the server
    //@ goes, what stops (new connections, reading), and who closes each client once
    //@ its goodbye is out (look at the end of run())? A second signal changes nothing.
    signalfd_siginfo info{};
    if (read(signals_.get(), &info, sizeof info) != sizeof info) return;
    if (shutting_down_) return;
    shutting_down_ = true;
    shutdown_deadline_ = Clock::now() + kShutdownGrace;
    listener_.reset();
    irc_listener_.reset();
    Event closing{Event::Kind::Closing, "*", "server shutting down"};
    Message forms[kProtocols];  // one goodbye per protocol, shared by every client
    for (auto& slot : clients_) {
        if (!slot || slot->leaving) continue;
        Message& form = forms[static_cast<size_t>(slot->protocol)];
        if (!form) form = render(slot->protocol, closing);
        send_to(*slot, form);
        update_interest(*slot);  // stop reading: we only flush from now on
    }
    //@end
}

/// The idle list: every client, least recently heard first, linked through
/// the clients themselves (no node to allocate). Hearing from a client moves
/// it to the back, so the front is always the next to time out.
void Server::idle_append(Client& c) {
    c.idle_prev = idle_last_;
    c.idle_next = nullptr;
    (idle_last_ ? idle_last_->idle_next : idle_first_) = &c;
    idle_last_ = &c;
}

void Server::idle_remove(Client& c) {
    (c.idle_prev ? c.idle_prev->idle_next : idle_first_) = c.idle_next;
    (c.idle_next ? c.idle_next->idle_prev : idle_last_) = c.idle_prev;
    c.idle_prev = c.idle_next = nullptr;
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
    if (tat + cost - now > seconds(1)) return false;  // resume_time() says when it may go on
    c.flood_tat = tat + cost;
    return true;
}

/// When a throttled client has credit for its next line again: when the
/// clock is one second behind its credit plus one line's cost.
Clock::time_point Server::resume_time(const Client& c) const {
    auto cost = nanoseconds(seconds(1)) / std::max(limits_.flood_lines, 1L);
    return c.flood_tat + cost - seconds(1);
}

/// The epoll_wait timeout: time to the nearest timer, or -1 (sleep until
/// an event) when no timer is due. An idle server makes no system calls.
int Server::next_timeout_ms(Clock::time_point now) const {
    // Output to flush, clients to close: one more turn at once.
    if (!dirty_.empty() || !leavers_.empty()) return 0;
    //@hole 6 Timers that cost nothing while idle
    //@ epoll_wait's timeout is the only clock this loop has. Which deadlines can be
    //@ due (the longest-idle client's, a throttled client's resume_time(), shutdown's)?
    //@ How long may the loop sleep, rounded which way, and when may it sleep forever?
    //@ Why not wake every 100 ms and look, as this stub does?
    //@stub return 100;
    Clock::time_point next = Clock::time_point::max();
    if (shutting_down_) {
        next = shutdown_deadline_;
    } else {
        if (limits_.idle_timeout > 0 && idle_first_ != nullptr)
            next = idle_first_->last_heard + seconds(limits_.idle_timeout);
        for (const Client* c : throttled_) next = std::min(next, resume_time(*c));
    }
    if (next == Clock::time_point::max()) return -1;  // nothing due: sleep until an event
    if (next <= now) return 0;
    // Round up: waking a little early would only spin until the timer is due.
    auto wait = std::chrono::ceil<milliseconds>(next - now).count();
    return static_cast<int>(std::min<long long>(wait, 60 * 60 * 1000));
    //@end
}

/// The time to the next sweep of emptied queues, or -1 when none waits.
int Server::sweep_timeout_ms(Clock::time_point now) const {
    if (emptied_.empty()) return -1;
    if (next_sweep_ <= now) return 0;
    return static_cast<int>(std::chrono::ceil<milliseconds>(next_sweep_ - now).count());
}

void Server::fire_timers(Clock::time_point now) {
    if (shutting_down_) return;
    //@hole 6
    //@ (TODO 6) Which clients have been silent for limits_.idle_timeout seconds? The
    //@ front of the idle list (idle_first_) is the one heard from longest ago. Each
    //@ gets "ERROR :idle timeout" (an Event::Kind::Closing) before it leaves
    //@ ("idle timeout").
    if (limits_.idle_timeout > 0) {
        while (idle_first_ != nullptr &&
               idle_first_->last_heard + seconds(limits_.idle_timeout) <= now) {
            Client& c = *idle_first_;
            deliver(c, Event{Event::Kind::Closing, c.addressee(), "idle timeout"});
            leave(c, "idle timeout", true);  // also takes it off the idle list
        }
    }
    //@end
    std::vector<Client*> due;
    for (Client* c : throttled_)
        if (resume_time(*c) <= now) due.push_back(c);
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

    //@hole 7 Signals through the event loop
    //@ SIGINT and SIGTERM must stop the server cleanly: every client told, output
    //@ flushed. A signal handler may touch almost nothing (not the client table), and
    //@ by default these signals kill the process on the spot. How can a signal become
    //@ one more readable fd in the loop (the idea of stage 06's self-pipe)? Server
    //@ watches `signals` and calls on_signal() when it is readable.
    //@stub muxlab::Fd signals;
    // Block SIGINT and SIGTERM and receive them through a signalfd instead:
    // they become one more readable fd in the event loop (notes/09-chat-room.md).
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &stop_signals, nullptr) < 0) {
        muxlab::log_errno("sigprocmask");
        return 1;
    }
    muxlab::Fd signals(signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!signals) {
        muxlab::log_errno("signalfd");
        return 1;
    }
    //@end

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
