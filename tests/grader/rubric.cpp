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
    auto fail = [&](const std::string& why) {
        *error = "rubric line " + std::to_string(number) + ": " + why;
        return false;
    };
    for (std::string line; std::getline(lines, line);) {
        ++number;
        if (size_t hash = line.find('#'); hash != std::string::npos) line.erase(hash);
        std::istringstream words(line);
        std::string first, second, keyword, needed, extra;
        if (!(words >> first)) continue;
        words >> second >> keyword >> needed;
        if (words >> extra || second.empty()) return fail("expected `lab NAME` or `Suite.Test POINTS [needs Suite.Test]`");
        if (first == "lab") {
            if (!keyword.empty()) return fail("expected `lab NAME`");
            labs.push_back(RubricLab{second, {}});
            continue;
        }
        char* end = nullptr;
        long points = std::strtol(second.c_str(), &end, 10);
        if (labs.empty() || first.find('.') == std::string::npos || *end != '\0' || points < 0)
            return fail("bad test line '" + line + "'");
        RubricItem item{first, static_cast<int>(points), {}};
        if (!keyword.empty()) {
            if (keyword != "needs" || needed.empty()) return fail("expected `needs Suite.Test` after the points");
            std::istringstream names(needed);
            for (std::string name; std::getline(names, name, ',');) {
                const std::vector<RubricItem>& earlier = labs.back().items;
                bool known = std::any_of(earlier.begin(), earlier.end(),
                                         [&](const RubricItem& other) { return other.test == name; });
                if (!known) return fail("`needs " + name + "`: no such test earlier in lab " + labs.back().name);
                item.needs.push_back(name);
            }
        }
        labs.back().items.push_back(item);
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
