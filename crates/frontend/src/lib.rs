//! Guest frontend.
