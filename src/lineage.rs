//! Lineage names: validated before they touch a path on disk.
//!
//! Certbot names a lineage after the first domain of the certificate, in punycode for
//! internationalized names, with a `-NNNN` suffix when the name was taken. Wildcard
//! certificates get the base name, so `*` never appears. Anything else is rejected.

use std::fmt;

/// Maximum length of a lineage name: a DNS name's 253 characters plus a `-NNNN` suffix.
const MAX_NAME_LEN: usize = 253 + 5;

/// Maximum length of one dot-separated label, the DNS limit.
const MAX_LABEL_LEN: usize = 63;

/// A validated Certbot lineage name, safe to join to a directory path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LineageName(String);

/// Reason a lineage name was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLineage {
    pub name: String,
    pub reason: &'static str,
}

impl fmt::Display for InvalidLineage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug formatting escapes control characters, so a hostile name cannot forge log lines.
        write!(
            f,
            "invalid lineage name {:?}: {}; expected a DNS name such as example.com or \
             example.com-0001",
            self.name, self.reason
        )
    }
}

impl std::error::Error for InvalidLineage {}

impl LineageName {
    /// Validates `name` as a Certbot lineage name.
    pub fn parse(name: &str) -> Result<LineageName, InvalidLineage> {
        let reject = |reason| {
            Err(InvalidLineage {
                name: shorten(name),
                reason,
            })
        };
        if name.is_empty() {
            return reject("the name is empty");
        }
        if name.len() > MAX_NAME_LEN {
            return reject("the name is longer than 258 characters");
        }
        for label in name.split('.') {
            if label.is_empty() {
                return reject("a label is empty (leading, trailing or double dot)");
            }
            if label.len() > MAX_LABEL_LEN {
                return reject("a label is longer than 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return reject("only letters, digits, hyphens and dots are allowed");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return reject("a label starts or ends with a hyphen");
            }
        }
        Ok(LineageName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LineageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Cuts a rejected name to a length that fits a log line.
fn shorten(name: &str) -> String {
    const KEEP: usize = 80;
    if name.len() <= KEEP {
        return name.to_owned();
    }
    let mut end = KEEP;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &name[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_certbot_names() {
        for name in [
            "example.com",
            "example.com-0001",
            "xn--bcher-kva.example",
            "mail",
            "a-b.c-d.example",
            "Example.COM",
        ] {
            assert!(LineageName::parse(name).is_ok(), "{name} should be valid");
        }
    }

    #[test]
    fn rejects_paths_and_odd_names() {
        for name in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            "a\\b",
            "example.com.",
            ".example.com",
            "a..b",
            "*.example.com",
            "-example.com",
            "example-.com",
            "exa mple.com",
            "example.com\0",
            "example.com%2f",
            "ex\nample.com",
            "b\u{fc}cher.example",
        ] {
            assert!(
                LineageName::parse(name).is_err(),
                "{name:?} should be invalid"
            );
        }
    }

    #[test]
    fn rejects_overlong_labels_and_names() {
        let label = "a".repeat(64);
        assert!(LineageName::parse(&label).is_err());
        let long = vec!["a".repeat(60); 5].join(".");
        assert!(LineageName::parse(&long).is_err());
        let max_label = "a".repeat(63);
        assert!(LineageName::parse(&max_label).is_ok());
    }

    #[test]
    fn error_message_escapes_control_characters() {
        let error = LineageName::parse("a\nb").unwrap_err().to_string();
        assert!(!error.contains('\n'));
        assert!(error.contains("\\n"));
    }
}
