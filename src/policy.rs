//! The server's access policy: which client may fetch which lineage.
//!
//! Rules map client identities (certificate common name, DNS or URI name, SHA-256
//! fingerprint) to lineage names or globs, optionally without the private key. A client
//! gets the widest access of the rules that match it; no match means no access. Whether
//! the lineage exists is left to the store, and the response is left to the server.

use std::fmt;

use serde::Deserialize;

use crate::identity::Identity;
use crate::lineage::LineageName;

/// One `[[access]]` table of the server's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Identities: `cn:NAME`, `dns:NAME`, `uri:URI` or `sha256:HEX`.
    pub clients: Vec<String>,
    /// Lineage names or globs, where `*` matches any run of characters.
    pub lineages: Vec<String>,
    /// Whether the private key may be downloaded; certificates only when false.
    #[serde(default = "default_true")]
    pub private_keys: bool,
}

fn default_true() -> bool {
    true
}

/// Matcher of one client identity kind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClientMatcher {
    CommonName(String),
    Dns(String),
    Uri(String),
    Fingerprint(String),
}

impl ClientMatcher {
    fn parse(text: &str) -> Result<ClientMatcher, String> {
        let (kind, value) = text.split_once(':').ok_or_else(|| {
            format!("client {text:?} has no kind; write cn:NAME, dns:NAME, uri:URI or sha256:HEX")
        })?;
        if value.is_empty() {
            return Err(format!("client {text:?} has an empty value"));
        }
        match kind {
            "cn" => Ok(ClientMatcher::CommonName(value.to_owned())),
            "dns" => Ok(ClientMatcher::Dns(value.to_ascii_lowercase())),
            "uri" => Ok(ClientMatcher::Uri(value.to_owned())),
            "sha256" => {
                let hex: String = value
                    .chars()
                    .filter(|c| *c != ':')
                    .collect::<String>()
                    .to_ascii_lowercase();
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!(
                        "client {text:?}: a SHA-256 fingerprint has 64 hex digits"
                    ));
                }
                Ok(ClientMatcher::Fingerprint(hex))
            }
            other => Err(format!(
                "client {text:?} has unknown kind {other:?}; write cn:NAME, dns:NAME, uri:URI or sha256:HEX"
            )),
        }
    }

    fn matches(&self, identity: &Identity) -> bool {
        match self {
            ClientMatcher::CommonName(name) => identity.common_name.as_deref() == Some(name),
            ClientMatcher::Dns(name) => identity
                .dns_names
                .iter()
                .any(|dns| dns.eq_ignore_ascii_case(name)),
            ClientMatcher::Uri(uri) => identity.uris.iter().any(|candidate| candidate == uri),
            ClientMatcher::Fingerprint(hex) => identity.fingerprint == *hex,
        }
    }
}

impl fmt::Display for ClientMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientMatcher::CommonName(name) => write!(f, "cn:{name}"),
            ClientMatcher::Dns(name) => write!(f, "dns:{name}"),
            ClientMatcher::Uri(uri) => write!(f, "uri:{uri}"),
            ClientMatcher::Fingerprint(hex) => write!(f, "sha256:{hex}"),
        }
    }
}

/// A lineage pattern: a name, or a glob where `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LineagePattern(String);

impl LineagePattern {
    fn parse(text: &str) -> Result<LineagePattern, String> {
        let literal = text.replace('*', "x");
        if text != "*" && LineageName::parse(&literal).is_err() {
            return Err(format!(
                "lineage pattern {text:?} is not a lineage name with optional * wildcards"
            ));
        }
        Ok(LineagePattern(text.to_ascii_lowercase()))
    }

    fn matches(&self, lineage: &LineageName) -> bool {
        glob_match(
            self.0.as_bytes(),
            lineage.as_str().to_ascii_lowercase().as_bytes(),
        )
    }
}

/// Matches `*` against any run of bytes, iteratively with one backtrack point.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

#[derive(Debug, Clone)]
struct Rule {
    index: usize,
    clients: Vec<ClientMatcher>,
    lineages: Vec<LineagePattern>,
    private_keys: bool,
}

/// Access a client has to a lineage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Denied,
    /// Check and download certificates, but not the private key.
    CertificatesOnly,
    Full,
}

/// The decision for one request, with the reason for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub access: Access,
    pub reason: String,
}

/// The server's access policy.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    allow_all: bool,
}

impl Policy {
    /// Builds the policy from `[[access]]` tables. Without rules, the configuration must
    /// state explicitly that every client of the CA may fetch everything.
    pub fn new(rules: &[RuleFile], allow_all: bool) -> Result<Policy, String> {
        if rules.is_empty() && !allow_all {
            return Err(
                "no access policy: add [[access]] tables mapping clients to lineages, \
                        or set allow_all_clients = true to let every client of the CA fetch \
                        every lineage and key, as the Go server did"
                    .to_owned(),
            );
        }
        if !rules.is_empty() && allow_all {
            return Err(
                "allow_all_clients = true and [[access]] tables exclude each other; \
                        keep one"
                    .to_owned(),
            );
        }
        let mut parsed = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let context = |reason: String| format!("access rule {}: {reason}", index + 1);
            if rule.clients.is_empty() || rule.lineages.is_empty() {
                return Err(context(
                    "clients and lineages must each name at least one entry".to_owned(),
                ));
            }
            parsed.push(Rule {
                index: index + 1,
                clients: rule
                    .clients
                    .iter()
                    .map(|c| ClientMatcher::parse(c))
                    .collect::<Result<_, _>>()
                    .map_err(context)?,
                lineages: rule
                    .lineages
                    .iter()
                    .map(|l| LineagePattern::parse(l))
                    .collect::<Result<_, _>>()
                    .map_err(context)?,
                private_keys: rule.private_keys,
            });
        }
        Ok(Policy {
            rules: parsed,
            allow_all,
        })
    }

    /// Returns true when every client of the CA may fetch everything.
    pub fn allows_all(&self) -> bool {
        self.allow_all
    }

    /// Returns true when every client may fetch everything, or a rule names `client`.
    pub fn names_client(&self, client: &Identity) -> bool {
        self.allow_all
            || self
                .rules
                .iter()
                .any(|rule| rule.clients.iter().any(|matcher| matcher.matches(client)))
    }

    /// Returns the numbers of the rules that name `client` by its certificate's
    /// fingerprint, which a renewed certificate would no longer match.
    pub fn fingerprint_rules(&self, client: &Identity) -> Vec<usize> {
        self.rules
            .iter()
            .filter(|rule| {
                rule.clients.iter().any(|matcher| {
                    matches!(matcher, ClientMatcher::Fingerprint(_)) && matcher.matches(client)
                })
            })
            .map(|rule| rule.index)
            .collect()
    }

    /// Decides what `client` may do with `lineage`.
    pub fn decide(&self, client: &Identity, lineage: &LineageName) -> Decision {
        if self.allow_all {
            return Decision {
                access: Access::Full,
                reason: "allow_all_clients".to_owned(),
            };
        }
        let mut best: Option<(Access, String)> = None;
        for rule in &self.rules {
            let Some(matcher) = rule.clients.iter().find(|matcher| matcher.matches(client)) else {
                continue;
            };
            let Some(pattern) = rule
                .lineages
                .iter()
                .find(|pattern| pattern.matches(lineage))
            else {
                continue;
            };
            let access = if rule.private_keys {
                Access::Full
            } else {
                Access::CertificatesOnly
            };
            if best.as_ref().is_none_or(|(current, _)| access > *current) {
                let reason = format!("access rule {} ({matcher}, {})", rule.index, pattern.0);
                best = Some((access, reason));
            }
        }
        match best {
            Some((access, reason)) => Decision { access, reason },
            None => Decision {
                access: Access::Denied,
                reason: "no access rule matches this client and lineage".to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(cn: &str, dns: &[&str], fingerprint: &str) -> Identity {
        Identity {
            common_name: Some(cn.to_owned()),
            dns_names: dns.iter().map(|name| (*name).to_owned()).collect(),
            uris: vec!["spiffe://fleet/web".to_owned()],
            serial: "01".to_owned(),
            subject: format!("CN={cn}"),
            fingerprint: fingerprint.to_owned(),
        }
    }

    fn rule(clients: &[&str], lineages: &[&str], private_keys: bool) -> RuleFile {
        RuleFile {
            clients: clients.iter().map(|c| (*c).to_owned()).collect(),
            lineages: lineages.iter().map(|l| (*l).to_owned()).collect(),
            private_keys,
        }
    }

    fn lineage(name: &str) -> LineageName {
        LineageName::parse(name).unwrap()
    }

    #[test]
    fn rules_match_each_identity_kind() {
        let fingerprint = "ab".repeat(32);
        let policy = Policy::new(
            &[
                rule(&["cn:web412"], &["example.com"], true),
                rule(&["dns:mail.example.net"], &["mail.example.com"], true),
                rule(&["uri:spiffe://fleet/web"], &["shop-*"], true),
                rule(
                    &[&format!("sha256:{}", "AB:".repeat(31) + "AB")],
                    &["*.example.org"],
                    true,
                ),
            ],
            false,
        )
        .unwrap();
        let web = identity("web412", &["web412.example.net"], &fingerprint);
        assert_eq!(
            policy.decide(&web, &lineage("example.com")).access,
            Access::Full
        );
        assert_eq!(policy.decide(&web, &lineage("shop-1")).access, Access::Full);
        assert_eq!(
            policy.decide(&web, &lineage("a.example.org")).access,
            Access::Full
        );
        assert_eq!(
            policy.decide(&web, &lineage("mail.example.com")).access,
            Access::Denied
        );
        let mail = identity("mx1", &["MAIL.example.net"], &"cd".repeat(32));
        assert_eq!(
            policy.decide(&mail, &lineage("mail.example.com")).access,
            Access::Full
        );
        assert_eq!(
            policy.decide(&mail, &lineage("example.com")).access,
            Access::Denied
        );
    }

    #[test]
    fn widest_matching_rule_wins() {
        let policy = Policy::new(
            &[
                rule(&["cn:lb"], &["*"], false),
                rule(&["cn:lb"], &["lb.example.com"], true),
            ],
            false,
        )
        .unwrap();
        let lb = identity("lb", &[], &"00".repeat(32));
        assert_eq!(
            policy.decide(&lb, &lineage("lb.example.com")).access,
            Access::Full
        );
        assert_eq!(
            policy.decide(&lb, &lineage("other.example")).access,
            Access::CertificatesOnly
        );
    }

    #[test]
    fn missing_policy_is_refused_unless_explicit() {
        let error = Policy::new(&[], false).unwrap_err();
        assert!(error.contains("allow_all_clients"), "{error}");
        let open = Policy::new(&[], true).unwrap();
        assert!(open.allows_all());
        assert_eq!(
            open.decide(&identity("x", &[], &"00".repeat(32)), &lineage("a.b"))
                .access,
            Access::Full
        );
        assert!(Policy::new(&[rule(&["cn:x"], &["a"], true)], true).is_err());
    }

    #[test]
    fn bad_entries_are_named() {
        for (clients, lineages, expected) in [
            (vec!["web412"], vec!["a"], "no kind"),
            (vec!["ip:10.0.0.1"], vec!["a"], "unknown kind"),
            (vec!["sha256:abc"], vec!["a"], "64 hex digits"),
            (vec!["cn:x"], vec!["../etc"], "lineage pattern"),
            (vec![], vec!["a"], "at least one"),
        ] {
            let error = Policy::new(&[rule(&clients, &lineages, true)], false).unwrap_err();
            assert!(
                error.contains(expected),
                "{clients:?} {lineages:?}: {error}"
            );
            assert!(error.contains("access rule 1"), "{error}");
        }
    }

    #[test]
    fn globs_match_runs_of_characters() {
        assert!(glob_match(b"*.example.com", b"a.example.com"));
        assert!(glob_match(b"*.example.com", b"a.b.example.com"));
        assert!(!glob_match(b"*.example.com", b"example.com"));
        assert!(glob_match(b"shop-*", b"shop-"));
        assert!(glob_match(b"a*b*c", b"axxbyyc"));
        assert!(!glob_match(b"a*b*c", b"axxbyy"));
        assert!(glob_match(b"*", b"anything"));
    }
}
