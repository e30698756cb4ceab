/**
 * @file labs/06-sigio/server.cpp
 * @brief Lab 06: the echo server for many clients, driven by SIGIO.
 *        Read README.md first.
 *
 * Build: make labs        Grade: make grade LAB=06
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

constexpr std::size_t kChunk = 64 * 1024;  // bytes per read()
/// Stop reading from a client while this many bytes of its echo wait unsent.
[[maybe_unused]] constexpr std::size_t kPendingCap = 256 * 1024;

struct Client {
    muxlab::Fd socket;
    std::string pending;        ///< echo the socket did not take yet
    bool input_closed = false;  ///< read() returned 0: finish the echo, then close
};

struct Server {
    muxlab::Fd listener;
    std::unordered_map<int, Client> clients;  ///< by socket descriptor
    bool accept_paused = false;               ///< out of descriptors until a client leaves
};

// ---- The signal ---------------------------------------------------------------------

/// Set by the handler, read (and cleared) by main().
[[maybe_unused]] volatile std::sig_atomic_t io_signalled = 0;

[[maybe_unused]] void on_sigio(int) {
    // TODO 1: set io_signalled to 1, and nothing else: a handler may run in
    // the middle of any instruction of main(), so it may only touch a
    // volatile sig_atomic_t and call async-signal-safe functions.
}

/// Turns on signal-driven I/O for @p fd. @return false on an error.
bool make_signal_driven(int fd) {
    // TODO 2: fcntl(F_SETOWN) with getpid(), so SIGIO comes to this process;
    // then F_GETFL and F_SETFL adding O_ASYNC | O_NONBLOCK to the flags.
    (void)fd;
    return true;
}

// ---- Moving bytes (given: the same queueing as labs 04 and 05) ---------------------

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
[[maybe_unused]] bool echo(Client& client, const char* data, std::size_t size) {
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
    // TODO 3: read() into a kChunk buffer and echo() what came, IN A LOOP:
    // one SIGIO may stand for many arrivals, so keep reading until read()
    // fails with EAGAIN (drained: return true). Also stop when
    // client.pending reaches kPendingCap (the signal that comes when the
    // client makes room brings you back). read() == 0: set input_closed and
    // return true. EINTR: try again. Any other error: return false.
    (void)client;
    (void)kChunk;
    return true;
}

// ---- Serving ----------------------------------------------------------------------

/// @return false when the client is finished or gone and must be closed.
bool serve_client(Client& client) {
    if (!flush(client)) return false;
    if (!client.input_closed && !receive(client)) return false;
    return !(client.input_closed && client.pending.empty());
}

/// Accepts the connections that are waiting.
void accept_clients(Server& server) {
    // TODO 4: loop while !server.accept_paused:
    //   - accept4(listener, nullptr, nullptr, SOCK_CLOEXEC) into a muxlab::Fd;
    //   - on failure: EINTR or ECONNABORTED: continue; EMFILE or ENFILE: log,
    //     set accept_paused (serve_everyone clears it when a client leaves)
    //     and return; EAGAIN: return (no connection left); anything else: log
    //     and return;
    //   - make_signal_driven() the new socket (accepted sockets do not
    //     inherit O_ASYNC or O_NONBLOCK), move it into server.clients;
    //   - serve_client() it at once: bytes that arrived before O_ASYNC was
    //     set raised no signal. Erase it if that returns false.
    (void)server;
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

    // TODO 5: block SIGIO with sigprocmask(SIG_BLOCK, ...), keeping the old
    // mask; remove SIGIO from that old mask: it is the mask to sleep with.
    // Then install on_sigio with sigaction().

    Server server;
    server.listener = muxlab::listen_tcp(options);
    if (!make_signal_driven(server.listener.get())) {
        muxlab::log_errno("fcntl");
        return 1;
    }
    muxlab::announce(server.listener.get());

    for (;;) {
        serve_everyone(server);
        // TODO 6: sleep until a SIGIO has been handled, without the race:
        //     while (!io_signalled) sigsuspend(&mask_from_todo_5);
        //     io_signalled = 0;
        // and delete this pause(), which sleeps through a SIGIO that arrived
        // while serve_everyone() was running.
        pause();
    }
}
