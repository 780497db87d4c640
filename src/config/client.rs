//! The client's configuration: global settings and one table per lineage.
//!
//! ```toml
//! server = "https://certs.example.net:8443"
//! on_change = "systemctl reload nginx"
//! lineages = ["example.com"]
//!
//! [lineage."mail.example.com"]
//! dir = "/etc/postfix/tls/mail"
//! group = "ssl-cert"
//! key_mode = "0640"
//! combined = "combined.pem"
//! on_change = "systemctl reload postfix"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, DEFAULT_CLIENT_CONFIG, pick, read_file, seconds};
use crate::cli::ClientArgs;
use crate::install::{self, Ownership};
use crate::lineage::LineageName;
use crate::tls::TlsFiles;

const DEFAULT_DEST: &str = "/etc/letsencrypt/live";
const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
const DEFAULT_RUN_TIMEOUT_SECS: u64 = 300;
const DEFAULT_RETRIES: u32 = 3;
const DEFAULT_HOOK_TIMEOUT_SECS: u64 = 60;
const DEFAULT_KEEP_PREVIOUS: usize = 2;
const LOCK_FILE_NAME: &str = ".acme-dl-client.lock";

/// Keys of the client's TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// Server URL.
    pub server: Option<String>,
    /// Directory that receives one directory per lineage.
    pub dest: Option<PathBuf>,
    /// Client certificate chain.
    pub cert: Option<PathBuf>,
    /// Client private key.
    pub key: Option<PathBuf>,
    /// CA bundle for the server certificate.
    pub ca: Option<PathBuf>,
    /// Seconds for the TCP connection and TLS handshake.
    pub connect_timeout_secs: Option<u64>,
    /// Seconds for each request and its response.
    pub request_timeout_secs: Option<u64>,
    /// Seconds for the whole run.
    pub timeout_secs: Option<u64>,
    /// Retries after a transient failure.
    pub retries: Option<u32>,
    /// Largest random delay before the run, such as "30m".
    pub splay: Option<String>,
    /// Command run after the run when any lineage changed.
    pub on_change: Option<String>,
    /// Command run before `on_change`; its failure restores the previous sets.
    pub check: Option<String>,
    /// Seconds a hook may run.
    pub hook_timeout_secs: Option<u64>,
    /// Previous sets kept per lineage.
    pub keep: Option<usize>,
    /// Lock file path.
    pub lock_file: Option<PathBuf>,
    /// Renew the client certificate through the server when it nears its end.
    pub renew_identity: Option<bool>,
    /// Days before the client certificate's end from which it is renewed.
    pub renew_before_days: Option<u64>,
    /// Lineages fetched with the defaults.
    #[serde(default)]
    pub lineages: Vec<String>,
    /// Lineages with settings of their own, by name.
    #[serde(default)]
    pub lineage: BTreeMap<String, LineageFile>,
}

/// Keys of a `[lineage."NAME"]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineageFile {
    /// Installation directory; `DEST/NAME` when absent.
    pub dir: Option<PathBuf>,
    /// Names the certificate must cover; the lineage name without `-NNNN` when absent.
    pub names: Option<Vec<String>>,
    /// File name of the full chain.
    pub fullchain: Option<String>,
    /// File name of the private key.
    pub privkey: Option<String>,
    /// File name of the chain.
    pub chain: Option<String>,
    /// File name of the leaf certificate; an empty string skips it.
    pub cert: Option<String>,
    /// File name of a combined PEM (full chain, then key), as HAProxy reads it.
    pub combined: Option<String>,
    /// File name of a PKCS#12 file with the chain and the key.
    pub pkcs12: Option<String>,
    /// File whose first line is the PKCS#12 password.
    pub pkcs12_password_file: Option<PathBuf>,
    /// Owner of the installed files, a name or a uid.
    pub owner: Option<NameOrId>,
    /// Group of the installed files, a name or a gid.
    pub group: Option<NameOrId>,
    /// Mode of the key and combined files, octal, such as "0640".
    pub key_mode: Option<String>,
    /// Mode of certificate files, octal.
    pub cert_mode: Option<String>,
    /// Command run after the run when this lineage changed.
    pub on_change: Option<String>,
    /// Command run before `on_change` when this lineage changed.
    pub check: Option<String>,
}

/// A user or group given by name (`"ssl-cert"`) or by number (`112` or `"112"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NameOrId {
    Id(u32),
    Name(String),
}

impl NameOrId {
    fn text(&self) -> String {
        match self {
            NameOrId::Id(id) => id.to_string(),
            NameOrId::Name(name) => name.clone(),
        }
    }
}

/// Commands run after a run that changed something.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookSettings {
    pub on_change: Option<String>,
    pub check: Option<String>,
}

/// Everything needed to fetch and install one lineage.
#[derive(Debug, Clone)]
pub struct LineageSettings {
    pub name: LineageName,
    pub dir: PathBuf,
    pub names: Vec<String>,
    pub fullchain: String,
    /// `None` for a lineage fetched without its key, as certificates-only rules allow.
    pub privkey: Option<String>,
    pub chain: String,
    /// `None` when the leaf is not installed on its own.
    pub cert: Option<String>,
    pub combined: Option<String>,
    /// File name of the PKCS#12 output and the file holding its password.
    pub pkcs12: Option<(String, PathBuf)>,
    pub ownership: Ownership,
    pub hooks: HookSettings,
}

/// Everything the client needs for a run.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub server: String,
    pub dest: PathBuf,
    pub tls: TlsFiles,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub run_timeout: Duration,
    pub retries: u32,
    pub splay: Duration,
    pub hooks: HookSettings,
    pub hook_timeout: Duration,
    pub keep_previous: usize,
    pub lock_file: PathBuf,
    pub exit_code: bool,
    pub rollback: bool,
    pub identity_renewal: IdentityRenewal,
    pub lineages: Vec<LineageSettings>,
}

/// When the client renews its own certificate through the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityRenewal {
    pub enabled: bool,
    /// Time before the certificate's end from which it is renewed; `None` for the last
    /// third of its lifetime.
    pub before: Option<Duration>,
}

impl Default for IdentityRenewal {
    fn default() -> IdentityRenewal {
        IdentityRenewal {
            enabled: true,
            before: None,
        }
    }
}

impl LineageSettings {
    /// Returns the default settings of a lineage installed under `dest`.
    pub fn with_defaults(name: LineageName, dest: &std::path::Path) -> LineageSettings {
        LineageSettings {
            dir: dest.join(name.as_str()),
            names: crate::verify::default_names(&name),
            fullchain: "fullchain.pem".to_owned(),
            privkey: Some("privkey.pem".to_owned()),
            chain: "chain.pem".to_owned(),
            cert: Some("cert.pem".to_owned()),
            combined: None,
            pkcs12: None,
            ownership: Ownership::default(),
            hooks: HookSettings::default(),
            name,
        }
    }
}

impl ClientSettings {
    /// Returns settings with every default, for programs that build them directly.
    pub fn with_defaults(
        server: String,
        dest: PathBuf,
        tls: TlsFiles,
        lineages: Vec<LineageName>,
    ) -> ClientSettings {
        ClientSettings {
            server,
            tls,
            connect_timeout: Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS),
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS),
            run_timeout: Duration::from_secs(DEFAULT_RUN_TIMEOUT_SECS),
            retries: DEFAULT_RETRIES,
            splay: Duration::ZERO,
            hooks: HookSettings::default(),
            hook_timeout: Duration::from_secs(DEFAULT_HOOK_TIMEOUT_SECS),
            keep_previous: DEFAULT_KEEP_PREVIOUS,
            lock_file: dest.join(LOCK_FILE_NAME),
            exit_code: false,
            rollback: false,
            identity_renewal: IdentityRenewal::default(),
            lineages: lineages
                .into_iter()
                .map(|name| LineageSettings::with_defaults(name, &dest))
                .collect(),
            dest,
        }
    }

    /// Merges the client's flags with its configuration file and validates every value.
    pub fn resolve(args: &ClientArgs) -> Result<ClientSettings, ConfigError> {
        let file: ClientFile = read_file(args.config.as_deref(), DEFAULT_CLIENT_CONFIG)?;
        let server = args.server.clone().or(file.server.clone()).ok_or_else(|| {
            ConfigError(
                "no server URL: pass --server https://HOST:8443 or set server in the client \
                 configuration file"
                    .to_owned(),
            )
        })?;
        let dest = pick(args.dest.clone(), file.dest.clone(), || DEFAULT_DEST.into());
        let lineages = resolve_lineages(args, &file, &dest)?;
        let splay = pick(args.splay.clone(), file.splay.clone(), || "0".to_owned());

        Ok(ClientSettings {
            server,
            tls: TlsFiles {
                cert: pick(args.cert.clone(), file.cert, || "tls/client.crt".into()),
                key: pick(args.key.clone(), file.key, || "tls/client.key".into()),
                ca: pick(args.ca.clone(), file.ca, || "tls/ca.crt".into()),
            },
            connect_timeout: seconds(
                "connect timeout",
                pick(args.connect_timeout, file.connect_timeout_secs, || {
                    DEFAULT_CONNECT_TIMEOUT_SECS
                }),
            )?,
            request_timeout: seconds(
                "request timeout",
                pick(args.request_timeout, file.request_timeout_secs, || {
                    DEFAULT_REQUEST_TIMEOUT_SECS
                }),
            )?,
            run_timeout: seconds(
                "run timeout",
                pick(args.timeout, file.timeout_secs, || DEFAULT_RUN_TIMEOUT_SECS),
            )?,
            retries: pick(args.retries, file.retries, || DEFAULT_RETRIES),
            splay: parse_duration(&splay)
                .map_err(|reason| ConfigError(format!("invalid splay {splay:?}: {reason}")))?,
            hooks: HookSettings {
                on_change: args.on_change.clone().or(file.on_change),
                check: args.check_command.clone().or(file.check),
            },
            hook_timeout: seconds(
                "hook timeout",
                pick(args.hook_timeout, file.hook_timeout_secs, || {
                    DEFAULT_HOOK_TIMEOUT_SECS
                }),
            )?,
            keep_previous: pick(args.keep, file.keep, || DEFAULT_KEEP_PREVIOUS),
            lock_file: pick(args.lock_file.clone(), file.lock_file, || {
                dest.join(LOCK_FILE_NAME)
            }),
            exit_code: args.exit_code,
            rollback: args.rollback,
            identity_renewal: IdentityRenewal {
                enabled: !args.no_renew_identity && file.renew_identity.unwrap_or(true),
                before: match pick(args.renew_before_days, file.renew_before_days, || 0) {
                    0 => None,
                    days => Some(Duration::from_secs(days.saturating_mul(86_400))),
                },
            },
            dest,
            lineages,
        })
    }
}

/// Picks the lineages of the run: those named on the command line, else every lineage of
/// the file, each with its table's settings.
fn resolve_lineages(
    args: &ClientArgs,
    file: &ClientFile,
    dest: &std::path::Path,
) -> Result<Vec<LineageSettings>, ConfigError> {
    let names: Vec<&String> = if args.lineages.is_empty() {
        file.lineages.iter().chain(file.lineage.keys()).collect()
    } else {
        args.lineages.iter().collect()
    };
    let mut lineages: Vec<LineageSettings> = Vec::new();
    for name in names {
        let lineage = LineageName::parse(name).map_err(|error| ConfigError(error.to_string()))?;
        if lineages.iter().any(|existing| existing.name == lineage) {
            continue;
        }
        let table = file.lineage.get(name).cloned().unwrap_or_default();
        lineages.push(lineage_settings(lineage, table, dest)?);
    }
    if lineages.is_empty() {
        return Err(ConfigError(
            "no lineage to fetch: name one or more, for example `acme-dl client --server URL \
             example.com`, or list them in the configuration file"
                .to_owned(),
        ));
    }
    Ok(lineages)
}

fn lineage_settings(
    name: LineageName,
    table: LineageFile,
    dest: &std::path::Path,
) -> Result<LineageSettings, ConfigError> {
    let label = name.to_string();
    let context = |reason: String| ConfigError(format!("lineage {label}: {reason}"));
    let file_name = |value: Option<String>, default: &str| -> Result<String, ConfigError> {
        let value = value.unwrap_or_else(|| default.to_owned());
        validate_file_name(&value).map_err(context)?;
        Ok(value)
    };
    let ownership = Ownership {
        uid: table
            .owner
            .as_ref()
            .map(|owner| install::resolve_user(&owner.text()))
            .transpose()
            .map_err(context)?,
        gid: table
            .group
            .as_ref()
            .map(|group| install::resolve_group(&group.text()))
            .transpose()
            .map_err(context)?,
        key_mode: parse_mode(table.key_mode.as_deref())
            .and_then(|mode| match mode {
                Some(mode) if mode & 0o007 != 0 => Err(format!(
                    "key_mode {mode:04o} lets every user read the private key; use 0600, or \
                     0640 with a group"
                )),
                other => Ok(other),
            })
            .map_err(context)?,
        cert_mode: parse_mode(table.cert_mode.as_deref()).map_err(context)?,
    };
    let cert = match table.cert {
        Some(empty) if empty.is_empty() => None,
        other => Some(file_name(other, "cert.pem")?),
    };
    let privkey = match table.privkey {
        Some(empty) if empty.is_empty() => None,
        other => Some(file_name(other, "privkey.pem")?),
    };
    if privkey.is_none() && (table.combined.is_some() || table.pkcs12.is_some()) {
        return Err(context(
            "privkey = \"\" fetches no key, but combined and pkcs12 contain the key; remove \
             them or name the key file"
                .to_owned(),
        ));
    }
    let combined = table
        .combined
        .map(|value| file_name(Some(value), ""))
        .transpose()?;
    let pkcs12 = match (table.pkcs12, table.pkcs12_password_file) {
        (Some(name), Some(password_file)) => Some((file_name(Some(name), "")?, password_file)),
        (None, None) => None,
        _ => {
            return Err(context(
                "pkcs12 and pkcs12_password_file must be set together".to_owned(),
            ));
        }
    };
    let settings = LineageSettings {
        dir: table.dir.unwrap_or_else(|| dest.join(name.as_str())),
        names: table
            .names
            .unwrap_or_else(|| crate::verify::default_names(&name)),
        fullchain: file_name(table.fullchain, "fullchain.pem")?,
        privkey,
        chain: file_name(table.chain, "chain.pem")?,
        cert,
        combined,
        pkcs12,
        ownership,
        hooks: HookSettings {
            on_change: table.on_change,
            check: table.check,
        },
        name,
    };
    let mut all = vec![&settings.fullchain, &settings.chain];
    all.extend(settings.privkey.iter());
    all.extend(settings.cert.iter().chain(settings.combined.iter()));
    all.extend(settings.pkcs12.iter().map(|(name, _)| name));
    for (index, first) in all.iter().enumerate() {
        if all[index + 1..].contains(first) {
            return Err(context(format!("file name {first:?} is used twice")));
        }
    }
    Ok(settings)
}

fn validate_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(format!(
            "invalid file name {name:?}: expected a plain name such as cert.pem"
        ));
    }
    Ok(())
}

fn parse_mode(text: Option<&str>) -> Result<Option<u32>, String> {
    let Some(text) = text else { return Ok(None) };
    let mode = u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .map_err(|_| format!("invalid mode {text:?}: expected octal such as \"0640\""))?;
    if mode > 0o777 {
        return Err(format!(
            "invalid mode {text:?}: only permission bits (at most 0777) are allowed"
        ));
    }
    Ok(Some(mode))
}

/// Parses `90`, `90s`, `15m`, `2h` into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(index) => text.split_at(index),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| "expected a number with s, m or h".to_owned())?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        other => return Err(format!("unknown unit {other:?}; use s, m or h")),
    };
    Ok(Duration::from_secs(value.saturating_mul(factor)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn client_args(args: &[&str]) -> ClientArgs {
        let cli = crate::cli::Cli::parse_from(["acme-dl", "client"].iter().chain(args));
        let crate::cli::Command::Client(args) = cli.command else {
            unreachable!()
        };
        args
    }

    fn resolve_with(toml: &str, args: &[&str]) -> Result<ClientSettings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        std::fs::write(&path, toml).unwrap();
        let mut full = vec!["--config", path.to_str().unwrap()];
        full.extend(args);
        ClientSettings::resolve(&client_args(&full))
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let error = toml::from_str::<ClientFile>("sever = \"https://x\"\n").unwrap_err();
        assert!(error.to_string().contains("sever"), "{error}");
        let error = resolve_with("[lineage.\"a.example\"]\nkey_mod = \"0640\"\n", &[]).unwrap_err();
        assert!(error.to_string().contains("key_mod"), "{error}");
    }

    #[test]
    fn client_requires_server_and_lineage() {
        let error = resolve_with("", &["example.com"]).unwrap_err();
        assert!(error.to_string().contains("--server"), "{error}");
        let error = resolve_with("server = \"https://x\"\n", &[]).unwrap_err();
        assert!(error.to_string().contains("no lineage"), "{error}");
    }

    #[test]
    fn client_rejects_invalid_lineage() {
        let error = resolve_with("", &["--server", "https://localhost", "../etc"]).unwrap_err();
        assert!(
            error.to_string().contains("invalid lineage name"),
            "{error}"
        );
    }

    #[test]
    fn lineage_tables_apply_and_command_line_selects() {
        let toml = r#"
            server = "https://certs.example.net"
            dest = "/srv/live"
            on_change = "systemctl reload nginx"
            lineages = ["a.example"]
            [lineage."mail.example"]
            dir = "/etc/postfix/tls"
            group = 0
            key_mode = "0640"
            cert = ""
            combined = "haproxy.pem"
            on_change = "systemctl reload postfix"
        "#;
        let all = resolve_with(toml, &[]).unwrap();
        let names: Vec<&str> = all.lineages.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, vec!["a.example", "mail.example"]);
        assert_eq!(all.lineages[0].dir, PathBuf::from("/srv/live/a.example"));
        assert_eq!(all.lineages[0].cert.as_deref(), Some("cert.pem"));
        let mail = &all.lineages[1];
        assert_eq!(mail.dir, PathBuf::from("/etc/postfix/tls"));
        assert_eq!(mail.ownership.gid, Some(0));
        assert_eq!(mail.ownership.key_mode, Some(0o640));
        assert_eq!(mail.cert, None);
        assert_eq!(mail.combined.as_deref(), Some("haproxy.pem"));
        assert_eq!(
            all.hooks.on_change.as_deref(),
            Some("systemctl reload nginx")
        );
        assert_eq!(
            all.lock_file,
            PathBuf::from("/srv/live/.acme-dl-client.lock")
        );

        let one = resolve_with(toml, &["mail.example"]).unwrap();
        assert_eq!(one.lineages.len(), 1);
        assert_eq!(
            one.lineages[0].hooks.on_change.as_deref(),
            Some("systemctl reload postfix")
        );
    }

    #[test]
    fn bad_file_names_and_modes_are_rejected() {
        let base = "server = \"https://x\"\n[lineage.\"a.example\"]\n";
        for (line, expected) in [
            ("privkey = \"../key.pem\"", "invalid file name"),
            ("chain = \"fullchain.pem\"", "used twice"),
            ("key_mode = \"0999\"", "invalid mode"),
            ("cert_mode = \"04755\"", "at most 0777"),
            ("key_mode = \"0644\"", "every user"),
            ("group = \"no-such-group-acme-dl\"", "not found"),
        ] {
            let error = resolve_with(&format!("{base}{line}\n"), &[]).unwrap_err();
            assert!(error.to_string().contains(expected), "{line}: {error}");
            assert!(
                error.to_string().contains("lineage a.example"),
                "{line}: {error}"
            );
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("m").is_err());
    }
}
