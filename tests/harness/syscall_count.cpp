#include "harness/syscall_count.hpp"

#include <errno.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "harness/proc_probe.hpp"

namespace muxlab::test {

long total_syscalls(const SyscallCounts& counts) {
    long total = 0;
    for (const auto& [number, count] : counts) total += count;
    return total;
}

std::string describe_syscalls(const SyscallCounts& counts) {
    std::vector<std::pair<long, long>> sorted(counts.begin(), counts.end());
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    std::string text;
    for (const auto& [number, count] : sorted) {
        if (!text.empty()) text += ", ";
        text += proc::syscall_name(number) + " " + std::to_string(count);
    }
    return text.empty() ? "none" : text;
}

SyscallCounter::SyscallCounter(pid_t pid) : pid_(pid) {
    tracer_ = std::thread([this] { trace(); });
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return state_ != State::kAttaching; });
}

SyscallCounter::~SyscallCounter() { finish(); }

void SyscallCounter::set_state(State state) {
    std::lock_guard<std::mutex> lock(mutex_);
    state_ = state;
    changed_.notify_all();
}

void SyscallCounter::resume() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_ == State::kHeld) state_ = State::kCounting;
    changed_.notify_all();
}

SyscallCounts SyscallCounter::finish() {
    {
        std::unique_lock<std::mutex> lock(mutex_);
        if (state_ == State::kHeld || state_ == State::kCounting) state_ = State::kFinishing;
        changed_.notify_all();
        changed_.wait(lock, [this] { return state_ == State::kDone; });
    }
    if (tracer_.joinable()) tracer_.join();
    return counts_;
}

void SyscallCounter::trace() {
    if (ptrace(PTRACE_SEIZE, pid_, nullptr, PTRACE_O_TRACESYSGOOD) != 0) {
        error_ = std::string("cannot trace the server to count its system calls: ptrace(PTRACE_SEIZE) "
                             "failed with ") + strerrorname_np(errno) + " (" + std::strerror(errno) +
                 "); a container or a security module forbids ptrace here";
        set_state(State::kDone);
        return;
    }
    // Hold it still: PTRACE_INTERRUPT ends in a PTRACE_EVENT_STOP. A signal
    // that arrives first stops it too (signal-delivery-stop): keep it for later.
    int pending_signal = 0;
    ptrace(PTRACE_INTERRUPT, pid_, nullptr, nullptr);
    for (;;) {
        int status = 0;
        if (waitpid(pid_, &status, __WALL) != pid_ || !WIFSTOPPED(status)) {
            error_ = "the server ended while being attached to";
            set_state(State::kDone);
            return;
        }
        if ((status >> 16) == PTRACE_EVENT_STOP) break;
        pending_signal = WSTOPSIG(status);
        ptrace(PTRACE_CONT, pid_, nullptr, nullptr);  // delivered at detach; the interrupt is still due
    }
    set_state(State::kHeld);
    {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [this] { return state_ != State::kHeld; });
        if (state_ == State::kFinishing) {
            lock.unlock();
            ptrace(PTRACE_DETACH, pid_, nullptr, reinterpret_cast<void*>(static_cast<long>(pending_signal)));
            set_state(State::kDone);
            return;
        }
    }
    // Counting: stop at every system call entry and exit, count the entries.
    ptrace(PTRACE_SYSCALL, pid_, nullptr, reinterpret_cast<void*>(static_cast<long>(pending_signal)));
    pending_signal = 0;
    bool finishing = false;
    for (;;) {
        int status = 0;
        pid_t got = waitpid(pid_, &status, __WALL | (finishing ? 0 : WNOHANG));
        if (got == 0) {
            std::unique_lock<std::mutex> lock(mutex_);
            if (state_ == State::kFinishing) {
                finishing = true;
                lock.unlock();
                ptrace(PTRACE_INTERRUPT, pid_, nullptr, nullptr);  // it stops where it is: detach there
                continue;
            }
            // The server sleeps (in io_uring_enter, say): look again soon, or when told to finish.
            changed_.wait_for(lock, std::chrono::microseconds(200));
            continue;
        }
        if (got != pid_ || !WIFSTOPPED(status)) break;  // exited or killed: nothing to detach from
        int signal = 0;
        if (WSTOPSIG(status) == (SIGTRAP | 0x80)) {
            __ptrace_syscall_info info{};
            if (!finishing && ptrace(PTRACE_GET_SYSCALL_INFO, pid_, reinterpret_cast<void*>(sizeof info), &info) > 0 &&
                info.op == PTRACE_SYSCALL_INFO_ENTRY)
                ++counts_[static_cast<long>(info.entry.nr)];
        } else if ((status >> 16) != PTRACE_EVENT_STOP) {
            signal = WSTOPSIG(status);  // a signal on its way to the server: pass it on
        }
        if (finishing) {
            ptrace(PTRACE_DETACH, pid_, nullptr, reinterpret_cast<void*>(static_cast<long>(signal)));
            break;
        }
        ptrace(PTRACE_SYSCALL, pid_, nullptr, reinterpret_cast<void*>(static_cast<long>(signal)));
    }
    set_state(State::kDone);
}

}  // namespace muxlab::test
