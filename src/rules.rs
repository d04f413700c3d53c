//! Compatibility path: the rules moved to [`crate::config`]. Kept so that code
//! written against `crate::rules` (other branches of this round) still builds;
//! new code imports `crate::config`.

pub use crate::config::*;
