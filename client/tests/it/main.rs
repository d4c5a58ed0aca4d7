//! Integration tests: the client against a real in-process scopd.

mod status;
