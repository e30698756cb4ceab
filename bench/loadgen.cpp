/**
 * @file bench/loadgen.cpp
 * @brief The kit's load generator: one epoll loop drives thousands of client
 *        connections against a muxlab server (or Redis, as an outside reference).
 *
 * Modes (the first argument):
 *   echo    K pingpong clients, optionally beside N idle connections opened
 *           first: messages per second and round-trip latency.
 *   hold    N idle connections held open for the given time (or until
 *           SIGTERM): the server's memory per connection and idle CPU.
 *   accept  C concurrent loops of connect, first byte back, close:
 *           connections per second.
 *   fanout  a room of M members in which S senders keep W messages each in
 *           flight: deliveries per second and fan-out latency.
 *
 * Every connection is non-blocking and sits in one level-triggered epoll set.
 * A connection counts as established only when the server has answered on it
 * (an echoed byte, the welcome line, a Redis reply), so a connection parked in
 * the listen backlog never passes for a served one. With `-j P` the work is
 * split over P processes (each may hold at most the per-process fd limit)
 * which start measuring together; `--sources` spreads connections over
 * several source addresses when one address runs out of ports.
 *
 * The result is one line of `key=value` pairs on stdout (bench/run parses
 * it); progress and errors go to stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "muxlab/fd.hpp"
#include "muxlab/net.hpp"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24  // Linux 4.2; older C libraries lack the name
#endif

namespace {

// ==== Configuration ==================================================================

enum class Mode { Echo, Hold, Accept, Fanout };
/// What a client says. echo: raw bytes come back; chat: the stage-09 line
/// protocol (`/nick N`, `/ping T` -> `PONG T`); redis: RESP inline commands;
/// banner: the server speaks first, any byte counts; none: no handshake at
/// all (a connection counts once connect() completes).
enum class Proto { Echo, Chat, Redis, Banner, None };

struct Config {
    Mode mode = Mode::Echo;
    Proto proto = Proto::Echo;
    sockaddr_storage target{};
    socklen_t target_len = 0;
    std::vector<in_addr> sources;  ///< source addresses, used round-robin
    long clients = 1;     ///< echo: pingpong clients; accept: parallel loops; fanout: senders
    long idle = 0;        ///< echo: idle connections; hold: connections
    long members = 0;     ///< fanout: room size
    long size = 64;       ///< message size in bytes
    long window = 4;      ///< fanout: messages in flight per sender
    long count = 0;       ///< echo: stop after this many messages (0: run for the duration)
    long procs = 1;       ///< processes to split the connections over
    long rounds = 1;      ///< measuring windows over the same connections (one line each)
    long burst = 256;     ///< connects in progress at once while setting up
    double duration = 2.0;
    double warmup = 0.5;
    double timeout = 30.0;  ///< setup deadline; also a request's give-up time
    double linger = 0;      ///< after the report, wait this long for the server to close first
    bool anonymous = false; ///< chat: do not join the room (no /nick), the welcome line will do
};

[[noreturn]] void usage(const char* message) {
    if (message != nullptr) std::fprintf(stderr, "loadgen: %s\n", message);
    std::fprintf(message != nullptr ? stderr : stdout,
        "usage: loadgen echo|hold|accept|fanout [options] HOST:PORT\n"
        "  -c N           echo: pingpong clients; accept: parallel connect loops;\n"
        "                 fanout: senders (default 1)\n"
        "  -i N           echo: idle connections opened first; hold: connections\n"
        "  -m N           fanout: room members\n"
        "  -s BYTES       message size (default 64)\n"
        "  -W N           fanout: messages in flight per sender (default 4)\n"
        "  -d SECS        measuring time; hold: how long to hold (default 2)\n"
        "  -w SECS        warm-up before measuring (default 0.5)\n"
        "  -n COUNT       echo: stop after COUNT messages instead of a time\n"
        "  -j PROCS       split the connections over PROCS processes (not fanout)\n"
        "  -r ROUNDS      measure ROUNDS times over the same connections (a line each)\n"
        "  -t SECS        setup deadline and per-request give-up time (default 30)\n"
        "  --proto P      echo (default), chat, redis, banner or none\n"
        "  --sources A    source addresses, e.g. 127.0.0.2-9 or 127.0.0.2,127.0.0.3\n"
        "  --burst N      connects in flight while setting up (default 256)\n"
        "  --anonymous    chat: stay out of the room (no /nick): idle connections\n"
        "                 that cost no join notices\n"
        "  --linger SECS  after reporting, wait up to SECS for the server to close\n"
        "                 the connections first (no TIME_WAIT left on this side);\n"
        "                 what is still open then is reset\n"
        "Prints one line of key=value results on stdout.\n");
    std::exit(message != nullptr ? 2 : 0);
}

long parse_count(const char* text, long min, long max) {
    char* end = nullptr;
    errno = 0;
    long value = std::strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max)
        usage((std::string("bad number '") + text + "'").c_str());
    return value;
}

double parse_seconds(const char* text) {
    char* end = nullptr;
    double value = std::strtod(text, &end);
    if (end == text || *end != '\0' || !(value >= 0 && value < 1e6))
        usage((std::string("bad time '") + text + "'").c_str());
    return value;
}

/// "127.0.0.2-9" -> 127.0.0.2 ... 127.0.0.9; commas separate several.
std::vector<in_addr> parse_sources(const std::string& text) {
    std::vector<in_addr> out;
    std::size_t start = 0;
    while (start <= text.size()) {
        std::size_t comma = text.find(',', start);
        std::string item = text.substr(start, comma == std::string::npos ? comma : comma - start);
        start = comma == std::string::npos ? text.size() + 1 : comma + 1;
        std::string first = item;
        long last_octet = -1;
        std::size_t dash = item.find('-');
        if (dash != std::string::npos) {
            first = item.substr(0, dash);
            last_octet = parse_count(item.substr(dash + 1).c_str(), 0, 255);
        }
        in_addr address{};
        if (inet_pton(AF_INET, first.c_str(), &address) != 1)
            usage(("bad source address '" + item + "'").c_str());
        uint32_t host_order = ntohl(address.s_addr);
        long octet = host_order & 0xff;
        if (last_octet < 0) last_octet = octet;
        for (long o = octet; o <= last_octet; ++o) {
            in_addr one{};
            one.s_addr = htonl((host_order & ~0xffu) | static_cast<uint32_t>(o));
            out.push_back(one);
        }
    }
    return out;
}

void parse_target(const std::string& text, Config& config) {
    std::size_t colon = text.rfind(':');
    if (colon == std::string::npos) usage("target must be HOST:PORT");
    std::string host = text.substr(0, colon);
    std::string port = text.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* found = nullptr;
    int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
    if (rc != 0) {
        std::fprintf(stderr, "loadgen: cannot resolve %s: %s\n", text.c_str(), gai_strerror(rc));
        std::exit(2);
    }
    std::memcpy(&config.target, found->ai_addr, found->ai_addrlen);
    config.target_len = found->ai_addrlen;
    freeaddrinfo(found);
}

Config parse_command_line(int argc, char** argv) {
    if (argc >= 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0))
        usage(nullptr);
    if (argc < 3) usage("need a mode and HOST:PORT");
    Config config;
    std::string mode = argv[1];
    if (mode == "echo") config.mode = Mode::Echo;
    else if (mode == "hold") config.mode = Mode::Hold;
    else if (mode == "accept") config.mode = Mode::Accept;
    else if (mode == "fanout") config.mode = Mode::Fanout;
    else usage(("unknown mode '" + mode + "'").c_str());
    std::string target;
    for (int i = 2; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--help") usage(nullptr);
        if (arg == "--anonymous") {
            config.anonymous = true;
            continue;
        }
        if (arg[0] != '-') {
            target = arg;
            continue;
        }
        if (i + 1 >= argc) usage((arg + " needs a value").c_str());
        const char* value = argv[++i];
        if (arg == "-c") config.clients = parse_count(value, 0, 1000000);
        else if (arg == "-i") config.idle = parse_count(value, 0, 1000000);
        else if (arg == "-m") config.members = parse_count(value, 0, 1000000);
        else if (arg == "-s") config.size = parse_count(value, 8, 65536);
        else if (arg == "-W") config.window = parse_count(value, 1, 512);
        else if (arg == "-n") config.count = parse_count(value, 0, 1L << 40);
        else if (arg == "-j") config.procs = parse_count(value, 1, 64);
        else if (arg == "-r") config.rounds = parse_count(value, 1, 1000);
        else if (arg == "--burst") config.burst = parse_count(value, 1, 100000);
        else if (arg == "-d") config.duration = parse_seconds(value);
        else if (arg == "-w") config.warmup = parse_seconds(value);
        else if (arg == "-t") config.timeout = parse_seconds(value);
        else if (arg == "--linger") config.linger = parse_seconds(value);
        else if (arg == "--sources") config.sources = parse_sources(value);
        else if (arg == "--proto") {
            std::string proto = value;
            if (proto == "echo") config.proto = Proto::Echo;
            else if (proto == "chat") config.proto = Proto::Chat;
            else if (proto == "redis") config.proto = Proto::Redis;
            else if (proto == "banner") config.proto = Proto::Banner;
            else if (proto == "none") config.proto = Proto::None;
            else usage(("unknown protocol '" + proto + "'").c_str());
        } else {
            usage(("unknown option '" + arg + "'").c_str());
        }
    }
    if (target.empty()) usage("need HOST:PORT");
    parse_target(target, config);
    if (config.mode == Mode::Fanout && config.procs != 1) usage("fanout runs in one process");
    if (config.mode == Mode::Fanout && (config.members < 2 || config.clients < 1))
        usage("fanout needs -m MEMBERS (at least 2) and -c SENDERS");
    if (config.mode == Mode::Fanout && config.proto == Proto::Chat && config.clients > config.members)
        usage("chat senders are members: -c must not exceed -m");
    if (config.mode == Mode::Fanout && config.proto != Proto::Chat && config.proto != Proto::Redis)
        usage("fanout speaks --proto chat or --proto redis");
    if (config.mode == Mode::Accept && config.clients < 1) usage("accept needs -c 1 or more");
    if (!config.sources.empty() && config.target.ss_family != AF_INET)
        usage("--sources needs an IPv4 target");
    return config;
}

// ==== Measuring ======================================================================

uint64_t now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t seconds_to_ns(double seconds) { return static_cast<uint64_t>(seconds * 1e9); }

/**
 * @brief Latency histogram in nanoseconds, log-linear: 64 buckets for every
 *        power of two, so a percentile is off by at most 1/64.
 *
 * Fixed size and plain data, so processes merge theirs by adding counts.
 */
class Histogram {
public:
    void record(uint64_t ns) {
        ++buckets_[index_of(std::min<uint64_t>(ns, kMaxValue))];
        ++count_;
        sum_ += ns;
        max_ = std::max(max_, ns);
    }
    void merge(const Histogram& other) {
        for (std::size_t i = 0; i < buckets_.size(); ++i) buckets_[i] += other.buckets_[i];
        count_ += other.count_;
        sum_ += other.sum_;
        max_ = std::max(max_, other.max_);
    }
    uint64_t count() const { return count_; }
    double mean_us() const { return count_ ? static_cast<double>(sum_) / count_ / 1e3 : 0; }
    double max_us() const { return static_cast<double>(max_) / 1e3; }
    /// The value (in microseconds) below which a fraction @p q of samples lie.
    double quantile_us(double q) const {
        if (count_ == 0) return 0;
        uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(count_));
        if (rank >= count_) rank = count_ - 1;
        uint64_t seen = 0;
        for (std::size_t i = 0; i < buckets_.size(); ++i) {
            seen += buckets_[i];
            if (seen > rank) return std::min<double>(middle_of(i), static_cast<double>(max_)) / 1e3;
        }
        return max_us();
    }

private:
    static constexpr uint64_t kMaxValue = uint64_t{1} << 40;  // ~18 minutes
    static constexpr std::size_t kBuckets = 36 * 64;  // index_of(kMaxValue) < this

    static std::size_t index_of(uint64_t v) {
        if (v < 128) return static_cast<std::size_t>(v);
        int shift = 63 - __builtin_clzll(v) - 6;  // keep the top 7 bits
        return static_cast<std::size_t>(shift) * 64 + static_cast<std::size_t>(v >> shift);
    }
    static double middle_of(std::size_t i) {
        if (i < 128) return static_cast<double>(i);
        std::size_t shift = i / 64 - 1;
        uint64_t low = static_cast<uint64_t>(i % 64 + 64) << shift;
        return static_cast<double>(low) + static_cast<double>(uint64_t{1} << shift) / 2;
    }

    std::array<uint64_t, kBuckets> buckets_{};
    uint64_t count_ = 0;
    uint64_t sum_ = 0;
    uint64_t max_ = 0;
};

/// What one process measured; plain data so it can cross a pipe.
struct Result {
    uint64_t wanted = 0;       ///< connections asked for
    uint64_t established = 0;  ///< connections the server answered on during setup
    uint64_t failed = 0;       ///< setup failures: refused, reset, no answer in time
    uint64_t dropped = 0;      ///< established connections the server closed later
    uint64_t completed = 0;    ///< echo: round trips; accept: connections; fanout: messages
    uint64_t deliveries = 0;   ///< fanout: copies received by members
    uint64_t lost = 0;         ///< fanout: messages not fully delivered in time
    uint64_t errors = 0;       ///< accept: failed attempts
    uint64_t elapsed_ns = 0;   ///< length of the measuring window
    Histogram latency;
};
static_assert(std::is_trivially_copyable_v<Result>, "Result crosses a pipe as bytes");

// ==== Connections ====================================================================

volatile sig_atomic_t g_stop = 0;  // set by SIGTERM/SIGINT: finish now and report

enum class Role : uint8_t { Idle, Active, Sender, Member, Probe };
enum class State : uint8_t { Connecting, Greeting, Ready, Closed };

struct Conn {
    muxlab::Fd fd;
    Role role = Role::Idle;
    State state = State::Closed;
    uint32_t index = 0;        ///< global connection number: picks the source address
    uint32_t sender = 0;       ///< fanout: this sender's number
    uint64_t started_ns = 0;   ///< connect (setup, accept) or request (echo) time
    long awaiting = 0;         ///< echo: bytes of the reply still to come
    uint64_t seq = 0;          ///< fanout sender: next message number
    long in_flight = 0;        ///< fanout sender: messages not yet fully delivered
    std::string in;            ///< partial line (line protocols)
    std::string out;           ///< bytes the socket did not take yet
};

/// One message a fanout sender has in flight.
struct Flight {
    uint64_t seq = 0;
    uint64_t sent_ns = 0;
    uint32_t got = 0;
    uint32_t expected = 0;
    bool live = false;
};
constexpr std::size_t kFlightSlots = 1024;  // per sender; the window is at most 512

/// Which connections one process opens: [first, first+count) of each kind.
struct Share {
    long idle = 0, idle_first = 0;
    long clients = 0, clients_first = 0;
};

class Generator {
public:
    Generator(const Config& config, const Share& share) : config_(config), share_(share) {
        epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
        if (!epoll_) {
            muxlab::log_errno("epoll_create1");
            std::exit(1);
        }
        events_.resize(1024);
    }

    /// Opens every connection and waits until the server answered on each.
    void setup();
    /// One measured phase; call again for another round over the same connections.
    void run();
    /// Lets the server close first (up to --linger seconds), then resets the rest.
    void finish();
    const Result& result() const { return result_; }

private:
    // -- plumbing
    void open(std::size_t slot);
    void close_conn(Conn& c);
    void watch(Conn& c, bool want_out);
    bool send_bytes(Conn& c, const char* data, std::size_t len);
    void flush(Conn& c);
    void handle(std::size_t slot, uint32_t events);
    void on_connected(Conn& c);
    void on_data(Conn& c, const char* data, std::size_t len);
    void on_line(Conn& c, const char* line, std::size_t len);
    void on_ready(Conn& c);
    void on_failed(Conn& c, bool was_established);
    void poll_once(int timeout_ms);

    // -- workloads
    void send_request(Conn& c);
    void complete_request(Conn& c);
    void fill_window(Conn& c);
    void deliver(uint32_t sender, uint64_t seq);
    void expire_flights(uint64_t now);
    void expire_probes(uint64_t now);
    bool is_measuring(uint64_t now) const { return running_ && now >= measure_from_ && now < measure_to_; }

    const Config& config_;
    Share share_;
    muxlab::Fd epoll_;
    std::vector<epoll_event> events_;
    std::vector<Conn> conns_;
    std::vector<std::size_t> sender_slots_;
    std::vector<std::vector<Flight>> flights_;  // per sender
    Result result_;
    std::size_t next_to_open_ = 0;
    long opening_ = 0;        ///< connects and greetings in progress during setup
    long live_members_ = 0;   ///< fanout: members that can receive
    long open_conns_ = 0;     ///< sockets this generator holds
    bool running_ = false;
    uint64_t measure_from_ = 0;
    uint64_t measure_to_ = UINT64_MAX;
    uint64_t last_sweep_ = 0;
};

void Generator::watch(Conn& c, bool want_out) {
    epoll_event ev{};
    ev.events = EPOLLIN | (want_out ? EPOLLOUT : 0u);
    ev.data.u64 = static_cast<uint64_t>(&c - conns_.data());
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev) < 0) muxlab::log_errno("epoll_ctl");
}

void Generator::open(std::size_t slot) {
    Conn& c = conns_[slot];
    c.in.clear();
    c.out.clear();
    c.awaiting = 0;
    int family = config_.target.ss_family;
    c.fd.reset(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!c.fd) {
        muxlab::log_errno("socket");  // EMFILE: more connections than this process may hold
        c.state = State::Closed;
        on_failed(c, false);
        return;
    }
    ++open_conns_;
    int on = 1;
    setsockopt(c.fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    if (c.role == Role::Probe) {
        // A probe ends with a reset, not a FIN: the side that closes first
        // keeps the port in TIME_WAIT for a minute, and thousands of probes
        // per second would use up every local port.
        linger abort_on_close{1, 0};
        setsockopt(c.fd.get(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
    }
    if (!config_.sources.empty()) {
        // Bind only the address; the port is chosen at connect() time, so the
        // same local port may serve several destinations (more connections).
        setsockopt(c.fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on);
        sockaddr_in source{};
        source.sin_family = AF_INET;
        source.sin_addr = config_.sources[c.index % config_.sources.size()];
        if (bind(c.fd.get(), reinterpret_cast<sockaddr*>(&source), sizeof source) < 0)
            muxlab::log_errno("bind source address");
    }
    c.started_ns = now_ns();
    c.state = State::Connecting;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u64 = slot;
    epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.fd.get(), &ev);
    if (connect(c.fd.get(), reinterpret_cast<const sockaddr*>(&config_.target), config_.target_len) < 0 &&
        errno != EINPROGRESS) {
        on_failed(c, false);
    }
}

void Generator::close_conn(Conn& c) {
    if (c.fd) --open_conns_;
    c.fd.reset();  // close() also removes it from the epoll set
    c.state = State::Closed;
}

bool Generator::send_bytes(Conn& c, const char* data, std::size_t len) {
    if (!c.out.empty()) {
        c.out.append(data, len);
        return true;
    }
    ssize_t n = send(c.fd.get(), data, len, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        on_failed(c, c.state == State::Ready);
        return false;
    }
    std::size_t sent = n > 0 ? static_cast<std::size_t>(n) : 0;
    if (sent < len) {
        c.out.assign(data + sent, len - sent);
        watch(c, true);
    }
    return true;
}

void Generator::flush(Conn& c) {
    while (!c.out.empty()) {
        ssize_t n = send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            on_failed(c, c.state == State::Ready);
            return;
        }
        c.out.erase(0, static_cast<std::size_t>(n));
    }
    watch(c, false);
}

/// A connection failed: during setup it is a setup failure, later a drop.
void Generator::on_failed(Conn& c, bool was_established) {
    bool probing = c.role == Role::Probe;
    if (c.state == State::Ready && c.role == Role::Member) --live_members_;
    if (c.state == State::Ready && c.role == Role::Sender && config_.proto == Proto::Chat) --live_members_;
    if (c.fd) close_conn(c);
    c.state = State::Closed;
    if (probing) {  // the run loop opens a new one
        if (is_measuring(now_ns())) ++result_.errors;
        return;
    }
    if (was_established) {
        ++result_.dropped;
    } else {
        ++result_.failed;
        --opening_;
    }
}

void Generator::on_connected(Conn& c) {
    watch(c, false);
    c.state = State::Greeting;
    // Say something the server must answer, so "established" means served.
    switch (config_.proto) {
    case Proto::Echo:
        send_bytes(c, "x", 1);
        break;
    case Proto::Chat: {  // join the room; "-!- welcome NICK" says we are in
        if (config_.anonymous) break;
        std::string nick = "/nick u" + std::to_string(c.index) + "\n";
        send_bytes(c, nick.data(), nick.size());
        break;
    }
    case Proto::Redis:
        if (c.role == Role::Member) send_bytes(c, "SUBSCRIBE room\r\n", 16);
        else send_bytes(c, "PING\r\n", 6);
        break;
    case Proto::Banner:
        break;
    case Proto::None:
        on_ready(c);
        break;
    }
}

void Generator::on_ready(Conn& c) {
    c.state = State::Ready;
    if (c.role == Role::Probe) {
        uint64_t now = now_ns();
        if (is_measuring(now)) {
            ++result_.completed;
            result_.latency.record(now - c.started_ns);
        }
        close_conn(c);  // the run loop opens a new one
        return;
    }
    if (c.role == Role::Member || (c.role == Role::Sender && config_.proto == Proto::Chat))
        ++live_members_;
    ++result_.established;
    --opening_;
}

void Generator::handle(std::size_t slot, uint32_t events) {
    Conn& c = conns_[slot];
    if (!c.fd) return;
    if (c.state == State::Connecting) {
        int error = 0;
        socklen_t len = sizeof error;
        getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &error, &len);
        if (error != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
            on_failed(c, false);
            return;
        }
        if ((events & EPOLLOUT) == 0) return;
        on_connected(c);
        if (!c.fd || c.state != State::Greeting) return;
    }
    if ((events & EPOLLOUT) != 0 && !c.out.empty()) {
        flush(c);
        if (!c.fd) return;
    }
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
        static char buffer[64 * 1024];
        ssize_t n = read(c.fd.get(), buffer, sizeof buffer);
        if (n > 0) {
            on_data(c, buffer, static_cast<std::size_t>(n));
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            on_failed(c, c.state == State::Ready);
        }
    }
}

void Generator::on_data(Conn& c, const char* data, std::size_t len) {
    if (config_.proto == Proto::Echo || config_.proto == Proto::Banner) {
        // Any answer proves the server holds this connection: for the echo
        // protocol it is exactly the one byte we sent.
        if (c.state == State::Greeting) {
            on_ready(c);
            return;
        }
        if (c.role == Role::Active && c.awaiting > 0) {
            c.awaiting -= static_cast<long>(len);
            if (c.awaiting <= 0) complete_request(c);
        }
        return;
    }
    // Line protocols: hand over every complete line, keep the partial tail.
    std::size_t start = 0;
    if (!c.in.empty()) {
        const char* nl = static_cast<const char*>(std::memchr(data, '\n', len));
        if (nl == nullptr) {
            c.in.append(data, len);
            return;
        }
        c.in.append(data, static_cast<std::size_t>(nl - data) + 1);
        on_line(c, c.in.data(), c.in.size());
        c.in.clear();
        start = static_cast<std::size_t>(nl - data) + 1;
    }
    while (start < len && c.fd) {
        const char* nl = static_cast<const char*>(std::memchr(data + start, '\n', len - start));
        if (nl == nullptr) {
            c.in.assign(data + start, len - start);
            break;
        }
        std::size_t line_len = static_cast<std::size_t>(nl - (data + start)) + 1;
        on_line(c, data + start, line_len);
        start += line_len;
    }
}

void Generator::on_line(Conn& c, const char* line, std::size_t len) {
    if (c.state == State::Greeting) {
        // redis: any reply; chat: the "-!- welcome uN" that follows /nick
        if (config_.proto == Proto::Redis || config_.anonymous ||
            (len > 13 && std::memcmp(line, "-!- welcome u", 13) == 0))
            on_ready(c);
        return;
    }
    if (c.role == Role::Active) {
        // chat: "PONG token"; redis: "+PONG"
        if (c.awaiting > 0 && len >= 4 && (std::memcmp(line, "PONG", 4) == 0 ||
                                           (len >= 5 && std::memcmp(line, "+PONG", 5) == 0))) {
            c.awaiting = 0;
            complete_request(c);
        }
        return;
    }
    if (c.role != Role::Member && c.role != Role::Sender) return;
    // A fanout message carries "#SENDER.SEQ;" wherever the protocol put it.
    const char* end = line + len;
    for (const char* p = line; (p = static_cast<const char*>(std::memchr(p, '#', static_cast<std::size_t>(end - p)))) != nullptr; ++p) {
        const char* q = p + 1;
        uint64_t sender = 0, seq = 0;
        const char* digits = q;
        while (q < end && *q >= '0' && *q <= '9') sender = sender * 10 + static_cast<uint64_t>(*q++ - '0');
        if (q == digits || q >= end || *q != '.') continue;
        digits = ++q;
        while (q < end && *q >= '0' && *q <= '9') seq = seq * 10 + static_cast<uint64_t>(*q++ - '0');
        if (q == digits || q >= end || *q != ';') continue;
        deliver(static_cast<uint32_t>(sender), seq);
        return;
    }
}

// ---- echo ----------------------------------------------------------------------

void Generator::send_request(Conn& c) {
    static std::string payload;
    c.started_ns = now_ns();
    std::size_t size = static_cast<std::size_t>(config_.size);
    switch (config_.proto) {
    case Proto::Echo:
    case Proto::Banner:
    case Proto::None:
        payload.assign(size - 1, 'a');
        payload += '\n';
        c.awaiting = static_cast<long>(size);
        break;
    case Proto::Chat:  // "/ping TOKEN\n" padded to the message size
        payload = "/ping " + std::to_string(c.index) + "-";
        payload.resize(size - 1, 'a');
        payload += '\n';
        c.awaiting = 1;
        break;
    case Proto::Redis:
        payload = "PING\r\n";
        c.awaiting = 1;
        break;
    }
    send_bytes(c, payload.data(), payload.size());
}

void Generator::complete_request(Conn& c) {
    uint64_t now = now_ns();
    if (is_measuring(now)) {
        ++result_.completed;
        result_.latency.record(now - c.started_ns);
    }
    if (config_.count > 0 && result_.completed >= static_cast<uint64_t>(config_.count)) {
        running_ = false;
        measure_to_ = now;
        return;
    }
    if (running_ && now < measure_to_) send_request(c);
}

// ---- fanout --------------------------------------------------------------------

void Generator::fill_window(Conn& c) {
    std::vector<Flight>& flights = flights_[c.sender];
    std::string message;
    while (running_ && c.fd && c.in_flight < config_.window) {
        uint64_t seq = c.seq++;
        Flight& f = flights[seq % kFlightSlots];
        f.seq = seq;
        f.sent_ns = now_ns();
        f.got = 0;
        long expected = config_.proto == Proto::Chat ? live_members_ - 1 : live_members_;
        f.expected = static_cast<uint32_t>(std::max(expected, 1L));
        f.live = true;
        ++c.in_flight;
        std::string body = "#" + std::to_string(c.sender) + "." + std::to_string(seq) + ";";
        body.resize(static_cast<std::size_t>(config_.size) - 1, 'a');
        message.clear();
        if (config_.proto == Proto::Redis) message = "PUBLISH room " + body + "\r\n";
        else message = body + "\n";
        send_bytes(c, message.data(), message.size());
    }
}

void Generator::deliver(uint32_t sender, uint64_t seq) {
    if (sender >= flights_.size()) return;
    Flight& f = flights_[sender][seq % kFlightSlots];
    uint64_t now = now_ns();
    if (is_measuring(now)) ++result_.deliveries;
    if (!f.live || f.seq != seq) return;
    if (++f.got < f.expected) return;
    f.live = false;
    if (is_measuring(now)) {
        ++result_.completed;
        result_.latency.record(now - f.sent_ns);
    }
    Conn& c = conns_[sender_slots_[sender]];
    --c.in_flight;
    fill_window(c);
}

/// A message some member never got (it was dropped or throttled) must not
/// stall its sender: after the give-up time it counts as lost.
void Generator::expire_flights(uint64_t now) {
    uint64_t limit = seconds_to_ns(std::min(config_.timeout, 5.0));
    for (std::size_t s = 0; s < sender_slots_.size(); ++s) {
        Conn& c = conns_[sender_slots_[s]];
        bool freed = false;
        for (Flight& f : flights_[s]) {
            if (f.live && now - f.sent_ns > limit) {
                f.live = false;
                --c.in_flight;
                ++result_.lost;
                freed = true;
            }
        }
        if (freed) fill_window(c);
    }
}

void Generator::expire_probes(uint64_t now) {
    uint64_t limit = seconds_to_ns(std::min(config_.timeout, 5.0));
    for (Conn& c : conns_)
        if (c.role == Role::Probe && c.fd && now - c.started_ns > limit) on_failed(c, false);
}

// ---- the loop ------------------------------------------------------------------

void Generator::poll_once(int timeout_ms) {
    int n = epoll_wait(epoll_.get(), events_.data(), static_cast<int>(events_.size()), timeout_ms);
    if (n < 0) {
        if (errno != EINTR) muxlab::log_errno("epoll_wait");
        return;
    }
    for (int i = 0; i < n; ++i) handle(static_cast<std::size_t>(events_[i].data.u64), events_[i].events);
}

void Generator::setup() {
    // Slots: idle connections first (so the active ones get the highest
    // descriptors on the server, the costly case for select and poll), then
    // the active ones.
    auto add = [this](Role role, long count, long first_index) {
        for (long i = 0; i < count; ++i) {
            Conn c;
            c.role = role;
            c.index = static_cast<uint32_t>(first_index + i);
            conns_.push_back(std::move(c));
        }
    };
    switch (config_.mode) {
    case Mode::Echo:
        add(Role::Idle, share_.idle, share_.idle_first);
        add(Role::Active, share_.clients, config_.idle + share_.clients_first);
        break;
    case Mode::Hold:
        add(Role::Idle, share_.idle, share_.idle_first);
        break;
    case Mode::Accept:
        add(Role::Probe, share_.clients, share_.clients_first);
        return;  // probes open when the run starts
    case Mode::Fanout:
        if (config_.proto == Proto::Chat) {
            add(Role::Sender, config_.clients, 0);
            add(Role::Member, config_.members - config_.clients, config_.clients);
        } else {
            add(Role::Member, config_.members, 0);
            add(Role::Sender, config_.clients, config_.members);
        }
        for (std::size_t i = 0; i < conns_.size(); ++i) {
            if (conns_[i].role != Role::Sender) continue;
            conns_[i].sender = static_cast<uint32_t>(sender_slots_.size());
            sender_slots_.push_back(i);
        }
        flights_.assign(sender_slots_.size(), std::vector<Flight>(kFlightSlots));
        break;
    }
    result_.wanted = conns_.size();
    events_.resize(std::max<std::size_t>(1024, std::min<std::size_t>(conns_.size(), 16384)));

    uint64_t deadline = now_ns() + seconds_to_ns(config_.timeout);
    while (!g_stop) {
        while (next_to_open_ < conns_.size() && opening_ < config_.burst) {
            ++opening_;
            open(next_to_open_++);
        }
        if (next_to_open_ == conns_.size() && opening_ == 0) break;
        if (now_ns() > deadline) {
            for (Conn& c : conns_)
                if (c.state == State::Connecting || c.state == State::Greeting) on_failed(c, false);
            result_.failed += conns_.size() - next_to_open_;
            std::fprintf(stderr, "loadgen: setup deadline: %lu of %zu connections answered\n",
                         static_cast<unsigned long>(result_.established), conns_.size());
            break;
        }
        poll_once(100);
    }
}

void Generator::run() {
    // A new round counts afresh; setup counts and drops stay.
    Result fresh;
    fresh.wanted = result_.wanted;
    fresh.established = result_.established;
    fresh.failed = result_.failed;
    fresh.dropped = result_.dropped;
    result_ = fresh;
    uint64_t start = now_ns();
    running_ = true;
    bool by_count = config_.mode == Mode::Echo && config_.count > 0;
    measure_from_ = by_count ? start : start + seconds_to_ns(config_.warmup);
    measure_to_ = by_count ? UINT64_MAX : measure_from_ + seconds_to_ns(config_.duration);
    uint64_t stop_at = by_count ? start + seconds_to_ns(config_.timeout) : measure_to_;
    if (config_.mode == Mode::Hold) {
        measure_from_ = start;
        measure_to_ = stop_at = start + seconds_to_ns(config_.duration);
    }

    for (Conn& c : conns_) {
        // (a reply still owed from the last round restarts the client by itself)
        if (c.role == Role::Active && c.state == State::Ready && c.awaiting <= 0) send_request(c);
        else if (c.role == Role::Sender && c.state == State::Ready) fill_window(c);
    }
    while (!g_stop && running_) {
        if (config_.mode != Mode::Accept && open_conns_ == 0) break;  // the server closed all
        // accept: every probe that finished (or failed) starts over. A refused
        // one is retried only after the next wait, which keeps a dead server
        // from turning this loop into a busy spin.
        if (config_.mode == Mode::Accept)
            for (std::size_t i = 0; i < conns_.size(); ++i)
                if (!conns_[i].fd) open(i);
        uint64_t now = now_ns();
        if (now >= stop_at) break;
        if (now - last_sweep_ > 100000000u) {
            last_sweep_ = now;
            if (config_.mode == Mode::Fanout) expire_flights(now);
            if (config_.mode == Mode::Accept) expire_probes(now);
        }
        uint64_t wait_ns = std::min<uint64_t>(stop_at - now, 100000000u);
        poll_once(static_cast<int>((wait_ns + 999999) / 1000000));
    }
    running_ = false;
    uint64_t end = std::min(now_ns(), measure_to_);
    result_.elapsed_ns = end > measure_from_ ? end - measure_from_ : 0;
}

void Generator::finish() {
    running_ = false;
    uint64_t until = now_ns() + seconds_to_ns(config_.linger);
    while (open_conns_ > 0 && now_ns() < until) poll_once(50);
    linger abort_on_close{1, 0};
    for (Conn& c : conns_) {
        if (!c.fd) continue;
        setsockopt(c.fd.get(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
        close_conn(c);
    }
}

// ==== Processes and the report ==========================================================

void on_stop_signal(int) { g_stop = 1; }

/// Reads exactly @p len bytes; calls @p on_interrupt when a signal cut a read short.
template <typename F>
bool read_full(int fd, void* data, std::size_t len, F on_interrupt) {
    char* p = static_cast<char*>(data);
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR) {
            on_interrupt();
            continue;
        }
        if (n <= 0) return false;
        p += n;
        len -= static_cast<std::size_t>(n);
    }
    return true;
}

Share share_for(const Config& config, long proc) {
    auto part = [&](long total, long* first) {
        long base = total / config.procs, extra = total % config.procs;
        *first = proc * base + std::min(proc, extra);
        return base + (proc < extra ? 1 : 0);
    };
    Share share;
    share.idle = part(config.idle, &share.idle_first);
    share.clients = part(config.clients, &share.clients_first);
    return share;
}

void print_ready(const Result& r) {
    std::printf("ready conns=%lu failed=%lu\n", static_cast<unsigned long>(r.established),
                static_cast<unsigned long>(r.failed));
    std::fflush(stdout);
}

void print_report(const Config& config, const Result& r) {
    static const char* const kModes[] = {"echo", "hold", "accept", "fanout"};
    static const char* const kProtos[] = {"echo", "chat", "redis", "banner", "none"};
    double secs = static_cast<double>(r.elapsed_ns) / 1e9;
    double rate = secs > 0 ? static_cast<double>(r.completed) / secs : 0;
    std::printf("mode=%s proto=%s procs=%ld clients=%ld idle=%ld members=%ld size=%ld window=%ld"
                " wanted=%lu conns=%lu failed=%lu dropped=%lu errors=%lu secs=%.3f"
                " completed=%lu rate=%.1f deliveries=%lu delivery_rate=%.1f lost=%lu"
                " p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mean_us=%.1f\n",
                kModes[static_cast<int>(config.mode)], kProtos[static_cast<int>(config.proto)],
                config.procs, config.clients, config.idle, config.members, config.size,
                config.window, static_cast<unsigned long>(r.wanted),
                static_cast<unsigned long>(r.established), static_cast<unsigned long>(r.failed),
                static_cast<unsigned long>(r.dropped), static_cast<unsigned long>(r.errors), secs,
                static_cast<unsigned long>(r.completed), rate,
                static_cast<unsigned long>(r.deliveries),
                secs > 0 ? static_cast<double>(r.deliveries) / secs : 0,
                static_cast<unsigned long>(r.lost), r.latency.quantile_us(0.50),
                r.latency.quantile_us(0.90), r.latency.quantile_us(0.99),
                r.latency.quantile_us(0.999), r.latency.max_us(), r.latency.mean_us());
    std::fflush(stdout);
}

/// One process: set up, (hold: say ready), run, report.
int run_alone(const Config& config) {
    Generator generator(config, share_for(config, 0));
    generator.setup();
    if (config.mode == Mode::Hold) print_ready(generator.result());
    for (long round = 0; round < config.rounds && !g_stop; ++round) {
        generator.run();
        print_report(config, generator.result());
    }
    generator.finish();
    return 0;
}

/// Several processes: each sets up its share and says so on its pipe; when
/// all are ready the parent starts them together, then adds up their results.
int run_split(const Config& config) {
    struct Child {
        pid_t pid = -1;
        muxlab::Fd results;  // child -> parent: one ready byte, then a Result
        muxlab::Fd go;       // parent -> child: one byte starts the run
    };
    std::vector<Child> children(static_cast<std::size_t>(config.procs));
    for (long p = 0; p < config.procs; ++p) {
        int up[2], down[2];
        if (pipe2(up, O_CLOEXEC) < 0 || pipe2(down, O_CLOEXEC) < 0) {
            muxlab::log_errno("pipe");
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            muxlab::log_errno("fork");
            return 1;
        }
        if (pid == 0) {
            close(up[0]);
            close(down[1]);
            for (Child& sibling : children) sibling.results.reset(), sibling.go.reset();
            // Own scope: the generator's descriptors close before _exit.
            {
                Generator generator(config, share_for(config, p));
                generator.setup();
                uint64_t established = generator.result().established;
                if (write(up[1], &established, sizeof established) != sizeof established) _exit(1);
                char byte = 0;
                while (read(down[0], &byte, 1) == 1) {  // one byte per round; EOF: done
                    generator.run();
                    const Result& r = generator.result();
                    if (write(up[1], &r, sizeof r) != static_cast<ssize_t>(sizeof r)) _exit(1);
                }
                generator.finish();
            }
            _exit(0);
        }
        close(up[1]);
        close(down[0]);
        children[static_cast<std::size_t>(p)].pid = pid;
        children[static_cast<std::size_t>(p)].results.reset(up[0]);
        children[static_cast<std::size_t>(p)].go.reset(down[1]);
    }
    bool forwarded = false;
    auto forward_stop = [&] {
        if (!g_stop || forwarded) return;
        forwarded = true;
        for (Child& child : children) kill(child.pid, SIGTERM);
    };
    bool ok = true;
    Result total;
    for (Child& child : children) {
        uint64_t established = 0;
        if (!read_full(child.results.get(), &established, sizeof established, forward_stop)) ok = false;
        total.established += established;
    }
    if (config.mode == Mode::Hold) print_ready(total);
    for (long round = 0; round < config.rounds && ok && !g_stop; ++round) {
        for (Child& child : children) {
            char byte = 'g';
            if (write(child.go.get(), &byte, 1) != 1) ok = false;
        }
        total = Result{};
        for (Child& child : children) {
            Result r;
            if (!read_full(child.results.get(), &r, sizeof r, forward_stop)) {
                ok = false;
                continue;
            }
            total.wanted += r.wanted;
            total.established += r.established;
            total.failed += r.failed;
            total.dropped += r.dropped;
            total.completed += r.completed;
            total.deliveries += r.deliveries;
            total.lost += r.lost;
            total.errors += r.errors;
            total.elapsed_ns = std::max(total.elapsed_ns, r.elapsed_ns);
            total.latency.merge(r.latency);
        }
        print_report(config, total);
    }
    for (Child& child : children) {
        child.go.reset();  // EOF: the child finishes
        int status = 0;
        while (waitpid(child.pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    if (!ok) std::fprintf(stderr, "loadgen: a worker process failed\n");
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    Config config = parse_command_line(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction stop {};
    stop.sa_handler = on_stop_signal;  // no SA_RESTART: epoll_wait returns EINTR
    sigaction(SIGTERM, &stop, nullptr);
    sigaction(SIGINT, &stop, nullptr);
    return config.procs > 1 ? run_split(config) : run_alone(config);
}
