//! (issue #5)
