/**
 * @file labs/07-epoll-lt/server.cpp
 * @brief Lab 07: the echo server for many clients on one epoll instance,
 *        level-triggered. Read README.md first.
 *
 * Build: make labs        Grade: make grade LAB=07
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

constexpr std::size_t kChunk = 64 * 1024;  // bytes per read()
/// Stop reading from a client while this many bytes of its echo wait unsent.
constexpr std::size_t kPendingCap = 256 * 1024;
[[maybe_unused]] constexpr int kMaxEvents = 256;  // ready descriptors taken per epoll_wait()

struct Client {
    muxlab::Fd socket;
    std::string pending;            ///< echo the socket did not take yet
    std::uint32_t interest = 0;     ///< the events registered with epoll now
    bool input_closed = false;      ///< read() returned 0: finish the echo, then close
};

struct Server {
    muxlab::Fd epoll;
    muxlab::Fd listener;
    std::unordered_map<int, Client> clients;  ///< by socket descriptor
    bool accept_paused = false;               ///< out of descriptors: listener disarmed
};

// ---- Interest list --------------------------------------------------------------

bool wants_input(const Client& client) {
    return !client.input_closed && client.pending.size() < kPendingCap;
}

/// The events @p client needs to be watched for now.
[[maybe_unused]] std::uint32_t wanted_events(const Client& client) {
    // TODO 1: EPOLLIN while wants_input(client); EPOLLOUT only while
    // client.pending is not empty. (Why only then? An empty socket buffer is
    // writable nearly all the time: level-triggered epoll would report it on
    // every call, and the loop would spin.)
    (void)client;
    return EPOLLIN;
}

/// Brings the interest list up to date. @return false on an error.
[[maybe_unused]] bool update_interest(Server& server, Client& client) {
    // TODO 2: if wanted_events(client) differs from client.interest, tell
    // epoll with epoll_ctl(EPOLL_CTL_MOD) (data.fd = the socket) and record
    // the new interest. No system call when nothing changed: in the steady
    // state (every echo fits), this function costs nothing.
    (void)server;
    (void)client;
    return true;
}

/// Stops (watch = false) or restarts watching the listener.
[[maybe_unused]] void watch_listener(Server& server, bool watch) {
    // TODO 3: epoll_ctl(EPOLL_CTL_MOD) on the listener with events EPOLLIN
    // (watch) or 0 (stop); set server.accept_paused = !watch.
    (void)server;
    (void)watch;
}

// ---- Moving bytes (given: the same as lab 06) -----------------------------------

/// Writes what the socket takes now. @return false when the client is gone.
bool flush(Client& client) {
    if (client.pending.empty()) return true;
    ssize_t sent = send(client.socket.get(), client.pending.data(), client.pending.size(),
                        MSG_NOSIGNAL);
    if (sent < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    client.pending.erase(0, static_cast<std::size_t>(sent));
    return true;
}

/// Echoes @p data: straight to the socket when nothing is queued ahead of
/// it, otherwise behind the queue. @return false when the client is gone.
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
        client.input_closed = true;
        return true;
    }
    return echo(client, buffer, static_cast<std::size_t>(received));
}

// ---- Events ---------------------------------------------------------------------

[[maybe_unused]] void close_client(Server& server, int fd) {
    server.clients.erase(fd);  // the Fd closes the socket, which leaves the interest list
    // TODO 5: a descriptor is free again: if accepting was paused, watch the
    // listener again.
}

/// Does what epoll reported for one client.
[[maybe_unused]] void serve_client(Server& server, int fd, std::uint32_t events) {
    auto found = server.clients.find(fd);
    if (found == server.clients.end()) return;
    Client& client = found->second;
    bool alive = true;
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) alive = flush(client);
    if (alive && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && wants_input(client))
        alive = receive(client);
    if (alive && client.input_closed && client.pending.empty()) alive = false;  // all echoed
    if (alive) alive = update_interest(server, client);
    if (!alive) close_client(server, fd);
}

/// Accepts one connection (level-triggered epoll reports the listener again
/// while more are waiting).
[[maybe_unused]] void accept_client(Server& server) {
    // TODO 4: accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)
    // into a muxlab::Fd. On EMFILE or ENFILE: log and watch_listener(false)
    // (otherwise epoll reports the listener, and accept() fails, on every
    // call); EAGAIN, EINTR, ECONNABORTED: just return. Then
    // epoll_ctl(EPOLL_CTL_ADD) the socket for EPOLLIN with data.fd = the
    // socket, move it into server.clients and record its interest.
    (void)server;
}

}  // namespace

int main(int argc, char** argv) {
    muxlab::Options options = muxlab::parse_options(
        argc, argv, "Lab 07: echo server for many clients, epoll level-triggered.");
    Server server;
    server.listener = muxlab::listen_tcp(options, /*nonblocking=*/true);
    // TODO 6a: server.epoll = epoll_create1(EPOLL_CLOEXEC); add the listener
    // for EPOLLIN (epoll_ctl(EPOLL_CTL_ADD), data.fd = the listener).
    muxlab::announce(server.listener.get());

    for (;;) {
        // TODO 6b: epoll_wait(server.epoll, events, kMaxEvents, -1) (retry
        // on EINTR); for each event: the listener -> accept_client(server),
        // else serve_client(server, events[i].data.fd, events[i].events).
        // Then delete this pause().
        pause();
    }
}
