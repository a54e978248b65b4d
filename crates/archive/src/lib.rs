//! Layer archives: compression, safe one-pass extraction, whiteouts, changes and export
