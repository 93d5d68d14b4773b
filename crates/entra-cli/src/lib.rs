//! The pure parts of the `entra` command, as a library so that its fuzz targets and tests can
//! reach them: the unverified JWT decoder behind `entra decode`. Not a stable API: the
//! command is the product.

#![forbid(unsafe_code)]

pub mod jwt;
