//! The Amazon States Language: typed definitions and validation, paths,
//! intrinsic functions, choice rules and JSONata. Pure: no I/O, no clock.

pub mod budget;
pub mod choice;
pub mod intrinsics;
pub mod jsonata;
pub mod model;
pub mod path;
