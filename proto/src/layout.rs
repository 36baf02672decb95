//! Per-directory layouts: the erasure code (and optionally the stripe size) of files created
//! under a directory, kept as the extended attribute [`XATTR_LAYOUT`] on the directory and
//! copied onto every file and subdirectory made in it (`namespace/src/layout.rs`).
//!
//! The value is text, so `getfattr`/`setfattr` on a mount and `tessera layout` show the
//! same thing: `ec=K+M` and optionally `stripe=BYTES` (suffix K or M: powers of 1024),
//! separated by spaces, e.g. `ec=6+3 stripe=8M`. [`Layout::parse`] accepts that and
//! [`Layout`]'s `Display` writes the one canonical form that is stored.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Name of the extended attribute holding a layout.
pub const XATTR_LAYOUT: &[u8] = b"tessera.layout";

/// Most shards a stripe may have (`k + m`): the Reed-Solomon code over GF(2^8).
pub const MAX_SHARDS: usize = 255;

/// Largest stripe size a layout may ask for: one chunk, and one shard at `k = 1` is one
/// RPC payload at most.
pub const MAX_STRIPE_SIZE: u64 = 64 << 20;

/// What a directory asks of the files created under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Data shards per stripe (1 for plain copies).
    pub k: u8,
    /// Parity shards per stripe (with `k = 1`, extra copies).
    pub m: u8,
    /// Most file bytes per stripe; `None`: the writing mount's `--stripe-size`.
    pub stripe_size: Option<u64>,
}

/// Why a layout string was refused; the message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "bad layout {value:?}: {why} (expected e.g. \"ec=6+3 stripe=8M\": ec=K+M with K >= 1, M >= 0, K+M <= {MAX_SHARDS}; optional stripe=1..64M)"
)]
pub struct LayoutError {
    pub value: String,
    pub why: String,
}

impl Layout {
    pub fn parse(value: &str) -> Result<Layout, LayoutError> {
        let err = |why: String| LayoutError {
            value: value.to_string(),
            why,
        };
        let (mut ec, mut stripe) = (None, None);
        for word in value.split_whitespace() {
            match word.split_once('=') {
                Some(("ec", code)) if ec.is_none() => ec = Some(parse_code(code).map_err(err)?),
                Some(("stripe", size)) if stripe.is_none() => {
                    stripe = Some(parse_size(size).map_err(err)?)
                }
                Some(("ec" | "stripe", _)) => return Err(err(format!("{word:?} given twice"))),
                _ => return Err(err(format!("unknown setting {word:?}"))),
            }
        }
        let (k, m) = ec.ok_or_else(|| err("no ec=K+M".into()))?;
        Ok(Layout {
            k,
            m,
            stripe_size: stripe,
        })
    }

    /// Parses stored bytes (an attribute value).
    pub fn from_bytes(value: &[u8]) -> Result<Layout, LayoutError> {
        match std::str::from_utf8(value) {
            Ok(s) => Layout::parse(s.trim_end_matches('\0')),
            Err(_) => Err(LayoutError {
                value: String::from_utf8_lossy(value).into_owned(),
                why: "not UTF-8 text".into(),
            }),
        }
    }
}

impl FromStr for Layout {
    type Err = LayoutError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Layout::parse(s)
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ec={}+{}", self.k, self.m)?;
        match self.stripe_size {
            Some(s) if s % (1 << 20) == 0 => write!(f, " stripe={}M", s >> 20),
            Some(s) if s % (1 << 10) == 0 => write!(f, " stripe={}K", s >> 10),
            Some(s) => write!(f, " stripe={s}"),
            None => Ok(()),
        }
    }
}

fn parse_code(s: &str) -> Result<(u8, u8), String> {
    let (k, m) = s
        .split_once('+')
        .ok_or_else(|| format!("ec={s} is not K+M"))?;
    let num = |v: &str, what: &str| {
        v.parse::<u16>()
            .map_err(|_| format!("{what} in ec={s} is not a number"))
    };
    let (k, m) = (num(k, "K")?, num(m, "M")?);
    if k == 0 {
        return Err("K must be at least 1 (ec=1+M keeps 1+M plain copies)".into());
    }
    if usize::from(k) + usize::from(m) > MAX_SHARDS {
        return Err(format!("K+M is {}, more than {MAX_SHARDS}", k + m));
    }
    // Both fit in u8: each is at most K+M <= 255.
    Ok((k as u8, m as u8))
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, mul) = match s.strip_suffix(['M', 'm']) {
        Some(d) => (d, 1u64 << 20),
        None => match s.strip_suffix(['K', 'k']) {
            Some(d) => (d, 1 << 10),
            None => (s, 1),
        },
    };
    let v = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("stripe={s} is not a byte count"))?;
    if v == 0 || v > MAX_STRIPE_SIZE {
        return Err(format!("stripe={s} is outside 1 byte..64M"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_canonical_form() {
        let l = Layout::parse("  stripe=8M   ec=6+3 ").unwrap();
        assert_eq!(
            l,
            Layout {
                k: 6,
                m: 3,
                stripe_size: Some(8 << 20)
            }
        );
        assert_eq!(l.to_string(), "ec=6+3 stripe=8M");
        assert_eq!(Layout::parse("ec=1+2").unwrap().to_string(), "ec=1+2");
        assert_eq!(
            Layout::parse("ec=4+0 stripe=4096").unwrap().to_string(),
            "ec=4+0 stripe=4K"
        );
        assert_eq!(Layout::from_bytes(b"ec=2+1\0").unwrap().k, 2);
    }

    #[test]
    fn refuses_bad_values_saying_why() {
        for bad in [
            "",
            "ec=0+2",
            "ec=200+56",
            "ec=6",
            "ec=a+b",
            "ec=6+3 stripe=0",
            "ec=6+3 stripe=65M",
            "ec=6+3 stripe=8G",
            "ec=6+3 ec=4+2",
            "ec=6+3 colour=blue",
            "6+3",
        ] {
            let e = Layout::parse(bad).unwrap_err();
            assert!(e.to_string().contains("expected e.g."), "{bad}: {e}");
        }
        assert!(Layout::parse("ec=254+1").is_ok());
    }
}
