//! End-to-end tests of `acme-dl client --check`, the Nagios plugin mode: the real binary
//! reads sets installed by the real client or by `acme_dl::install`, with certificates of
//! chosen validity, and no server runs unless a test starts one.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::SystemTime;

use acme_dl::install::{InstallOptions, NewFile};
use acme_dl::pki::{Authority, Issued, LeafSpec, Usage};
use support::harness::{Deployment, Identity, Pki, describe, run_client};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

/// A client host without a server: a PKI for the client certificate, an ACME CA for the
/// lineages, and a destination directory.
struct Host {
    dir: TempDir,
    pki: Pki,
    acme: Authority,
    dest: PathBuf,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&dir.path().join("pki"), "web412");
        let dest = dir.path().join("dest");
        std::fs::create_dir_all(&dest).unwrap();
        let mut host = Host {
            dir,
            pki,
            acme: Authority::new_root("test ACME CA", 365).unwrap(),
            dest,
        };
        // 300 days is above every threshold the tests pass. The extra hour keeps the whole
        // days left the same however many seconds the test takes.
        host.pki.client = host.client_with_days_left("client", 300);
        host
    }

    /// Issues a leaf for `lineage` valid from `not_before` to `not_after`.
    fn issue(
        &self,
        lineage: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Issued {
        let mut spec = LeafSpec::new(lineage, Usage::Server, 90);
        spec.dns_names = vec![lineage.to_owned()];
        spec.not_before = not_before;
        spec.not_after = not_after;
        self.acme.issue(&spec).unwrap()
    }

    /// Installs `leaf` as the next version of `lineage`, with `key_pem` as its key, the
    /// way the client installs a downloaded set.
    fn install(&self, lineage: &str, leaf: &Issued, key_pem: &str) {
        let chain = self.acme.cert_pem().to_owned();
        let file = |name: &str, contents: String, private: bool| NewFile {
            name: name.to_owned(),
            contents: contents.into_bytes(),
            private,
        };
        let files = [
            file("fullchain.pem", format!("{}{chain}", leaf.cert_pem), false),
            file("privkey.pem", key_pem.to_owned(), true),
            file("chain.pem", chain.clone(), false),
            file("cert.pem", leaf.cert_pem.clone(), false),
        ];
        acme_dl::install::install_set(&self.dest.join(lineage), &files, &InstallOptions::default())
            .unwrap();
    }

    /// Installs a set for `lineage` whose certificate ends in `days` days and an hour, so
    /// that it has exactly `days` whole days left while the test runs.
    fn install_days_left(&self, lineage: &str, days: i64) {
        let now = OffsetDateTime::now_utc();
        let leaf = self.issue(
            lineage,
            now - Duration::days(30),
            now + Duration::days(days) + Duration::hours(1),
        );
        self.install(lineage, &leaf, &leaf.key_pem);
    }

    /// Runs `acme-dl client --check` with the host's files, `extra` flags and `lineages`.
    fn monitor_with(&self, client: &Identity, extra: &[&str], lineages: &[&str]) -> Output {
        let mut args = vec![
            "--no-syslog".to_owned(),
            "--config".to_owned(),
            "/dev/null".to_owned(),
            // Nothing listens here, and the check must not try to connect.
            "--server".to_owned(),
            "https://127.0.0.1:9".to_owned(),
            "--dest".to_owned(),
            self.dest.display().to_string(),
            "--check".to_owned(),
        ];
        args.extend(client.args());
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        args.extend(lineages.iter().map(|lineage| (*lineage).to_owned()));
        run_client(&args)
    }

    fn monitor(&self, extra: &[&str], lineages: &[&str]) -> Output {
        self.monitor_with(&self.pki.client, extra, lineages)
    }

    /// Issues a client certificate from the host's CA that ends in `days` days and an hour.
    fn client_with_days_left(&self, stem: &str, days: i64) -> Identity {
        let mut spec = LeafSpec::new("web412", Usage::Client, 30);
        spec.not_before = OffsetDateTime::now_utc() - Duration::days(60);
        spec.not_after = OffsetDateTime::now_utc() + Duration::days(days) + Duration::hours(1);
        self.pki.issue(stem, &spec)
    }
}

/// Returns the status line, the first line of stdout.
fn status_line(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout.lines().next().unwrap_or_default().to_owned()
}

/// Returns the UTC date `days` days and an hour from now, as the status line prints it.
fn date_in(days: i64) -> String {
    let end = OffsetDateTime::now_utc() + Duration::days(days) + Duration::hours(1);
    end.date().to_string()
}

/// Returns every path under `dir` with its modification time, links not followed.
fn mtimes(dir: &Path) -> Vec<(PathBuf, SystemTime)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            let metadata = std::fs::symlink_metadata(&path).unwrap();
            if metadata.is_dir() {
                pending.push(path.clone());
            }
            found.push((path, metadata.modified().unwrap()));
        }
    }
    found.sort();
    found
}

#[test]
fn monitor_ok_names_every_lineage() {
    let host = Host::new();
    host.install_days_left("a.example", 62);
    host.install_days_left("b.example", 80);
    let output = host.monitor(&[], &["b.example", "a.example"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        status_line(&output),
        "ACME-DL OK - a.example 62 days left, b.example 80 days left, client certificate 300 \
         days left | 'a.example'=62;21:;7:;; 'b.example'=80;21:;7:;; \
         'client certificate'=300;21:;7:;;"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    assert!(stdout.contains("\na.example: serial "), "{stdout}");
    // --no-syslog sends log lines to stderr; a check logs nothing at the default level.
    assert!(output.stderr.is_empty(), "{}", describe(&output));
}

#[test]
fn monitor_warning_below_warn_days() {
    let host = Host::new();
    host.install_days_left("a.example", 15);
    host.install_days_left("b.example", 80);
    let output = host.monitor(&[], &["a.example", "b.example"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let line = status_line(&output);
    let expected = format!(
        "ACME-DL WARNING - a.example expires in 15 days ({}); b.example 80 days left, client \
         certificate 300 days left | ",
        date_in(15)
    );
    assert!(line.starts_with(&expected), "{line}");
}

#[test]
fn monitor_critical_below_crit_days() {
    let host = Host::new();
    host.install_days_left("a.example", 80);
    host.install_days_left("b.example", 3);
    let output = host.monitor(&[], &["a.example", "b.example"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let line = status_line(&output);
    let expected = format!(
        "ACME-DL CRITICAL - b.example expires in 3 days ({}); a.example 80 days left, client \
         certificate 300 days left | ",
        date_in(3)
    );
    assert!(line.starts_with(&expected), "{line}");
    assert!(line.contains("'b.example'=3;21:;7:;;"), "{line}");
}

#[test]
fn monitor_thresholds_come_from_flags() {
    let host = Host::new();
    host.install_days_left("a.example", 62);
    for (flags, code, state) in [
        (["--warn", "63", "--crit", "10"], 1, "WARNING"),
        (["--warn", "62", "--crit", "10"], 0, "OK"),
        (["--warn", "90", "--crit", "63"], 2, "CRITICAL"),
        (["--warn", "90", "--crit", "62"], 1, "WARNING"),
    ] {
        // The client certificate has 300 days left, above every threshold here.
        let output = host.monitor(&flags, &["a.example"]);
        let line = status_line(&output);
        assert_eq!(output.status.code(), Some(code), "{flags:?}: {line}");
        assert!(
            line.starts_with(&format!("ACME-DL {state} - ")),
            "{flags:?}: {line}"
        );
        let performance = format!("'a.example'=62;{}:;{}:;;", flags[1], flags[3]);
        assert!(line.contains(&performance), "{flags:?}: {line}");
    }
}

#[test]
fn monitor_missing_lineage_is_critical() {
    let host = Host::new();
    host.install_days_left("a.example", 62);
    let output = host.monitor(&[], &["a.example", "gone.example"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let line = status_line(&output);
    assert!(
        line.starts_with("ACME-DL CRITICAL - gone.example not installed; "),
        "{line}"
    );
    assert!(line.contains("a.example 62 days left"), "{line}");
    assert!(!line.contains("'gone.example'"), "{line}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let missing = host.dest.join("gone.example");
    assert!(
        stdout.contains(&format!("gone.example: {} not found", missing.display())),
        "{stdout}"
    );
}

#[test]
fn monitor_missing_file_is_critical() {
    let host = Host::new();
    host.install_days_left("a.example", 62);
    let version = std::fs::canonicalize(host.dest.join("a.example")).unwrap();
    std::fs::remove_file(version.join("chain.pem")).unwrap();
    let output = host.monitor(&[], &["a.example"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let line = status_line(&output);
    assert!(
        line.starts_with("ACME-DL CRITICAL - a.example chain.pem missing; "),
        "{line}"
    );
}

#[test]
fn monitor_key_mismatch_is_critical() {
    let host = Host::new();
    let now = OffsetDateTime::now_utc();
    let leaf = host.issue(
        "a.example",
        now - Duration::days(1),
        now + Duration::days(60),
    );
    let other = host.issue(
        "a.example",
        now - Duration::days(1),
        now + Duration::days(60),
    );
    host.install("a.example", &leaf, &other.key_pem);
    let output = host.monitor(&[], &["a.example"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let line = status_line(&output);
    assert!(
        line.starts_with(
            "ACME-DL CRITICAL - a.example invalid set: privkey.pem: private key does not match \
             certificate of lineage a.example"
        ),
        "{line}"
    );
}

#[test]
fn monitor_unreadable_file_is_critical() {
    let host = Host::new();
    host.install_days_left("a.example", 62);
    let version = std::fs::canonicalize(host.dest.join("a.example")).unwrap();
    let key = version.join("privkey.pem");
    // A directory in place of the key cannot be read as a file, even by root.
    std::fs::remove_file(&key).unwrap();
    std::fs::create_dir(&key).unwrap();
    let output = host.monitor(&[], &["a.example"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let line = status_line(&output);
    assert!(
        line.starts_with("ACME-DL CRITICAL - a.example privkey.pem unreadable: not a regular file"),
        "{line}"
    );
    std::fs::remove_dir(&key).unwrap();

    // Root reads any file whatever its mode, so the mode case runs only for other users.
    if rustix::process::geteuid().is_root() {
        return;
    }
    std::fs::write(&key, "").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let output = host.monitor(&[], &["a.example"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let line = status_line(&output);
    assert!(
        line.starts_with("ACME-DL CRITICAL - a.example privkey.pem unreadable: Permission denied"),
        "{line}"
    );
}

#[test]
fn monitor_expired_set_is_critical() {
    let host = Host::new();
    let now = OffsetDateTime::now_utc();
    let end = now - Duration::days(2) - Duration::hours(1);
    let leaf = host.issue("a.example", now - Duration::days(92), end);
    host.install("a.example", &leaf, &leaf.key_pem);
    let output = host.monitor(&[], &["a.example"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let line = status_line(&output);
    assert!(
        line.starts_with(&format!(
            "ACME-DL CRITICAL - a.example expired on {}; ",
            end.date()
        )),
        "{line}"
    );
    assert!(line.contains("'a.example'=-3;21:;7:;;"), "{line}");
}

#[test]
fn monitor_future_set_is_critical() {
    let host = Host::new();
    let now = OffsetDateTime::now_utc();
    let leaf = host.issue(
        "a.example",
        now + Duration::days(2),
        now + Duration::days(92),
    );
    host.install("a.example", &leaf, &leaf.key_pem);
    let output = host.monitor(&[], &["a.example"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let line = status_line(&output);
    assert!(
        line.starts_with("ACME-DL CRITICAL - a.example not valid before "),
        "{line}"
    );
}

#[test]
fn monitor_bad_thresholds_are_unknown() {
    let host = Host::new();
    host.install_days_left("a.example", 62);
    for (flags, reason) in [
        (
            vec!["--warn", "21", "--crit", "30"],
            "--crit 30 is greater than --warn 21",
        ),
        (vec!["--warn", "0"], "invalid --warn 0"),
        (vec!["--crit", "0"], "invalid --crit 0"),
        (vec!["--warn", "three"], "invalid arguments: "),
        (vec!["--crit", "-1"], "invalid arguments: "),
        (vec!["--no-such-flag"], "invalid arguments: "),
    ] {
        let output = host.monitor(&flags, &["a.example"]);
        let line = status_line(&output);
        assert_eq!(
            output.status.code(),
            Some(3),
            "{flags:?}: {}",
            describe(&output)
        );
        assert!(line.starts_with("ACME-DL UNKNOWN - "), "{flags:?}: {line}");
        assert!(line.contains(reason), "{flags:?}: {line}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(stdout.lines().count(), 1, "{flags:?}: {stdout}");
    }
}

#[test]
fn monitor_unreadable_configuration_is_unknown() {
    let host = Host::new();
    let missing = host.dir.path().join("no-such-client.toml");
    let mut args = vec![
        "--no-syslog".to_owned(),
        "--check".to_owned(),
        "--config".to_owned(),
        missing.display().to_string(),
    ];
    args.extend(host.pki.client.args());
    let output = run_client(&args);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let line = status_line(&output);
    assert!(
        line.starts_with("ACME-DL UNKNOWN - invalid configuration: "),
        "{line}"
    );
    assert!(line.contains("no-such-client.toml"), "{line}");
}

#[test]
fn monitor_without_lineages_reads_configuration() {
    let host = Host::new();
    host.install_days_left("a.example", 62);
    // A lineage with a table of its own, installed elsewhere than DEST/NAME.
    let elsewhere = host.dir.path().join("postfix").join("mail");
    std::fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
    let now = OffsetDateTime::now_utc();
    let leaf = host.issue(
        "mail.example",
        now - Duration::days(1),
        now + Duration::days(40) + Duration::hours(1),
    );
    let chain = host.acme.cert_pem();
    let files = [
        ("fullchain.pem", format!("{}{chain}", leaf.cert_pem), false),
        ("privkey.pem", leaf.key_pem.clone(), true),
        ("chain.pem", chain.to_owned(), false),
        ("cert.pem", leaf.cert_pem.clone(), false),
    ]
    .map(|(name, contents, private)| NewFile {
        name: name.to_owned(),
        contents: contents.into_bytes(),
        private,
    });
    acme_dl::install::install_set(&elsewhere, &files, &InstallOptions::default()).unwrap();

    let config = host.dir.path().join("client.toml");
    let client = &host.pki.client;
    std::fs::write(
        &config,
        format!(
            "server = \"https://127.0.0.1:9\"\ndest = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\
             ca = \"{}\"\nlineages = [\"a.example\"]\n[lineage.\"mail.example\"]\ndir = \"{}\"\n",
            host.dest.display(),
            client.cert.display(),
            client.key.display(),
            client.ca.display(),
            elsewhere.display()
        ),
    )
    .unwrap();
    let output = run_client(&[
        "--no-syslog".to_owned(),
        "--check".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        status_line(&output).starts_with(
            "ACME-DL OK - mail.example 40 days left, a.example 62 days left, client \
             certificate 300 days left | "
        ),
        "{}",
        status_line(&output)
    );
}

#[test]
fn monitor_accepts_directory_of_go_client() {
    // The Go client wrote the three files into a plain directory, without cert.pem.
    let host = Host::new();
    let now = OffsetDateTime::now_utc();
    let leaf = host.issue(
        "a.example",
        now - Duration::days(1),
        now + Duration::days(50) + Duration::hours(1),
    );
    let dir = host.dest.join("a.example");
    std::fs::create_dir_all(&dir).unwrap();
    let chain = host.acme.cert_pem();
    std::fs::write(
        dir.join("fullchain.pem"),
        format!("{}{chain}", leaf.cert_pem),
    )
    .unwrap();
    std::fs::write(dir.join("privkey.pem"), &leaf.key_pem).unwrap();
    std::fs::write(dir.join("chain.pem"), chain).unwrap();
    let output = host.monitor(&[], &["a.example"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        status_line(&output).contains("a.example 50 days left"),
        "{}",
        status_line(&output)
    );
}

#[test]
fn monitor_changes_nothing_with_server_down() {
    let deployment = Deployment::new(&["shop.example"]);
    let output = deployment.sync(&["shop.example"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let client_args = deployment.client_args(&deployment.pki.client, &["shop.example"]);
    let status = deployment.server.terminate();
    assert!(status.success(), "server exit {status}");

    // The lock is held as a normal run holds it, and the check must not wait for it.
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(deployment.dest.join(".acme-dl-client.lock"))
        .unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let before = mtimes(&deployment.dest);
    let pki_before = mtimes(&deployment.pki.dir);

    let mut args = client_args;
    args.push("--check".to_owned());
    let started = std::time::Instant::now();
    let output = run_client(&args);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the check took {:?}",
        started.elapsed()
    );
    // write_lineage issues the store's certificates for 90 days from the second it runs.
    let line = status_line(&output);
    assert!(
        line.contains("shop.example 89 days left") || line.contains("shop.example 90 days left"),
        "{line}"
    );
    assert_eq!(mtimes(&deployment.dest), before);
    assert_eq!(mtimes(&deployment.pki.dir), pki_before);
    drop(lock);
}

#[test]
fn monitor_client_certificate_near_end() {
    let host = Host::new();
    host.install_days_left("a.example", 62);
    let client = host.client_with_days_left("short", 5);
    let output = host.monitor_with(&client, &[], &["a.example"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let line = status_line(&output);
    let expected = format!(
        "ACME-DL CRITICAL - client certificate expires in 5 days ({}); a.example 62 days \
         left | 'client certificate'=5;21:;7:;; 'a.example'=62;21:;7:;;",
        date_in(5)
    );
    assert_eq!(line, expected);

    let client = host.client_with_days_left("medium", 10);
    let output = host.monitor_with(&client, &[], &["a.example"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        status_line(&output).starts_with("ACME-DL WARNING - client certificate expires in 10 days"),
        "{}",
        status_line(&output)
    );
}

#[test]
fn monitor_broken_client_certificate_is_critical() {
    let host = Host::new();
    host.install_days_left("a.example", 62);
    let mut spec = LeafSpec::new("web412", Usage::Client, 30);
    spec.not_before = OffsetDateTime::now_utc() - Duration::days(60);
    spec.not_after = OffsetDateTime::now_utc() - Duration::days(1);
    let expired = host.pki.issue("expired", &spec);
    let output = host.monitor_with(&expired, &[], &["a.example"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let line = status_line(&output);
    assert!(
        line.starts_with("ACME-DL CRITICAL - client certificate expired on "),
        "{line}"
    );

    // The key of another certificate: every run would fail to set up TLS.
    let other = host.client_with_days_left("other", 200);
    let mismatched = Identity {
        key: other.key,
        ..host.pki.client.clone()
    };
    let output = host.monitor_with(&mismatched, &[], &["a.example"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let line = status_line(&output);
    assert!(
        line.starts_with("ACME-DL CRITICAL - client certificate invalid: "),
        "{line}"
    );
    assert!(
        line.contains("the key does not match the certificate"),
        "{line}"
    );
    assert!(!line.contains("'client certificate'"), "{line}");

    let missing = Identity {
        cert: host.dir.path().join("no-such.crt"),
        ..host.pki.client.clone()
    };
    let output = host.monitor_with(&missing, &[], &["a.example"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        status_line(&output).contains("no-such.crt"),
        "{}",
        status_line(&output)
    );
}
