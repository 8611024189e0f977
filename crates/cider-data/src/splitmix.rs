//! SplitMix64 (Sebastiano Vigna): a tiny seeded generator, and its output mix on its own, for
//! the places that need reproducible 64-bit streams or seeds without NumPy parity (epoch seeds,
//! permutation tests, test inputs).

/// The increment of the generator's state (2⁶⁴ / φ).
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The output mix of SplitMix64: a bijection of `u64` that scatters nearby inputs.
pub fn mix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator: the state advances by [`GOLDEN_GAMMA`] and each output is its [`mix64`].
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        mix64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_outputs_of_seed_0_are_vignas() {
        // The reference values of splitmix64.c for seed 0.
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }
}
