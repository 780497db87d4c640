//! `acme-dl demo` runs the whole loop and exits 0; with `--keep` its files work by hand.

mod support;

use std::process::{Command, Stdio};

use support::harness::{ServerProcess, binary, describe};

#[test]
fn demo_runs_every_step() {
    let output = Command::new(binary())
        .arg("demo")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for step in ["1. ", "2. ", "3. ", "4. ", "5. ", "6. ", "7. "] {
        assert!(stdout.contains(step), "step {step} missing:\n{stdout}");
    }
    assert!(stdout.contains("demo.example: up to date"), "{stdout}");
    assert!(
        stdout.contains("Modification times are unchanged"),
        "{stdout}"
    );
    assert!(stdout.contains("demo files removed"), "{stdout}");
}

#[test]
fn kept_demo_files_work_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept");
    let output = Command::new(binary())
        .args(["demo", "--keep"])
        .arg(&kept)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    for path in [
        "server.toml",
        "client.toml",
        "tls/ca.crt",
        "tls/client.key",
        "letsencrypt/live",
    ] {
        assert!(kept.join(path).exists(), "{path} not kept");
    }

    // The kept configuration names the demo's port; a fresh port avoids a clash.
    let server = ServerProcess::start(&[
        "--no-syslog".to_owned(),
        "--config".to_owned(),
        kept.join("server.toml").display().to_string(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
    ]);
    let output = Command::new(binary())
        .args(["client", "--no-syslog", "--config"])
        .arg(kept.join("client.toml"))
        .args(["--server", &server.url()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    server.wait_for_log(&["check", "client=demo-client", "outcome=up-to-date"]);
}

#[test]
fn keep_refuses_a_non_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), "precious").unwrap();
    let output = Command::new(binary())
        .args(["demo", "--keep"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not empty"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ca.crt")).unwrap(),
        "precious"
    );
}
