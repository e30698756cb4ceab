#include "grader/rubric.hpp"

#include <algorithm>
#include <sstream>

namespace muxlab::grader {

int RubricLab::max_points() const {
    int total = 0;
    for (const RubricItem& item : items) total += item.points;
    return total;
}

bool Rubric::parse(const std::string& text, std::string* error) {
    std::istringstream lines(text);
    int number = 0;
    for (std::string line; std::getline(lines, line);) {
        ++number;
        if (size_t hash = line.find('#'); hash != std::string::npos) line.erase(hash);
        std::istringstream words(line);
        std::string first, second, extra;
        if (!(words >> first)) continue;
        words >> second;
        if (words >> extra || second.empty()) {
            *error = "rubric line " + std::to_string(number) + ": expected `lab NAME` or `Suite.Test POINTS`";
            return false;
        }
        if (first == "lab") {
            labs.push_back(RubricLab{second, {}});
            continue;
        }
        char* end = nullptr;
        long points = std::strtol(second.c_str(), &end, 10);
        if (labs.empty() || first.find('.') == std::string::npos || *end != '\0' || points < 0) {
            *error = "rubric line " + std::to_string(number) + ": bad test line '" + line + "'";
            return false;
        }
        labs.back().items.push_back(RubricItem{first, static_cast<int>(points)});
    }
    std::stable_sort(labs.begin(), labs.end(),
                     [](const RubricLab& a, const RubricLab& b) { return a.name < b.name; });
    return true;
}

const RubricLab* Rubric::find_lab(const std::string& key) const {
    for (const RubricLab& lab : labs)
        if (lab.name == key || lab.name.rfind(key + "-", 0) == 0) return &lab;
    return nullptr;
}

const RubricLab* Rubric::lab_of(const std::string& test) const {
    for (const RubricLab& lab : labs)
        for (const RubricItem& item : lab.items)
            if (item.test == test) return &lab;
    return nullptr;
}

}  // namespace muxlab::grader
