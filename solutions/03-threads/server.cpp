/**
 * @file solutions/03-threads/server.cpp
 * @brief Stage 03: a line relay with one thread per client and shared state.
 *
 * Every complete line a client sends goes, unchanged and whole, to every
 * other connected client. Unlike the forked servers of stage 02, the clients
 * must now know about each other, so they share one list (the registry) in
 * one address space: threads make that easy, and make it easy to get wrong.
 *
 * Three locks, three jobs:
 *  - the registry's std::shared_mutex: relaying a line only reads the list
 *    (many senders may do it at once), joining and leaving change it (one at
 *    a time, alone);
 *  - each client's own std::mutex: guards the lines waiting to be written to
 *    that client, because several senders may hand it a line at the same time;
 *  - no lock is ever held while a thread blocks on a socket.
 * See notes/03-threads.md.
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
    //@hole 3 Hand a line to another client
    //@ Several senders may hand lines to the same client at the same instant, while its
    //@ writer thread takes them away. What guards the outbox, and for how long may you
    //@ hold it? How does the writer learn there is work? And if the client stopped
    //@ reading long ago (kMaxBacklog), what do you do instead of queueing forever?
    std::lock_guard<std::mutex> lock(to.mutex);
    if (to.outbox.size() + line.size() > kMaxBacklog) {
        // This client has stopped reading. Buffering forever would eat all
        // memory; blocking here would stall the sender. Cut it off instead:
        // shutdown() wakes its threads, and it leaves like any other client.
        if (!to.cut_off) {
            std::fprintf(stderr, "client on fd %d is not reading: disconnecting it\n",
                         to.socket.get());
            shutdown(to.socket.get(), SHUT_RDWR);
            to.cut_off = true;
        }
        return;
    }
    to.outbox.append(line);
    to.outbox_ready.notify_one();
    //@end
}

/// The writer thread: writes the outbox to the socket until the client leaves.
void write_outbox(Client& client) {
    //@hole 4 The writer thread
    //@ This thread alone writes to the socket. How does it sleep until the outbox has
    //@ something (or the client leaves) without spinning? Which lock does it hold while
    //@ it write()s, given that a client that stops reading makes that write block for
    //@ good? What does it do when the write fails?
    std::string batch;
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(client.mutex);
            client.outbox_ready.wait(lock, [&] { return !client.outbox.empty() || client.leaving; });
            if (client.leaving) return;  // lines still queued are dropped: the client is gone
            batch.swap(client.outbox);  // take everything; senders get an empty outbox
        }
        // The lock is released: this write may block for as long as the
        // client takes to read, and senders must not wait for that.
        if (!muxlab::write_all(client.socket.get(), batch.data(), batch.size())) {
            muxlab::log_errno("write");
            shutdown(client.socket.get(), SHUT_RDWR);  // the reader sees EOF: the client leaves
            return;
        }
        batch.clear();
    }
    //@end
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
        //@hole 2 Guard the client list
        //@ Every reader thread walks this list to relay a line, while accepting and leaving
        //@ change it. Which lock lets many relays walk it at once, and still gives a join
        //@ or a leave the list to itself? (add, remove and relay are all yours.)
        std::unique_lock<std::shared_mutex> lock(mutex_);
        clients_.push_back(client);
        //@end
    }

    void remove(Client* client) {
        //@hole 2
        std::unique_lock<std::shared_mutex> lock(mutex_);
        clients_.erase(std::find(clients_.begin(), clients_.end(), client));
        //@end
    }

    /// Hands @p line to every client except @p sender.
    void relay(const Client* sender, std::string_view line) {
        //@hole 2
        std::shared_lock<std::shared_mutex> lock(mutex_);
        for (Client* other : clients_)
            if (other != sender) deliver(*other, line);
        //@end
    }

private:
    std::shared_mutex mutex_;
    std::vector<Client*> clients_;
};

// ---- The reader thread: one per client --------------------------------------

/// Reads @p client's bytes, cuts them into lines and relays each whole line.
void relay_lines(Client& client, Registry& registry) {
    //@hole 5 Cut the byte stream into lines
    //@ One read() returns whatever has arrived: half a line, or three and a half. Which
    //@ bytes can you relay now, and where does the rest wait? What ends this client?
    //@ A client may send megabytes without a LF: how much of a line do you keep?
    std::string partial;      // bytes received after the last LF
    bool discarding = false;  // inside a line already known to be too long
    char buffer[16 * 1024];
    for (;;) {
        ssize_t received = read(client.socket.get(), buffer, sizeof buffer);
        if (received == 0) return;
        if (received < 0) {
            if (errno == EINTR) continue;
            if (errno != ECONNRESET) muxlab::log_errno("read");
            return;
        }
        // A read() returns whatever has arrived: half a line, or three lines
        // and a half. Only whole lines are relayed; the rest waits.
        partial.append(buffer, static_cast<std::size_t>(received));
        std::size_t start = 0;
        for (std::size_t lf; (lf = partial.find('\n', start)) != std::string::npos; start = lf + 1) {
            std::size_t length = lf + 1 - start;
            if (discarding) {
                discarding = false;  // this LF ends the over-long line
            } else if (length > kMaxLine) {
                std::fprintf(stderr, "dropping a %zu-byte line\n", length);
            } else {
                registry.relay(&client, std::string_view(partial).substr(start, length));
            }
        }
        partial.erase(0, start);
        // Never buffer an unbounded line: once it cannot fit, drop it up to its LF.
        if (partial.size() >= kMaxLine) {
            if (!discarding) std::fprintf(stderr, "dropping an over-long line\n");
            partial.clear();
            discarding = true;
        }
    }
    //@end
}

/// The thread started for each accepted client; it owns the client's socket.
void serve_client(muxlab::Fd socket, Registry& registry) {
    Client client(std::move(socket));
    //@hole 6 A client's life
    //@ This thread reads; the client's writer thread writes. In what order do you start
    //@ the writer, make the client visible to senders, relay its lines, and take it away
    //@ again? When the client leaves, the writer may be asleep waiting for lines, or
    //@ blocked writing to a client that stopped reading: how do you wake it in both
    //@ cases, and why must this thread wait for it before `client` goes away?
    std::thread writer;
    try {
        writer = std::thread(write_outbox, std::ref(client));
    } catch (const std::system_error& error) {
        std::fprintf(stderr, "cannot start a writer thread: %s\n", error.what());
        return;  // `client` goes out of scope: the socket is closed
    }
    registry.add(&client);
    relay_lines(client, registry);
    registry.remove(&client);  // from now on no sender can reach `client`

    // Stop the writer: wake it if it waits for lines, and shutdown() the
    // socket in case it is blocked writing to a client that stopped reading.
    {
        std::lock_guard<std::mutex> lock(client.mutex);
        client.leaving = true;
    }
    client.outbox_ready.notify_one();
    shutdown(client.socket.get(), SHUT_RDWR);
    writer.join();  // no thread outlives its client
    //@end
}

}  // namespace

int main(int argc, char** argv) {
    muxlab::Options options = muxlab::parse_options(
        argc, argv, "Stage 03: line relay, one thread per client, shared client list.");
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
        //@hole 1 A thread per client
        //@ Each client needs a thread of its own that can block in read() while the others
        //@ go on. How do you start one on serve_client() that owns the socket, when nobody
        //@ will ever wait for it to end? What if no thread can be started?
        //@stub (void)serve_client;  // until then the client is closed at once, unserved
        // The new thread owns the socket (moved into it) and ends when the
        // client leaves; detached, because nobody needs to wait for it.
        try {
            std::thread(serve_client, std::move(client), std::ref(registry)).detach();
        } catch (const std::system_error& error) {
            // No thread could be started: the socket, already moved into the
            // thread's arguments, was closed with them. Keep serving the rest.
            std::fprintf(stderr, "cannot start a client thread: %s\n", error.what());
        }
        //@end
    }
}
