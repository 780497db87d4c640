//! With rsyslogd running, the server's and the client's log lines arrive under facility
//! daemon with the right severities: info for events, warning and err for failures.

mod support;

use acme_dl::pki::Authority;
use support::harness::{Identity, Pki, ServerProcess, describe, run_client, write_lineage};
use support::syslog::{unique_marker, wait_for_line_count, wait_for_lines};

#[test]
fn server_and_client_log_to_syslog() {
    if !support::syslog::require_rsyslog() {
        return;
    }
    let marker = unique_marker("syslog");
    let lineage = format!("{marker}.example");
    let missing = format!("{marker}.missing");

    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"), &format!("client-{marker}"));
    let certbot = dir.path().join("letsencrypt");
    write_lineage(
        &certbot,
        &Authority::new_root("syslog test ACME", 30).unwrap(),
        &lineage,
        1,
    );
    let mut server_args: Vec<String> = [
        "--log-stderr",
        "--allow-all-clients",
        "--config",
        "/dev/null",
        "--listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    server_args.extend(["--certbot-dir".to_owned(), certbot.display().to_string()]);
    server_args.extend(pki.server.args());
    let server = ServerProcess::start(&server_args);

    let client_args = |identity: &Identity, lineages: &[&str]| {
        let mut args: Vec<String> = ["--config", "/dev/null", "--server"]
            .iter()
            .map(|arg| (*arg).to_owned())
            .collect();
        args.push(server.url());
        args.extend([
            "--dest".to_owned(),
            dir.path().join("dest").display().to_string(),
        ]);
        args.extend(identity.args());
        args.extend(lineages.iter().map(|lineage| (*lineage).to_owned()));
        args
    };
    let output = run_client(&client_args(&pki.client, &[&lineage, &missing]));
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));

    let Some(lines) = wait_for_line_count(&marker, 6) else {
        return;
    };
    let has = |parts: &[&str]| {
        lines
            .iter()
            .any(|line| parts.iter().all(|part| line.contains(part)))
    };
    assert!(
        has(&[
            "daemon.info acme-dl-server[",
            "check",
            &format!("client=client-{marker}"),
            &lineage
        ]),
        "{lines:#?}"
    );
    assert!(
        has(&[
            "daemon.info acme-dl-server[",
            "download",
            "file=privkey.pem"
        ]),
        "{lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|line| line.contains("download") && line.contains("bytes=0")),
        "{lines:#?}"
    );
    assert!(
        has(&[
            "daemon.warning acme-dl-server[",
            "lineage not found",
            &missing
        ]),
        "{lines:#?}"
    );
    assert!(
        has(&["daemon.info acme-dl[", "file installed", &lineage]),
        "{lines:#?}"
    );
    assert!(
        has(&["daemon.err acme-dl[", "lineage failed", &missing]),
        "{lines:#?}"
    );

    // A client from another CA: the rejected handshake is a warning naming its subject.
    let other_dir = tempfile::tempdir().unwrap();
    let intruder = Pki::new(other_dir.path(), &format!("intruder-{marker}"));
    let identity = Identity {
        ca: pki.server.ca.clone(),
        ..intruder.client.clone()
    };
    let output = run_client(&client_args(&identity, &[&lineage]));
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let Some(lines) = wait_for_lines(&format!("CN=intruder-{marker}")) else {
        return;
    };
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("daemon.warning acme-dl-server[")
                && line.contains("TLS handshake failed")
                && line.contains("peer=127.0.0.1:")),
        "{lines:#?}"
    );
}

#[test]
fn pki_commands_log_what_they_issue() {
    if !support::syslog::require_rsyslog() {
        return;
    }
    let marker = unique_marker("pki");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let ca = ca.to_str().unwrap();
    support::harness::pki_ok(&["init", "--dir", ca]);
    support::harness::pki_ok(&["client", "--dir", ca, "--name", &marker]);
    support::harness::pki_ok(&["revoke", "--dir", ca, &marker]);

    let Some(lines) = wait_for_line_count(&marker, 2) else {
        return;
    };
    let has = |parts: &[&str]| {
        lines
            .iter()
            .any(|line| parts.iter().all(|part| line.contains(part)))
    };
    assert!(
        has(&[
            "daemon.info acme-dl-pki[",
            "certificate issued",
            "kind=client"
        ]),
        "{lines:#?}"
    );
    assert!(
        has(&["daemon.info acme-dl-pki[", "certificate revoked"]),
        "{lines:#?}"
    );
}
