//! Placeholder until the validation benchmark lands.

fn main() {}
