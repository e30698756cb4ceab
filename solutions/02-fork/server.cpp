/**
 * @file solutions/02-fork/server.cpp
 * @brief Stage 02: the echo server of stage 01, one child process per client.
 *
 * The parent only accepts; each client gets a child process of its own, so a
 * slow client no longer blocks the others. What costs care is everything the
 * child shares with its parent: open fds (each side closes the one it does
 * not use) and the end of each child (the parent must reap it, or it stays a
 * zombie). See notes/02-processes.md.
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
    //@hole 3 Reap every child that has exited
    //@ An exited child stays a zombie until its parent collects its status. Which call
    //@ collects it without ever blocking inside the handler? When 20 children exit at
    //@ the same instant, how many SIGCHLD signals arrive? What must the handler leave
    //@ untouched for the code it interrupted?
    // Signals of one kind do not queue: when 20 children exit at once, the
    // parent may get a single SIGCHLD. So reap in a loop until no exited
    // child is left (WNOHANG: never block inside a handler). waitpid may
    // change errno, which the interrupted code may be about to read.
    int saved_errno = errno;
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    errno = saved_errno;
    //@end
}

}  // namespace

int main(int argc, char** argv) {
    muxlab::Options options =
        muxlab::parse_options(argc, argv, "Stage 02: echo server, one child process per client.");

    //@hole 2 Hear about children that exit
    //@ The kernel tells a parent that a child exited with SIGCHLD. How do you make
    //@ reap_children() run then? A signal may arrive while the parent sleeps in accept():
    //@ should that call fail with EINTR or be restarted (SA_RESTART)? Do stopped
    //@ children concern you (SA_NOCLDSTOP)?
    struct sigaction on_child {};
    on_child.sa_handler = reap_children;
    sigemptyset(&on_child.sa_mask);
    // SA_RESTART: a slow call the signal interrupts (accept) is restarted by
    // the kernel instead of failing with EINTR. The loop below still treats
    // EINTR as harmless, since not every call is restarted (see signal(7)).
    on_child.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &on_child, nullptr);
    //@end

    muxlab::Fd listener = muxlab::listen_tcp(options);
    muxlab::announce(listener.get());

    for (;;) {
        muxlab::Fd client(accept(listener.get(), nullptr, nullptr));
        if (!client) {
            //@hole 4 Errors that are no error
            //@ Now that signals arrive, which failure of accept() only means "a signal came
            //@ in", and what should the loop do about it?
            //@stub muxlab::log_errno("accept");
            if (errno != EINTR) muxlab::log_errno("accept");
            //@end
            continue;
        }
        //@hole 1 A process per client
        //@ Serving the client here keeps everyone else waiting, as in stage 01. Which call
        //@ gives the client a process of its own? After it, parent and child each hold
        //@ both sockets: which one does each side close, and why does it matter? How does
        //@ the child end without running the parent's exit code (stdio buffers, handlers)?
        //@stub echo_until_closed(client.get());  // stage 01: one client at a time
        pid_t child = fork();
        if (child == 0) {
            // The child has a copy of every fd. It serves this one client and
            // never accepts, so it closes its copy of the listening socket.
            listener.reset();
            echo_until_closed(client.get());
            // _exit, not exit: the child must not flush stdio buffers it
            // inherited or run the parent's exit handlers a second time.
            // The kernel closes the client socket as the process ends.
            _exit(0);
        }
        if (child < 0) muxlab::log_errno("fork");
        // Parent: `client` goes out of scope and its copy is closed here. The
        // connection stays open in the child; were the parent to keep its
        // copy, the client would never see end-of-file, and the parent would
        // run out of fds after enough clients.
        //@end
    }
}
