//! The data module on real files: Fashion-MNIST from `data/`, and CIFAR-10
//! binary and ImageFolder datasets generated in temporary directories.

mod errors;
mod fixtures;
mod loader;
mod readers;
