/**
 * @file solutions/07-epoll-lt/server.cpp
 * @brief Stage 07: an echo server for many clients on one epoll instance,
 *        level-triggered.
 *
 * poll() hands the kernel the whole list of descriptors on every call and
 * scans it again on return. epoll keeps that list (the interest list) inside
 * the kernel: epoll_ctl() changes it one descriptor at a time, and
 * epoll_wait() returns only the descriptors that are ready, so one wakeup
 * costs the same with ten clients or ten thousand.
 *
 * Level-triggered (the default) means epoll_wait() reports a descriptor for as
 * long as it is ready. Whatever one read() leaves in the socket is reported
 * again on the next call, so one read() per report is enough.
 *
 * Every socket is non-blocking. When the kernel takes only part of a write,
 * the rest waits in the client's pending output and EPOLLOUT is armed until it
 * has gone, then disarmed again. See notes/07-epoll.md.
 */
#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "muxlab/fd.hpp"
#include "muxlab/net.hpp"
#include "muxlab/options.hpp"

namespace {

// ---- Tuning -------------------------------------------------------------------

// Level-triggered: no EPOLLET flag. Stage 08 sets EPOLLET here.
constexpr std::uint32_t kTrigger = 0;
// The input events a client socket is watched for.
constexpr std::uint32_t kInput = EPOLLIN;

constexpr std::size_t kChunk = 64 * 1024;  // bytes per read()
// A client that sends faster than it reads piles up echo here. Beyond this
// many pending bytes we stop reading from it: its data stays in the kernel,
// TCP flow control slows the sender down, and memory stays bounded.
constexpr std::size_t kPendingCap = 256 * 1024;
constexpr int kMaxEvents = 256;  // ready descriptors taken per epoll_wait()

// ---- Data structures ------------------------------------------------------------

struct Client {
    muxlab::Fd socket;
    std::string pending;            // echo the socket did not take yet
    //@hole 2
    std::uint32_t interest = 0;     // the events registered with epoll now
    //@end
    bool input_closed = false;      // read() returned 0: finish the echo, then close
};

struct Server {
    muxlab::Fd epoll;
    muxlab::Fd listener;
    std::unordered_map<int, Client> clients;  // by socket descriptor
    bool accept_paused = false;               // out of descriptors: listener disarmed
};

// ---- Interest list --------------------------------------------------------------

bool wants_input(const Client& client) {
    return !client.input_closed && client.pending.size() < kPendingCap;
}

//@hole 2 Interest follows the output
//@ epoll_wait() reports a watched socket for as long as it is ready. Which events
//@ does each client need to be watched for right now: while its echo keeps up, while
//@ part of its echo waits in `pending`, once that has gone? What would a socket with
//@ an empty send buffer do to the loop if it stayed watched for writing? And when does
//@ the kernel need to hear about a change: how often does that cost a system call?
//@stub /// Brings the interest list up to date. @return false on an error.
//@stub bool update_interest(Server& server, Client& client) {
//@stub     return true;
//@stub }
/// Input while the echo keeps up; EPOLLOUT only while output is waiting. An
/// empty socket buffer is writable nearly all the time: left armed, EPOLLOUT
/// would wake epoll_wait() on every call and the loop would spin.
std::uint32_t wanted_events(const Client& client) {
    std::uint32_t events = kTrigger;
    if (wants_input(client)) events |= kInput;
    if (!client.pending.empty()) events |= EPOLLOUT;
    return events;
}

/// Brings the interest list up to date. Costs a system call only when the
/// interest really changed, which in the steady state (output fits) is never.
bool update_interest(Server& server, Client& client) {
    std::uint32_t events = wanted_events(client);
    if (events == client.interest) return true;
    epoll_event change{};
    change.events = events;
    change.data.fd = client.socket.get();
    if (epoll_ctl(server.epoll.get(), EPOLL_CTL_MOD, client.socket.get(), &change) < 0) {
        muxlab::log_errno("epoll_ctl");
        return false;
    }
    client.interest = events;
    return true;
}
//@end

/// Stops (or restarts) watching the listener.
//@hole 2
/// At EMFILE the connection stays in the backlog and the listener stays
/// readable: level-triggered epoll would report it on every call and accept()
/// would fail on every call, a busy loop.
//@end
void watch_listener(Server& server, bool watch) {
    //@hole 2
    //@ TODO 2, the listener: at EMFILE, accept() fails and the connection stays in the
    //@ backlog, so the listener stays readable. What must epoll stop doing, until when?
    epoll_event change{};
    change.events = watch ? (EPOLLIN | kTrigger) : 0;
    change.data.fd = server.listener.get();
    if (epoll_ctl(server.epoll.get(), EPOLL_CTL_MOD, server.listener.get(), &change) < 0)
        muxlab::log_errno("epoll_ctl");
    //@end
    server.accept_paused = !watch;
}

// ---- Moving bytes ----------------------------------------------------------------

/// Writes what the socket takes now. @return false when the client is gone.
bool flush(Client& client) {
    if (client.pending.empty()) return true;
    ssize_t sent = send(client.socket.get(), client.pending.data(), client.pending.size(),
                        MSG_NOSIGNAL);
    if (sent < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    // A short count means the socket buffer is full: the rest waits for EPOLLOUT.
    client.pending.erase(0, static_cast<std::size_t>(sent));
    return true;
}

/// Echoes @p data: straight to the socket when nothing is queued ahead of it
/// (the usual case, one send() and no copy), otherwise behind the queue.
bool echo(Client& client, const char* data, std::size_t size) {
    if (client.pending.empty()) {
        ssize_t sent = send(client.socket.get(), data, size, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
            sent = 0;
        }
        data += sent;
        size -= static_cast<std::size_t>(sent);
    }
    client.pending.append(data, size);
    return true;
}

/// One read(): level-triggered epoll reports the socket again if more is left.
/// @return false when the client is gone (reset, or an error).
bool receive(Client& client) {
    char buffer[kChunk];
    ssize_t received = read(client.socket.get(), buffer, sizeof buffer);
    if (received < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    if (received == 0) {
        client.input_closed = true;  // the client half-closed: echo what is left, then close
        return true;
    }
    return echo(client, buffer, static_cast<std::size_t>(received));
}

// ---- Events ---------------------------------------------------------------------

void close_client(Server& server, int fd) {
    // Closing removes the socket from the interest list by itself, as long as
    // no other descriptor (a dup, a forked child) refers to the same socket.
    server.clients.erase(fd);
    // A descriptor is free again: connections waiting in the backlog can come in.
    if (server.accept_paused) watch_listener(server, true);
}

void serve_client(Server& server, int fd, std::uint32_t events) {
    auto found = server.clients.find(fd);
    if (found == server.clients.end()) return;
    Client& client = found->second;
    // EPOLLERR and EPOLLHUP are always reported, even when not asked for; the
    // next read() or send() returns the error and the client is closed.
    bool alive = true;
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) alive = flush(client);
    if (alive && (events & (kInput | EPOLLERR | EPOLLHUP)) && wants_input(client))
        alive = receive(client);
    if (alive && client.input_closed && client.pending.empty()) alive = false;  // all echoed
    if (alive) alive = update_interest(server, client);
    if (!alive) close_client(server, fd);
}

/// Accepts one connection. One accept() per report, like one read(): the
/// listener stays readable while connections wait, so epoll reports it again.
/// @return true when more connections may be waiting.
bool accept_client(Server& server) {
    // Non-blocking listener: a connection reset between the report and this
    // call would otherwise leave accept() blocked, and every client with it.
    muxlab::Fd socket(accept4(server.listener.get(), nullptr, nullptr,
                              SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!socket) {
        if (errno == EINTR || errno == ECONNABORTED) return true;  // that one failed
        if (errno == EMFILE || errno == ENFILE) {
            // Out of descriptors. The connection waits in the backlog until a
            // client leaves (close_client watches the listener again).
            muxlab::log_errno("accept (waiting for a client to leave)");
            watch_listener(server, false);
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            muxlab::log_errno("accept");
        }
        return false;
    }
    int fd = socket.get();
    //@hole 1
    //@ TODO 1, each client: its socket goes on the interest list here.
    epoll_event watch{};
    watch.events = kInput | kTrigger;
    watch.data.fd = fd;
    if (epoll_ctl(server.epoll.get(), EPOLL_CTL_ADD, fd, &watch) < 0) {
        muxlab::log_errno("epoll_ctl");
        return true;  // `socket` closes the connection
    }
    //@end
    Client& client = server.clients[fd];
    client.socket = std::move(socket);
    //@hole 2
    client.interest = watch.events;
    //@end
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    muxlab::Options options = muxlab::parse_options(
        argc, argv, "Stage 07: echo server for many clients, epoll level-triggered.");
    Server server;
    server.listener = muxlab::listen_tcp(options, /*nonblocking=*/true);
    //@hole 1 The epoll instance
    //@ epoll keeps the list of watched descriptors inside the kernel. How do you create
    //@ that list, and how does a socket get on it? Which sockets belong there, for which
    //@ events, and what does each entry carry so that an event says whose it is? (The
    //@ listener here; each client where accept_client() takes it.)
    server.epoll = muxlab::Fd(epoll_create1(EPOLL_CLOEXEC));
    if (!server.epoll) {
        muxlab::log_errno("epoll_create1");
        return 1;
    }
    epoll_event watch{};
    watch.events = EPOLLIN | kTrigger;
    watch.data.fd = server.listener.get();
    if (epoll_ctl(server.epoll.get(), EPOLL_CTL_ADD, server.listener.get(), &watch) < 0) {
        muxlab::log_errno("epoll_ctl");
        return 1;
    }
    //@end
    muxlab::announce(server.listener.get());

    //@hole 3 The wait loop
    //@ This loop is the only place the server sleeps. How does it sleep until some
    //@ watched socket is ready, for as long as that takes, and learn which ones are
    //@ ready and for what? What does a signal arriving meanwhile do to the call? Then
    //@ who handles each ready descriptor: accept_client() or serve_client()?
    //@stub for (;;) {
    //@stub     pause();
    //@stub }
    epoll_event events[kMaxEvents];
    for (;;) {
        // The only place the server sleeps: until some watched socket is ready.
        int ready = epoll_wait(server.epoll.get(), events, kMaxEvents, -1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            muxlab::log_errno("epoll_wait");
            return 1;
        }
        for (int i = 0; i < ready; ++i) {
            // epoll returns each descriptor at most once per call, so an fd
            // closed (and reused by accept) earlier in this batch cannot show
            // up again below with a stale event.
            if (events[i].data.fd == server.listener.get())
                accept_client(server);
            else
                serve_client(server, events[i].data.fd, events[i].events);
        }
    }
    //@end
}
