#include "harness/timing.hpp"

#include <cstdlib>
#include <thread>

namespace muxlab::test {

double time_scale() {
    static const double scale = [] {
        const char* text = std::getenv("MUXLAB_TIME_SCALE");
        double value = text != nullptr ? std::atof(text) : 1.0;
        return value >= 1.0 ? value : 1.0;
    }();
    return scale;
}

Millis scaled(Millis base) {
    return Millis(static_cast<long>(static_cast<double>(base.count()) * time_scale()));
}

int Deadline::remaining_ms() const {
    auto left = std::chrono::duration_cast<Millis>(end_ - Clock::now()).count();
    return left > 0 ? static_cast<int>(left) : 0;
}

void pause_between_looks() { std::this_thread::sleep_for(Millis(5)); }

}  // namespace muxlab::test
