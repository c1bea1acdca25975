//! Pure types and rules of the product, with no I/O. Everything here can be
//! unit-tested (and property-tested) without a store, a socket or a runtime.

pub mod address;
pub mod ids;
pub mod model;
pub mod routing;
pub mod threading;

pub use address::EmailAddress;
pub use ids::*;
pub use model::*;
