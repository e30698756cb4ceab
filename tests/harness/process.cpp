#include "harness/process.hpp"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

namespace muxlab::test {
namespace {

constexpr size_t kOutputCap = 1 << 20;  // keep at most 1 MiB of each stream

void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

ExitReport report_from_status(int status) {
    ExitReport report;
    if (WIFEXITED(status)) {
        report.exited = true;
        report.exit_status = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        report.signaled = true;
        report.signal = WTERMSIG(status);
    }
    return report;
}

std::vector<pid_t>& live_pids() {
    static std::vector<pid_t> pids;
    return pids;
}

std::vector<pid_t> children_of(const std::string& task_dir) {
    std::vector<pid_t> children;
    DIR* tasks = opendir(task_dir.c_str());
    if (tasks == nullptr) return children;
    while (dirent* entry = readdir(tasks)) {
        if (entry->d_name[0] == '.') continue;
        std::ifstream file(task_dir + "/" + entry->d_name + "/children");
        for (pid_t child; file >> child;) children.push_back(child);
    }
    closedir(tasks);
    return children;
}

/// The program to execute: @p name itself when it has a slash, else its PATH entry.
std::string resolve(const std::string& name) {
    if (name.find('/') != std::string::npos) return name;
    const char* path = std::getenv("PATH");
    std::istringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
    for (std::string dir; std::getline(dirs, dir, ':');) {
        std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
        if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return name;
}

/// Runs in the forked child: only async-signal-safe calls until execv.
[[noreturn]] void exec_child(const char* path, const std::vector<char*>& argv, const ChildPlan* plan,
                             int out, int err, int exec_error) {
    // A session of its own: its own process group (so the harness can signal
    // everything it spawned at once) and no controlling terminal (so it
    // cannot write to the grader's terminal through /dev/tty).
    setsid();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction defaults {};
    defaults.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &defaults, nullptr);  // SIGPIPE too

    int null = open("/dev/null", O_RDONLY);
    dup2(null, 0);
    dup2(out, 1);
    dup2(err, 2);
    // Only fds 0-2 are inherited; exec_error is close-on-exec and stays until execv.
    if (exec_error > 3) close_range(3, static_cast<unsigned>(exec_error) - 1, 0);
    close_range(static_cast<unsigned>(exec_error) + 1, ~0U, 0);

    int error = plan != nullptr ? apply_plan(*plan) : 0;  // negative: the switch of user failed
    if (error == 0) {
        execv(path, argv.data());
        error = errno;
    }
    if (write(exec_error, &error, sizeof error) < 0) {
        // nothing more to do: the parent sees EOF and reports "cannot run"
    }
    _exit(127);
}

}  // namespace

std::string ExitReport::describe() const {
    std::string text = "ended in an unknown way";
    if (exited) {
        text = "exited with status " + std::to_string(exit_status);
    } else if (signaled) {
        const char* name = sigabbrev_np(signal);
        text = name != nullptr ? std::string("was killed by SIG") + name
                               : "was killed by signal " + std::to_string(signal);
    }
    return needed_sigkill ? "ignored SIGTERM and " + text : text;
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv_words, const SpawnOptions& options) {
    if (argv_words.empty()) {
        failure_ = "harness: nothing to run";
        return;
    }
    std::vector<std::string> words = argv_words;
    std::string program = options.sandboxed ? prepare_program(words[0]) : resolve(words[0]);
    std::vector<char*> argv;
    for (std::string& word : words) argv.push_back(word.data());
    argv.push_back(nullptr);

    if (access(words[0].c_str(), F_OK) != 0 && words[0].find('/') != std::string::npos) {
        int error = errno;  // checked as the harness: the sandbox user may not see it
        failure_ = "cannot run '" + words[0] + "': " + std::strerror(error) +
                   (error == ENOENT ? " (was it built? check the path)" : "");
        return;
    }
    int out[2], err[2], exec_error[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 ||
        pipe2(exec_error, O_CLOEXEC) != 0 || pipe2(wake_pipe_, O_CLOEXEC) != 0) {
        failure_ = std::string("harness: pipe: ") + std::strerror(errno);
        return;
    }
    std::optional<ChildPlan> plan;
    if (options.sandboxed) plan = plan_for(program, options.limits);
    pid_ = fork();
    if (pid_ == 0) exec_child(program.c_str(), argv, plan ? &*plan : nullptr, out[1], err[1], exec_error[1]);
    ::close(out[1]);
    ::close(err[1]);
    ::close(exec_error[1]);
    if (pid_ < 0) {
        failure_ = std::string("harness: fork: ") + std::strerror(errno);
        ::close(out[0]);
        ::close(err[0]);
        ::close(exec_error[0]);
        return;
    }
    // The child calls setsid() before execv, so once the exec_error pipe
    // reports (EOF on success), its process group exists and kill(-pid) works.
    pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
    live_pids().push_back(pid_);
    stdout_pipe_ = out[0];
    stderr_pipe_ = err[0];

    int exec_errno = 0;
    ssize_t got = read(exec_error[0], &exec_errno, sizeof exec_errno);  // EOF once execv succeeds
    ::close(exec_error[0]);
    drainer_ = std::thread([this] { drain_output(); });
    if (got == sizeof exec_errno && exec_errno < 0) {
        failure_ = "harness: cannot switch to the sandbox user (uid " + std::to_string(plan ? plan->uid : 0) +
                   "): " + std::strerror(-exec_errno);
        stop();
    } else if (got == sizeof exec_errno) {
        failure_ = "cannot run '" + words[0] + "': " + std::strerror(exec_errno) +
                   (exec_errno == ENOENT ? " (was it built? check the path)" : "");
        stop();
    }
}

ChildProcess::~ChildProcess() {
    stop();
    auto& pids = live_pids();
    pids.erase(std::remove(pids.begin(), pids.end(), pid_), pids.end());
    if (wake_pipe_[1] >= 0) {
        char byte = 0;
        if (write(wake_pipe_[1], &byte, 1) < 0) {
            // the drainer also ends when both streams close
        }
    }
    if (drainer_.joinable()) drainer_.join();
    close_fd(stdout_pipe_);
    close_fd(stderr_pipe_);
    close_fd(pidfd_);
    close_fd(wake_pipe_[0]);
    close_fd(wake_pipe_[1]);
}

void ChildProcess::drain_output() {
    bool out_open = true, err_open = true;
    char buffer[65536];
    while (out_open || err_open) {
        pollfd fds[3] = {{out_open ? stdout_pipe_ : -1, POLLIN, 0},
                         {err_open ? stderr_pipe_ : -1, POLLIN, 0},
                         {wake_pipe_[0], POLLIN, 0}};
        if (poll(fds, 3, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (fds[2].revents != 0) break;  // the owner is shutting down
        for (int i = 0; i < 2; ++i) {
            if (fds[i].revents == 0) continue;
            ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
            std::lock_guard<std::mutex> lock(mutex_);
            if (n <= 0) {
                (i == 0 ? out_open : err_open) = false;
                if (i == 0) stdout_closed_ = true;
            } else {
                // Past the cap the bytes are read and thrown away: a program
                // that logs without end neither blocks on a full pipe nor
                // grows the grader's memory.
                std::string& sink = i == 0 ? stdout_ : stderr_;
                size_t room = kOutputCap > sink.size() ? kOutputCap - sink.size() : 0;
                size_t kept = std::min(room, static_cast<size_t>(n));
                sink.append(buffer, kept);
                discarded_ += static_cast<size_t>(n) - kept;
            }
            output_arrived_.notify_all();
        }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    output_closed_ = true;
    output_arrived_.notify_all();
}

std::optional<std::string> ChildProcess::wait_stdout_line(size_t* offset, const Deadline& deadline) {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        size_t newline = stdout_.find('\n', *offset);
        if (newline != std::string::npos) {
            std::string line = stdout_.substr(*offset, newline - *offset);
            *offset = newline + 1;
            return line;
        }
        if (output_closed_ || stdout_closed_ || deadline.expired() || stdout_.size() >= kOutputCap) return std::nullopt;
        output_arrived_.wait_for(lock, Millis(std::min(deadline.remaining_ms(), 50)));
        if (output_closed_ || pidfd_ < 0) continue;
        pollfd p{pidfd_, POLLIN, 0};
        if (poll(&p, 1, 0) == 1 && stdout_.find('\n', *offset) == std::string::npos) {
            // Exited: let the drainer collect what is left, briefly.
            output_arrived_.wait_for(lock, Millis(50));
            if (stdout_.find('\n', *offset) == std::string::npos) return std::nullopt;
        }
    }
}

bool ChildProcess::running() { return !wait_exit(Millis(0)).has_value(); }

std::optional<ExitReport> ChildProcess::wait_exit(Millis budget) {
    if (exit_) return exit_;
    if (pid_ <= 0) return std::nullopt;
    pollfd p{pidfd_, POLLIN, 0};
    int ready = pidfd_ >= 0 ? poll(&p, 1, static_cast<int>(budget.count())) : 1;
    if (ready <= 0) return std::nullopt;
    int status = 0;
    pid_t got = waitpid(pid_, &status, pidfd_ >= 0 ? WNOHANG : 0);
    if (got != pid_) return std::nullopt;
    exit_ = report_from_status(status);
    return exit_;
}

std::optional<ExitReport> ChildProcess::terminate(Millis budget) {
    if (!exit_ && pid_ > 0) {
        signalled_ = true;
        kill(pid_, SIGTERM);
    }
    return wait_exit(budget);
}

ExitReport ChildProcess::stop() {
    if (pid_ <= 0) return {};
    signalled_ = true;
    if (!exit_) {
        kill(-pid_, SIGTERM);
        if (!wait_exit(scaled(Millis(2000)))) {
            kill(-pid_, SIGKILL);
            wait_exit(Millis(10000));
            if (exit_) exit_->needed_sigkill = true;
        }
    }
    kill(-pid_, SIGKILL);  // whatever is left of its process group
    return exit_.value_or(ExitReport{});
}

bool ChildProcess::wait_output_closed(Millis budget) {
    std::unique_lock<std::mutex> lock(mutex_);
    return output_arrived_.wait_for(lock, budget, [this] { return output_closed_; });
}

std::string ChildProcess::stdout_text() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stdout_;
}

std::string ChildProcess::stderr_text() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stderr_;
}

size_t ChildProcess::output_discarded() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return discarded_;
}

ScratchDirectory::ScratchDirectory(const std::string& prefix) {
    const char* tmpdir = std::getenv("TMPDIR");
    std::string pattern = std::string(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp") + "/" + prefix + "-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
        failure_ = "harness: cannot make a directory " + pattern + ": " + std::strerror(errno);
        return;
    }
    path_ = pattern;
}

ScratchDirectory::~ScratchDirectory() {
    if (path_.empty()) return;
    std::error_code ignored;  // a file a stopped program held may already be gone
    std::filesystem::remove_all(path_, ignored);
}

std::string run_program(const std::vector<std::string>& argv, int* exit_status, Millis budget) {
    ChildProcess child(argv);
    std::optional<ExitReport> exit;
    if (child.started()) exit = child.wait_exit(budget);
    if (child.started() && exit) child.wait_output_closed(budget);
    if (exit_status != nullptr) *exit_status = exit && exit->exited ? exit->exit_status : -1;
    return child.stdout_text();
}

bool have_program(const std::string& name) { return access(resolve(name).c_str(), X_OK) == 0; }

const std::vector<pid_t>& live_children() { return live_pids(); }

std::vector<pid_t> descendants_of_self() {
    std::vector<pid_t> all = children_of("/proc/self/task");
    for (size_t i = 0; i < all.size() && all.size() < 100000; ++i) {
        std::vector<pid_t> more = children_of("/proc/" + std::to_string(all[i]) + "/task");
        all.insert(all.end(), more.begin(), more.end());
    }
    return all;
}

pid_t parent_of(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    size_t end_of_name = text.rfind(')');
    if (end_of_name == std::string::npos) return 0;
    std::istringstream fields(text.substr(end_of_name + 1));
    char state = 0;
    pid_t parent = 0;
    fields >> state >> parent;
    return parent;
}

void become_subreaper() { prctl(PR_SET_CHILD_SUBREAPER, 1); }

namespace {
void reap_children_except(const std::vector<pid_t>& keep) {
    // Killing a child reparents its own children to us (we are a subreaper),
    // so repeat until nothing is left; bounded in case something keeps forking.
    for (int round = 0; round < 1000; ++round) {
        bool any = false;
        for (pid_t child : children_of("/proc/self/task")) {
            if (std::find(keep.begin(), keep.end(), child) != keep.end()) continue;
            any = true;
            kill(child, SIGKILL);
            waitpid(child, nullptr, 0);
        }
        if (!any) break;
    }
}
}  // namespace

void reap_all_children() {
    reap_children_except({});
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
}

void reap_orphans() { reap_children_except(live_pids()); }

}  // namespace muxlab::test
