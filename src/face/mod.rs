//! Landmark groups and drawing tables, avatar meta data (`repr.npz`), head-pose
//! de-normalisation and projection.

pub mod avatar;
pub mod portrait;
pub mod pose;
pub mod repr;
pub mod synthetic;
pub mod tables;
