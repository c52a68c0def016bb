//! The fuzz targets of moda-edge's file parsers, one function per file kind. Each takes the raw
//! bytes of a would-be file and checks the properties every parser must have on any input:
//! no panic, no abort, no unbounded allocation (AFL's memory limit catches those), and, for an
//! error, one line that names the file. The same functions replay the corpus in the ordinary
//! test suite (`tests/robust_corpus.rs` includes this file by path).

pub mod targets;
