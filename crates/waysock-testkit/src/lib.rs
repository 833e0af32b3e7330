//! Test fixtures for waysock (placeholder, filled below).
