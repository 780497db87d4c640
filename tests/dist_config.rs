//! The example configuration files of dist/config/, which the Debian package installs as
//! /etc/acme-dl/server.toml and /etc/acme-dl/client.toml, are valid: the server accepts
//! its file with `--check-config`, and a client configured by its file syncs from that
//! server. Each file is tried as shipped and with every optional setting uncommented.
//! Paths under /etc/ are moved into a temporary directory, where a PKI made by
//! `acme-dl pki` sits at the paths the files name.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use acme_dl::pki::Authority;
use support::harness::{ServerProcess, binary, describe, pki_ok, run_client};

fn read_example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist/config")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// Moves every quoted absolute path under /etc/ below `root`.
fn rebase(text: &str, root: &Path) -> String {
    text.replace("\"/etc/", &format!("\"{}/etc/", root.display()))
}

/// Uncomments the optional settings: lines that start with `#` followed by neither a
/// space nor another `#`.
fn uncomment(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let optional = line.starts_with('#')
            && line
                .chars()
                .nth(1)
                .is_some_and(|next| next != ' ' && next != '#');
        out.push_str(if optional { &line[1..] } else { line });
        out.push('\n');
    }
    out
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Makes the PKI of the server example under `root`/etc/acme-dl/pki, with a server
/// certificate for certs.example.net that is also valid for localhost, and a Certbot
/// store with example.com under `root`/etc/letsencrypt.
fn server_host(root: &Path) {
    let pki = root.join("etc/acme-dl/pki");
    std::fs::create_dir_all(root.join("etc/acme-dl")).unwrap();
    pki_ok(&["init", "--dir", path_str(&pki)]);
    pki_ok(&[
        "server",
        "--dir",
        path_str(&pki),
        "--name",
        "certs.example.net",
        "--dns",
        "localhost",
    ]);
    let acme = Authority::new_root("dist config test ACME CA", 30).unwrap();
    support::harness::write_lineage(&root.join("etc/letsencrypt"), &acme, "example.com", 1);
}

/// Issues the client web412 and copies its files to where the client example names them
/// under `client_root`.
fn client_host(server_root: &Path, client_root: &Path) {
    let pki = server_root.join("etc/acme-dl/pki");
    pki_ok(&[
        "client",
        "--dir",
        path_str(&pki),
        "--name",
        "web412",
        "--lineage",
        "example.com",
    ]);
    let etc = client_root.join("etc/acme-dl");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(client_root.join("etc/letsencrypt/live")).unwrap();
    for (source, target) in [
        ("clients/web412.crt", "client.crt"),
        ("clients/web412.key", "client.key"),
        ("ca.crt", "ca.crt"),
    ] {
        std::fs::copy(pki.join(source), etc.join(target)).unwrap();
    }
}

fn check_server_config(config: &Path) -> Output {
    Command::new(binary())
        .args(["server", "--no-syslog", "--check-config", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn server_example_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    server_host(dir.path());
    let example = rebase(&read_example("server.toml"), dir.path());
    let variants = [
        ("as shipped", example.clone()),
        ("uncommented", uncomment(&example)),
    ];
    for (variant, text) in variants {
        let config = dir
            .path()
            .join(format!("server-{}.toml", variant.replace(' ', "-")));
        std::fs::write(&config, &text).unwrap();
        let output = check_server_config(&config);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "server.toml {variant}: {}",
            describe(&output)
        );
        assert!(stdout.contains("certbot_dir:"), "{variant}: {stdout}");
        assert!(
            stdout.contains("renewal of client certificates: on"),
            "{variant}: {stdout}"
        );
    }
}

#[test]
fn uncomment_keeps_prose_comments() {
    let text = "# prose\n#key = 1\n## heading\n#[table]\nvalue = 2\n";
    assert_eq!(
        uncomment(text),
        "# prose\nkey = 1\n## heading\n[table]\nvalue = 2\n"
    );
}

#[test]
fn client_example_syncs_from_server_example() {
    let dir = tempfile::tempdir().unwrap();
    let server_root = dir.path().join("server");
    server_host(&server_root);
    let server_config = dir.path().join("server.toml");
    std::fs::write(
        &server_config,
        rebase(&read_example("server.toml"), &server_root),
    )
    .unwrap();
    let server = ServerProcess::start(&[
        "--no-syslog".to_owned(),
        "--config".to_owned(),
        path_str(&server_config).to_owned(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
    ]);

    let client_root = dir.path().join("client");
    client_host(&server_root, &client_root);
    let example = rebase(&read_example("client.toml"), &client_root);
    // The ssl-cert group exists only where Debian's ssl-cert package is installed.
    let uncommented = uncomment(&example).replace("\"ssl-cert\"", "\"root\"");
    let installed = client_root.join("etc/letsencrypt/live/example.com/fullchain.pem");
    let variants = [("as shipped", example), ("uncommented", uncommented)];
    for (variant, text) in variants {
        let config = dir
            .path()
            .join(format!("client-{}.toml", variant.replace(' ', "-")));
        std::fs::write(&config, &text).unwrap();
        // The example's hooks reload nginx, so the flags replace them. The command line
        // names example.com, so the uncommented file's mail.example.com table is parsed
        // but not fetched.
        let args: Vec<String> = [
            "--no-syslog",
            "--config",
            path_str(&config),
            "--server",
            &server.url(),
            "--check-command",
            "true",
            "--on-change",
            "true",
            "example.com",
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
        let output = run_client(&args);
        assert!(
            output.status.success(),
            "client.toml {variant}: {}\nserver log:\n{}",
            describe(&output),
            server.log()
        );
        assert!(
            installed.exists(),
            "{variant}: {} missing",
            installed.display()
        );
    }
    server.wait_for_log(&["check", "client=web412", "lineage=example.com"]);
}
