/**
 * @file labs/08-epoll-et/server.cpp
 * @brief Lab 08: the stage 07 echo server with epoll edge-triggered.
 *
 * Your task is the TODOs in this file, in order: README.md says what each
 * one asks. Build with `make labs`, grade with `make grade LAB=08`.
 */
#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "muxlab/fd.hpp"
#include "muxlab/net.hpp"
#include "muxlab/options.hpp"

namespace {

// ---- Tuning -------------------------------------------------------------------

// TODO 1: Edge-triggered
// Every registration in this file (the listener, each client, each change of
// interest) ORs in kTrigger. What must it hold for epoll to report a socket when it
// becomes ready (new bytes, a new connection, room to write), rather than for as
// long as it is ready, as in lab 07? Grade right after this TODO: what breaks, and why?
// Level-triggered, as in lab 07.
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
    std::uint32_t interest = 0;     // the events registered with epoll now
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

/// Stops (or restarts) watching the listener. At EMFILE the connection stays
/// in the backlog. Edge-triggered epoll would not spin on it as stage 07
/// would, but it would not report it again either: re-arming with
/// EPOLL_CTL_MOD makes epoll look at the listener afresh.
void watch_listener(Server& server, bool watch) {
    epoll_event change{};
    change.events = watch ? (EPOLLIN | kTrigger) : 0;
    change.data.fd = server.listener.get();
    if (epoll_ctl(server.epoll.get(), EPOLL_CTL_MOD, server.listener.get(), &change) < 0)
        muxlab::log_errno("epoll_ctl");
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

// TODO 2: Drain the socket
// Edge-triggered epoll reported this socket because new bytes arrived, and it will
// never report the bytes one read() leaves behind. When is a socket drained? Is there
// a cheaper sign of it than the call that says so? What else must stop the reading
// (think of kPendingCap), and why can a short read not be trusted once the client
// has shut down its side? (receive() is called with what epoll reported in mind:
// see serve_client().)
/// Reads what has arrived and echoes it.
/// @return false when the client is gone (reset, or an error).
bool receive(Server& server, Client& client) {
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
        alive = receive(server, client);
    if (alive && client.input_closed && client.pending.empty()) alive = false;  // all echoed
    if (alive) alive = update_interest(server, client);
    if (!alive) close_client(server, fd);
}

/// Accepts one connection. @return true when more connections may be waiting.
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
    // Data that arrived before this call is not lost: EPOLL_CTL_ADD looks at
    // the socket's current state and reports it if it is ready.
    epoll_event watch{};
    watch.events = kInput | kTrigger;
    watch.data.fd = fd;
    if (epoll_ctl(server.epoll.get(), EPOLL_CTL_ADD, fd, &watch) < 0) {
        muxlab::log_errno("epoll_ctl");
        return true;  // `socket` closes the connection
    }
    Client& client = server.clients[fd];
    client.socket = std::move(socket);
    client.interest = watch.events;
    return true;
}

// TODO 3: Take the whole backlog
// The listener is reported when connections arrive, and several connections that
// arrive together may be reported once. When has the server taken every connection
// that waits? accept_client() tells you something about that.
/// Accepts the connections that are waiting.
void accept_clients(Server& server) {
    accept_client(server);
}

// TODO 4: A fair share
// Reading until drained has a price: a client that sends as fast as the server reads
// keeps the loop on its socket while every other ready socket waits. How much may one
// client take per wakeup? A client cut off before it was drained still has input that
// no edge will announce: who remembers it, when is it served again, and what must the
// epoll_wait() in main() not do meanwhile? The same question for a client whose
// reading stopped at kPendingCap: what tells the server it can read it again?

}  // namespace

int main(int argc, char** argv) {
    muxlab::Options options = muxlab::parse_options(
        argc, argv, "Lab 08: echo server for many clients, epoll edge-triggered.");
    Server server;
    server.listener = muxlab::listen_tcp(options, /*nonblocking=*/true);
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
    muxlab::announce(server.listener.get());

    epoll_event events[kMaxEvents];
    for (;;) {
        // The only place the server sleeps: until some watched socket is ready.
        int timeout = -1;
        int ready = epoll_wait(server.epoll.get(), events, kMaxEvents, timeout);
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
                accept_clients(server);
            else
                serve_client(server, events[i].data.fd, events[i].events);
        }
    }
}
