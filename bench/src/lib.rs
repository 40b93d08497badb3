//! ringbook's benchmarks: shared workload generators for the criterion benches and harnesses.
#![forbid(unsafe_code)]
