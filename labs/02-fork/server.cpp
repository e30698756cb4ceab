/**
 * @file labs/02-fork/server.cpp
 * @brief Lab 02: the echo server of stage 01, one child process per client.
 *
 * Your task is the TODOs in this file, in order: README.md says what each
 * one asks. Build with `make labs`, grade with `make grade LAB=02`.
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
    // TODO 3: Reap every child that has exited
    // An exited child stays a zombie until its parent collects its status. Which call
    // collects it without ever blocking inside the handler? When 20 children exit at
    // the same instant, how many SIGCHLD signals arrive? What must the handler leave
    // untouched for the code it interrupted?
}

}  // namespace

int main(int argc, char** argv) {
    muxlab::Options options =
        muxlab::parse_options(argc, argv, "Lab 02: echo server, one child process per client.");

    // TODO 2: Hear about children that exit
    // The kernel tells a parent that a child exited with SIGCHLD. How do you make
    // reap_children() run then? A signal may arrive while the parent sleeps in accept():
    // should that call fail with EINTR or be restarted (SA_RESTART)? Do stopped
    // children concern you (SA_NOCLDSTOP)?

    muxlab::Fd listener = muxlab::listen_tcp(options);
    muxlab::announce(listener.get());

    for (;;) {
        muxlab::Fd client(accept(listener.get(), nullptr, nullptr));
        if (!client) {
            // TODO 4: Errors that are no error
            // Now that signals arrive, which failure of accept() only means "a signal came
            // in", and what should the loop do about it?
            muxlab::log_errno("accept");
            continue;
        }
        // TODO 1: A process per client
        // Serving the client here keeps everyone else waiting, as in stage 01. Which call
        // gives the client a process of its own? After it, parent and child each hold
        // both sockets: which one does each side close, and why does it matter? How does
        // the child end without running the parent's exit code (stdio buffers, handlers)?
        echo_until_closed(client.get());  // stage 01: one client at a time
    }
}
