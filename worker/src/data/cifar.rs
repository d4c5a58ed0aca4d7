//! Reader for CIFAR-10 binary batches.
//!
//! Each file is a sequence of 3073-byte records: one label byte, then a 32×32
//! RGB image as 3072 bytes in CHW order. The training split is
//! `data_batch_1.bin` … `data_batch_N.bin` (N = 5 in the official release; the
//! numbers must run from 1 without gaps), the test split is `test_batch.bin`.
//! The files may sit in `root` or in `root/cifar-10-batches-bin/`.

use std::path::{Path, PathBuf};

use super::dataset::Split;
use super::error::{DataError, Result};
use super::memory::InMemory;

const SIDE: usize = 32;
const IMAGE_LEN: usize = 3 * SIDE * SIDE;
const RECORD_LEN: usize = 1 + IMAGE_LEN;
const SUBFOLDER: &str = "cifar-10-batches-bin";

/// Reads every batch file of `split` into memory; every label must be below `num_classes`.
pub(crate) fn read(root: &Path, split: Split, num_classes: usize) -> Result<InMemory> {
    let dir = if root.join(SUBFOLDER).is_dir() { root.join(SUBFOLDER) } else { root.to_owned() };
    let files = match split {
        Split::Train => train_files(&dir)?,
        Split::Test => vec![dir.join("test_batch.bin")],
    };
    let mut data =
        InMemory { channels: 3, height: SIDE, width: SIDE, pixels: Vec::new(), labels: Vec::new() };
    for path in files {
        append(&path, num_classes, &mut data)?;
    }
    Ok(data)
}

/// `data_batch_1.bin` … `data_batch_N.bin` for the largest N present.
fn train_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut highest = 0usize;
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_prefix("data_batch_"))
            .and_then(|n| n.strip_suffix(".bin"))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(number) = number {
            highest = highest.max(number);
        }
    }
    let files: Vec<PathBuf> = (1..=highest.max(1)).map(|i| dir.join(format!("data_batch_{i}.bin"))).collect();
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        let what = if highest == 0 {
            "no data_batch_N.bin files".to_owned()
        } else {
            format!("the training batches must run from data_batch_1.bin to data_batch_{highest}.bin")
        };
        return Err(DataError::MissingFile { path: missing.clone(), what });
    }
    Ok(files)
}

fn append(path: &Path, num_classes: usize, data: &mut InMemory) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let whole = bytes.len() / RECORD_LEN;
    if bytes.len() % RECORD_LEN != 0 {
        return Err(DataError::Truncated {
            path: path.to_owned(),
            kind: "record",
            record: whole,
            total: whole + 1,
        });
    }
    if whole == 0 {
        return Err(DataError::Malformed { path: path.to_owned(), detail: "empty file, no records".into() });
    }
    data.pixels.reserve(whole * IMAGE_LEN);
    data.labels.reserve(whole);
    for (record, chunk) in bytes.chunks_exact(RECORD_LEN).enumerate() {
        let label = chunk[0];
        if usize::from(label) >= num_classes {
            return Err(DataError::LabelOutOfRange {
                path: path.to_owned(),
                kind: "record",
                record,
                label: label.into(),
                num_classes,
            });
        }
        data.labels.push(label);
        data.pixels.extend_from_slice(&chunk[1..]);
    }
    Ok(())
}
