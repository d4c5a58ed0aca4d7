//! [`SpecDuration`]: a duration as a spec writes it (`600s`, `10m`, `1h`, `500ms`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written with a unit suffix: `ms`, `s`, `m` or `h` (`90s`, `10m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SpecDuration(pub Duration);

impl SpecDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    /// Parses `<whole number><unit>`; the message says what was wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let expected =
            || format!("expected a whole number and a unit (ms, s, m, h) such as 600s or 10m, got {text:?}");
        let n: u64 = digits.parse().map_err(|_| expected())?;
        let millis = match unit {
            "ms" => Some(n),
            "s" => n.checked_mul(1_000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            _ => return Err(expected()),
        };
        millis.map(|ms| Self(Duration::from_millis(ms))).ok_or_else(|| format!("{text:?} is too long"))
    }
}

impl fmt::Display for SpecDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.as_millis();
        match ms {
            _ if ms > 0 && ms.is_multiple_of(3_600_000) => write!(f, "{}h", ms / 3_600_000),
            _ if ms > 0 && ms.is_multiple_of(60_000) => write!(f, "{}m", ms / 60_000),
            _ if ms.is_multiple_of(1_000) => write!(f, "{}s", ms / 1_000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

impl Serialize for SpecDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpecDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_each_unit() {
        for (text, ms, shown) in [
            ("600s", 600_000, "10m"),
            ("10m", 600_000, "10m"),
            ("1h", 3_600_000, "1h"),
            ("250ms", 250, "250ms"),
            ("90s", 90_000, "90s"),
        ] {
            let d = SpecDuration::parse(text).unwrap();
            assert_eq!(d.as_millis(), ms, "{text}");
            assert_eq!(d.to_string(), shown, "{text}");
        }
        for bad in ["10", "s", "1.5m", "-3s", "10 minutes", ""] {
            let e = SpecDuration::parse(bad).unwrap_err();
            assert!(e.contains("expected a whole number and a unit"), "{bad}: {e}");
        }
    }

    fn resources(extra: &str) -> crate::Result<crate::spec::JobSpec> {
        crate::spec::JobSpec::from_yaml(&format!(
            "model: {{ arch: resnet20, num_classes: 10 }}\ndata: {{ format: idx, root: d }}\nresources: {extra}\n"
        ))
    }

    #[test]
    fn resources_timeouts_and_backend_default_parse_and_validate_with_field_paths() {
        let spec = resources("{}").unwrap();
        assert_eq!(spec.resources.collective_timeout.as_millis(), 600_000);
        assert_eq!(spec.resources.connect_timeout.as_millis(), 120_000);
        assert!(!spec.resources.uses_nccl());
        let spec =
            resources("{ device: cuda, world_size: 2, collective_timeout: 30m, connect_timeout: 45s }")
                .unwrap();
        assert_eq!(spec.resources.collective_timeout.as_millis(), 1_800_000);
        assert_eq!(spec.resources.connect_timeout.as_millis(), 45_000);
        assert!(spec.resources.uses_nccl(), "auto picks nccl for a cuda group");
        let one = resources("{ device: cuda, backend: nccl }").unwrap();
        assert!(one.resources.uses_nccl(), "nccl is kept for one rank");
        assert!(!resources("{ device: cuda, world_size: 2, backend: tcp }").unwrap().resources.uses_nccl());
        // A stage on fewer ranks (export runs on one) follows the same rule for its own width.
        let auto = resources("{ device: cuda, world_size: 2 }").unwrap().resources;
        assert!(auto.group_uses_nccl(2) && !auto.group_uses_nccl(1));
        assert!(one.resources.group_uses_nccl(1));

        let text = |extra: &str| resources(extra).unwrap_err().to_string();
        let bad = text("{ collective_timeout: 10 }");
        assert!(bad.contains("resources.collective_timeout: expected a whole number and a unit"), "{bad}");
        let zero = text("{ connect_timeout: 0s }");
        assert!(zero.contains("resources.connect_timeout: must be > 0, got 0s"), "{zero}");
        let cpu = text("{ backend: nccl }");
        assert!(cpu.contains("resources.backend: nccl needs resources.device: cuda"), "{cpu}");
        let unknown = text("{ backend: gloo }");
        assert!(unknown.contains("resources.backend: unknown variant `gloo`"), "{unknown}");
    }
}
