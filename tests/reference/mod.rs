//! Written apart from `src/`: how the programs behind authgate read a
//! request ([`readings`]), and the properties authgate must keep against
//! them ([`check`]). Included by tests/properties.rs and the fuzz target.

#![allow(dead_code)]

pub mod check;
pub mod readings;
