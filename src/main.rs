//! The `recall` binary.

fn main() {}
