//! Kubernetes resource quantities (`500m`, `16Gi`, `1.5`, `1e3`), parsed exactly.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative resource quantity held in thousandths of a unit, as Kubernetes does
/// (a value finer than `1m` is rounded up, like the API server's canonical form).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    millis: i128,
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Empty string.
    #[error("a quantity cannot be empty; write a number such as \"2\", \"500m\" or \"4Gi\"")]
    Empty,
    /// Not of the form `<number><suffix>`.
    #[error(
        "`{0}` is not a quantity; write a number with an optional suffix (m, k, M, G, T, Ki, Mi, Gi, Ti), such as \"500m\" or \"16Gi\""
    )]
    Malformed(String),
    /// Negative values are never valid resources.
    #[error("`{0}` is negative; resource quantities must be positive")]
    Negative(String),
    /// Too large to represent.
    #[error("`{0}` is too large")]
    Overflow(String),
}

impl Quantity {
    /// Zero.
    pub const ZERO: Quantity = Quantity { millis: 0 };

    /// A quantity of `n` whole units.
    pub const fn from_units(n: i64) -> Self {
        Quantity {
            millis: n as i128 * 1000,
        }
    }

    /// A quantity of `n` thousandths of a unit.
    pub const fn from_millis(n: i128) -> Self {
        Quantity { millis: n }
    }

    /// The value in thousandths of a unit (millicores for CPU).
    pub const fn millis(self) -> i128 {
        self.millis
    }

    /// The value in whole units, rounded up (bytes for memory, devices for GPUs).
    pub const fn units_ceil(self) -> i128 {
        (self.millis + 999).div_euclid(1000)
    }

    /// True when the quantity is zero.
    pub const fn is_zero(self) -> bool {
        self.millis == 0
    }

    /// `self - other`, never below zero.
    pub fn saturating_sub(self, other: Quantity) -> Quantity {
        Quantity {
            millis: (self.millis - other.millis).max(0),
        }
    }

    /// Renders a byte count the way a person reads memory: `16Gi`, `1536Mi`, `100M`.
    pub fn display_bytes(self) -> String {
        let bytes = self.units_ceil();
        let units = [
            ("Ti", 1i128 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ];
        for (suffix, scale) in units {
            // Exact Ki only for small values: 24684084Ki reads better as 23.5Gi.
            if bytes >= scale && bytes % scale == 0 && (suffix != "Ki" || bytes < 1 << 20) {
                return format!("{}{suffix}", bytes / scale);
            }
        }
        for (suffix, scale) in units {
            if bytes >= scale {
                let s = format!("{:.1}", bytes as f64 / scale as f64);
                return format!("{}{suffix}", s.trim_end_matches(".0"));
            }
        }
        bytes.to_string()
    }

    /// Renders a CPU amount: `2`, `1.5`, `100m`.
    pub fn display_cpu(self) -> String {
        if self.millis % 1000 == 0 {
            (self.millis / 1000).to_string()
        } else if self.millis < 1000 {
            format!("{}m", self.millis)
        } else {
            let s = format!("{:.3}", self.millis as f64 / 1000.0);
            s.trim_end_matches('0').to_string()
        }
    }
}

fn suffix_scale(suffix: &str) -> Option<(i128, i32)> {
    // (multiplier, power of ten): binary suffixes multiply, decimal ones shift.
    Some(match suffix {
        "" => (1, 0),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        _ => return None,
    })
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s.is_empty() {
            return Err(QuantityError::Empty);
        }
        let malformed = || QuantityError::Malformed(input.to_string());
        let overflow = || QuantityError::Overflow(input.to_string());
        let (negative, body) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (number, suffix) = body.split_at(num_end);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(malformed());
        }
        let (multiplier, mut exp10) = match suffix.strip_prefix(['e', 'E']) {
            Some(exp) if !exp.is_empty() => (1, exp.parse::<i32>().map_err(|_| malformed())?),
            _ => suffix_scale(suffix).ok_or_else(malformed)?,
        };
        // digits as one integer, scaled by 10^(exp10 - len(frac)) and by 1000 for millis.
        let mut digits: i128 = 0;
        for c in int_part.chars().chain(frac_part.chars()) {
            let d = c.to_digit(10).ok_or_else(malformed)? as i128;
            digits = digits
                .checked_mul(10)
                .and_then(|v| v.checked_add(d))
                .ok_or_else(overflow)?;
        }
        // A huge written exponent (`1e2147483647`) is an overflow, not a panic.
        exp10 = i32::try_from(frac_part.len())
            .ok()
            .and_then(|f| exp10.checked_sub(f))
            .and_then(|e| e.checked_add(3))
            .ok_or_else(overflow)?;
        let mut value = digits.checked_mul(multiplier).ok_or_else(overflow)?;
        if exp10 >= 0 {
            let scale = 10i128.checked_pow(exp10 as u32).ok_or_else(overflow)?;
            value = value.checked_mul(scale).ok_or_else(overflow)?;
        } else {
            let scale = 10i128.checked_pow((-exp10) as u32).ok_or_else(overflow)?;
            // Kubernetes rounds sub-milli precision up.
            value = (value + scale - 1) / scale;
        }
        if negative && value != 0 {
            return Err(QuantityError::Negative(input.to_string()));
        }
        Ok(Quantity { millis: value })
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis % 1000 == 0 {
            write!(f, "{}", self.millis / 1000)
        } else {
            write!(f, "{}m", self.millis)
        }
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// YAML lets people write `cpu: 2` as well as `cpu: "2"`.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Float(f64),
            Str(String),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Int(i) => i.to_string(),
            Raw::Float(x) => x.to_string(),
            Raw::Str(s) => s,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> i128 {
        s.parse::<Quantity>().map(Quantity::millis).unwrap_or(-1)
    }

    #[test]
    fn parses_cpu_forms() {
        assert_eq!(q("500m"), 500);
        assert_eq!(q("2"), 2000);
        assert_eq!(q("1.5"), 1500);
        assert_eq!(q("0.1"), 100);
        assert_eq!(q("+3"), 3000);
        assert_eq!(q(".5"), 500);
    }

    #[test]
    fn parses_memory_forms() {
        assert_eq!(q("16Gi"), 16 * (1i128 << 30) * 1000);
        assert_eq!(q("1536Mi"), 1536 * (1i128 << 20) * 1000);
        assert_eq!(q("100M"), 100_000_000 * 1000);
        assert_eq!(q("1k"), 1_000_000);
        assert_eq!(q("1e3"), 1_000_000);
        assert_eq!(q("1.5Gi"), 1536 * (1i128 << 20) * 1000);
        assert_eq!(q("0.1Gi"), 107_374_182_400);
    }

    #[test]
    fn rounds_sub_milli_up_like_kubernetes() {
        assert_eq!(q("0.0001"), 1);
        assert_eq!(q("1u"), -1, "micro suffix is not accepted");
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!("".parse::<Quantity>(), Err(QuantityError::Empty));
        assert!(matches!(
            "4GB".parse::<Quantity>(),
            Err(QuantityError::Malformed(_))
        ));
        assert!(matches!(
            "abc".parse::<Quantity>(),
            Err(QuantityError::Malformed(_))
        ));
        assert!(matches!(
            "1..2".parse::<Quantity>(),
            Err(QuantityError::Malformed(_))
        ));
        assert!(matches!(
            "-1".parse::<Quantity>(),
            Err(QuantityError::Negative(_))
        ));
        assert!(matches!(
            "1e400".parse::<Quantity>(),
            Err(QuantityError::Overflow(_))
        ));
    }

    #[test]
    fn displays_compactly() {
        assert_eq!(
            "1500m"
                .parse::<Quantity>()
                .map(|q| q.display_cpu())
                .ok()
                .as_deref(),
            Some("1.5")
        );
        assert_eq!(
            "100m"
                .parse::<Quantity>()
                .map(|q| q.display_cpu())
                .ok()
                .as_deref(),
            Some("100m")
        );
        assert_eq!(
            "16Gi"
                .parse::<Quantity>()
                .map(|q| q.display_bytes())
                .ok()
                .as_deref(),
            Some("16Gi")
        );
        assert_eq!(
            "2".parse::<Quantity>()
                .map(|q| q.to_string())
                .ok()
                .as_deref(),
            Some("2")
        );
        assert_eq!(
            "24684084Ki"
                .parse::<Quantity>()
                .map(|q| q.display_bytes())
                .ok()
                .as_deref(),
            Some("23.5Gi")
        );
    }
}
