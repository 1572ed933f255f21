//! Authoritative GeoDNS for the Skein service name.
