//! The small deterministic generator the masking tests draw their inputs from, so a failing
//! input is the same on every run.

/// A linear congruential generator (Knuth's MMIX constants), seeded by its field.
pub(super) struct Lcg(pub(super) u64);

impl Lcg {
    /// The next value (the state's high 31 bits).
    pub(super) fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}
