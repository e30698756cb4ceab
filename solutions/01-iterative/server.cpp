/**
 * @file solutions/01-iterative/server.cpp
 * @brief Stage 01: an iterative echo server (RFC 862) with blocking calls.
 *
 * The simplest server there is: accept one client, echo everything it sends
 * until it closes, then accept the next one. While one client is connected,
 * every other client waits in the listen backlog: that limit is what every
 * later stage removes. See notes/01-blocking.md.
 */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "muxlab/fd.hpp"
#include "muxlab/net.hpp"
#include "muxlab/options.hpp"

namespace {

/// Echoes bytes from @p client back to it until the client closes its side.
void echo_until_closed(int client) {
    //@hole 2 Echo until the client is done
    //@ read() returns a count, 0 or -1. What does each one mean for this client, and
    //@ which bytes go back? Can one read() hold less than the client wrote, or more?
    //@ What can a write() do besides write everything, and what happens to the whole
    //@ server when it writes to a client that has reset the connection?
    char buffer[16 * 1024];
    for (;;) {
        // read() blocks until at least one byte has arrived. It may return
        // fewer bytes than the client wrote, or more than one write's worth:
        // TCP is a byte stream, not a sequence of messages.
        ssize_t received = read(client, buffer, sizeof buffer);
        if (received == 0) return;  // the client half-closed: nothing more will come
        if (received < 0) {
            if (errno == EINTR) continue;
            muxlab::log_errno("read");  // e.g. ECONNRESET: the client aborted
            return;
        }
        // A blocking write may also be partial; write_all loops until every
        // byte is out. It uses MSG_NOSIGNAL: writing to a client that has
        // gone away must fail with EPIPE, not kill the whole server.
        if (!muxlab::write_all(client, buffer, static_cast<size_t>(received))) {
            muxlab::log_errno("write");
            return;
        }
    }
    //@end
}

}  // namespace

int main(int argc, char** argv) {
    muxlab::Options options =
        muxlab::parse_options(argc, argv, "Stage 01: iterative echo server, one client at a time.");
    muxlab::Fd listener = muxlab::listen_tcp(options);
    muxlab::announce(listener.get());

    for (;;) {
        //@hole 1 Accept a client
        //@ The listening socket only queues connections. Which call takes the next one
        //@ (and sleeps until there is one), and what does it give you to hand to
        //@ echo_until_closed()? Who closes that socket, and when? Which of its errors
        //@ are a reason to stop the server?
        //@stub pause();  // stands in for the wait for a client: remove it
        // accept() blocks until a client has connected, then returns a new
        // socket for that one client; the listener keeps listening.
        muxlab::Fd client(accept(listener.get(), nullptr, nullptr));
        if (!client) {
            // Errors here belong to one failed connection (ECONNABORTED),
            // a signal (EINTR) or a full fd table (EMFILE): none is a reason
            // to stop serving everyone else.
            muxlab::log_errno("accept");
            continue;
        }
        echo_until_closed(client.get());
        // `client` goes out of scope here: its destructor closes the socket,
        // which sends FIN, and the client sees end-of-file.
        //@end
    }
}
