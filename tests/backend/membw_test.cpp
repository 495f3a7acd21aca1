#include <gtest/gtest.h>

#include "backend/cpu/membw.h"

namespace hearth::backend {
namespace {

// A plausibility check, not a timing test: any machine that runs the suite streams well over
// 100 MB/s, and the result reports what it measured.
TEST(ReadBandwidth, MeasuresAPlausibleRate) {
    ThreadPool pool(2);
    auto bw = measure_read_bandwidth(pool, (64u << 20) + 123, 2);
    ASSERT_TRUE(bw.ok()) << bw.status().message();
    EXPECT_EQ(bw->buffer_bytes, 64u << 20);  // rounded down to whole pages
    EXPECT_EQ(bw->repetitions, 2);
    EXPECT_GT(bw->bytes_per_second, 1e8);
    EXPECT_LT(bw->bytes_per_second, 1e14);
}

}  // namespace
}  // namespace hearth::backend
