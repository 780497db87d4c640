//! `pki revoke` and `pki crl`: revocations in the index, and `crl.pem` generated from it
//! with one revocation list per CA, root first.

use clap::ValueEnum;
use time::OffsetDateTime;
use x509_parser::prelude::{CertificateRevocationList, FromDer};

use super::CaError;
use super::certs;
use super::files::{self, DirLock, Layout};
use super::index::{self, Index, IssuerName, Kind, Revoked, State};
use super::keys;
use crate::cli::{PkiCrlArgs, PkiRevokeArgs, RevocationReason};
use crate::pki::{Authority, Revocation};

const RELOAD_HINT: &str = "the server loads it on SIGHUP: kill -HUP the server's process, \
                           or reload its systemd unit";

/// Revokes a serial, or every unexpired certificate of an identity, and writes `crl.pem`.
pub fn revoke(args: &PkiRevokeArgs) -> Result<(), CaError> {
    let layout = Layout::new(&args.pki.dir);
    layout.require_existing()?;
    let _lock = DirLock::acquire(&layout)?;
    let mut index = Index::load(&layout)?;
    let now = OffsetDateTime::now_utc();
    let targets = select_targets(&mut index, args, now)?;

    let reason = reason_name(args.reason);
    // Reported only once the lists and the index are written: a failure revokes nothing.
    let mut revoked = Vec::with_capacity(targets.len());
    for &position in &targets {
        let record = &mut index.certificates[position];
        record.revoked = Some(Revoked {
            time: now,
            reason: reason.clone(),
        });
        revoked.push(format!(
            "revoked {} {} serial {} ({reason})",
            record.kind.name(),
            display_identity(&record.identity),
            record.serial
        ));
    }
    let needs_root = targets
        .iter()
        .any(|&position| index.certificates[position].issuer == IssuerName::Root);
    let passphrase = passphrase(&args.pki)?;
    let root = load_root_if_possible(&layout, passphrase.as_deref(), needs_root)?;
    write_crls(&layout, &mut index, root.as_ref(), args.days)?;
    index.save(&layout)?;
    for &position in &targets {
        let record = &index.certificates[position];
        tracing::info!(
            kind = record.kind.name(),
            identity = %record.identity,
            serial = %record.serial,
            reason = %reason,
            "certificate revoked"
        );
    }
    for line in revoked {
        say!("{line}");
    }
    tracing::info!(path = %layout.crl().display(), "revocation lists written");
    say!("wrote {}; {RELOAD_HINT}", layout.crl().display());
    Ok(())
}

/// Writes `crl.pem` again with a new CRL number and next update.
pub fn regenerate(args: &PkiCrlArgs) -> Result<(), CaError> {
    let layout = Layout::new(&args.pki.dir);
    layout.require_existing()?;
    let _lock = DirLock::acquire(&layout)?;
    let mut index = Index::load(&layout)?;
    let passphrase = passphrase(&args.pki)?;
    let root = load_root_if_possible(&layout, passphrase.as_deref(), false)?;
    write_crls(&layout, &mut index, root.as_ref(), args.days)?;
    index.save(&layout)?;
    tracing::info!(path = %layout.crl().display(), "revocation lists written");
    say!("wrote {}; {RELOAD_HINT}", layout.crl().display());
    Ok(())
}

fn passphrase(args: &crate::cli::PkiDirArgs) -> Result<Option<String>, CaError> {
    args.passphrase_file
        .as_deref()
        .map(keys::read_passphrase)
        .transpose()
}

/// Finds the records to revoke: the serial when the index has it, else every unexpired,
/// unrevoked certificate of that identity, else an unindexed serial with `--unindexed`.
fn select_targets(
    index: &mut Index,
    args: &PkiRevokeArgs,
    now: OffsetDateTime,
) -> Result<Vec<usize>, CaError> {
    let target = args.target.trim();
    if let Some(position) = index.find_serial(target) {
        let record = &index.certificates[position];
        if matches!(record.kind, Kind::Root | Kind::ClientCa) {
            return Err(CaError::Invalid(format!(
                "serial {target} is the {} CA; revoking a CA of the PKI is not supported, \
                 create a new PKI with acme-dl pki init instead",
                record.kind.name()
            )));
        }
        if record.revoked.is_some() {
            return Err(CaError::Invalid(format!(
                "serial {target} ({} {}) is already revoked",
                record.kind.name(),
                record.identity
            )));
        }
        return Ok(vec![position]);
    }
    let by_identity: Vec<usize> = index
        .certificates
        .iter()
        .enumerate()
        .filter(|(_, record)| {
            matches!(record.kind, Kind::Server | Kind::Client)
                && record.identity == target
                && matches!(index.state(record, now), State::Valid | State::Superseded)
        })
        .map(|(position, _)| position)
        .collect();
    if !by_identity.is_empty() {
        return Ok(by_identity);
    }
    if args.unindexed {
        let serial = index::normalize_serial(target).ok_or_else(|| {
            CaError::Invalid(format!(
                "--unindexed needs a hex serial number, got {target:?}"
            ))
        })?;
        index.certificates.push(index::Record {
            serial,
            kind: Kind::Unindexed,
            identity: String::new(),
            issuer: IssuerName::Root,
            not_before: None,
            not_after: None,
            sha256: None,
            names: Vec::new(),
            supersedes: None,
            revoked: None,
            imported: false,
            public_key_sha256: None,
            renewed: None,
        });
        return Ok(vec![index.certificates.len() - 1]);
    }
    Err(CaError::Invalid(format!(
        "no unexpired, unrevoked certificate with serial or identity {target:?} in {}; \
         acme-dl pki list shows them, and --unindexed revokes a serial the root issued \
         outside acme-dl",
        args.pki.dir.join("index.json").display()
    )))
}

/// Loads the root when its key can be read: unencrypted, or encrypted with a passphrase
/// given. Fails only when `required`.
fn load_root_if_possible(
    layout: &Layout,
    passphrase: Option<&str>,
    required: bool,
) -> Result<Option<Authority>, CaError> {
    let key = layout.root_key();
    let readable = key.is_file() && (passphrase.is_some() || !keys::is_encrypted(&key)?);
    if readable {
        return certs::load_root(layout, passphrase).map(Some);
    }
    if required {
        return Err(CaError::Invalid(format!(
            "the root signs this revocation list, and its key {} is encrypted or missing: \
             pass --passphrase-file FILE, or bring the key back",
            key.display()
        )));
    }
    Ok(None)
}

/// Writes `crl.pem`: a new list from each CA whose key is at hand, and the list already
/// in the file for the root when its key is not (encrypted without a passphrase, or kept
/// offline).
pub fn write_crls(
    layout: &Layout,
    index: &mut Index,
    root: Option<&Authority>,
    days: i64,
) -> Result<(), CaError> {
    if days < 1 {
        return Err(CaError::Invalid(format!(
            "--days must be at least 1, got {days}"
        )));
    }
    let client_ca = certs::load_client_ca(layout, None)?;
    let root_list = match root {
        Some(root) => {
            let number = index.next_crl_number();
            root.revocation_list_of(&entries(index, IssuerName::Root)?, number, days)?
        }
        None => {
            let kept = existing_list(layout, &layout.root_cert())?;
            tracing::warn!(
                "kept the root's revocation list: the root key is encrypted or offline, so \
                 it is not renewed"
            );
            say!(
                "kept the root's revocation list: the root key is encrypted or offline; \
                 pass --passphrase-file to renew it"
            );
            kept
        }
    };
    let number = index.next_crl_number();
    let client_list =
        client_ca.revocation_list_of(&entries(index, IssuerName::ClientCa)?, number, days)?;
    let contents = format!("{root_list}{client_list}");
    files::write_atomic(&layout.crl(), contents.as_bytes(), files::PUBLIC_MODE)
}

fn entries(index: &Index, issuer: IssuerName) -> Result<Vec<Revocation>, CaError> {
    let mut entries = Vec::new();
    for record in &index.certificates {
        let Some(revoked) = &record.revoked else {
            continue;
        };
        if record.issuer != issuer || matches!(record.kind, Kind::Root) {
            continue;
        }
        let serial = index::serial_bytes(&record.serial).ok_or_else(|| {
            CaError::Invalid(format!("index has an invalid serial {:?}", record.serial))
        })?;
        entries.push(Revocation {
            serial,
            time: revoked.time,
            reason: reason_code(&revoked.reason),
        });
    }
    Ok(entries)
}

/// Returns the PEM block of `crl.pem` whose issuer is the subject of `ca_cert`.
fn existing_list(layout: &Layout, ca_cert: &std::path::Path) -> Result<String, CaError> {
    let crl_path = layout.crl();
    let text = files::read_text("revocation lists", &crl_path)?;
    let subject = {
        let pem = files::read_text("CA certificate", ca_cert)?;
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|error| CaError::Invalid(format!("{}: {error}", ca_cert.display())))?;
        let cert = block
            .parse_x509()
            .map_err(|error| CaError::Invalid(format!("{}: {error}", ca_cert.display())))?;
        cert.subject().as_raw().to_vec()
    };
    let blocks = crate::pem::parse(text.as_bytes())
        .map_err(|error| CaError::Invalid(format!("{}: {error}", crl_path.display())))?;
    for block in blocks.iter().filter(|block| block.label == "X509 CRL") {
        if let Ok((_, list)) = CertificateRevocationList::from_der(&block.der)
            && list.issuer().as_raw() == subject.as_slice()
        {
            return Ok(
                String::from_utf8_lossy(&crate::pem::encode("X509 CRL", &block.der)).into_owned(),
            );
        }
    }
    Err(CaError::Invalid(format!(
        "{} has no revocation list of {}, and its key is not at hand to sign one: pass \
         --passphrase-file FILE",
        crl_path.display(),
        ca_cert.display()
    )))
}

/// Returns the name of a reason as `--reason` spells it and the index stores it.
fn reason_name(reason: RevocationReason) -> String {
    reason
        .to_possible_value()
        .map(|value| value.get_name().to_owned())
        .unwrap_or_default()
}

fn reason_code(name: &str) -> Option<rcgen::RevocationReason> {
    use rcgen::RevocationReason as Code;

    match RevocationReason::from_str(name, false).ok()? {
        // RFC 5280 section 5.3.1: the reason code should be absent rather than unspecified.
        RevocationReason::Unspecified => None,
        RevocationReason::KeyCompromise => Some(Code::KeyCompromise),
        RevocationReason::AffiliationChanged => Some(Code::AffiliationChanged),
        RevocationReason::Superseded => Some(Code::Superseded),
        RevocationReason::CessationOfOperation => Some(Code::CessationOfOperation),
        RevocationReason::PrivilegeWithdrawn => Some(Code::PrivilegeWithdrawn),
    }
}

fn display_identity(identity: &str) -> &str {
    if identity.is_empty() {
        "(unknown)"
    } else {
        identity
    }
}
