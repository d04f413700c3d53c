//! Compatibility path: the usage parts of the rules moved to
//! [`crate::config`] (`config::usage`, `config::products`). Kept so that code
//! written against `crate::usage_rules` (other branches of this round) still
//! builds; new code imports `crate::config`.

pub use crate::config::products::*;
pub use crate::config::usage::*;
pub use crate::config::Month;
