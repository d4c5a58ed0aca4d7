//! A cheap hash of a model's tensors, compared across ranks to catch replicas that
//! have drifted apart (which data-parallel training must never let happen).

use tch::{Device, Tensor};

use super::Collective;
use super::error::{Error, Result};
use super::tensor_view::cpu_bytes_mut;

/// A 64-bit hash of the exact bits of `tensors` (their shapes included), in order.
///
/// Not cryptographic: a multiply-xorshift over 8-byte words, fast enough to run
/// over every parameter once per epoch. Equal bits give equal hashes on every
/// machine; different bits give different hashes with overwhelming probability.
pub fn parameter_fingerprint(tensors: &[Tensor]) -> Result<u64> {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for t in tensors {
        for &d in &t.size() {
            h = mix(h, d as u64);
        }
        let mut dense = t.f_to_device(Device::Cpu)?.f_contiguous()?;
        let bytes = cpu_bytes_mut(&mut dense)?;
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            h = mix(h, u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        tail[..words.remainder().len()].copy_from_slice(words.remainder());
        h = mix(h, u64::from_le_bytes(tail) ^ ((words.remainder().len() as u64) << 56));
    }
    Ok(h)
}

fn mix(h: u64, w: u64) -> u64 {
    let x = (h ^ w).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^ (x >> 29)
}

/// Compares the fingerprint of `tensors` across the group; fails on every rank,
/// listing each rank's fingerprint, if any two differ.
pub fn check_replicas_agree(group: &mut dyn Collective, tensors: &[Tensor]) -> Result<()> {
    let h = parameter_fingerprint(tensors)?;
    // Two exact 32-bit halves, since the gather carries f64.
    let gathered = group.all_gather_f64(&[(h >> 32) as f64, (h & 0xFFFF_FFFF) as f64])?;
    let hashes: Vec<u64> = gathered.iter().map(|v| ((v[0] as u64) << 32) | v[1] as u64).collect();
    if hashes.iter().all(|&x| x == hashes[0]) {
        return Ok(());
    }
    let listed: Vec<String> = hashes.iter().enumerate().map(|(r, x)| format!("rank {r}: {x:016x}")).collect();
    Err(Error::Diverged { fingerprints: listed.join(", ") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn fingerprint_sees_one_flipped_value_and_shapes() {
        let a = Tensor::arange(100, (Kind::Float, Device::Cpu));
        let base = parameter_fingerprint(&[a.shallow_clone()]).unwrap();
        assert_eq!(parameter_fingerprint(&[a.copy()]).unwrap(), base);
        let b = a.copy();
        let _ = b.get(57).fill_(57.000_01);
        assert_ne!(parameter_fingerprint(&[b]).unwrap(), base);
        assert_ne!(parameter_fingerprint(&[a.reshape([10, 10])]).unwrap(), base);
    }
}
