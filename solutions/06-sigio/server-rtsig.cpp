/**
 * @file solutions/06-sigio/server-rtsig.cpp
 * @brief Stage 06, part 2: the SIGIO echo server with a queued real-time
 *        signal that names the ready socket.
 *
 * Part 1 (server.cpp) has to try every socket on every SIGIO, because a
 * standard signal carries no payload and merges with one already pending.
 * fcntl(F_SETSIG) replaces SIGIO with a real-time signal: real-time signals
 * are queued, one per event, and each carries a siginfo_t whose si_fd names
 * the socket. The server takes them one at a time with sigwaitinfo() and
 * serves only the socket named: no handler, no flag, no race to close.
 *
 * The queue is finite (RLIMIT_SIGPENDING). When it is full the kernel drops
 * the event and sends plain SIGIO instead, which says "you lost some": the
 * server then does what part 1 does on every signal and tries everyone.
 * See notes/06-nonblocking-and-sigio.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <string>
#include <unordered_map>

#include "muxlab/fd.hpp"
#include "muxlab/net.hpp"
#include "muxlab/options.hpp"

namespace {

// ---- Tuning -------------------------------------------------------------------

constexpr std::size_t kChunk = 64 * 1024;  // bytes per read()
// A client that sends faster than it reads piles up echo here. Beyond this
// many pending bytes we stop reading from it: its data stays in the kernel,
// TCP flow control slows the sender down, and memory stays bounded.
constexpr std::size_t kPendingCap = 256 * 1024;

// ---- Data structures ------------------------------------------------------------

struct Client {
    muxlab::Fd socket;
    std::string pending;        // echo the socket did not take yet
    bool input_closed = false;  // read() returned 0: finish the echo, then close
};

struct Server {
    muxlab::Fd listener;
    std::unordered_map<int, Client> clients;  // by socket descriptor
    bool accept_paused = false;               // out of descriptors until a client leaves
};

// ---- The signal ---------------------------------------------------------------------

/// The real-time signal each socket raises instead of SIGIO. SIGRTMIN is a
/// function call in glibc (the C library keeps a few for itself), hence not
/// a constant.
int io_signal() { return SIGRTMIN + 1; }

/// Turns on signal-driven I/O for @p fd: the kernel queues io_signal() for
/// the process named by F_SETOWN (us) when the socket becomes readable or
/// writable, gets a connection, or is closed or reset.
bool make_signal_driven(int fd) {
    if (fcntl(fd, F_SETOWN, getpid()) < 0) return false;
    // F_SETSIG: raise this signal, queued and with si_fd filled in, not SIGIO.
    if (fcntl(fd, F_SETSIG, io_signal()) < 0) return false;
    int flags = fcntl(fd, F_GETFL);
    return flags >= 0 && fcntl(fd, F_SETFL, flags | O_ASYNC | O_NONBLOCK) == 0;
}

// ---- Moving bytes ----------------------------------------------------------------

/// Writes what the socket takes now. @return false when the client is gone.
bool flush(Client& client) {
    if (client.pending.empty()) return true;
    ssize_t sent = send(client.socket.get(), client.pending.data(), client.pending.size(),
                        MSG_NOSIGNAL);
    if (sent < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    // A short count means the socket buffer is full. When the client reads
    // and room frees up, the kernel sends another SIGIO.
    client.pending.erase(0, static_cast<std::size_t>(sent));
    return true;
}

/// Echoes @p data: straight to the socket when nothing is queued ahead of it,
/// otherwise behind the queue. A non-blocking send() never waits for a slow
/// reader: it takes what fits and the rest is queued here.
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

/// Reads until EAGAIN. Each arrival queues its own signal, but the signal we
/// hold may be the last one for this socket, and the bytes may be more than
/// one read() takes. Signals queued for bytes already read find EAGAIN and
/// cost one call each. Stops early when the echo falls too far behind; the
/// signal that comes with room to write brings us back.
/// @return false when the client is gone (reset, or an error).
bool receive(Client& client) {
    while (client.pending.size() < kPendingCap) {
        char buffer[kChunk];
        ssize_t received = read(client.socket.get(), buffer, sizeof buffer);
        if (received < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN || errno == EWOULDBLOCK;  // drained
        }
        if (received == 0) {
            client.input_closed = true;  // the client half-closed: echo what is left, then close
            return true;
        }
        if (!echo(client, buffer, static_cast<std::size_t>(received))) return false;
    }
    return true;
}

// ---- Serving ----------------------------------------------------------------------

/// @return false when the client is finished or gone and must be closed.
bool serve_client(Client& client) {
    if (!flush(client)) return false;
    if (!client.input_closed && !receive(client)) return false;
    return !(client.input_closed && client.pending.empty());
}

/// Accepts until EAGAIN: several connections may have come in under one signal.
void accept_clients(Server& server) {
    while (!server.accept_paused) {
        // Accepted sockets do not inherit O_NONBLOCK or O_ASYNC from the
        // listener on Linux: make_signal_driven() sets them on each one.
        muxlab::Fd socket(accept4(server.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!socket) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE) {
                // Out of descriptors. The connection waits in the backlog
                // until a client leaves; trying again on every signal
                // meanwhile would only fail again.
                muxlab::log_errno("accept (waiting for a client to leave)");
                server.accept_paused = true;
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                muxlab::log_errno("accept");
            }
            return;
        }
        if (!make_signal_driven(socket.get())) {
            muxlab::log_errno("fcntl");
            continue;  // `socket` closes the connection
        }
        int fd = socket.get();
        Client& client = server.clients[fd];
        client.socket = std::move(socket);
        // Bytes that arrived before O_ASYNC was set raised no signal: serve
        // the newcomer now instead of waiting for a signal that may not come.
        if (!serve_client(client)) server.clients.erase(fd);
    }
}

/// Serves the one socket a queued signal named. It may be closed by now (the
/// signal was queued before), or its number reused by a newer client: either
/// way trying it is harmless, because a socket with nothing ready says EAGAIN.
void serve_socket(Server& server, int fd) {
    if (fd == server.listener.get()) {
        accept_clients(server);
        return;
    }
    auto found = server.clients.find(fd);
    if (found == server.clients.end() || serve_client(found->second)) return;
    server.clients.erase(found);
    if (server.accept_paused) {  // a descriptor is free again: take a waiting connection
        server.accept_paused = false;
        accept_clients(server);
    }
}

/// After a queue overflow, as in part 1: events were lost, try every socket.
void serve_everyone(Server& server) {
    for (auto it = server.clients.begin(); it != server.clients.end();) {
        if (serve_client(it->second)) {
            ++it;
        } else {
            it = server.clients.erase(it);  // the Fd closes the socket
            server.accept_paused = false;   // a descriptor is free again
        }
    }
    accept_clients(server);
}

}  // namespace

int main(int argc, char** argv) {
    muxlab::Options options = muxlab::parse_options(
        argc, argv, "Stage 06 part 2: echo server for many clients, driven by a real-time signal.");

    // Block both signals for good and take them with sigwaitinfo(): a blocked
    // signal stays queued until we ask for it, so there is no handler, and
    // nothing can slip in between a test and a sleep. SIGIO must be blocked
    // too: its default action would end the process.
    sigset_t io_signals;
    sigemptyset(&io_signals);
    sigaddset(&io_signals, io_signal());
    sigaddset(&io_signals, SIGIO);
    sigprocmask(SIG_BLOCK, &io_signals, nullptr);

    Server server;
    server.listener = muxlab::listen_tcp(options);
    if (!make_signal_driven(server.listener.get())) {
        muxlab::log_errno("fcntl");
        return 1;
    }
    muxlab::announce(server.listener.get());

    for (;;) {
        siginfo_t info;
        int signal = sigwaitinfo(&io_signals, &info);  // sleeps until one is queued
        if (signal < 0) {
            if (errno == EINTR) continue;  // another signal (a debugger stop, say)
            muxlab::log_errno("sigwaitinfo");
            return 1;
        }
        if (signal == SIGIO)
            serve_everyone(server);  // the queue overflowed: some events are lost
        else
            serve_socket(server, info.si_fd);
    }
}
