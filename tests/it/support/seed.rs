//! Random choices a test can replay: the seed is printed (libtest shows it when the test fails)
//! and `LEDGERHOOK_TEST_SEED=N` runs the test again with the same one.

use rand::rngs::StdRng;
use rand::SeedableRng;

const SEED_VARIABLE: &str = "LEDGERHOOK_TEST_SEED";

/// A random generator for `test`, seeded from `LEDGERHOOK_TEST_SEED` if set, else afresh.
pub fn seeded_rng(test: &str) -> StdRng {
    let seed = match std::env::var(SEED_VARIABLE) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VARIABLE} must be a whole number, got {text:?}")),
        Err(_) => rand::random(),
    };
    eprintln!("{test}: seed={seed} (replay with {SEED_VARIABLE}={seed})");
    StdRng::seed_from_u64(seed)
}
