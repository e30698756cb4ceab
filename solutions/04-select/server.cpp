/**
 * @file solutions/04-select/server.cpp
 * @brief Stage 04: the echo server for many clients in one thread, with select().
 *
 * One process, one thread, no blocking on any single client: the server
 * sleeps in select() until at least one socket is ready, then does only the
 * work that cannot block. This removes the thread per client of stage 03,
 * but select() has its own limits: its fd sets hold descriptors below
 * FD_SETSIZE (1024) only, and they must be rebuilt before every call,
 * because select() overwrites them with its answer. See notes/04-select.md.
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
    //@hole 4 A client that never reads
    //@ Every byte read from a client becomes echo that waits in `pending` until the
    //@ client reads it. One that sends and never reads: what keeps `pending` (and the
    //@ server's memory) from growing without limit, and who waits instead?
    //@stub return !client.peer_closed;
    // Not after EOF, and not while its echo piles up: it stopped reading, so we
    // stop reading it, and TCP flow control now slows it down.
    return !client.peer_closed && client.pending.size() < kMaxPending;
    //@end
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
        //@hole 3 A descriptor that does not fit
        //@ An fd_set is a bitmap of FD_SETSIZE (1024) bits, and FD_SET() does not check
        //@ its argument. With a raised fd limit, accept() can return 1024 or more: what
        //@ would FD_SET() do with it, and what do you do with such a client instead?
        // FD_SET() on a descriptor >= FD_SETSIZE writes past the end of the
        // fd_set: memory corruption, not an error. Such a client is refused.
        if (socket.get() >= FD_SETSIZE) {
            std::fprintf(stderr, "refusing a client: fd %d does not fit in an fd_set (FD_SETSIZE %d)\n",
                         socket.get(), FD_SETSIZE);
            continue;  // `socket` is closed here
        }
        //@end
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
        argc, argv, "Stage 04: echo server, many clients in one thread with select().");
    muxlab::Fd listener = muxlab::listen_tcp(options, /*nonblocking=*/true);
    muxlab::announce(listener.get());

    std::list<Client> clients;
    bool accepting = true;
    for (;;) {
        fd_set readable;
        fd_set writable;
        //@hole 1 Build the sets and wait
        //@ select() takes sets of descriptors and overwrites them with its answer. On this
        //@ turn of the loop, which descriptors go in the read set, which in the write set
        //@ (think of a client that stopped reading, and of one with nothing to send), and
        //@ what is select()'s first argument? How long may it wait when nothing is ready?
        //@stub pause();  // delete once select() waits: it only keeps the skeleton from spinning
        // select() overwrites its sets with the answer ("these are ready"),
        // so they are rebuilt from scratch before every call.
        FD_ZERO(&readable);
        FD_ZERO(&writable);
        int max_fd = listener.get();
        if (accepting) FD_SET(listener.get(), &readable);
        for (const Client& client : clients) {
            int fd = client.socket.get();
            if (wants_input(client)) FD_SET(fd, &readable);
            if (!client.pending.empty()) FD_SET(fd, &writable);
            max_fd = std::max(max_fd, fd);
        }

        // No timeout: sleep until something is ready. (A zero timeout would
        // turn this into a busy loop that burns a CPU doing nothing.)
        int ready = select(max_fd + 1, &readable, &writable, nullptr, nullptr);
        if (ready < 0) {
            if (errno == EINTR) continue;
            muxlab::log_errno("select");  // EBADF or EINVAL: a bug in the sets
            return 1;
        }
        //@end

        //@hole 2 Serve what select() reported
        //@ The sets now hold only the descriptors that are ready. What may the listener and
        //@ each client do now without blocking, and in which order (a client accepted on
        //@ this turn was not in the sets)? When is a client done, what closes its socket,
        //@ and what about the listener if accepting was paused?
        // New clients first: their descriptors were not in this round's sets.
        if (FD_ISSET(listener.get(), &readable)) accepting = accept_clients(listener.get(), clients);

        for (auto it = clients.begin(); it != clients.end();) {
            int fd = it->socket.get();
            bool keep = true;
            if (FD_ISSET(fd, &readable)) keep = read_from(*it);
            if (keep && FD_ISSET(fd, &writable)) keep = write_to(*it);
            if (keep && it->peer_closed && it->pending.empty()) keep = false;  // all echoed
            if (keep) {
                ++it;
            } else {
                it = clients.erase(it);  // closes the socket
                accepting = true;        // a descriptor is free again
            }
        }
        //@end
    }
}
