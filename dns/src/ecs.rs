//! EDNS Client Subnet (RFC 7871): strict parsing of the option in queries and writing it back
//! with the scope prefix the answer is valid for.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// EDNS option code of ECS.
pub const OPTION_CODE: u16 = 8;
/// Longest option data: family (2) + prefixes (2) + a full IPv6 address.
pub const MAX_LEN: usize = 4 + 16;

/// A validated client-subnet option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet {
    /// The client network address, host bits zero.
    pub addr: IpAddr,
    pub source_prefix: u8,
    /// In queries always 0; in responses the prefix length the answer is valid for.
    pub scope_prefix: u8,
}

/// Why an ECS option is invalid (the query is answered FORMERR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    #[error("option shorter than 4 bytes")]
    Short,
    #[error("unknown address family {0}")]
    Family(u16),
    #[error("source prefix {0} longer than the address")]
    SourcePrefix(u8),
    #[error("scope prefix must be 0 in a query")]
    ScopeInQuery,
    #[error("address is {got} bytes, the source prefix needs {want}")]
    AddressLength { got: usize, want: usize },
    #[error("address has bits set beyond the source prefix")]
    HostBits,
}

impl ClientSubnet {
    /// Parses the option data (after code and length) of a query.
    pub fn parse(data: &[u8]) -> Result<Self, EcsError> {
        if data.len() < 4 {
            return Err(EcsError::Short);
        }
        let family = u16::from_be_bytes([data[0], data[1]]);
        let source_prefix = data[2];
        let scope_prefix = data[3];
        let addr_bytes = &data[4..];
        let max_bits: u8 = match family {
            1 => 32,
            2 => 128,
            other => return Err(EcsError::Family(other)),
        };
        if source_prefix > max_bits {
            return Err(EcsError::SourcePrefix(source_prefix));
        }
        if scope_prefix != 0 {
            return Err(EcsError::ScopeInQuery);
        }
        let want = usize::from(source_prefix).div_ceil(8);
        if addr_bytes.len() != want {
            return Err(EcsError::AddressLength {
                got: addr_bytes.len(),
                want,
            });
        }
        let addr = if family == 1 {
            let mut b = [0u8; 4];
            b[..want].copy_from_slice(addr_bytes);
            IpAddr::V4(Ipv4Addr::from(b))
        } else {
            let mut b = [0u8; 16];
            b[..want].copy_from_slice(addr_bytes);
            IpAddr::V6(Ipv6Addr::from(b))
        };
        Self::from_parts(addr, source_prefix, scope_prefix)
    }

    /// Validates the fields of an option (the address holds only the bytes the source prefix
    /// covers, the rest zero).
    fn from_parts(addr: IpAddr, source_prefix: u8, scope_prefix: u8) -> Result<Self, EcsError> {
        let max_bits: u8 = if addr.is_ipv4() { 32 } else { 128 };
        if source_prefix > max_bits {
            return Err(EcsError::SourcePrefix(source_prefix));
        }
        if scope_prefix != 0 {
            return Err(EcsError::ScopeInQuery);
        }
        let bits = match addr {
            IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
            IpAddr::V6(a) => u128::from(a),
        };
        if bits.checked_shl(u32::from(source_prefix)).unwrap_or(0) != 0 {
            return Err(EcsError::HostBits);
        }
        Ok(ClientSubnet {
            addr,
            source_prefix,
            scope_prefix: 0,
        })
    }

    /// The same option with the scope prefix of an answer.
    pub fn with_scope(self, scope_prefix: u8) -> Self {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        ClientSubnet {
            scope_prefix: scope_prefix.min(max),
            ..self
        }
    }

    /// Writes code, length and data; returns the number of bytes written.
    pub fn write_option(&self, out: &mut [u8; 4 + MAX_LEN]) -> usize {
        let want = usize::from(self.source_prefix).div_ceil(8);
        let (family, octets): (u16, [u8; 16]) = match self.addr {
            IpAddr::V4(v4) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&v4.octets());
                (1, b)
            }
            IpAddr::V6(v6) => (2, v6.octets()),
        };
        let len = 4 + want;
        out[0..2].copy_from_slice(&OPTION_CODE.to_be_bytes());
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        out[4..6].copy_from_slice(&family.to_be_bytes());
        out[6] = self.source_prefix;
        out[7] = self.scope_prefix;
        out[8..8 + want].copy_from_slice(&octets[..want]);
        4 + len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_options() {
        let cs = ClientSubnet::parse(&[0, 1, 24, 0, 192, 0, 2]).unwrap();
        assert_eq!(cs.addr, "192.0.2.0".parse::<IpAddr>().unwrap());
        assert_eq!(cs.source_prefix, 24);
        let cs = ClientSubnet::parse(&[0, 2, 56, 0, 0x20, 1, 0xd, 0xb8, 0, 0, 0]).unwrap();
        assert_eq!(cs.addr, "2001:db8::".parse::<IpAddr>().unwrap());
        let cs = ClientSubnet::parse(&[0, 1, 0, 0]).unwrap();
        assert_eq!(cs.source_prefix, 0);
        let cs = ClientSubnet::parse(&[0, 1, 20, 0, 10, 1, 0x10]).unwrap();
        assert_eq!(cs.addr, "10.1.16.0".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn rejects_invalid_options() {
        assert_eq!(ClientSubnet::parse(&[0, 1, 24]), Err(EcsError::Short));
        assert_eq!(
            ClientSubnet::parse(&[0, 3, 8, 0, 1]),
            Err(EcsError::Family(3))
        );
        assert_eq!(
            ClientSubnet::parse(&[0, 1, 33, 0, 1, 2, 3, 4, 5]),
            Err(EcsError::SourcePrefix(33))
        );
        assert_eq!(
            ClientSubnet::parse(&[0, 1, 24, 8, 1, 2, 3]),
            Err(EcsError::ScopeInQuery)
        );
        assert_eq!(
            ClientSubnet::parse(&[0, 1, 24, 0, 1, 2, 3, 4]),
            Err(EcsError::AddressLength { got: 4, want: 3 })
        );
        assert_eq!(
            ClientSubnet::parse(&[0, 1, 20, 0, 10, 1, 0x11]),
            Err(EcsError::HostBits)
        );
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            ClientSubnet::from_parts(v4("10.1.0.1"), 24, 0),
            Err(EcsError::HostBits)
        );
        assert_eq!(
            ClientSubnet::from_parts(v4("2001:db8::"), 129, 0),
            Err(EcsError::SourcePrefix(129))
        );
        assert!(ClientSubnet::from_parts(v4("0.0.0.0"), 0, 0).is_ok());
        assert!(ClientSubnet::from_parts(v4("10.1.2.3"), 32, 0).is_ok());
    }

    #[test]
    fn writes_option_with_scope() {
        let cs = ClientSubnet::parse(&[0, 1, 24, 0, 192, 0, 2])
            .unwrap()
            .with_scope(16);
        let mut out = [0u8; 4 + MAX_LEN];
        let n = cs.write_option(&mut out);
        assert_eq!(&out[..n], &[0, 8, 0, 7, 0, 1, 24, 16, 192, 0, 2]);
        assert_eq!(cs.with_scope(200).scope_prefix, 32);
    }
}
