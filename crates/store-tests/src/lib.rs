//! Conformance suite for the store backends; the tests live in `tests/it`.
