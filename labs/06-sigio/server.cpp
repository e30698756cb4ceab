/**
 * @file labs/06-sigio/server.cpp
 * @brief Lab 06: an echo server for many clients, driven by SIGIO.
 *
 * Your task is the TODOs in this file, in order: README.md says what each
 * one asks. Build with `make labs`, grade with `make grade LAB=06`.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
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

/// Set by the SIGIO handler, read and cleared by main().
volatile std::sig_atomic_t io_signalled = 0;

void on_sigio(int) {
    // TODO 4 (in main())
}

/// Turns on signal-driven I/O for @p fd. @return false on an error.
bool make_signal_driven(int fd) {
    // TODO 1: Sockets that raise a signal
    // Two settings on a descriptor make the kernel signal readiness: which process the
    // signal goes to, and the flag that turns it on (man 2 fcntl). A signal will not say
    // which socket is ready, so the server will try them all: what must a try on a
    // socket with nothing to read do, instead of putting the whole server to sleep?
    return true;
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

/// Reads what has arrived and echoes it. @return false when the client is gone.
bool receive(Client& client) {
    // TODO 2: Drain on every signal
    // Signals of one kind merge while pending: one SIGIO may stand for many arrivals on
    // this socket and on others, and bytes you leave behind are announced by no further
    // signal. How much do you read each time, and how do you know the socket is empty?
    // And a client that sends without reading its echo: when do you stop, and what
    // brings you back?
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
        // TODO 3: A new client, signal-driven from the start
        // On Linux an accepted socket inherits neither O_ASYNC nor O_NONBLOCK nor the
        // owner from the listener. What does the new socket need before it can raise a
        // signal? The client may have sent its first bytes before that: which signal will
        // announce them, and what do you do about it?
        server.clients[socket.get()].socket = std::move(socket);
    }
}

/// What one SIGIO means: something happened on some sockets. Try them all.
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
        argc, argv, "Lab 06: echo server for many clients, driven by SIGIO.");

    // TODO 4: Catch the signal, and hold it back
    // The default action of SIGIO ends the process. What must on_sigio() do, and what
    // may it not do, given that it can run between any two instructions of main()?
    // A SIGIO that arrives while the server is busy serving must not be lost, nor
    // handled between your check of the flag and your going to sleep: how do you keep
    // it pending until you sleep, and which mask will you sleep with?

    Server server;
    server.listener = muxlab::listen_tcp(options);
    if (!make_signal_driven(server.listener.get())) {
        muxlab::log_errno("fcntl");
        return 1;
    }
    muxlab::announce(server.listener.get());

    for (;;) {
        serve_everyone(server);
        // TODO 5: Sleep until a signal, without losing one
        // When is it safe to test io_signalled and then go to sleep? Which call lets the
        // pending SIGIO in and sleeps, in one step, and what do you do with the flag
        // once it has woken you?
        pause();  // sleeps through a SIGIO handled while serve_everyone() ran
    }
}
