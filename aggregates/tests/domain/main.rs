//! The aggregate's tests, in one binary: one link per build rather than eleven, which
//! cargo-mutants pays again for every mutant.

mod common;

mod account;
mod extreme_fills;
mod failures;
mod fills;
mod invariants;
mod quota;
mod resting;
mod rules;
mod settings;
mod signals;
mod upcasting;
