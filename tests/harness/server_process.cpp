#include "harness/server_process.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>

namespace muxlab::test {
namespace {

constexpr size_t kOutputCap = 1 << 20;  // the capture cap of ChildProcess, for messages

std::vector<std::string> server_argv(const std::string& program, const LaunchOptions& options) {
    std::vector<std::string> words = {program, "-p", "0"};
    words.insert(words.end(), options.args.begin(), options.args.end());
    return words;
}

SpawnOptions sandboxed(const LaunchOptions& options) {
    SpawnOptions spawn;
    spawn.sandboxed = true;
    spawn.limits.max_open_files = options.max_open_files;
    spawn.limits.cpu_seconds = options.cpu_seconds;
    spawn.limits.max_processes = options.max_processes;
    spawn.limits.address_space = options.address_space;
    return spawn;
}

std::vector<pid_t>& live_servers() {
    static std::vector<pid_t> pids;
    return pids;
}
bool is_live_server(pid_t pid) {
    const auto& pids = live_servers();
    return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

}  // namespace

std::vector<pid_t> running_servers() { return live_servers(); }

std::string escape_controls(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        auto byte = static_cast<unsigned char>(c);
        if ((byte < 0x20 && byte != '\n' && byte != '\t') || byte == 0x7f) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", byte);
            out += hex;
        } else {
            out += c;
        }
    }
    return out;
}

ServerProcess::ServerProcess(const std::string& program, const LaunchOptions& options)
    : program_(program), process_(server_argv(program, options), sandboxed(options)) {
    if (!process_.started()) {
        failure_ = process_.failure();
        if (failure_.rfind("cannot run '", 0) == 0) failure_.replace(0, 10, "cannot run server");
        return;
    }
    live_servers().push_back(process_.pid());
    ready_ = wait_for_ready_lines(options);
}

ServerProcess::~ServerProcess() {
    stop();
    auto& pids = live_servers();
    pids.erase(std::remove(pids.begin(), pids.end(), process_.pid()), pids.end());
}

bool ServerProcess::wait_for_ready_lines(const LaunchOptions& options) {
    Deadline deadline(startup_limit());
    size_t offset = 0;
    for (const std::string& prefix : options.ready_prefixes) {
        std::string expected = "'" + prefix + " HOST:PORT'";
        size_t line_start = offset;
        std::optional<std::string> line = process_.wait_stdout_line(&offset, deadline);
        if (!line) {
            std::string seen = stdout_text().substr(std::min(line_start, stdout_text().size()));
            auto exit = wait_exit(Millis(200));
            failure_ = "the server did not print its ready line " + expected;
            if (exit) failure_ += ": it " + exit->describe();
            else if (deadline.expired()) failure_ += " within " + std::to_string(startup_limit().count() / 1000) + " s";
            else if (seen.size() >= kOutputCap) failure_ += ": it wrote a megabyte on stdout without a newline";
            else failure_ += ": it closed its stdout";
            if (seen.size() > 200) seen = seen.substr(0, 200) + "...";
            if (!seen.empty()) failure_ += "; stdout so far: '" + escape_controls(seen) + "'";
            failure_ += stderr_tail();
            return false;
        }
        size_t colon = line->rfind(':');
        Endpoint endpoint;
        bool ok = line->rfind(prefix + " ", 0) == 0 && colon != std::string::npos && colon > prefix.size() + 1;
        if (ok) {
            endpoint.host = line->substr(prefix.size() + 1, colon - prefix.size() - 1);
            if (endpoint.host.size() > 2 && endpoint.host.front() == '[')
                endpoint.host = endpoint.host.substr(1, endpoint.host.size() - 2);
            std::string port = line->substr(colon + 1);
            ok = !port.empty() && port.size() <= 5 && port.find_first_not_of("0123456789") == std::string::npos;
            if (ok) endpoint.port = static_cast<unsigned>(std::stoul(port));
            ok = ok && endpoint.port > 0 && endpoint.port < 65536;
        }
        if (!ok) {
            failure_ = "the server's ready line was '" + escape_controls(*line) + "', expected " + expected +
                       " with the real port (the server was started with -p 0)" + stderr_tail();
            return false;
        }
        endpoints_.push_back(endpoint);
    }
    return true;
}

std::optional<ExitReport> ServerProcess::wait_exit(Millis budget) {
    bool known = process_.exit_report().has_value();
    std::optional<ExitReport> exit = process_.wait_exit(budget);
    if (exit && !known) note_exit();
    return exit;
}

std::optional<ExitReport> ServerProcess::terminate(Millis budget) {
    bool known = process_.exit_report().has_value();
    std::optional<ExitReport> exit = process_.terminate(budget);
    if (exit && !known) note_exit();
    return exit;
}

// A server that dies by a signal the harness did not send crashed or hit a
// sandbox limit: the test's own message may not say so, so the grader adds it.
void ServerProcess::note_exit() {
    const std::optional<ExitReport>& exit = process_.exit_report();
    if (!exit || !exit->signaled ||
        (process_.signalled_by_harness() && (exit->signal == SIGTERM || exit->signal == SIGKILL)))
        return;
    std::string how = "the server " + exit->describe();
    switch (exit->signal) {
        case SIGXCPU: how += ": it used up its CPU-time limit (a busy loop?)"; break;
        case SIGXFSZ: how += ": it wrote a file beyond the size limit"; break;
        case SIGPIPE: how += ": it wrote to a socket its client had closed; send with MSG_NOSIGNAL or ignore SIGPIPE"; break;
        case SIGSEGV: case SIGBUS: case SIGABRT: case SIGFPE: case SIGILL:
            how += ": it crashed; run it under gdb or with `make sanitize` to find where"; break;
        default: break;
    }
    add_sandbox_event(false, how);
}

// Processes that left the server's session (setsid), or outlived the server
// and were reparented to us, are a server gone to the background: the grader
// could neither watch nor stop it through its pid. That breaks the contract
// (stay in the foreground until SIGTERM). Processes a test starts itself
// (ChildProcess) stay in sessions of their own that the harness knows.
void ServerProcess::note_escapes() {
    pid_t server = process_.pid();
    bool ended = wait_exit(Millis(0)).has_value();
    pid_t own_session = getsid(0);
    const std::vector<pid_t>& children = live_children();
    size_t escaped = 0;
    for (pid_t process : descendants_of_self()) {
        if (is_live_server(process) || std::find(children.begin(), children.end(), process) != children.end())
            continue;
        pid_t session = getsid(process);
        if (session < 0) continue;  // gone meanwhile
        bool known_session = session == server || session == own_session || is_live_server(session) ||
                             std::find(children.begin(), children.end(), session) != children.end();
        bool orphan = ended && session == server && parent_of(process) == getpid();
        if (!known_session || orphan) ++escaped;
    }
    if (escaped > 0)
        add_sandbox_event(true, "the server went into the background (daemonized): " + std::to_string(escaped) +
                                    " process(es) it started left its session or outlived it" +
                                    (ended ? " (the server itself " + process_.exit_report()->describe() + ")"
                                           : std::string()) +
                                    ". A server stays in the foreground until SIGTERM; the grader stops all it started");
}

// A sanitizer build reports on stderr and, for UBSan, goes on running: a
// test can pass while the server had undefined behaviour. Such a report
// fails the test it happened in.
void ServerProcess::note_sanitizer_reports() {
    if (!is_sanitizer_build(prepare_program(program_))) return;
    process_.wait_output_closed(Millis(2000));
    std::string text = stderr_text();
    static const char* const kReports[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                           "WARNING: ThreadSanitizer", "runtime error:",
                                           "ERROR: UndefinedBehaviorSanitizer"};
    size_t first = std::string::npos;
    for (const char* report : kReports) first = std::min(first, text.find(report));
    if (first == std::string::npos) return;
    size_t line_start = text.rfind('\n', first);
    line_start = line_start == std::string::npos ? 0 : line_start + 1;
    std::string excerpt;
    std::istringstream lines(text.substr(line_start));
    int count = 0;
    for (std::string line; count < 12 && std::getline(lines, line); ++count)
        excerpt += "\n    | " + escape_controls(line.substr(0, 240));
    add_sandbox_event(true, "the server's sanitizer reported an error (the test's own checks passed):" + excerpt);
}

ExitReport ServerProcess::stop() {
    if (process_.pid() <= 0 || stopped_) return process_.exit_report().value_or(ExitReport{});
    stopped_ = true;
    if (!process_.signalled_by_harness()) note_escapes();
    if (size_t dropped = output_discarded(); dropped > 0)
        add_sandbox_event(false, "the server wrote more than " + std::to_string((dropped + kOutputCap) >> 20) +
                                     " MiB of output (endless logging?); the grader kept the first MiB of each stream");
    ExitReport report = process_.stop();
    note_exit();
    note_sanitizer_reports();
    reap_orphans();  // descendants that left the group (reparented to us)
    return report;
}

std::string ServerProcess::stderr_tail(size_t max_lines) const {
    constexpr size_t kLineCap = 240;  // a "line" of endless output is cut, not pasted whole
    std::vector<std::string> lines;
    std::istringstream text(stderr_text());
    for (std::string line; std::getline(text, line);)
        lines.push_back(escape_controls(line.size() > kLineCap ? line.substr(0, kLineCap) + "..." : line));
    std::string tail;
    if (!lines.empty()) {
        tail = "\n  server stderr (last lines):";
        for (size_t i = lines.size() > max_lines ? lines.size() - max_lines : 0; i < lines.size(); ++i)
            tail += "\n    | " + lines[i];
    }
    if (size_t dropped = output_discarded(); dropped > 0)
        tail += "\n  the server wrote " + std::to_string((dropped + kOutputCap) >> 20) +
                " MiB or more of output; the grader kept the first MiB of each stream";
    // Say so when a sandbox limit ended the server: the student sees a
    // busy loop or a runaway file for what it is, not as a mysterious crash.
    const std::optional<ExitReport>& exit = process_.exit_report();
    if (exit && exit->signaled && exit->signal == SIGXCPU)
        tail += "\n  the server was killed by SIGXCPU: it used up its CPU-time limit (a busy loop?)";
    if (exit && exit->signaled && exit->signal == SIGXFSZ)
        tail += "\n  the server was killed by SIGXFSZ: it wrote a file beyond the grader's size limit";
    return tail;
}

}  // namespace muxlab::test
