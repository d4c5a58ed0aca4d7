//! Reader for IDX files (MNIST, Fashion-MNIST), gzipped or raw.
//!
//! An IDX file starts with a magic number `0x0000_08NN` (unsigned bytes, `NN`
//! dimensions), then one big-endian `u32` per dimension, then the data. Images
//! are `idx3` (`count × rows × cols`), labels `idx1` (`count`). Whether a file
//! is gzipped is decided by its first two bytes, not by its name.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::dataset::Split;
use super::error::{DataError, Result};
use super::memory::InMemory;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const UNSIGNED_BYTE: u32 = 0x08;

/// Reads the image and label files of `split` from `root` into memory; every
/// label must be below `num_classes`.
pub(crate) fn read(root: &Path, split: Split, num_classes: usize) -> Result<InMemory> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let images_path = locate(root, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = locate(root, &format!("{prefix}-labels-idx1-ubyte"))?;

    let bytes = read_maybe_gzipped(&images_path)?;
    let (dims, body) = header(&images_path, &bytes, 3)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    let pixels = records(&images_path, body, count, &[rows, cols], "image")?.to_vec();

    let bytes = read_maybe_gzipped(&labels_path)?;
    let (dims, body) = header(&labels_path, &bytes, 1)?;
    let labels = records(&labels_path, body, dims[0], &[], "label")?.to_vec();
    if labels.len() != count {
        return Err(DataError::Malformed {
            path: labels_path,
            detail: format!("{} labels, but {} has {count} images", labels.len(), images_path.display()),
        });
    }
    if let Some(record) = labels.iter().position(|&l| usize::from(l) >= num_classes) {
        return Err(DataError::LabelOutOfRange {
            path: labels_path,
            kind: "record",
            record,
            label: labels[record].into(),
            num_classes,
        });
    }
    Ok(InMemory { channels: 1, height: rows, width: cols, pixels, labels })
}

/// Finds `name` or `name.gz` under `root`.
fn locate(root: &Path, name: &str) -> Result<PathBuf> {
    let gz = root.join(format!("{name}.gz"));
    let raw = root.join(name);
    if raw.is_file() {
        Ok(raw)
    } else if gz.is_file() {
        Ok(gz)
    } else {
        Err(DataError::MissingFile { path: gz, what: format!("neither {name} nor {name}.gz exists") })
    }
}

/// The file's bytes, gunzipped if it starts with the gzip magic. A gzip stream
/// that ends early yields what it decoded so far: the record count in the
/// header then reports exactly where the data stops.
fn read_maybe_gzipped(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut decoder = flate2::read::GzDecoder::new(raw.as_slice());
    let mut out = Vec::with_capacity(raw.len() * 2);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                return Err(DataError::Malformed {
                    path: path.to_owned(),
                    detail: format!("corrupt gzip stream after {} bytes: {e}", out.len()),
                });
            }
        }
    }
    Ok(out)
}

/// Checks the magic number and returns the dimensions and the data after the header.
fn header<'a>(path: &Path, bytes: &'a [u8], dims: usize) -> Result<(Vec<usize>, &'a [u8])> {
    let expected = (UNSIGNED_BYTE << 8) | u32::try_from(dims).unwrap_or(u32::MAX);
    let found = be_u32(bytes, 0).ok_or_else(|| DataError::Malformed {
        path: path.to_owned(),
        detail: format!("{} bytes is too short for an IDX header", bytes.len()),
    })?;
    if found != expected {
        return Err(DataError::WrongMagic { path: path.to_owned(), expected, found });
    }
    let sizes: Option<Vec<usize>> =
        (0..dims).map(|d| be_u32(bytes, 4 + 4 * d).and_then(|v| usize::try_from(v).ok())).collect();
    let sizes = sizes.ok_or_else(|| DataError::Malformed {
        path: path.to_owned(),
        detail: format!("header ends before its {dims} dimension sizes"),
    })?;
    Ok((sizes, &bytes[4 + 4 * dims..]))
}

/// The `count` records of shape `record_dims`, or an error naming the first
/// incomplete record (or the surplus bytes).
fn records<'a>(
    path: &Path,
    body: &'a [u8],
    count: usize,
    record_dims: &[usize],
    kind: &'static str,
) -> Result<&'a [u8]> {
    let record_len = record_dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let needed = record_len.and_then(|len| len.checked_mul(count));
    let (Some(record_len), Some(needed)) = (record_len.filter(|&len| len > 0), needed) else {
        return Err(DataError::Malformed {
            path: path.to_owned(),
            detail: format!("header announces {count} {kind}s of shape {record_dims:?}"),
        });
    };
    if body.len() < needed {
        return Err(DataError::Truncated {
            path: path.to_owned(),
            kind,
            record: body.len() / record_len,
            total: count,
        });
    }
    if body.len() > needed {
        return Err(DataError::Malformed {
            path: path.to_owned(),
            detail: format!("{} bytes after the {count} {kind}s the header announces", body.len() - needed),
        });
    }
    Ok(body)
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_announcing_absurd_sizes_is_an_error_not_an_allocation() {
        let mut bytes = vec![0, 0, 8, 3];
        for d in [u32::MAX, u32::MAX, u32::MAX] {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        let (dims, body) = header(Path::new("x"), &bytes, 3).unwrap();
        let err = records(Path::new("x"), body, dims[0], &dims[1..], "image").unwrap_err();
        assert!(err.to_string().starts_with("x: "), "{err}");
    }
}
