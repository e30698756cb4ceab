/**
 * @file labs/02-fork/server.cpp
 * @brief Lab 02: one child process per client. Read README.md first.
 *
 * Start from your stage 01 echo loop (echo_until_closed below is done).
 * Build: make labs        Grade: make grade LAB=02
 */
#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "muxlab/fd.hpp"
#include "muxlab/net.hpp"
#include "muxlab/options.hpp"

namespace {

/// Echoes bytes from @p client back to it until the client closes its side.
void echo_until_closed(int client) {
    char buffer[16 * 1024];
    for (;;) {
        ssize_t received = read(client, buffer, sizeof buffer);
        if (received == 0) return;
        if (received < 0) {
            if (errno == EINTR) continue;
            muxlab::log_errno("read");
            return;
        }
        if (!muxlab::write_all(client, buffer, static_cast<size_t>(received))) {
            muxlab::log_errno("write");
            return;
        }
    }
}

/// SIGCHLD handler: reaps every child that has exited.
void reap_children(int) {
    // TODO 3: reap with waitpid(-1, ..., WNOHANG). Careful: one SIGCHLD may
    // stand for many exited children. Keep errno intact for the code this
    // handler interrupted.
}

}  // namespace

int main(int argc, char** argv) {
    muxlab::Options options =
        muxlab::parse_options(argc, argv, "Lab 02: echo server, one child process per client.");

    // TODO 2: install reap_children for SIGCHLD with sigaction(). Decide on
    // SA_RESTART and SA_NOCLDSTOP (see notes/02-processes.md).
    (void)reap_children;

    muxlab::Fd listener = muxlab::listen_tcp(options);
    muxlab::announce(listener.get());

    for (;;) {
        muxlab::Fd client(accept(listener.get(), nullptr, nullptr));
        if (!client) {
            // TODO 4: which errors are harmless here? (think of signals)
            muxlab::log_errno("accept");
            continue;
        }
        // TODO 1: fork(). In the child: close what the child does not use,
        // serve the client, and end the child with _exit(). In the parent:
        // close what the parent does not use, and go back to accept().
        // (Until then this serves clients one at a time, like stage 01.)
        echo_until_closed(client.get());
    }
}
