/**
 * @file labs/07-epoll-lt/server.cpp
 * @brief Lab 07: an echo server for many clients on one epoll instance,
 *        level-triggered.
 *
 * Your task is the TODOs in this file, in order: README.md says what each
 * one asks. Build with `make labs`, grade with `make grade LAB=07`.
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

// TODO 2: Interest follows the output
// epoll_wait() reports a watched socket for as long as it is ready. Which events
// does each client need to be watched for right now: while its echo keeps up, while
// part of its echo waits in `pending`, once that has gone? What would a socket with
// an empty send buffer do to the loop if it stayed watched for writing? And when does
// the kernel need to hear about a change: how often does that cost a system call?
/// Brings the interest list up to date. @return false on an error.
bool update_interest(Server& server, Client& client) {
    return true;
}

/// Stops (or restarts) watching the listener.
void watch_listener(Server& server, bool watch) {
    // TODO 2, the listener: at EMFILE, accept() fails and the connection stays in the
    // backlog, so the listener stays readable. What must epoll stop doing, until when?
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
    // TODO 1, each client: its socket goes on the interest list here.
    Client& client = server.clients[fd];
    client.socket = std::move(socket);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    muxlab::Options options = muxlab::parse_options(
        argc, argv, "Lab 07: echo server for many clients, epoll level-triggered.");
    Server server;
    server.listener = muxlab::listen_tcp(options, /*nonblocking=*/true);
    // TODO 1: The epoll instance
    // epoll keeps the list of watched descriptors inside the kernel. How do you create
    // that list, and how does a socket get on it? Which sockets belong there, for which
    // events, and what does each entry carry so that an event says whose it is? (The
    // listener here; each client where accept_client() takes it.)
    muxlab::announce(server.listener.get());

    // TODO 3: The wait loop
    // This loop is the only place the server sleeps. How does it sleep until some
    // watched socket is ready, for as long as that takes, and learn which ones are
    // ready and for what? What does a signal arriving meanwhile do to the call? Then
    // who handles each ready descriptor: accept_client() or serve_client()?
    for (;;) {
        pause();
    }
}
