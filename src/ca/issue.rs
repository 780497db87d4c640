//! `pki server` and `pki client`: leaf certificates with new keys, written to an output
//! directory and recorded in the index, superseding the previous one of the same identity.

use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

use super::CaError;
use super::certs;
use super::files::{self, DirLock, KEY_MODE, Layout, PUBLIC_MODE};
use super::index::{Index, IssuerName, Kind};
use super::keys;
use crate::cli::{KeyType, PkiClientArgs, PkiDirArgs, PkiServerArgs};
use crate::pki::{LeafSpec, Usage};
use crate::policy::{Policy, RuleFile};

/// Issues a server certificate signed by the root.
pub fn server(args: &PkiServerArgs) -> Result<(), CaError> {
    let name = args.name.trim();
    check_file_stem("--name", name)?;
    let mut spec = LeafSpec::new(name, Usage::Server, args.days);
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => spec.ip_addresses.push(ip),
        Err(_) => spec.dns_names.push(name.to_owned()),
    }
    for dns in &args.dns {
        check_dns_name(dns)?;
        spec.dns_names.push(dns.clone());
    }
    spec.ip_addresses.extend(&args.ip);

    let layout = Layout::new(&args.pki.dir);
    layout.require_existing()?;
    let _lock = DirLock::acquire(&layout)?;
    let mut index = Index::load(&layout)?;
    // A certificate issued again for the same host keeps the names clients reach it by,
    // unless the command names them anew.
    let carried = if args.dns.is_empty() && args.ip.is_empty() {
        carry_over_names(&index, name, &mut spec)
    } else {
        Vec::new()
    };
    spec.algorithm = key_algorithm(&index, args.key_type)?;
    let passphrase = read_passphrase(&args.pki)?;
    let root = certs::load_root(&layout, passphrase.as_deref())?;
    set_validity(&mut spec, args.days, &layout.root_cert())?;

    let issued = root.issue(&spec)?;
    let out = output_dir(args.out.as_deref(), layout.default_server_out())?;
    let cert_path = out.join(format!("{name}.crt"));
    let key_path = out.join(format!("{name}.key"));
    let key_pem = keys::encode_key_pem(&issued.key_pem)?;
    files::write_atomic(&key_path, &key_pem, KEY_MODE)?;
    files::write_atomic(&cert_path, issued.cert_pem.as_bytes(), PUBLIC_MODE)?;
    let superseded = record_issued(&mut index, &issued.cert_pem, Kind::Server, IssuerName::Root)?;
    index.save(&layout)?;

    print_issued(&index, &cert_path, &key_path, superseded.as_deref());
    if !carried.is_empty() {
        say!(
            "kept the names of the certificate it replaces: {} (give --dns and --ip to change \
             them)",
            carried.join(", ")
        );
    }
    let dir = layout.dir.display();
    say!("server.toml:");
    say!("  cert = \"{}\"", cert_path.display());
    say!("  key = \"{}\"", key_path.display());
    say!("  ca = \"{dir}/client-trust.pem\"");
    say!("  crl = [\"{dir}/crl.pem\"]");
    say!("clients verify it with ca = \"{dir}/ca.crt\"");
    if superseded.is_some() {
        say!("install the new files and reload the server: kill -HUP the server's process");
    }
    Ok(())
}

/// Issues a client certificate signed by the client intermediate and prints its rule.
pub fn client(args: &PkiClientArgs) -> Result<(), CaError> {
    let name = args.name.trim();
    check_file_stem("--name", name)?;
    let rule = access_rule(name, args)?;
    let mut spec = LeafSpec::new(name, Usage::Client, args.days);

    let layout = Layout::new(&args.pki.dir);
    layout.require_existing()?;
    let _lock = DirLock::acquire(&layout)?;
    let mut index = Index::load(&layout)?;
    spec.algorithm = key_algorithm(&index, args.key_type)?;
    let client_ca = certs::load_client_ca(&layout, None)?;
    set_validity(&mut spec, args.days, &layout.client_ca_cert())?;

    let issued = client_ca.issue(&spec)?;
    let out = output_dir(args.out.as_deref(), layout.default_client_out())?;
    let cert_path = out.join(format!("{name}.crt"));
    let key_path = out.join(format!("{name}.key"));
    // The client sends the intermediate with its leaf, so that a server trusting only the
    // root can verify it too.
    let chain = format!("{}{}", issued.cert_pem, client_ca.cert_pem());
    let key_pem = keys::encode_key_pem(&issued.key_pem)?;
    files::write_atomic(&key_path, &key_pem, KEY_MODE)?;
    files::write_atomic(&cert_path, chain.as_bytes(), PUBLIC_MODE)?;
    let superseded = record_issued(
        &mut index,
        &issued.cert_pem,
        Kind::Client,
        IssuerName::ClientCa,
    )?;
    index.save(&layout)?;

    print_issued(&index, &cert_path, &key_path, superseded.as_deref());
    say!("client.toml (copy these files to the client host and use the paths of the copies):");
    say!("  cert = \"{}\"", cert_path.display());
    say!("  key = \"{}\"", key_path.display());
    say!("  ca = \"{}/ca.crt\"", layout.dir.display());
    if args.certificates_only {
        say!(
            "  and privkey = \"\" in each lineage's [lineage.\"NAME\"] table, so that no key is fetched"
        );
    }
    if superseded.is_some() {
        // The identity is the same, so the server's rule for it still applies.
        say!(
            "the server's [[access]] rule for cn:{name} applies to the new certificate; \
             this rule is only needed if the server has none yet:\n"
        );
    } else {
        say!("add this rule to the server's configuration, then reload it:\n");
    }
    say_raw!("{rule}");
    Ok(())
}

/// Adds the DNS names and IP addresses of the current server certificate of `name` to
/// `spec`, and returns the ones added.
fn carry_over_names(index: &Index, name: &str, spec: &mut LeafSpec) -> Vec<String> {
    let Some(current) = index.current(Kind::Server, name, OffsetDateTime::now_utc()) else {
        return Vec::new();
    };
    let mut carried = Vec::new();
    for other in &current.names {
        match other.parse::<std::net::IpAddr>() {
            Ok(ip) if !spec.ip_addresses.contains(&ip) => spec.ip_addresses.push(ip),
            Err(_) if !spec.dns_names.contains(other) => spec.dns_names.push(other.clone()),
            _ => continue,
        }
        carried.push(other.clone());
    }
    carried
}

/// Builds the `[[access]]` rule text, checked by the server's own policy parser.
fn access_rule(name: &str, args: &PkiClientArgs) -> Result<String, CaError> {
    let client = format!("cn:{name}");
    let mut text = format!("[[access]]\nclients = [{}]\n", toml_string(&client));
    if args.lineage.is_empty() {
        text.push_str("lineages = [\"example.com\"]   # replace with the lineages it may fetch\n");
    } else {
        let rule = RuleFile {
            clients: vec![client],
            lineages: args.lineage.clone(),
            private_keys: !args.certificates_only,
        };
        Policy::new(&[rule], false)
            .map_err(|error| CaError::Invalid(format!("--lineage: {error}")))?;
        let patterns: Vec<String> = args.lineage.iter().map(|l| toml_string(l)).collect();
        text.push_str(&format!("lineages = [{}]\n", patterns.join(", ")));
    }
    if args.certificates_only {
        text.push_str("private_keys = false\n");
    }
    Ok(text)
}

fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

/// Records a new certificate, superseding the current one of the same kind and identity,
/// and returns the superseded serial.
fn record_issued(
    index: &mut Index,
    cert_pem: &str,
    kind: Kind,
    issuer: IssuerName,
) -> Result<Option<String>, CaError> {
    let mut record = certs::record(cert_pem, kind, issuer)?;
    let now = OffsetDateTime::now_utc();
    record.supersedes = index
        .current(kind, &record.identity, now)
        .map(|current| current.serial.clone());
    let superseded = record.supersedes.clone();
    index.certificates.push(record);
    Ok(superseded)
}

fn print_issued(index: &Index, cert: &Path, key: &Path, superseded: Option<&str>) {
    if let Some(record) = index.certificates.last() {
        tracing::info!(
            kind = record.kind.name(),
            identity = %record.identity,
            serial = %record.serial,
            not_after = %record.not_after.map(|date| date.date().to_string()).unwrap_or_default(),
            supersedes = superseded.unwrap_or("-"),
            cert = %cert.display(),
            "certificate issued"
        );
        let expires = record
            .not_after
            .map(|date| date.date().to_string())
            .unwrap_or_default();
        say!(
            "issued {} {} serial {}, valid until {expires}",
            record.kind.name(),
            record.identity,
            record.serial
        );
    }
    say!("  {}", cert.display());
    say!("  {} (private key, mode 0600)", key.display());
    if let Some(serial) = superseded {
        say!("supersedes serial {serial}, which stays valid until it expires unless revoked");
    }
}

fn key_algorithm(
    index: &Index,
    key_type: Option<KeyType>,
) -> Result<crate::pki::KeyAlgorithm, CaError> {
    let key_type = match key_type {
        Some(key_type) => key_type,
        None => keys::parse_key_type(&index.key_type).ok_or_else(|| {
            CaError::Invalid(format!(
                "index names an unknown key type {:?}; pass --key-type",
                index.key_type
            ))
        })?,
    };
    Ok(keys::algorithm(key_type))
}

fn read_passphrase(args: &PkiDirArgs) -> Result<Option<String>, CaError> {
    args.passphrase_file
        .as_deref()
        .map(keys::read_passphrase)
        .transpose()
}

/// Checks `--days` and that the certificate ends before the CA that signs it.
fn set_validity(spec: &mut LeafSpec, days: i64, ca_cert: &Path) -> Result<(), CaError> {
    if days < 1 {
        return Err(CaError::Invalid(format!(
            "--days must be at least 1, got {days}"
        )));
    }
    let ca_not_after = certs::not_after(ca_cert)?;
    if spec.not_after > ca_not_after {
        let allowed = (ca_not_after - OffsetDateTime::now_utc() - Duration::hours(1)).whole_days();
        return Err(CaError::Invalid(format!(
            "--days {days} would outlive the CA {}, which expires on {}: use --days {allowed} \
             or less",
            ca_cert.display(),
            ca_not_after.date()
        )));
    }
    Ok(())
}

fn output_dir(out: Option<&Path>, default: PathBuf) -> Result<PathBuf, CaError> {
    let dir = out.map_or(default, Path::to_owned);
    if !dir.is_dir() {
        files::create_private_dir(&dir)?;
    }
    Ok(dir)
}

/// Rejects names that cannot be file names in the output directory.
fn check_file_stem(flag: &str, name: &str) -> Result<(), CaError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | ':'));
    if valid {
        return Ok(());
    }
    Err(CaError::Invalid(format!(
        "{flag} {name:?} is invalid: use 1 to 64 letters, digits and . - _ @ : characters, \
         not starting with a dot"
    )))
}

fn check_dns_name(name: &str) -> Result<(), CaError> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').enumerate().all(|(position, label)| {
            (position == 0 && label == "*")
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        });
    if valid {
        return Ok(());
    }
    Err(CaError::Invalid(format!(
        "--dns {name:?} is not a valid DNS name"
    )))
}
