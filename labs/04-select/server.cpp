/**
 * @file labs/04-select/server.cpp
 * @brief Lab 04: the echo server for many clients in one thread, with select().
 *
 * Your task is the TODOs in this file, in order: README.md says what each
 * one asks. Build with `make labs`, grade with `make grade LAB=04`.
 */
#include <errno.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <string>

#include "muxlab/fd.hpp"
#include "muxlab/net.hpp"
#include "muxlab/options.hpp"

namespace {

/// Stop reading from a client while this many bytes of its echo wait unsent.
constexpr std::size_t kMaxPending = 256 * 1024;

/**
 * @brief One connected client and the echo it has not yet taken.
 *
 * Why a pending buffer? select() says a socket is writable when it has
 * *some* room, not room for everything: a blocking send() of the rest would
 * wait for this one client to read, and every other client would wait too.
 * So client sockets are non-blocking (a first taste of O_NONBLOCK, which
 * stage 06 covers fully): send() takes what fits, the rest stays here, and
 * the socket goes into the write set until it is gone.
 */
struct Client {
    muxlab::Fd socket;
    std::string pending;       ///< bytes read, not yet echoed back
    bool peer_closed = false;  ///< read() returned 0: echo the rest, then close
};

/// Whether to watch @p client for input.
bool wants_input(const Client& client) {
    // TODO 4: A client that never reads
    // Every byte read from a client becomes echo that waits in `pending` until the
    // client reads it. One that sends and never reads: what keeps `pending` (and the
    // server's memory) from growing without limit, and who waits instead?
    return !client.peer_closed;
}

bool would_block(int error) { return error == EAGAIN || error == EWOULDBLOCK || error == EINTR; }

/// Whether a failed send() ends the client (EPIPE, ECONNRESET...) or only means "not now".
bool send_failed(int error) {
    if (would_block(error)) return false;
    if (error != EPIPE && error != ECONNRESET) muxlab::log_errno("send");
    return true;
}

/**
 * @brief Echoes @p data back to @p client.
 *
 * Straight to the socket when no older echo waits ahead of it: the socket
 * nearly always has room, so this is the usual case, one send() and no copy.
 * Only what the kernel does not take is kept, to go when the socket is
 * writable again. @return false when the client must be closed.
 */
bool echo(Client& client, const char* data, std::size_t size) {
    if (client.pending.empty()) {
        ssize_t sent = send(client.socket.get(), data, size, MSG_NOSIGNAL);
        if (sent < 0) {
            if (send_failed(errno)) return false;
            sent = 0;
        }
        data += sent;
        size -= static_cast<std::size_t>(sent);
    }
    client.pending.append(data, size);
    return true;
}

/// Reads what has arrived and echoes it. @return false when the client must be closed.
bool read_from(Client& client) {
    char buffer[16 * 1024];
    ssize_t received = read(client.socket.get(), buffer, sizeof buffer);
    if (received > 0) return echo(client, buffer, static_cast<std::size_t>(received));
    if (received == 0) {
        client.peer_closed = true;  // half-close: it may still want its echo
        return true;
    }
    if (would_block(errno)) return true;
    if (errno != ECONNRESET) muxlab::log_errno("read");
    return false;
}

/// Sends as much pending echo as fits now. @return false when the client must be closed.
bool write_to(Client& client) {
    ssize_t sent = send(client.socket.get(), client.pending.data(), client.pending.size(),
                        MSG_NOSIGNAL);
    if (sent >= 0) {
        client.pending.erase(0, static_cast<std::size_t>(sent));
        return true;
    }
    return !send_failed(errno);
}

/**
 * @brief Accepts every pending connection into @p clients.
 *
 * The listener is non-blocking: accept() returns EAGAIN once the queue is
 * empty, instead of blocking the whole server (and a connection reset
 * between select() and accept() leaves the queue empty too).
 * @return false when out of descriptors (stop watching the listener for now).
 */
bool accept_clients(int listener, std::list<Client>& clients) {
    for (;;) {
        muxlab::Fd socket(accept(listener, nullptr, nullptr));
        if (!socket) {
            if (errno == EMFILE || errno == ENFILE) {
                // The listener stays readable, so select() would return at
                // once, again and again: pause accepting until a client leaves.
                muxlab::log_errno("accept");
                return false;
            }
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (!would_block(errno)) muxlab::log_errno("accept");
            return true;
        }
        // TODO 3: A descriptor that does not fit
        // An fd_set is a bitmap of FD_SETSIZE (1024) bits, and FD_SET() does not check
        // its argument. With a raised fd limit, accept() can return 1024 or more: what
        // would FD_SET() do with it, and what do you do with such a client instead?
        if (!muxlab::set_nonblocking(socket.get())) {
            muxlab::log_errno("fcntl");
            continue;
        }
        clients.push_back(Client{std::move(socket), {}, false});
    }
}

}  // namespace

int main(int argc, char** argv) {
    muxlab::Options options = muxlab::parse_options(
        argc, argv, "Lab 04: echo server, many clients in one thread with select().");
    muxlab::Fd listener = muxlab::listen_tcp(options, /*nonblocking=*/true);
    muxlab::announce(listener.get());

    std::list<Client> clients;
    bool accepting = true;
    for (;;) {
        fd_set readable;
        fd_set writable;
        // TODO 1: Build the sets and wait
        // select() takes sets of descriptors and overwrites them with its answer. On this
        // turn of the loop, which descriptors go in the read set, which in the write set
        // (think of a client that stopped reading, and of one with nothing to send), and
        // what is select()'s first argument? How long may it wait when nothing is ready?
        pause();  // delete once select() waits: it only keeps the skeleton from spinning

        // TODO 2: Serve what select() reported
        // The sets now hold only the descriptors that are ready. What may the listener and
        // each client do now without blocking, and in which order (a client accepted on
        // this turn was not in the sets)? When is a client done, what closes its socket,
        // and what about the listener if accepting was paused?
    }
}
