/**
 * @file labs/01-iterative/server.cpp
 * @brief Lab 01: an iterative echo server (RFC 862) with blocking calls.
 *
 * Your task is the TODOs in this file, in order: README.md says what each
 * one asks. Build with `make labs`, grade with `make grade LAB=01`.
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
    // TODO 2: Echo until the client is done
    // read() returns a count, 0 or -1. What does each one mean for this client, and
    // which bytes go back? Can one read() hold less than the client wrote, or more?
    // What can a write() do besides write everything, and what happens to the whole
    // server when it writes to a client that has reset the connection?
}

}  // namespace

int main(int argc, char** argv) {
    muxlab::Options options =
        muxlab::parse_options(argc, argv, "Lab 01: iterative echo server, one client at a time.");
    muxlab::Fd listener = muxlab::listen_tcp(options);
    muxlab::announce(listener.get());

    for (;;) {
        // TODO 1: Accept a client
        // The listening socket only queues connections. Which call takes the next one
        // (and sleeps until there is one), and what does it give you to hand to
        // echo_until_closed()? Who closes that socket, and when? Which of its errors
        // are a reason to stop the server?
        pause();  // stands in for the wait for a client: remove it
    }
}
