//! (issue #5) — see the module's owner notes.

#[allow(unused_imports)]
use super::Store;
