/**
 * @file labs/03-threads/server.cpp
 * @brief Lab 03: a line relay with one thread per client. Read README.md first.
 *
 * Build: make labs        Grade: make grade LAB=03
 */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "muxlab/fd.hpp"
#include "muxlab/net.hpp"
#include "muxlab/options.hpp"

namespace {

/// The longest line relayed, LF included; longer lines are dropped.
[[maybe_unused]] constexpr std::size_t kMaxLine = 4096;
/// How far (in bytes) a client may fall behind before it is cut off.
[[maybe_unused]] constexpr std::size_t kMaxBacklog = 4 * 1024 * 1024;

// ---- One client -------------------------------------------------------------

/// A connected client, shared by its own threads and every sender (README, "The design").
struct Client {
    explicit Client(muxlab::Fd connected) : socket(std::move(connected)) {}

    muxlab::Fd socket;
    std::mutex mutex;                     ///< guards everything below
    std::condition_variable outbox_ready; ///< wakes the writer thread
    std::string outbox;                   ///< whole lines waiting to be written
    bool leaving = false;                 ///< the client is gone: writer, stop
    bool cut_off = false;                 ///< fell kMaxBacklog behind
};

/// Hands one whole line to @p to's writer thread.
void deliver(Client& to, std::string_view line) {
    // TODO 3: under to.mutex, append the line to to.outbox and wake the
    // writer (to.outbox_ready.notify_one()). If the outbox would grow past
    // kMaxBacklog, the client has stopped reading: do not append; instead
    // (once: to.cut_off) log it and shutdown(to.socket.get(), SHUT_RDWR),
    // which wakes its threads so that it leaves like any other client.
    (void)to;
    (void)line;
}

/// The writer thread: writes the outbox to the socket until the client leaves.
void write_outbox(Client& client) {
    // TODO 4: loop: wait on client.outbox_ready (with client.mutex held) until
    // the outbox has something or client.leaving is set; return if leaving;
    // otherwise swap the outbox into a local string, RELEASE the lock, and
    // muxlab::write_all() it. If the write fails, shutdown() the socket (so
    // the reader sees EOF and the client leaves) and return.
    (void)client;
}

// ---- The registry: who is connected -----------------------------------------

/// The list of connected clients, shared by all threads.
class Registry {
public:
    void add(Client* client) {
        // TODO 2: take mutex_ exclusively (std::unique_lock) and add the client.
        (void)client;
    }

    void remove(Client* client) {
        // TODO 2: take mutex_ exclusively and remove the client.
        (void)client;
    }

    /// Hands @p line to every client except @p sender.
    void relay(const Client* sender, std::string_view line) {
        // TODO 2: take mutex_ shared (std::shared_lock): many senders may
        // relay at once. deliver() the line to every client but the sender.
        (void)sender;
        (void)line;
    }

private:
    std::shared_mutex mutex_;
    [[maybe_unused]] std::vector<Client*> clients_;
};

// ---- The reader thread: one per client --------------------------------------

/// Reads @p client's bytes, cuts them into lines and relays each whole line.
void relay_lines(Client& client, Registry& registry) {
    // TODO 5: loop on read() until it returns 0 or fails (retry EINTR).
    // Append what arrives to a `partial` string; relay every complete line in
    // it (up to and including its LF) with registry.relay(&client, line);
    // keep the rest for the next read. Never let `partial` grow without
    // limit: a line longer than kMaxLine is dropped up to its LF.
    (void)client;
    (void)registry;
}

/// The thread started for each accepted client; it owns the client's socket.
void serve_client(muxlab::Fd socket, Registry& registry) {
    Client client(std::move(socket));
    // TODO 6: start the writer thread (std::thread running write_outbox;
    // catch std::system_error if it cannot start), add &client to the
    // registry, relay_lines(), then remove it from the registry. Then stop
    // the writer: set client.leaving under the lock, notify outbox_ready,
    // shutdown(SHUT_RDWR) the socket (in case the writer is blocked writing
    // to a client that stopped reading), and join it.
    (void)registry;
    (void)relay_lines;
    (void)write_outbox;
    (void)deliver;
}

}  // namespace

int main(int argc, char** argv) {
    muxlab::Options options = muxlab::parse_options(
        argc, argv, "Lab 03: line relay, one thread per client, shared client list.");
    muxlab::Fd listener = muxlab::listen_tcp(options);
    muxlab::announce(listener.get());

    Registry registry;
    for (;;) {
        muxlab::Fd client(accept(listener.get(), nullptr, nullptr));
        if (!client) {
            muxlab::log_errno("accept");
            continue;
        }
        // TODO 1: serve the client in a thread of its own:
        //     std::thread(serve_client, std::move(client), std::ref(registry)).detach();
        // (catch std::system_error: if no thread can start, log and go on).
        // Until then, the client is closed at once, unserved.
        (void)serve_client;
    }
}
