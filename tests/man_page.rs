//! The man page, docs/acme-dl.1, is generated from the command-line definitions plus the
//! sections below; this test fails when it is out of date. Regenerate it with
//! `ACME_DL_UPDATE_MAN=1 cargo test --test man_page`.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "Every requested lineage is current or was updated. The server exits 0 after SIGTERM or SIGINT.",
    ),
    (
        "1",
        "With --exit-code only: a lineage was updated and everything succeeded.",
    ),
    (
        "2",
        "Configuration: a bad flag, an unreadable or invalid file, URL, certificate or key, an expired client certificate, or an invalid lineage name. Nothing was fetched.",
    ),
    (
        "3",
        "Server unreachable: refused, timed out or saturated after every retry, or its certificate is not trusted or not valid for the host of the URL.",
    ),
    (
        "4",
        "Rejected by the server: an HTTP error such as 404 for an unknown lineage or 500 for a lineage broken on the server, a TLS alert against the client's certificate, or a refused renewal of the client certificate.",
    ),
    (
        "5",
        "Verification failed: the downloaded set is incomplete, inconsistent, expired, for other names, or differs from the announced hashes. Nothing was installed.",
    ),
    (
        "6",
        "Install failed: reading or writing local files failed, for example on a full disk. The previous set is kept.",
    ),
    (
        "7",
        "A hook failed: an on_change command failed (the new files stay installed), or a check command failed and the previous sets were restored.",
    ),
    ("8", "Another run held the lock for the whole run timeout."),
    (
        "client \\-\\-monitor",
        "Exits as a monitoring plugin instead, and the statuses above do not apply: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. A usage error of a command line with --check is UNKNOWN.",
    ),
];

const EXAMPLES: &str = r#".SH EXAMPLES
Fetch two lineages and reload nginx when either changed:
.PP
.nf
acme\-dl client \-\-server https://certs.example.net:8443 \e
    \-\-on\-change "systemctl reload nginx" example.com mail.example.com
.fi
.PP
A cron line that spreads a fleet over 30 minutes:
.PP
.nf
17 */6 * * * root /usr/local/bin/acme\-dl client \-\-splay 30m \-\-on\-change "systemctl reload nginx"
.fi
.PP
A Makefile rule that reloads only when files changed:
.PP
.nf
\&.PHONY: certs
certs:
	acme\-dl client \-\-exit\-code example.com; status=$$?; \e
	if [ $$status \-eq 1 ]; then systemctl reload nginx; \e
	elif [ $$status \-ne 0 ]; then exit $$status; fi
.fi
.PP
A check for Nagios or Icinga, run on the client host: WARNING when a certificate has fewer
than 21 days left, CRITICAL below 7:
.PP
.nf
acme\-dl client \-\-monitor \-\-warn 21 \-\-crit 7
.fi
.PP
A private CA, a server certificate and a first client:
.PP
.nf
acme\-dl pki init \-\-dir /etc/acme\-dl/pki
acme\-dl pki server \-\-dir /etc/acme\-dl/pki \-\-name certs.example.net
acme\-dl pki client \-\-dir /etc/acme\-dl/pki \-\-name web412 \-\-lineage example.com
.fi
.PP
The daily client run of the Debian package's systemd timer, and the server:
.PP
.nf
systemctl enable \-\-now acme\-dl\-client.timer
systemctl enable \-\-now acme\-dl\-server.service
.fi
"#;

const FILES: &str = r#".SH FILES
.TP
/etc/acme\-dl/server.toml, /etc/acme\-dl/client.toml
Configuration files, read when they exist and \-\-config is not given.
.TP
DEST/NAME \-> .NAME.acme\-dl/set\-NNNN
A lineage installed by the client: a link switched atomically to the current version.
.TP
DEST/.acme\-dl\-client.lock
The lock shared by client runs.
.TP
DIR/ca.crt, DIR/client\-trust.pem, DIR/crl.pem, DIR/index.json
A PKI made by acme\-dl pki init: the root that clients trust, the server's ca and crl settings, and the index of issued certificates. docs/pki.md describes every file.
.TP
acme\-dl\-server.service, acme\-dl\-client.service, acme\-dl\-client.timer
The systemd units of the Debian package, in /usr/lib/systemd/system. docs/install.md describes their sandbox.
"#;

fn render() -> Vec<u8> {
    let command = acme_dl::cli::Cli::command();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(&mut out).unwrap();
    man.render_name_section(&mut out).unwrap();
    man.render_synopsis_section(&mut out).unwrap();
    man.render_description_section(&mut out).unwrap();
    man.render_options_section(&mut out).unwrap();
    // clap_mangen names one page per subcommand; this page documents them all.
    let mut subcommands = Vec::new();
    man.render_subcommands_section(&mut subcommands).unwrap();
    let subcommands = String::from_utf8(subcommands).unwrap();
    for name in ["server", "client", "demo", "pki", "help"] {
        let page = format!("acme\\-dl\\-{name}(1)");
        assert!(
            subcommands.contains(&page),
            "{page} missing from {subcommands}"
        );
    }
    let subcommands =
        ["server", "client", "demo", "pki", "help"]
            .iter()
            .fold(subcommands, |text, name| {
                text.replace(
                    &format!("acme\\-dl\\-{name}(1)"),
                    &format!("acme\\-dl {name}"),
                )
            });
    out.extend_from_slice(subcommands.as_bytes());
    for name in ["server", "client", "demo"] {
        let subcommand = command.find_subcommand(name).unwrap().clone();
        render_options(&mut out, subcommand, name);
    }
    // Each pki command has options of its own; the group has none beyond the global ones.
    let pki = command.find_subcommand("pki").unwrap();
    for subcommand in pki.get_subcommands() {
        let title = format!("pki {}", subcommand.get_name());
        render_options(&mut out, subcommand.clone(), &title);
    }
    writeln!(out, ".SH \"EXIT STATUS\"").unwrap();
    for (code, meaning) in EXIT_STATUS {
        writeln!(out, ".TP\n\\fB{code}\\fR\n{}", meaning.replace('-', "\\-")).unwrap();
    }
    out.extend_from_slice(FILES.as_bytes());
    out.extend_from_slice(EXAMPLES.as_bytes());
    out.extend_from_slice(b".SH \"SEE ALSO\"\ncertbot(1), systemd.timer(5), crontab(5)\n");
    out
}

/// Appends the options section of `command`, titled "NAME OPTIONS".
fn render_options(out: &mut Vec<u8>, command: clap::Command, name: &str) {
    let mut section = Vec::new();
    clap_mangen::Man::new(command)
        .render_options_section(&mut section)
        .unwrap();
    let text = String::from_utf8(section).unwrap().replacen(
        ".SH OPTIONS",
        &format!(".SH \"{} OPTIONS\"", name.to_uppercase()),
        1,
    );
    out.extend_from_slice(text.as_bytes());
}

#[test]
fn man_page_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/acme-dl.1");
    let rendered = render();
    if std::env::var_os("ACME_DL_UPDATE_MAN").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "docs/acme-dl.1 is out of date; run ACME_DL_UPDATE_MAN=1 cargo test --test man_page"
    );
}

#[test]
fn man_page_renders() {
    let Ok(output) = std::process::Command::new("man")
        .args(["--warnings", "-l"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/acme-dl.1"))
        .env("MANWIDTH", "100")
        .output()
    else {
        eprintln!("skipped: man is not installed");
        return;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("EXIT STATUS"), "{text}");
    assert!(text.contains("CLIENT OPTIONS"), "{text}");
}
