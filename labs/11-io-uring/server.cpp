/**
 * @file labs/11-io-uring/server.cpp
 * @brief Lab 11: an echo server for many clients on one io_uring instance:
 *        completion instead of readiness.
 *
 * Your task is the TODOs in this file, in order: README.md says what each
 * one asks. Build with `make labs`, grade with `make grade LAB=11`.
 */
#include <errno.h>
#include <liburing.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "muxlab/fd.hpp"
#include "muxlab/net.hpp"
#include "muxlab/options.hpp"

namespace {

// ---- Tuning -------------------------------------------------------------------

constexpr unsigned kQueueDepth = 128;        // submission queue entries
constexpr unsigned kCompletionDepth = 256;   // completion queue entries
constexpr std::size_t kChunk = 4 * 1024;     // bytes per provided buffer (per recv completion)
constexpr unsigned kBuffers = 128;           // buffers in the ring (a power of two): 512 KiB in all
constexpr unsigned short kBufferGroup = 0;   // the id recv requests pick their buffers by
// A client that sends faster than it reads piles up echo here. Beyond this
// many pending bytes we stop receiving from it: its data stays in the kernel,
// TCP flow control slows the sender down, and memory stays bounded.
constexpr std::size_t kPendingCap = 256 * 1024;

// What a completion is about. Each request carries 64 bits of user_data that
// come back in its completion: here, the socket and the operation.
enum Op : std::uint64_t { kAccept = 1, kReceive = 2, kSend = 3, kCancel = 4 };

/// Logs a failure whose error code came back in a result (io_uring never sets errno).
void log_error(const char* what, int code) {
    errno = code;
    muxlab::log_errno(what);
}

std::uint64_t tag(int fd, Op op) { return (static_cast<std::uint64_t>(fd) << 8) | op; }
int tag_fd(std::uint64_t data) { return static_cast<int>(data >> 8); }
Op tag_op(std::uint64_t data) { return static_cast<Op>(data & 0xff); }

// ---- Data structures ------------------------------------------------------------

struct Client {
    muxlab::Fd socket;
    std::string pending;            // echo waiting for the send in flight to finish
    std::string sending;            // the bytes of the send in flight: the kernel's until it completes
    bool receiving = false;         // a multishot recv is armed
    bool stopping_input = false;    // a cancel of that recv is on its way
    bool input_closed = false;      // recv returned 0: finish the echo, then close
    bool closing = false;           // leaving: the socket closes once no request uses it
};

/// The ring (two queues shared with the kernel), closed with the server.
struct Ring {
    io_uring ring{};
    bool ready = false;
    Ring() = default;
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    ~Ring() {
        if (ready) io_uring_queue_exit(&ring);
    }
};

/// Memory lent to the kernel for recv: the ring of buffer descriptions (a
/// page-aligned mapping, as IORING_REGISTER_PBUF_RING wants) and the buffers.
struct BufferRing {
    io_uring_buf_ring* descriptions = nullptr;
    std::size_t mapped = 0;
    std::vector<char> memory = std::vector<char>(kBuffers * kChunk);
    BufferRing() = default;
    BufferRing(const BufferRing&) = delete;
    BufferRing& operator=(const BufferRing&) = delete;
    ~BufferRing() {
        if (descriptions != nullptr) munmap(descriptions, mapped);
    }
    char* buffer(unsigned id) { return memory.data() + id * kChunk; }
};

struct Server {
    Ring uring;
    BufferRing buffers;
    muxlab::Fd listener;
    std::unordered_map<int, Client> clients;  // by socket descriptor
    bool accept_paused = false;               // out of descriptors: accept re-armed when a client leaves
};

// ---- Submitting requests -----------------------------------------------------------

/// A free submission queue entry. Requests only queue up here; the loop hands
/// them all to the kernel at once. If the queue is full (a burst of work in
/// one turn), hand over what is there now to make room.
io_uring_sqe* new_request(Server& server) {
    io_uring_sqe* sqe = io_uring_get_sqe(&server.uring.ring);
    if (sqe == nullptr) {
        io_uring_submit(&server.uring.ring);
        sqe = io_uring_get_sqe(&server.uring.ring);
    }
    return sqe;  // never null after a submit with IORING_SETUP_SUBMIT_ALL
}

/// One request that accepts every connection until it ends.
void arm_accept(Server& server) {
    io_uring_sqe* sqe = new_request(server);
    // SOCK_CLOEXEC only: io_uring never blocks on a socket, so O_NONBLOCK is not needed.
    io_uring_prep_multishot_accept(sqe, server.listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, tag(server.listener.get(), kAccept));
    server.accept_paused = false;
}

/// One request that receives from @p client until it ends. No buffer is given:
/// the kernel takes one from the ring for each chunk (IOSQE_BUFFER_SELECT), so
/// a thousand idle clients tie up no memory of ours.
void arm_receive(Server& server, Client& client) {
    io_uring_sqe* sqe = new_request(server);
    io_uring_prep_recv_multishot(sqe, client.socket.get(), nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufferGroup;
    io_uring_sqe_set_data64(sqe, tag(client.socket.get(), kReceive));
    client.receiving = true;
}

/// Asks the kernel to end the request tagged @p target; the request then
/// completes with -ECANCELED (or has already completed).
void cancel(Server& server, int fd, Op target) {
    io_uring_sqe* sqe = new_request(server);
    io_uring_prep_cancel64(sqe, tag(fd, target), 0);
    io_uring_sqe_set_data64(sqe, tag(fd, kCancel));
}

/// Gives buffer @p id back to the kernel.
void recycle(Server& server, unsigned id) {
    // TODO 3: Give the buffer back
    // The kernel took buffer `id` out of the ring to hold one chunk, and it will not
    // use it again until you return it. When is it safe to return it, and what makes
    // it visible to the kernel again? What happens to every recv once no buffer is left?
}

// ---- Moving bytes ----------------------------------------------------------------

bool wants_input(const Client& client) {
    return !client.input_closed && !client.closing &&
           client.pending.size() + client.sending.size() < kPendingCap;
}

/// Sends what is pending.
void flush(Server& server, Client& client) {
    // TODO 2: One send in flight
    // The kernel reads a send's bytes until its completion arrives, and may take only
    // part of them (a short send). What must stay put meanwhile? What would a second
    // send on the same socket do to the order of the bytes? Where do new echoes wait?
}

/// Echoes @p data: queued behind whatever is pending, then sent if no send is in flight.
void echo(Server& server, Client& client, const char* data, std::size_t size) {
    client.pending.append(data, size);
    flush(server, client);
}

/// Arms, or stops, the client's recv to match wants_input().
void update_receive(Server& server, Client& client) {
    // TODO 5: Stop receiving from a client that does not read
    // An armed multishot recv delivers every chunk that arrives, however much echo
    // already waits for a client that does not read. How do you stop it at kPendingCap,
    // and start it again once the echo has drained?
    if (wants_input(client) && !client.receiving) arm_receive(server, client);
}

// ---- Completions -------------------------------------------------------------------

/// Starts closing @p client: the socket stays open until no request uses it, so
/// its number cannot be reused while completions for it may still come.
void close_client(Server& server, Client& client) {
    client.closing = true;
    update_receive(server, client);
    if (!client.sending.empty()) cancel(server, client.socket.get(), kSend);
}

/// Closes a leaving client once its last request has completed.
void forget_if_done(Server& server, int fd) {
    auto found = server.clients.find(fd);
    if (found == server.clients.end()) return;
    Client& client = found->second;
    if (client.input_closed && client.pending.empty() && client.sending.empty()) client.closing = true;
    if (!client.closing || client.receiving || !client.sending.empty()) return;
    server.clients.erase(found);
    // A descriptor is free again: connections waiting in the backlog can come in.
    if (server.accept_paused) arm_accept(server);
}

void on_receive(Server& server, Client& client, const io_uring_cqe* cqe) {
    // TODO 4: When is a multishot request over?
    // One recv request delivers chunk after chunk, one accept request connection after
    // connection, until the kernel ends it. Which completion is a request's last, and
    // what does the server do then? Think of an empty buffer ring, a full completion
    // queue, and running out of descriptors (there, when should accept start again?).
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned id = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        if (cqe->res > 0 && !client.closing)
            echo(server, client, server.buffers.buffer(id), static_cast<std::size_t>(cqe->res));
        recycle(server, id);  // copied: the buffer can take the next chunk
    }
    if (cqe->res == 0) {
        client.input_closed = true;  // the client half-closed: echo what is left, then close
    } else if (cqe->res < 0 && cqe->res != -ENOBUFS && cqe->res != -ECANCELED) {
        close_client(server, client);  // reset, or another error
    }
    // -ENOBUFS: the ring ran dry for a moment; the buffers recycled since let it go on.
    if (!client.closing) update_receive(server, client);
}

void on_send(Server& server, Client& client, const io_uring_cqe* cqe) {
    if (cqe->res < 0) {  // EPIPE, ECONNRESET: the client is gone
        client.sending.clear();
        close_client(server, client);
        return;
    }
    client.sending.clear();
    if (!client.closing) update_receive(server, client);  // room in the queue: receive again
}

void on_accept(Server& server, const io_uring_cqe* cqe) {
    if (cqe->res < 0) return;
    Client& client = server.clients[cqe->res];
    client.socket = muxlab::Fd(cqe->res);
    arm_receive(server, client);
}

void on_completion(Server& server, const io_uring_cqe* cqe) {
    std::uint64_t data = io_uring_cqe_get_data64(cqe);
    if (tag_op(data) == kAccept) return on_accept(server, cqe);
    if (tag_op(data) == kCancel) return;
    int fd = tag_fd(data);
    auto found = server.clients.find(fd);
    if (found == server.clients.end()) {  // cannot happen: a client outlives its requests
        if (cqe->flags & IORING_CQE_F_BUFFER) recycle(server, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        return;
    }
    if (tag_op(data) == kReceive) on_receive(server, found->second, cqe);
    if (tag_op(data) == kSend) on_send(server, found->second, cqe);
    forget_if_done(server, fd);
}

// ---- Setting up ----------------------------------------------------------------------

/// Registers the provided-buffer ring and fills it. liburing 2.3 has no
/// io_uring_setup_buf_ring() (2.4): map the ring, register it, add every buffer.
bool setup_buffers(Server& server) {
    BufferRing& buffers = server.buffers;
    buffers.mapped = kBuffers * sizeof(io_uring_buf);
    void* mapping = mmap(nullptr, buffers.mapped, PROT_READ | PROT_WRITE,
                         MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mapping == MAP_FAILED) {
        muxlab::log_errno("mmap");
        return false;
    }
    buffers.descriptions = static_cast<io_uring_buf_ring*>(mapping);
    io_uring_buf_reg registration{};
    registration.ring_addr = reinterpret_cast<std::uintptr_t>(mapping);
    registration.ring_entries = kBuffers;
    registration.bgid = kBufferGroup;
    int result = io_uring_register_buf_ring(&server.uring.ring, &registration, 0);
    if (result < 0) {
        log_error("io_uring_register_buf_ring", -result);
        return false;
    }
    io_uring_buf_ring_init(buffers.descriptions);
    for (unsigned id = 0; id < kBuffers; ++id)
        io_uring_buf_ring_add(buffers.descriptions, buffers.buffer(id), kChunk,
                              static_cast<unsigned short>(id), io_uring_buf_ring_mask(kBuffers),
                              static_cast<int>(id));
    io_uring_buf_ring_advance(buffers.descriptions, kBuffers);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    muxlab::Options options = muxlab::parse_options(
        argc, argv, "Lab 11: echo server for many clients, io_uring (completion-based).");
    Server server;
    server.listener = muxlab::listen_tcp(options, /*nonblocking=*/false);
    io_uring_params params{};
    // A completion queue larger than the submission queue (multishot requests
    // post many completions per request), and SUBMIT_ALL: a request that fails
    // early does not keep the ones behind it from being submitted.
    // COOP_TASKRUN: the kernel finishes a completion (a recv's copy) in this
    // thread. By default it interrupts the thread at once to do so, an
    // inter-processor interrupt per arriving chunk; cooperative, it waits for
    // the thread's next entry into the kernel, which the loop makes every turn.
    params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
    params.cq_entries = kCompletionDepth;
    int result = io_uring_queue_init_params(kQueueDepth, &server.uring.ring, &params);
    if (result < 0) {
        log_error("io_uring_queue_init (is io_uring disabled? see "
                  "/proc/sys/kernel/io_uring_disabled)", -result);
        return 1;
    }
    server.uring.ready = true;
    if (!setup_buffers(server)) return 1;
    arm_accept(server);
    muxlab::announce(server.listener.get());

    for (;;) {
        // TODO 1: The completion loop
        // Requests queue up in the submission queue; results come back in the completion
        // queue. With one system call per loop turn, how do you hand over everything
        // queued and sleep until something has completed? Then: how do you take every
        // completion that is there, and tell the kernel their slots are free?
        pause();
    }
}
