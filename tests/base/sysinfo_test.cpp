#include "base/sysinfo.h"

#include <gtest/gtest.h>

namespace hearth {
namespace {

TEST(MemAvailable, ParsesMeminfo) {
    auto r = parse_mem_available("MemTotal:       16318544 kB\nMemFree:         1000 kB\nMemAvailable:    8000000 kB\n");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r.value(), int64_t{8000000} * 1024);
    EXPECT_EQ(parse_mem_available("MemTotal: 1 kB\n").status().code(), StatusCode::not_found);
    EXPECT_FALSE(parse_mem_available("MemAvailable: lots\n").ok());
    EXPECT_EQ(read_mem_available("/nonexistent/meminfo").status().code(), StatusCode::io_error);
    EXPECT_EQ(format_bytes(100), "100 B");
    EXPECT_EQ(format_bytes(3 << 20), "3.00 MiB");
    EXPECT_EQ(format_bytes(int64_t{5} << 30), "5.00 GiB");
}

TEST(MemAvailable, ThisMachineHasSome) {
    auto r = read_mem_available();
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_GT(r.value(), 0);
}

}  // namespace
}  // namespace hearth
