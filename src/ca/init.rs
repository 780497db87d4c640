//! `pki init` and `pki import`: a new PKI directory with a root CA (generated, or adopted
//! from an existing CA) and an intermediate CA dedicated to client certificates.

use std::path::Path;

use time::OffsetDateTime;

use super::CaError;
use super::certs;
use super::crl;
use super::files::{self, DirLock, KEY_MODE, Layout, PUBLIC_MODE};
use super::index::{Index, IssuerName, Kind};
use super::keys;
use crate::cli::{KeyType, PkiImportArgs, PkiInitArgs};
use crate::pki::{Authority, CaRole, CaSpec};

/// Days until the next update of the first revocation lists.
const FIRST_CRL_DAYS: i64 = 30;

/// Creates a new PKI with a generated root.
pub fn init(args: &PkiInitArgs) -> Result<(), CaError> {
    check_days(args.days)?;
    let passphrase = passphrase(args.pki.passphrase_file.as_deref())?;
    let layout = Layout::new(&args.pki.dir);
    in_new_dir(&layout, || {
        let _lock = DirLock::acquire(&layout)?;
        let mut spec = CaSpec::new(&args.name, args.days);
        spec.algorithm = keys::algorithm(args.key_type);
        let root = Authority::new_root_with(&spec)?;
        files::write_new(&layout.root_cert(), root.cert_pem().as_bytes(), PUBLIC_MODE)?;
        let root_key = keys::encode_key(&root.key_pkcs8_der(), passphrase.as_deref())?;
        files::write_new(&layout.root_key(), &root_key, KEY_MODE)?;

        let mut index = Index::new(keys::key_type_name(args.key_type));
        index.certificates.push(certs::record(
            root.cert_pem(),
            Kind::Root,
            IssuerName::Root,
        )?);
        finish(&layout, &root, &args.name, args.key_type, args.days, index)
    })?;
    if passphrase.is_some() {
        say!("the root key is encrypted: pki server and pki crl need --passphrase-file");
    }
    Ok(())
}

/// Creates a new PKI whose root is an existing CA certificate and key.
pub fn import(args: &PkiImportArgs) -> Result<(), CaError> {
    check_days(args.days)?;
    let passphrase = passphrase(args.pki.passphrase_file.as_deref())?;
    let cert_pem = files::read_text("CA certificate", &args.ca_cert)?;
    let info = certs::read_info(&cert_pem).map_err(|error| {
        CaError::Invalid(format!(
            "CA certificate {}: {error}",
            args.ca_cert.display()
        ))
    })?;
    if !info.is_ca {
        return Err(CaError::Invalid(format!(
            "{} is not a CA certificate (basicConstraints CA:TRUE is missing)",
            args.ca_cert.display()
        )));
    }
    let key = keys::load_key(&args.ca_key, passphrase.as_deref())?;
    if rcgen::PublicKeyData::subject_public_key_info(&key) != info.public_key {
        return Err(CaError::Invalid(format!(
            "key {} does not belong to CA certificate {}",
            args.ca_key.display(),
            args.ca_cert.display()
        )));
    }
    // Only the first certificate is the CA; the copy is PEM as acme-dl writes it.
    let der = crate::pem::parse(cert_pem.as_bytes())
        .ok()
        .and_then(|blocks| {
            blocks
                .into_iter()
                .find(|block| block.label == "CERTIFICATE")
        })
        .map(|block| block.der)
        .unwrap_or_default();
    let cert_pem = String::from_utf8_lossy(&crate::pem::encode("CERTIFICATE", &der)).into_owned();
    let root = Authority::from_pem(&cert_pem, key)?;

    // The intermediate cannot outlive the CA that signs it.
    let days_left = (info.not_after - OffsetDateTime::now_utc()).whole_days();
    if days_left < 1 {
        return Err(CaError::Invalid(format!(
            "CA certificate {} expired on {}",
            args.ca_cert.display(),
            info.not_after
        )));
    }
    let layout = Layout::new(&args.pki.dir);
    in_new_dir(&layout, || {
        let _lock = DirLock::acquire(&layout)?;
        files::write_new(&layout.root_cert(), cert_pem.as_bytes(), PUBLIC_MODE)?;
        let root_key = keys::encode_key(&root.key_pkcs8_der(), passphrase.as_deref())?;
        files::write_new(&layout.root_key(), &root_key, KEY_MODE)?;

        let mut index = Index::new(keys::key_type_name(args.key_type));
        let mut record = certs::record(&cert_pem, Kind::Root, IssuerName::Root)?;
        record.imported = true;
        index.certificates.push(record);
        let name = info.common_name.clone();
        finish(
            &layout,
            &root,
            &name,
            args.key_type,
            args.days.min(days_left),
            index,
        )
    })?;
    say!("certificates the imported CA issued before keep working: it stays a trust anchor");
    Ok(())
}

/// Creates the client intermediate, the trust bundle, the revocation lists and the index,
/// which is written last so that an interrupted init leaves no directory that looks whole.
fn finish(
    layout: &Layout,
    root: &Authority,
    root_name: &str,
    key_type: KeyType,
    days: i64,
    mut index: Index,
) -> Result<(), CaError> {
    let mut spec = CaSpec::new(&format!("{root_name} clients"), days);
    spec.algorithm = keys::algorithm(key_type);
    spec.role = CaRole::ClientIdentities;
    let client_ca = root.new_intermediate_with(&spec)?;
    files::write_new(
        &layout.client_ca_cert(),
        client_ca.cert_pem().as_bytes(),
        PUBLIC_MODE,
    )?;
    let client_key = keys::encode_key(&client_ca.key_pkcs8_der(), None)?;
    files::write_new(&layout.client_ca_key(), &client_key, KEY_MODE)?;
    let trust = format!("{}{}", root.cert_pem(), client_ca.cert_pem());
    files::write_new(&layout.client_trust(), trust.as_bytes(), PUBLIC_MODE)?;
    index.certificates.push(certs::record(
        client_ca.cert_pem(),
        Kind::ClientCa,
        IssuerName::Root,
    )?);

    crl::write_crls(layout, &mut index, Some(root), FIRST_CRL_DAYS)?;
    index.save(layout)?;
    let dir = layout.dir.display();
    tracing::info!(dir = %dir, "PKI created");
    say!("created the PKI in {dir}:");
    say!("  {dir}/ca.crt            root CA: clients trust it for the server (client ca)");
    say!("  {dir}/ca.key            root key");
    say!("  {dir}/client-ca.crt     intermediate CA for client certificates");
    say!("  {dir}/client-ca.key     its key");
    say!("  {dir}/client-trust.pem  root and intermediate: the server's ca setting");
    say!("  {dir}/crl.pem           revocation lists: the server's crl setting");
    say!("  {dir}/index.json        every issued certificate");
    say!("next: acme-dl pki server --dir {dir} --name HOST");
    Ok(())
}

fn check_days(days: i64) -> Result<(), CaError> {
    if days < 1 {
        return Err(CaError::Invalid(format!(
            "--days must be at least 1, got {days}"
        )));
    }
    Ok(())
}

fn passphrase(file: Option<&Path>) -> Result<Option<String>, CaError> {
    file.map(keys::read_passphrase).transpose()
}

/// Creates the PKI directory with mode 0700, or accepts an empty one, and rejects a
/// directory with files in it so that an existing PKI is never overwritten.
/// Runs `write` in the PKI directory, which must be new or empty. When `write` fails, the
/// directory is returned to how it was, so that the command can simply be run again.
fn in_new_dir(layout: &Layout, write: impl FnOnce() -> Result<(), CaError>) -> Result<(), CaError> {
    let created = prepare_dir(layout)?;
    let result = write();
    if result.is_err() {
        discard(&layout.dir, created);
    }
    result
}

/// Checks that the directory is new or empty and creates it; returns true when it was new.
fn prepare_dir(layout: &Layout) -> Result<bool, CaError> {
    let dir = &layout.dir;
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        let what = if layout.index().exists() {
            "already holds a PKI"
        } else {
            "is not empty"
        };
        return Err(CaError::Invalid(format!(
            "{} {what}; pki init and pki import only write into a new or empty directory",
            dir.display()
        )));
    }
    let created = !dir.exists();
    files::create_private_dir(dir)?;
    Ok(created)
}

/// Removes what a failed init or import wrote: the directory itself when it created it,
/// else everything in it, since it was empty before.
fn discard(dir: &Path, created: bool) {
    if created {
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let _ = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}
