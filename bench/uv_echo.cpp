/**
 * @file bench/uv_echo.cpp
 * @brief An echo server on libuv: the outside reference for the echo workloads.
 *
 * Not a course stage. `make bench` builds it when libuv's headers are
 * installed (Debian: libuv1-dev) and measures it beside the stages, so
 * "as fast as a libuv server" is a number on the same machine, not a claim.
 * It is written the way a careful libuv program is: one read buffer for the
 * whole loop (a read is handled before the next one starts), uv_try_write
 * first, and a heap copy only for what the socket did not take.
 *
 * It keeps the kit's server contract: `[-H HOST] [-p PORT]`, `-p 0` picks a
 * port, the ready line `listening on HOST:PORT`, SIGTERM ends it.
 */
#include <uv.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace {

char g_read_buffer[64 * 1024];

/// What the socket did not take at once, queued with uv_write.
struct PendingWrite {
    uv_write_t request;
    std::unique_ptr<char[]> bytes;
};

void free_client(uv_handle_t* handle) { std::unique_ptr<uv_tcp_t> owned(reinterpret_cast<uv_tcp_t*>(handle)); }

void lend_buffer(uv_handle_t*, size_t, uv_buf_t* buf) {
    *buf = uv_buf_init(g_read_buffer, sizeof g_read_buffer);
}

void on_written(uv_write_t* request, int) {
    std::unique_ptr<PendingWrite> done(reinterpret_cast<PendingWrite*>(request));
}

void on_read(uv_stream_t* client, ssize_t n, const uv_buf_t* buf) {
    if (n < 0) {  // UV_EOF or an error
        uv_close(reinterpret_cast<uv_handle_t*>(client), free_client);
        return;
    }
    if (n == 0) return;
    uv_buf_t data = uv_buf_init(buf->base, static_cast<unsigned>(n));
    int sent = uv_try_write(client, &data, 1);
    if (sent == n) return;
    if (sent < 0 && sent != UV_EAGAIN) {
        uv_close(reinterpret_cast<uv_handle_t*>(client), free_client);
        return;
    }
    size_t done = sent > 0 ? static_cast<size_t>(sent) : 0;
    size_t rest = static_cast<size_t>(n) - done;
    auto pending = std::make_unique<PendingWrite>();
    pending->bytes.reset(new char[rest]);
    std::memcpy(pending->bytes.get(), buf->base + done, rest);
    uv_buf_t tail = uv_buf_init(pending->bytes.get(), static_cast<unsigned>(rest));
    if (uv_write(&pending->request, client, &tail, 1, on_written) == 0) pending.release();
}

void on_connection(uv_stream_t* listener, int status) {
    if (status < 0) return;
    auto client = std::make_unique<uv_tcp_t>();
    uv_tcp_init(listener->loop, client.get());
    if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(client.get())) != 0) {
        uv_close(reinterpret_cast<uv_handle_t*>(client.release()), free_client);
        return;
    }
    uv_read_start(reinterpret_cast<uv_stream_t*>(client.get()), lend_buffer, on_read);
    client.release();  // owned by the loop until free_client
}

void on_sigterm(uv_signal_t* handle, int) { uv_stop(handle->loop); }

[[noreturn]] void usage(int status) {
    std::fprintf(status ? stderr : stdout,
                 "usage: uv-echo [-H HOST] [-p PORT]\nEcho server on libuv (bench reference).\n");
    std::exit(status);
}

}  // namespace

int main(int argc, char** argv) {
    std::string host = "127.0.0.1";
    int port = 7000;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--help") usage(0);
        if ((arg == "-H" || arg == "-p") && i + 1 < argc) {
            if (arg == "-H") host = argv[++i];
            else port = std::atoi(argv[++i]);
        } else {
            usage(2);
        }
    }
    std::signal(SIGPIPE, SIG_IGN);
    uv_loop_t* loop = uv_default_loop();
    uv_tcp_t listener;
    uv_tcp_init(loop, &listener);
    sockaddr_storage address{};
    if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&address)) != 0 &&
        uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&address)) != 0) {
        std::fprintf(stderr, "uv-echo: bad address %s\n", host.c_str());
        return 2;
    }
    int rc = uv_tcp_bind(&listener, reinterpret_cast<sockaddr*>(&address), 0);
    if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener), SOMAXCONN, on_connection);
    if (rc != 0) {
        std::fprintf(stderr, "uv-echo: cannot listen: %s\n", uv_strerror(rc));
        return 1;
    }
    sockaddr_storage bound{};
    int length = sizeof bound;
    uv_tcp_getsockname(&listener, reinterpret_cast<sockaddr*>(&bound), &length);
    char name[64] = "?";
    int bound_port = 0;
    if (bound.ss_family == AF_INET6) {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&bound);
        uv_ip6_name(in6, name, sizeof name);
        bound_port = ntohs(in6->sin6_port);
    } else {
        auto* in4 = reinterpret_cast<sockaddr_in*>(&bound);
        uv_ip4_name(in4, name, sizeof name);
        bound_port = ntohs(in4->sin_port);
    }
    std::printf("listening on %s:%d\n", name, bound_port);
    std::fflush(stdout);

    uv_signal_t sigterm;
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_sigterm, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
