/**
 * @file labs/03-threads/server.cpp
 * @brief Lab 03: a line relay with one thread per client and shared state.
 *
 * Your task is the TODOs in this file, in order: README.md says what each
 * one asks. Build with `make labs`, grade with `make grade LAB=03`.
 */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
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
constexpr std::size_t kMaxLine = 4096;
/// How far (in bytes) a client may fall behind before it is cut off.
constexpr std::size_t kMaxBacklog = 4 * 1024 * 1024;

// ---- One client -------------------------------------------------------------

/**
 * @brief A connected client, shared by its own threads and every sender.
 *
 * Why not let each sender write() the line to the other sockets itself?
 * Two senders writing to the same socket at once can interleave: a blocking
 * send() may take only part of a long line, and another thread's bytes get in
 * before the rest. A lock per socket, held for the whole write, fixes that,
 * but then a sender waits as long as the slowest reader, and a client that
 * stops reading freezes, one by one, every client that talks to it.
 *
 * So each client has an outbox and a writer thread of its own. Senders only
 * append whole lines to the outbox, under the client's own lock, which is
 * quick and never blocks on the network. Only the writer thread touches the
 * socket's write side, and it holds no lock while it does.
 */
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
    // TODO 3: Hand a line to another client
    // Several senders may hand lines to the same client at the same instant, while its
    // writer thread takes them away. What guards the outbox, and for how long may you
    // hold it? How does the writer learn there is work? And if the client stopped
    // reading long ago (kMaxBacklog), what do you do instead of queueing forever?
}

/// The writer thread: writes the outbox to the socket until the client leaves.
void write_outbox(Client& client) {
    // TODO 4: The writer thread
    // This thread alone writes to the socket. How does it sleep until the outbox has
    // something (or the client leaves) without spinning? Which lock does it hold while
    // it write()s, given that a client that stops reading makes that write block for
    // good? What does it do when the write fails?
}

// ---- The registry: who is connected -----------------------------------------

/**
 * @brief The list of connected clients, shared by all threads.
 *
 * Every relayed line reads the list; only a join or a leave changes it.
 * A std::shared_mutex fits that pattern: any number of threads may hold it
 * shared (readers) at once, a writer holds it alone. A plain std::mutex would
 * be correct too, but would make senders relay one at a time.
 *
 * The lock also protects lifetimes: a Client lives on its thread's stack and
 * is removed (under the exclusive lock) before it is destroyed, so no sender
 * can be holding a pointer to it by then.
 */
class Registry {
public:
    void add(Client* client) {
        // TODO 2: Guard the client list
        // Every reader thread walks this list to relay a line, while accepting and leaving
        // change it. Which lock lets many relays walk it at once, and still gives a join
        // or a leave the list to itself? (add, remove and relay are all yours.)
    }

    void remove(Client* client) {
    }

    /// Hands @p line to every client except @p sender.
    void relay(const Client* sender, std::string_view line) {
    }

private:
    std::shared_mutex mutex_;
    std::vector<Client*> clients_;
};

// ---- The reader thread: one per client --------------------------------------

/// Reads @p client's bytes, cuts them into lines and relays each whole line.
void relay_lines(Client& client, Registry& registry) {
    // TODO 5: Cut the byte stream into lines
    // One read() returns whatever has arrived: half a line, or three and a half. Which
    // bytes can you relay now, and where does the rest wait? What ends this client?
    // A client may send megabytes without a LF: how much of a line do you keep?
}

/// The thread started for each accepted client; it owns the client's socket.
void serve_client(muxlab::Fd socket, Registry& registry) {
    Client client(std::move(socket));
    // TODO 6: A client's life
    // This thread reads; the client's writer thread writes. In what order do you start
    // the writer, make the client visible to senders, relay its lines, and take it away
    // again? When the client leaves, the writer may be asleep waiting for lines, or
    // blocked writing to a client that stopped reading: how do you wake it in both
    // cases, and why must this thread wait for it before `client` goes away?
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
            // Out of descriptors: accept() would fail again at once. Give
            // leaving clients a moment to free some instead of spinning.
            if (errno == EMFILE || errno == ENFILE)
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            continue;
        }
        // TODO 1: A thread per client
        // Each client needs a thread of its own that can block in read() while the others
        // go on. How do you start one on serve_client() that owns the socket, when nobody
        // will ever wait for it to end? What if no thread can be started?
        (void)serve_client;  // until then the client is closed at once, unserved
    }
}
