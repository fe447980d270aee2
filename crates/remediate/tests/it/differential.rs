//! Differential tests (being written).
