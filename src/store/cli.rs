//! `dingbind directory`: placeholder, filled in below.
