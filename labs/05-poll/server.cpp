/**
 * @file labs/05-poll/server.cpp
 * @brief Lab 05: the echo server with poll(), for more than 1024 clients.
 *
 * Your task is the TODOs in this file, in order: README.md says what each
 * one asks. Build with `make labs`, grade with `make grade LAB=05`.
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
constexpr std::size_t kMaxPending = 256 * 1024;
/// What a client beyond --max-clients is told before it is closed.
constexpr char kTooMany[] = "ERROR too many clients\n";

/**
 * @brief One connected client and the echo it has not yet taken.
 *
 * As in stage 04, sockets are non-blocking and the echo that does not fit
 * now waits here until poll() says the socket is writable (POLLOUT).
 */
struct Client {
    muxlab::Fd socket;
    std::string pending;       ///< bytes read, not yet echoed back
    bool peer_closed = false;  ///< read() returned 0: echo the rest, then close
};

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

/// Does what poll() reported for one client. @return false when it must be closed.
bool serve(Client& client, short revents) {
    // TODO 2: What poll() answered
    // poll() wrote its answer into revents, as a bit mask. Which bits mean "read now",
    // which "write now", and which mean the client is beyond help? Some of them come
    // even though you never asked for them. When is a client finished?
    return true;
}

/**
 * @brief Sets which events poll() should watch for on @p client.
 *
 * `events` stays in the array between calls, so it is changed bit by bit:
 * `|= FLAG` turns a bit on, `&= ~FLAG` turns it off.
 */
void update_events(pollfd& entry, const Client& client) {
    // TODO 3: Ask only for what you can use
    // `events` stays in the array from one call to the next. After serving a client,
    // should poll() still wake you when it has bytes to read (think of a client whose
    // echo piles up, or that has closed its side)? When it has room to write (an empty
    // socket nearly always has)? How do you set and clear one bit of a mask?
}

/**
 * @brief Accepts every pending connection, refusing those beyond @p max_clients.
 * @return false when out of descriptors (stop watching the listener for now).
 */
bool accept_clients(int listener, std::vector<pollfd>& watched, std::vector<Client>& clients,
                    std::size_t max_clients) {
    for (;;) {
        muxlab::Fd socket(accept(listener, nullptr, nullptr));
        if (!socket) {
            if (errno == EMFILE || errno == ENFILE) {
                muxlab::log_errno("accept");  // pause accepting until a client leaves
                return false;
            }
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (!would_block(errno)) muxlab::log_errno("accept");
            return true;
        }
        // TODO 4: A place in the array
        // Each client costs a descriptor and memory. How many clients are there now
        // (slot 0 is the listener), and what does the one beyond --max-clients hear before
        // it is closed? A client you keep: what must poll() be given so that it is
        // watched, and where does its state go so that the two stay together?
        clients.push_back(Client{std::move(socket), {}, false});
    }
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
        // TODO 1: One call for every socket
        // The array is already built: slot 0 watches the listener. What does poll() need
        // to wait on all of it, and for how long when nothing is ready? Where does it say
        // that the listener has a connection waiting?
        pause();  // delete once poll() waits: it only keeps the skeleton from spinning

        // New clients were appended with revents 0, so this walk skips them.
        for (std::size_t i = 1; i < watched.size();) {
            if (watched[i].revents == 0) {
                ++i;
                continue;
            }
            if (serve(clients[i], watched[i].revents)) {
                update_events(watched[i], clients[i]);
                ++i;
                continue;
            }
            // TODO 5: Leaving from the middle
            // Client i is done: its socket must close, and poll() must never see its fd
            // again. How do you take slot i out of both arrays without shifting everything
            // after it? Which entry is then in slot i, and has it been served this round?
            ++i;
        }
    }
}
