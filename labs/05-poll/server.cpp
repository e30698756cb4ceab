/**
 * @file labs/05-poll/server.cpp
 * @brief Lab 05: the echo server with poll(), for more than 1024 clients.
 *        Read README.md first.
 *
 * Build: make labs        Grade: make grade LAB=05
 */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "muxlab/fd.hpp"
#include "muxlab/net.hpp"
#include "muxlab/options.hpp"

namespace {

/// Stop reading from a client while this many bytes of its echo wait unsent.
[[maybe_unused]] constexpr std::size_t kMaxPending = 256 * 1024;
/// What a client beyond --max-clients is told before it is closed.
[[maybe_unused]] constexpr char kTooMany[] = "ERROR too many clients\n";

/// One connected client and the echo it has not yet taken (as in lab 04).
struct Client {
    muxlab::Fd socket;
    std::string pending;       ///< bytes read, not yet echoed back
    bool peer_closed = false;  ///< read() returned 0: echo the rest, then close
};

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
        client.peer_closed = true;
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
    if (would_block(errno)) return true;
    if (errno != EPIPE && errno != ECONNRESET) muxlab::log_errno("send");
    return false;
}

/// Does what poll() reported for one client. @return false when it must be closed.
bool serve(Client& client, short revents) {
    // TODO 3: POLLERR or POLLNVAL: return false. POLLIN or POLLHUP:
    // read_from(). POLLOUT: write_to(). Return false on a failure, and when
    // the client has peer_closed with nothing left pending.
    (void)client;
    (void)revents;
    return true;
}

/// Sets which events poll() should watch for on @p client.
void update_events(pollfd& entry, const Client& client) {
    // TODO 4: POLLIN only while !peer_closed and pending < kMaxPending;
    // POLLOUT only while pending is not empty. Turn a bit on with
    // `entry.events |= FLAG` and off with `entry.events &= ~FLAG`.
    (void)entry;
    (void)client;
}

/**
 * @brief Accepts every pending connection, refusing those beyond @p max_clients.
 * @return false when out of descriptors (stop watching the listener for now).
 */
bool accept_clients(int listener, std::vector<pollfd>& watched, std::vector<Client>& clients,
                    std::size_t max_clients) {
    // TODO 2: loop on accept() until EAGAIN (EMFILE/ENFILE: log, return
    // false). If max_clients clients are already connected, send kTooMany
    // (MSG_NOSIGNAL | MSG_DONTWAIT) and close the new socket. Otherwise make
    // it non-blocking and append it to BOTH arrays:
    //     watched.push_back(pollfd{socket.get(), POLLIN, 0});
    //     clients.push_back(Client{std::move(socket), {}, false});
    (void)listener;
    (void)watched;
    (void)clients;
    (void)max_clients;
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    long max_clients = 10000;
    muxlab::Options options = muxlab::parse_options(
        argc, argv, "Lab 05: echo server, many clients in one thread with poll().",
        {{"max-clients", "refuse clients beyond this many", &max_clients, 1, 1000000}});
    muxlab::Fd listener = muxlab::listen_tcp(options, /*nonblocking=*/true);
    muxlab::announce(listener.get());

    // Two arrays, one index: watched[i] is what poll() watches for
    // clients[i]. Slot 0 is the listener; clients[0] is an unused placeholder.
    std::vector<pollfd> watched{pollfd{listener.get(), POLLIN, 0}};
    std::vector<Client> clients(1);

    for (;;) {
        // TODO 1: poll(watched.data(), watched.size(), -1) (retry on EINTR).
        // If watched[0].revents has POLLIN, accept_clients(); when it returns
        // false, clear POLLIN from watched[0].events until a client leaves.
        //
        // TODO 5: walk i = 1 .. watched.size() - 1. Skip entries with
        // revents == 0. serve() the others; if it returns true,
        // update_events() and go on. If it returns false, remove slot i:
        // move the LAST entry of both arrays into slot i, pop_back() both
        // (this closes the removed client's socket), set POLLIN again on
        // watched[0], and do NOT advance i: the entry now in slot i has not
        // been looked at yet.
        //
        // Remove this pause() once the loop is in place: it only keeps the
        // untouched skeleton from spinning.
        pause();
        (void)serve;
        (void)update_events;
        (void)accept_clients;
        (void)read_from;
        (void)write_to;
    }
}
