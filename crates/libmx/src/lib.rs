//! libmx.
