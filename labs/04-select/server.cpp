/**
 * @file labs/04-select/server.cpp
 * @brief Lab 04: the echo server for many clients in one thread, with select().
 *        Read README.md first.
 *
 * Build: make labs        Grade: make grade LAB=04
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

/// One connected client and the echo it has not yet taken.
struct Client {
    muxlab::Fd socket;
    std::string pending;       ///< bytes read, not yet echoed back
    bool peer_closed = false;  ///< read() returned 0: echo the rest, then close
};

/// Whether to watch @p client for input: not after EOF, and not while its
/// echo piles up (it stopped reading: TCP flow control now slows it down).
bool wants_input(const Client& client) {
    return !client.peer_closed && client.pending.size() < kMaxPending;
}

bool would_block(int error) { return error == EAGAIN || error == EWOULDBLOCK || error == EINTR; }

/// Reads what has arrived. @return false when the client must be closed.
bool read_from(Client& client) {
    char buffer[16 * 1024];
    ssize_t received = read(client.socket.get(), buffer, sizeof buffer);
    if (received > 0) {
        client.pending.append(buffer, static_cast<std::size_t>(received));
        return true;
    }
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
    // TODO 3: send() client.pending with MSG_NOSIGNAL. The socket is
    // non-blocking: send() takes what fits and returns that count (erase
    // that many bytes from the front of pending), or fails with EAGAIN
    // (nothing fits now: keep everything, return true). EPIPE/ECONNRESET or
    // any other error: return false.
    (void)client;
    return true;
}

/**
 * @brief Accepts every pending connection into @p clients.
 * @return false when out of descriptors (stop watching the listener for now).
 */
bool accept_clients(int listener, std::list<Client>& clients) {
    // TODO 2: loop on accept() until it fails with EAGAIN (the listener is
    // non-blocking). On EMFILE/ENFILE log and return false. For each new
    // socket (a muxlab::Fd):
    //   - if its fd is >= FD_SETSIZE, log and close it (FD_SET would write
    //     past the end of the fd_set);
    //   - make it non-blocking (muxlab::set_nonblocking);
    //   - clients.push_back(Client{std::move(socket), {}, false}).
    (void)listener;
    (void)clients;
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    muxlab::Options options = muxlab::parse_options(
        argc, argv, "Lab 04: echo server, many clients in one thread with select().");
    muxlab::Fd listener = muxlab::listen_tcp(options, /*nonblocking=*/true);
    muxlab::announce(listener.get());

    std::list<Client> clients;
    [[maybe_unused]] bool accepting = true;
    for (;;) {
        // TODO 1: build two fd_sets from scratch (FD_ZERO): the listener (if
        // accepting) and every client that wants_input() in the read set,
        // every client with pending echo in the write set; track the largest
        // fd. select(max_fd + 1, &readable, &writable, nullptr, nullptr):
        // no timeout, so it sleeps until something is ready (retry on EINTR).
        //
        // TODO 4: if the listener is readable, accepting = accept_clients(...).
        // Then walk the clients: read_from() those in the read set,
        // write_to() those in the write set, and erase (which closes) those
        // that failed or have peer_closed with nothing pending. Erasing a
        // client frees a descriptor: set accepting = true.
        //
        // Remove this pause() once the loop is in place: it only keeps the
        // untouched skeleton from spinning.
        pause();
        (void)read_from;
        (void)write_to;
        (void)accept_clients;
        (void)wants_input;
    }
}
