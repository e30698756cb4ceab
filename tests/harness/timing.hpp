/**
 * @file timing.hpp
 * @brief Deadlines and the harness's time limits.
 *
 * Two kinds of limits, never mixed up:
 * - "must answer" limits are generous (seconds): a correct server meets them
 *   even on a loaded machine, so they never make a correct server fail;
 * - "must not" windows are short: how long the harness watches for something
 *   that should not happen (an unexpected byte, a CPU tick).
 * Both scale with the environment variable MUXLAB_TIME_SCALE (for slow
 * machines and sanitizer builds).
 */
#pragma once

#include <chrono>

namespace muxlab::test {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

/// Multiplier from MUXLAB_TIME_SCALE (default 1, at least 1).
double time_scale();

/// @p base scaled by time_scale().
Millis scaled(Millis base);

/// How long a correct server may take to answer anything (generous).
inline Millis answer_limit() { return scaled(Millis(5000)); }
/// How long a server may take to start and print its ready line.
inline Millis startup_limit() { return scaled(Millis(10000)); }
/// How long the harness watches for something that must not happen.
inline Millis quiet_window() { return scaled(Millis(300)); }

/// A point in time after which an operation gives up.
class Deadline {
public:
    /// A deadline @p budget from now.
    explicit Deadline(Millis budget) : end_(Clock::now() + budget) {}
    /// True once the deadline has passed.
    bool expired() const { return Clock::now() >= end_; }
    /// Milliseconds left (0 when expired), as poll() wants them.
    int remaining_ms() const;

private:
    Clock::time_point end_;
};

/**
 * @brief Waits until @p condition() is true or @p budget has passed.
 *
 * For states the harness can only observe by looking again (a process table in
 * /proc): re-checks every few milliseconds. @return the last value of condition().
 */
template <typename Condition>
bool eventually(Millis budget, Condition condition);

/// Sleeps a few milliseconds between two looks at /proc (used by eventually()).
void pause_between_looks();

template <typename Condition>
bool eventually(Millis budget, Condition condition) {
    Deadline deadline(budget);
    for (;;) {
        if (condition()) return true;
        if (deadline.expired()) return false;
        pause_between_looks();
    }
}

}  // namespace muxlab::test
