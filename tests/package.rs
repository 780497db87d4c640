//! The Debian package: `cargo deb` builds it, dpkg installs it, its files are in place
//! and work, and `dpkg --purge` removes it again. The test needs root, cargo-deb, dpkg,
//! systemd-analyze and man (scripts/install-test-deps installs them). It fails at once
//! on a host where an acme-dl package or /etc/acme-dl already exists, because the purge
//! at its end would remove them.
//!
//! The package wraps the binary that `cargo test` built, in the dev profile unless the
//! tests ran with another, so the test adds seconds, not the minutes of a release build.
//! `cargo deb` without flags packages a release build with the same files.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::harness::describe;

const PACKAGE: &str = "acme-dl";
const UNITS: &[&str] = &[
    "acme-dl-server.service",
    "acme-dl-client.service",
    "acme-dl-client.timer",
];
const UNIT_DIR: &str = "/usr/lib/systemd/system";
/// Highest `systemd-analyze security` exposure accepted for the server's unit, which
/// scored 1.6 with systemd 252. A loosened sandbox raises the score.
const MAX_SERVER_EXPOSURE: f64 = 2.0;

/// Files the package installs, besides the units.
const FILES: &[&str] = &[
    "/usr/bin/acme-dl",
    "/usr/share/man/man1/acme-dl.1.gz",
    "/usr/share/bash-completion/completions/acme-dl",
    "/usr/share/zsh/vendor-completions/_acme-dl",
    "/usr/share/fish/vendor_completions.d/acme-dl.fish",
    "/usr/share/doc/acme-dl/examples/cron.d/acme-dl",
    "/etc/acme-dl/server.toml",
    "/etc/acme-dl/client.toml",
];

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("running {}: {error}", program.display()))
}

fn run_ok(program: &Path, args: &[&str]) -> Output {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{} {args:?}: {}",
        program.display(),
        describe(&output)
    );
    output
}

/// Returns dpkg's status of the package, such as "installed", or "" when dpkg has no
/// record of it.
fn package_status(dpkg_query: &Path) -> String {
    let output = run(
        dpkg_query,
        &["--show", "--showformat=${db:Status-Status}", PACKAGE],
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Purges the package when dropped, so a failed check or a failed `dpkg --install`
/// leaves no package behind, installed or half-installed.
struct InstalledPackage {
    dpkg: PathBuf,
    purged: bool,
}

impl InstalledPackage {
    fn purge(&mut self) -> Output {
        self.purged = true;
        run(&self.dpkg, &["--purge", PACKAGE])
    }
}

impl Drop for InstalledPackage {
    fn drop(&mut self) {
        if self.purged {
            return;
        }
        let output = self.purge();
        if !output.status.success() {
            support::print_uncaptured(&format!(
                "dpkg --purge {PACKAGE} failed after a failed test; remove it by hand: {}",
                describe(&output)
            ));
        }
    }
}

struct Programs {
    cargo_deb: PathBuf,
    dpkg: PathBuf,
    dpkg_query: PathBuf,
    systemd_analyze: PathBuf,
    man: PathBuf,
}

/// Finds the programs the test runs, or returns `None` after reporting the test as
/// skipped (a failure under `CI=true`).
fn programs() -> Option<Programs> {
    let cargo_deb = support::require_program("cargo-deb")?;
    let dpkg = support::require_program("dpkg")?;
    let dpkg_query = support::require_program("dpkg-query")?;
    let systemd_analyze = support::require_program("systemd-analyze")?;
    let man = support::require_program("man")?;
    if !rustix::process::geteuid().is_root() {
        support::skip_test("dpkg --install needs root");
        return None;
    }
    Some(Programs {
        cargo_deb,
        dpkg,
        dpkg_query,
        systemd_analyze,
        man,
    })
}

/// Panics unless the host has neither the package nor files at its paths, which the
/// purge at the end of the test would remove.
fn assert_host_clean(programs: &Programs) {
    let status = package_status(&programs.dpkg_query);
    assert!(
        status.is_empty() || status == "not-installed",
        "package {PACKAGE} is already on this host (status {status:?}); the test installs \
         and purges it, so remove it first with dpkg --purge {PACKAGE}"
    );
    for path in ["/etc/acme-dl", "/usr/bin/acme-dl"] {
        assert!(
            !Path::new(path).exists(),
            "{path} exists; the test installs and purges the package, which would \
             replace or remove it, so move it away first"
        );
    }
}

/// Returns the Cargo profile that built the binary under test, from the name of its
/// directory: `target/debug` for the dev profile, `target/NAME` for the others.
fn binary_profile() -> String {
    let binary = Path::new(support::harness::binary());
    let directory = binary.parent().and_then(Path::file_name).unwrap();
    match directory.to_str().unwrap() {
        "debug" => "dev".to_owned(),
        name => name.to_owned(),
    }
}

fn build_package(programs: &Programs, out: &Path) -> PathBuf {
    let deb = out.join("acme-dl.deb");
    let manifest = repository().join("Cargo.toml");
    let profile = binary_profile();
    // NOTE: cargo-deb 3.8 warns that packaging the dev profile will become an error in
    // a later version, so scripts/install-test-deps pins 3.8.0.
    run_ok(
        &programs.cargo_deb,
        &[
            "--manifest-path",
            manifest.to_str().unwrap(),
            "--no-build",
            "--profile",
            &profile,
            "--fast",
            "--output",
            deb.to_str().unwrap(),
        ],
    );
    deb
}

fn check_files() {
    for path in FILES {
        assert!(Path::new(path).is_file(), "{path} missing after install");
    }
    for unit in UNITS {
        let path = Path::new(UNIT_DIR).join(unit);
        assert!(path.is_file(), "{} missing after install", path.display());
    }
    for name in ["server.toml", "client.toml"] {
        let installed = std::fs::read(Path::new("/etc/acme-dl").join(name)).unwrap();
        let shipped = std::fs::read(repository().join("dist/config").join(name)).unwrap();
        assert!(
            installed == shipped,
            "/etc/acme-dl/{name} differs from dist/config/{name}"
        );
    }
}

fn check_conffiles(programs: &Programs) {
    let output = run_ok(
        &programs.dpkg_query,
        &["--show", "--showformat=${Conffiles}", PACKAGE],
    );
    let conffiles = String::from_utf8_lossy(&output.stdout);
    for path in ["/etc/acme-dl/server.toml", "/etc/acme-dl/client.toml"] {
        assert!(
            conffiles.lines().any(|line| line.trim().starts_with(path)),
            "{path} is not a conffile: {conffiles}"
        );
    }
}

fn check_version() {
    let output = run_ok(Path::new("/usr/bin/acme-dl"), &["--version"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.trim(),
        format!("acme-dl {}", env!("CARGO_PKG_VERSION"))
    );
}

fn check_man_page(programs: &Programs) {
    let output = Command::new(&programs.man)
        .arg("acme-dl")
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "man acme-dl: {}",
        describe(&output)
    );
    assert!(text.contains("EXIT STATUS"), "{text}");
    assert!(text.contains("CLIENT OPTIONS"), "{text}");
}

fn check_units(programs: &Programs) {
    let paths: Vec<String> = UNITS
        .iter()
        .map(|unit| format!("{UNIT_DIR}/{unit}"))
        .collect();
    let mut args = vec!["verify"];
    args.extend(paths.iter().map(String::as_str));
    let output = run_ok(&programs.systemd_analyze, &args);
    // verify prints an unknown setting as a warning and still exits 0 (systemd 252).
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");

    let server_unit = format!("{UNIT_DIR}/acme-dl-server.service");
    let output = run_ok(
        &programs.systemd_analyze,
        &["security", "--offline=true", &server_unit],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let exposure: f64 = stdout
        .lines()
        .find_map(|line| line.split("acme-dl-server.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {stdout}"));
    assert!(
        exposure <= MAX_SERVER_EXPOSURE,
        "acme-dl-server.service exposure {exposure} is above {MAX_SERVER_EXPOSURE}: {stdout}"
    );
}

fn check_removed(programs: &Programs) {
    let status = package_status(&programs.dpkg_query);
    assert!(
        status.is_empty() || status == "not-installed",
        "package status after purge: {status:?}"
    );
    for path in FILES.iter().chain(&["/etc/acme-dl"]) {
        assert!(!Path::new(path).exists(), "{path} left after purge");
    }
    for unit in UNITS {
        let path = Path::new(UNIT_DIR).join(unit);
        assert!(!path.exists(), "{} left after purge", path.display());
    }
}

#[test]
fn package_installs_and_purges() {
    let Some(programs) = programs() else {
        return;
    };
    assert_host_clean(&programs);
    let dir = tempfile::tempdir().unwrap();
    let deb = build_package(&programs, dir.path());

    let mut package = InstalledPackage {
        dpkg: programs.dpkg.clone(),
        purged: false,
    };
    run_ok(&programs.dpkg, &["--install", deb.to_str().unwrap()]);
    check_files();
    check_conffiles(&programs);
    check_version();
    check_man_page(&programs);
    check_units(&programs);

    let output = package.purge();
    assert!(
        output.status.success(),
        "dpkg --purge: {}",
        describe(&output)
    );
    check_removed(&programs);
}
