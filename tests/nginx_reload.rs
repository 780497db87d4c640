//! Real-world test with Debian's nginx: the client installs a lineage that nginx serves,
//! and its `check` and `on_change` hooks test the configuration and reload nginx after a
//! renewal. `openssl s_client` reads the serial that nginx actually serves.
//!
//! nginx listens on 127.0.0.1 only, with a configuration, pid file, logs and temporary
//! directories of its own in a temporary directory, so the system's nginx setup is unused.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use acme_dl::pki::Authority;
use support::harness::{Pki, ServerProcess, describe, run_client, write_lineage};
use tempfile::TempDir;

/// Lineage served by nginx. `write_lineage` issues its leaf for this name.
const LINEAGE: &str = "shop.example";

/// Time allowed for nginx to start listening, and for a reload to reach the workers.
const NGINX_WAIT: Duration = Duration::from_secs(10);

/// Time allowed for one `openssl` command.
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(10);

/// Returns whether nginx and openssl are installed, or reports the test as skipped.
fn programs_present() -> bool {
    support::require_program("nginx").is_some() && support::require_program("openssl").is_some()
}

/// An acme-dl server over a store with version 1 of [`LINEAGE`], and a client destination.
struct Setup {
    dir: TempDir,
    pki: Pki,
    acme: Authority,
    certbot: PathBuf,
    dest: PathBuf,
    server: ServerProcess,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&dir.path().join("pki"), "web1");
        let acme = Authority::new_root("test ACME CA", 30).unwrap();
        let certbot = dir.path().join("letsencrypt");
        write_lineage(&certbot, &acme, LINEAGE, 1);
        let mut args: Vec<String> = vec![
            "--no-syslog".into(),
            "--allow-all-clients".into(),
            "--config".into(),
            "/dev/null".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--certbot-dir".into(),
            certbot.display().to_string(),
        ];
        args.extend(pki.server.args());
        let server = ServerProcess::start(&args);
        let dest = dir.path().join("dest");
        Setup {
            dir,
            pki,
            acme,
            certbot,
            dest,
            server,
        }
    }

    /// Runs the client for [`LINEAGE`] with `extra` arguments.
    fn sync(&self, extra: &[String]) -> Output {
        let mut args: Vec<String> = vec![
            "--no-syslog".into(),
            "--config".into(),
            "/dev/null".into(),
            "--server".into(),
            self.server.url(),
            "--dest".into(),
            self.dest.display().to_string(),
            "--hook-timeout".into(),
            "30".into(),
        ];
        args.extend(self.pki.client.args());
        args.extend(extra.iter().cloned());
        args.push(LINEAGE.into());
        run_client(&args)
    }

    fn store_file(&self, name: &str) -> PathBuf {
        self.certbot.join("live").join(LINEAGE).join(name)
    }

    fn installed_file(&self, name: &str) -> PathBuf {
        self.dest.join(LINEAGE).join(name)
    }

    /// Returns the serial of the store's current `cert.pem`, as `openssl x509 -serial` prints it.
    fn store_serial(&self) -> String {
        let output = run_bounded(
            Command::new("openssl")
                .args(["x509", "-noout", "-serial", "-in"])
                .arg(self.store_file("cert.pem")),
            None,
        );
        assert!(output.status.success(), "{}", describe(&output));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }
}

/// An nginx master process started with its own configuration and prefix directory.
struct Nginx {
    child: Child,
    config: PathBuf,
    prefix: PathBuf,
    port: u16,
}

impl Nginx {
    /// Writes a configuration that serves `DEST/shop.example` on a free port of 127.0.0.1,
    /// starts nginx in the foreground, and waits until it accepts connections.
    fn start(prefix: &Path, dest: &Path) -> Nginx {
        std::fs::create_dir_all(prefix).unwrap();
        let port = free_port();
        let config = prefix.join("nginx.conf");
        std::fs::write(&config, nginx_config(prefix, dest, port)).unwrap();
        let mut command = Command::new("nginx");
        command
            .args(nginx_args(&config, prefix))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(prefix.join("stderr.log")).unwrap(),
            ))
            .process_group(0);
        let child = command.spawn().unwrap();
        let mut nginx = Nginx {
            child,
            config,
            prefix: prefix.to_owned(),
            port,
        };
        nginx.wait_until_listening();
        nginx
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + NGINX_WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("nginx exited with {status} at start\n{}", self.logs());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on 127.0.0.1:{} within {NGINX_WAIT:?}\n{}",
                self.port,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Returns a shell command that runs nginx with this configuration and `signal_args`.
    fn shell_command(&self, signal_args: &str) -> String {
        format!(
            "nginx {signal_args} -c {} -p {}",
            shell_quote(&self.config),
            shell_quote(&self.prefix)
        )
    }

    /// Returns the serial of the certificate that nginx serves for shop.example.
    fn served_serial(&self) -> String {
        let handshake = run_bounded(
            Command::new("openssl")
                .arg("s_client")
                .arg("-connect")
                .arg(format!("127.0.0.1:{}", self.port))
                .args(["-servername", LINEAGE]),
            None,
        );
        assert!(
            handshake.status.success(),
            "openssl s_client failed\n{}\n{}",
            describe(&handshake),
            self.logs()
        );
        let parsed = run_bounded(
            Command::new("openssl").args(["x509", "-noout", "-serial"]),
            Some(&handshake.stdout),
        );
        assert!(
            parsed.status.success(),
            "openssl x509 could not read the served certificate\n{}\n{}",
            describe(&parsed),
            describe(&handshake)
        );
        String::from_utf8(parsed.stdout).unwrap().trim().to_owned()
    }

    /// Polls the served serial until it equals `expected`, for at most [`NGINX_WAIT`].
    fn wait_for_serial(&self, expected: &str) {
        let deadline = Instant::now() + NGINX_WAIT;
        loop {
            let served = self.served_serial();
            if served == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx still serves {served} after {NGINX_WAIT:?}, expected {expected}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Returns nginx's error log and standard error, for assertion messages.
    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.prefix.join(name)).unwrap_or_default();
        format!(
            "nginx error.log:\n{}\nnginx stderr:\n{}",
            read("error.log"),
            read("stderr.log")
        )
    }
}

impl Drop for Nginx {
    /// Asks nginx to quit gracefully, then kills its process group if the master still runs
    /// after five seconds. The group matters because workers outlive a killed master.
    fn drop(&mut self) {
        let _ = Command::new("nginx")
            .args(["-s", "quit"])
            .args(nginx_args(&self.config, &self.prefix))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = rustix::process::kill_process_group(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::KILL,
        );
        let _ = self.child.wait();
    }
}

fn nginx_args(config: &Path, prefix: &Path) -> Vec<String> {
    vec![
        "-c".into(),
        config.display().to_string(),
        "-p".into(),
        prefix.display().to_string(),
    ]
}

/// Builds an nginx configuration whose files all live under `prefix`.
///
/// The master runs in the foreground (`daemon off`) as a child of the test, in a process
/// group of its own, so the test can kill it and its workers when `nginx -s quit` fails.
/// There is no `user` directive: the master reads the certificate and key, and under root
/// its workers run as nginx's default user `nobody`.
fn nginx_config(prefix: &Path, dest: &Path, port: u16) -> String {
    let prefix = prefix.display();
    let certificate = dest.join(LINEAGE).join("fullchain.pem");
    let key = dest.join(LINEAGE).join("privkey.pem");
    format!(
        "daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{
    worker_connections 64;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {LINEAGE};
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        location / {{
            return 200 \"ok\\n\";
        }}
    }}
}}
",
        certificate = certificate.display(),
        key = key.display(),
    )
}

/// Returns a port of 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Quotes `path` for /bin/sh.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// Runs `command` with `input` on its standard input (or none), and kills it after
/// [`OPENSSL_TIMEOUT`] so that a stuck handshake cannot hang the test.
fn run_bounded(command: &mut Command, input: Option<&[u8]>) -> Output {
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = input {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(bytes).unwrap();
    }
    let deadline = Instant::now() + OPENSSL_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{command:?} timed out after {OPENSSL_TIMEOUT:?}\n{}",
                describe(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn renewal_reaches_nginx_after_reload() {
    if !programs_present() {
        return;
    }
    let setup = Setup::new();
    let output = setup.sync(&[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let nginx = Nginx::start(&setup.dir.path().join("nginx"), &setup.dest);
    let old_serial = setup.store_serial();
    assert_eq!(nginx.served_serial(), old_serial);

    write_lineage(&setup.certbot, &setup.acme, LINEAGE, 2);
    let new_serial = setup.store_serial();
    assert_ne!(new_serial, old_serial);
    let marker = setup.dir.path().join("changed-lineages");
    let on_change = format!(
        "{} && printf '%s' \"$ACME_DL_CHANGED_LINEAGES\" > {}",
        nginx.shell_command("-s reload"),
        shell_quote(&marker)
    );
    let output = setup.sync(&[
        "--check-command".into(),
        nginx.shell_command("-t"),
        "--on-change".into(),
        on_change,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    nginx.wait_for_serial(&new_serial);
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        LINEAGE,
        "ACME_DL_CHANGED_LINEAGES seen by on_change"
    );
    assert_eq!(
        std::fs::read(setup.installed_file("privkey.pem")).unwrap(),
        std::fs::read(setup.store_file("privkey.pem")).unwrap()
    );
    assert_eq!(
        std::fs::read(setup.installed_file("fullchain.pem")).unwrap(),
        std::fs::read(setup.store_file("fullchain.pem")).unwrap()
    );
}

#[test]
fn failed_check_restores_previous_set() {
    if !programs_present() {
        return;
    }
    let setup = Setup::new();
    let output = setup.sync(&[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let nginx = Nginx::start(&setup.dir.path().join("nginx"), &setup.dest);
    let old_serial = setup.store_serial();
    assert_eq!(nginx.served_serial(), old_serial);
    let old_key = std::fs::read(setup.installed_file("privkey.pem")).unwrap();
    let old_fullchain = std::fs::read(setup.installed_file("fullchain.pem")).unwrap();

    write_lineage(&setup.certbot, &setup.acme, LINEAGE, 2);
    let new_serial = setup.store_serial();
    let marker = setup.dir.path().join("on-change-ran");
    let on_change = format!(
        "touch {} && {}",
        shell_quote(&marker),
        nginx.shell_command("-s reload")
    );
    let output = setup.sync(&[
        "--check-command".into(),
        "false".into(),
        "--on-change".into(),
        on_change.clone(),
    ]);
    assert_eq!(output.status.code(), Some(7), "{}", describe(&output));
    assert!(
        !marker.exists(),
        "on_change ran although check failed\n{}",
        describe(&output)
    );
    assert_eq!(
        std::fs::read(setup.installed_file("privkey.pem")).unwrap(),
        old_key,
        "privkey.pem is not the previous key"
    );
    assert_eq!(
        std::fs::read(setup.installed_file("fullchain.pem")).unwrap(),
        old_fullchain,
        "fullchain.pem is not the previous chain"
    );
    assert_eq!(nginx.served_serial(), old_serial);

    // The restored set still differs from the store, so the next run with a passing check
    // installs the renewal and reloads nginx.
    let output = setup.sync(&[
        "--check-command".into(),
        nginx.shell_command("-t"),
        "--on-change".into(),
        on_change,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        marker.exists(),
        "on_change did not run\n{}",
        describe(&output)
    );
    nginx.wait_for_serial(&new_serial);
}
