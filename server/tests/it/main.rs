//! Integration tests: a real `scopd` on `127.0.0.1:0`.

mod health;
