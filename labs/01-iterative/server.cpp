/**
 * @file labs/01-iterative/server.cpp
 * @brief Lab 01: write an iterative echo server. Read README.md first.
 *
 * Build: make labs        Grade: make grade LAB=01
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
    // TODO 2: loop: read() into a buffer; 0 means the client is done
    // sending (return); an error other than EINTR ends this client (log it
    // with muxlab::log_errno and return); otherwise write back exactly the
    // bytes you read. muxlab::write_all() retries partial writes for you.
    (void)client;
}

}  // namespace

int main(int argc, char** argv) {
    muxlab::Options options =
        muxlab::parse_options(argc, argv, "Lab 01: iterative echo server, one client at a time.");
    muxlab::Fd listener = muxlab::listen_tcp(options);
    muxlab::announce(listener.get());

    for (;;) {
        // TODO 1: accept() the next client into a muxlab::Fd, so its socket
        // is closed when the loop iteration ends. If accept fails, log the
        // error and try again: one failed connection is no reason to stop.
        // Then serve it with echo_until_closed().
        // Remove this pause() once accept() is in place: it only keeps the
        // untouched skeleton from spinning.
        pause();
        echo_until_closed(-1);
    }
}
