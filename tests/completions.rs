//! The shell completions in dist/completions/ are generated from the command-line
//! definitions; this test fails when one is out of date. Regenerate them with
//! `ACME_DL_UPDATE_COMPLETIONS=1 cargo test --test completions`.

mod support;

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

/// Shells with a completion file, and the file's name in dist/completions/, which is the
/// name each shell looks up in its completion directory.
const SHELLS: &[(Shell, &str)] = &[
    (Shell::Bash, "acme-dl"),
    (Shell::Zsh, "_acme-dl"),
    (Shell::Fish, "acme-dl.fish"),
];

fn render(shell: Shell) -> Vec<u8> {
    let mut command = acme_dl::cli::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "acme-dl", &mut out);
    out
}

#[test]
fn completions_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/completions");
    let update = std::env::var_os("ACME_DL_UPDATE_COMPLETIONS").is_some();
    let mut stale = Vec::new();
    for (shell, name) in SHELLS {
        let path = dir.join(name);
        let rendered = render(*shell);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &rendered).unwrap();
        }
        if std::fs::read(&path).unwrap_or_default() != rendered {
            stale.push(format!("dist/completions/{name}"));
        }
    }
    assert!(
        stale.is_empty(),
        "{} out of date; run ACME_DL_UPDATE_COMPLETIONS=1 cargo test --test completions",
        stale.join(", ")
    );
}

#[test]
fn bash_completion_loads() {
    let Some(bash) = support::require_program("bash") else {
        return;
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/completions/acme-dl");
    let script = format!("source {}; complete -p acme-dl", path.to_str().unwrap());
    let output = std::process::Command::new(bash)
        .args(["--norc", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("acme-dl"), "{stdout}");
}
