//! Hole detection: all-zero ranges are stored as holes, never as shards, so writers test
//! every stripe (and often every block of a write) with [`is_all_zero`] before encoding it.

/// Bytes OR-ed together per step. The OR over a fixed-size block compiles to wide vector
/// instructions; stopping between blocks keeps data with an early non-zero byte cheap.
const BLOCK: usize = 4096;

/// Whether every byte of `data` is zero (true for an empty slice).
pub fn is_all_zero(data: &[u8]) -> bool {
    let mut blocks = data.chunks_exact(BLOCK);
    for block in &mut blocks {
        if block.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_any_non_zero_byte() {
        assert!(is_all_zero(&[]));
        for len in [1, 7, 4095, 4096, 4097, 3 * 4096 + 5] {
            let mut data = vec![0u8; len];
            assert!(is_all_zero(&data), "{len}");
            for at in [0, len / 2, len - 1] {
                data[at] = 0x80;
                assert!(!is_all_zero(&data), "{len} {at}");
                data[at] = 0;
            }
        }
    }
}
