use super::*;
use std::sync::Arc;

const NAMES: [&str; 3] = ["fullchain.pem", "privkey.pem", "chain.pem"];

fn set(tag: &str) -> Vec<NewFile> {
    NAMES
        .iter()
        .map(|name| NewFile {
            name: (*name).to_owned(),
            contents: format!("{tag} {name}\n").into_bytes(),
            private: *name == "privkey.pem",
        })
        .collect()
}

/// Returns the tag of the complete set at `dir`, or a description of what is wrong.
fn read_set(dir: &Path) -> Result<String, String> {
    let mut tags = Vec::new();
    for name in NAMES {
        let text =
            fs::read_to_string(dir.join(name)).map_err(|error| format!("{name}: {error}"))?;
        let tag = text.split(' ').next().unwrap_or_default().to_owned();
        if text != format!("{tag} {name}\n") {
            return Err(format!("{name} is partial: {text:?}"));
        }
        tags.push(tag);
    }
    tags.dedup();
    match tags.as_slice() {
        [tag] => Ok(tag.clone()),
        _ => Err(format!("mixed set: {tags:?}")),
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    let layout = Layout::new(dir).unwrap();
    let mut found: Vec<String> = fs::read_dir(&layout.store)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(STAGING_PREFIX))
        .collect();
    if fs::symlink_metadata(layout.link_staging()).is_ok() {
        found.push("link staging".to_owned());
    }
    found
}

fn steps(file_count: usize, legacy: bool) -> Vec<Step> {
    let mut steps = vec![Step::CreateStaging];
    steps.extend((0..file_count).map(Step::WroteFile));
    steps.extend([Step::PublishVersion, Step::CreateLink, Step::SwitchLink]);
    if legacy {
        steps.push(Step::MoveLegacy);
    }
    steps.push(Step::Prune);
    steps
}

#[test]
fn install_links_lineage_to_new_version() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("example.com");
    let first = install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();
    assert_eq!(read_set(&dir), Ok("A".to_owned()));
    assert!(first.previous.is_none());
    assert_eq!(
        fs::read_link(&dir).unwrap(),
        PathBuf::from(".example.com.acme-dl/set-0001")
    );

    let second = install_set(&dir, &set("B"), &InstallOptions::default()).unwrap();
    assert_eq!(read_set(&dir), Ok("B".to_owned()));
    assert_eq!(second.previous, Some(first.version));
}

#[test]
fn modes_are_exact_under_any_umask() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("example.com");
    install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();
    let mode = |name: &str| fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("privkey.pem"), 0o600);
    assert_eq!(mode("fullchain.pem"), 0o644);

    let options = InstallOptions {
        ownership: Ownership {
            key_mode: Some(0o640),
            cert_mode: Some(0o444),
            ..Ownership::default()
        },
        keep_previous: 1,
    };
    install_set(&dir, &set("B"), &options).unwrap();
    assert_eq!(mode("privkey.pem"), 0o640);
    assert_eq!(mode("chain.pem"), 0o444);
}

#[test]
fn replacement_keeps_modes_without_other_bits_for_keys() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("example.com");
    install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();
    fs::set_permissions(dir.join("privkey.pem"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(dir.join("chain.pem"), fs::Permissions::from_mode(0o640)).unwrap();
    install_set(&dir, &set("B"), &InstallOptions::default()).unwrap();
    let mode = |name: &str| fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("privkey.pem"), 0o640);
    assert_eq!(mode("chain.pem"), 0o640);
    assert_eq!(mode("fullchain.pem"), 0o644);
}

#[test]
fn replacement_keeps_owner_and_group() {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("example.com");
    install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();
    for name in NAMES {
        std::os::unix::fs::chown(dir.join(name), Some(4242), Some(4343)).unwrap();
    }
    install_set(&dir, &set("B"), &InstallOptions::default()).unwrap();
    for name in NAMES {
        let metadata = fs::metadata(dir.join(name)).unwrap();
        assert_eq!(metadata.uid(), 4242, "{name}");
        assert_eq!(metadata.gid(), 4343, "{name}");
    }
    let configured = InstallOptions {
        ownership: Ownership {
            gid: Some(4444),
            ..Ownership::default()
        },
        keep_previous: 2,
    };
    install_set(&dir, &set("C"), &configured).unwrap();
    assert_eq!(fs::metadata(dir.join("privkey.pem")).unwrap().gid(), 4444);
}

#[test]
fn crash_at_every_step_leaves_a_complete_set() {
    for legacy in [false, true] {
        for crash_at in steps(NAMES.len(), legacy) {
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join("example.com");
            if legacy {
                fs::create_dir(&dir).unwrap();
                for file in set("A") {
                    fs::write(dir.join(&file.name), &file.contents).unwrap();
                }
            } else {
                install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();
            }

            let result =
                install_set_with_faults(&dir, &set("B"), &InstallOptions::default(), &mut |step| {
                    if step == crash_at { Err(Crash) } else { Ok(()) }
                });
            assert!(result.is_err(), "legacy={legacy} {crash_at:?}: no crash");
            let tag = read_set(&dir)
                .unwrap_or_else(|error| panic!("legacy={legacy} crash at {crash_at:?}: {error}"));
            assert!(
                tag == "A" || tag == "B",
                "legacy={legacy} {crash_at:?}: {tag}"
            );

            // The next run repairs whatever the crash left.
            install_set(&dir, &set("C"), &InstallOptions::default()).unwrap();
            assert_eq!(
                read_set(&dir),
                Ok("C".to_owned()),
                "legacy={legacy} {crash_at:?}"
            );
            assert_eq!(
                leftovers(&dir),
                Vec::<String>::new(),
                "legacy={legacy} {crash_at:?}"
            );
            if legacy {
                // The operator's original files survive as a version until pruned.
                let layout = Layout::new(&dir).unwrap();
                assert!(layout.versions().len() >= 2, "legacy {crash_at:?}");
            }
        }
    }
}

#[test]
fn legacy_directory_becomes_previous_version() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("example.com");
    fs::create_dir(&dir).unwrap();
    for file in set("OLD") {
        fs::write(dir.join(&file.name), &file.contents).unwrap();
    }
    let installed = install_set(&dir, &set("NEW"), &InstallOptions::default()).unwrap();
    assert_eq!(read_set(&dir), Ok("NEW".to_owned()));
    let previous = installed.previous.unwrap();
    assert_eq!(read_set(&previous), Ok("OLD".to_owned()));

    rollback(&dir).unwrap();
    assert_eq!(read_set(&dir), Ok("OLD".to_owned()));
}

#[test]
fn rollback_and_restore_switch_versions() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("example.com");
    install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();
    let second = install_set(&dir, &set("B"), &InstallOptions::default()).unwrap();
    rollback(&dir).unwrap();
    assert_eq!(read_set(&dir), Ok("A".to_owned()));
    let error = rollback(&dir).unwrap_err();
    assert!(error.to_string().contains("no previous set"), "{error}");

    restore(&dir, Some(&second.version)).unwrap();
    assert_eq!(read_set(&dir), Ok("B".to_owned()));
}

#[test]
fn restore_without_previous_removes_link() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("example.com");
    install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();
    restore(&dir, None).unwrap();
    assert!(fs::symlink_metadata(&dir).is_err());
}

#[test]
fn old_versions_are_pruned() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("example.com");
    let options = InstallOptions {
        keep_previous: 1,
        ..InstallOptions::default()
    };
    for tag in ["A", "B", "C", "D"] {
        install_set(&dir, &set(tag), &options).unwrap();
    }
    let layout = Layout::new(&dir).unwrap();
    let names: Vec<String> = layout
        .versions()
        .iter()
        .map(|(_, path)| file_name(path))
        .collect();
    assert_eq!(names, vec!["set-0003".to_owned(), "set-0004".to_owned()]);
}

#[test]
fn failed_write_keeps_old_set_and_cleans_up() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("example.com");
    install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();
    let mut bad = set("B");
    bad[1].name = "sub/privkey.pem".to_owned();
    let error = install_set(&dir, &bad, &InstallOptions::default()).unwrap_err();
    assert!(error.to_string().contains("privkey.pem"), "{error}");
    assert_eq!(read_set(&dir), Ok("A".to_owned()));
    assert_eq!(leftovers(&dir), Vec::<String>::new());
}

#[test]
fn operator_link_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let real = root.path().join("ssl/private");
    fs::create_dir_all(&real).unwrap();
    fs::write(real.join("other-service.key"), "theirs").unwrap();
    let dir = root.path().join("example.com");
    std::os::unix::fs::symlink(&real, &dir).unwrap();
    let error = install_set(&dir, &set("A"), &InstallOptions::default()).unwrap_err();
    assert!(error.to_string().contains("did not create"), "{error}");
    assert!(fs::symlink_metadata(&real).unwrap().is_dir());
    assert_eq!(
        fs::read_to_string(real.join("other-service.key")).unwrap(),
        "theirs"
    );
}

#[test]
fn operator_files_stay_at_the_lineage_path() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("example.com");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("README"), "kept").unwrap();
    fs::write(dir.join("dhparam.pem"), "params").unwrap();
    fs::set_permissions(dir.join("dhparam.pem"), fs::Permissions::from_mode(0o640)).unwrap();
    for tag in ["A", "B", "C", "D"] {
        install_set(
            &dir,
            &set(tag),
            &InstallOptions {
                keep_previous: 1,
                ..InstallOptions::default()
            },
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("README")).unwrap(),
            "kept",
            "{tag}"
        );
        assert_eq!(
            fs::read_to_string(dir.join("dhparam.pem")).unwrap(),
            "params",
            "{tag}"
        );
    }
    let mode = fs::metadata(dir.join("dhparam.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640);
}

#[test]
fn directories_are_traversable_under_a_closed_umask() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("new/live/example.com");
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let result = install_set(&dir, &set("A"), &InstallOptions::default());
    rustix::process::umask(old);
    result.unwrap();
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root.path().join("new/live")), 0o755);
    assert_eq!(
        mode(&root.path().join("new/live/.example.com.acme-dl")),
        0o755
    );
    assert_eq!(mode(&dir), 0o755);
}

#[test]
fn failed_checks_never_leave_a_dangling_link() {
    for keep in [0, 1, 2] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("example.com");
        let options = InstallOptions {
            keep_previous: keep,
            ..InstallOptions::default()
        };
        install_set(&dir, &set("A"), &options).unwrap();
        for round in 0..4 {
            // Each run installs a set, its check fails, and the previous set comes back.
            let installed = install_set(&dir, &set(&format!("B{round}")), &options).unwrap();
            restore(&dir, installed.previous.as_deref()).unwrap();
            assert_eq!(
                read_set(&dir),
                Ok("A".to_owned()),
                "keep {keep}, round {round}"
            );
        }
    }
}

#[test]
fn restore_refuses_a_missing_version() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("example.com");
    install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();
    let error = restore(&dir, Some(&root.path().join("gone"))).unwrap_err();
    assert!(error.to_string().contains("no longer exists"), "{error}");
    assert_eq!(read_set(&dir), Ok("A".to_owned()));
}

#[test]
fn unlinked_versions_are_removed_before_installing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("example.com");
    install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();
    let crashed =
        install_set_with_faults(&dir, &set("B"), &InstallOptions::default(), &mut |step| {
            if step == Step::PublishVersion {
                Err(Crash)
            } else {
                Ok(())
            }
        });
    assert!(crashed.is_err());
    install_set(&dir, &set("C"), &InstallOptions::default()).unwrap();
    rollback(&dir).unwrap();
    assert_eq!(
        read_set(&dir),
        Ok("A".to_owned()),
        "rollback reached the unlinked set"
    );
}

#[test]
fn odd_version_names_are_ignored_or_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("example.com");
    install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();
    let layout = Layout::new(&dir).unwrap();
    fs::create_dir(layout.store.join("set-18446744073709551615")).unwrap();
    fs::create_dir(layout.store.join("set-+7")).unwrap();
    install_set(&dir, &set("B"), &InstallOptions::default()).unwrap();
    assert_eq!(read_set(&dir), Ok("B".to_owned()));

    fs::create_dir(layout.store.join("set-999999999999999999")).unwrap();
    // The current version is lower, so the highest one counts as unlinked and goes away.
    install_set(&dir, &set("C"), &InstallOptions::default()).unwrap();
    assert_eq!(read_set(&dir), Ok("C".to_owned()));
}

#[test]
fn concurrent_installs_leave_a_complete_set() {
    let root = tempfile::tempdir().unwrap();
    let dir = Arc::new(root.path().join("example.com"));
    install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();
    let workers: Vec<_> = ["B", "C"]
        .into_iter()
        .map(|tag| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    install_set(&dir, &set(tag), &InstallOptions::default()).unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let tag = read_set(&dir).unwrap();
    assert!(tag == "B" || tag == "C", "{tag}");
}

#[test]
fn relative_links_of_a_legacy_directory_keep_working() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("shared")).unwrap();
    fs::write(root.path().join("shared/dhparam.pem"), "params").unwrap();
    let dir = root.path().join("example.com");
    fs::create_dir(&dir).unwrap();
    std::os::unix::fs::symlink("../shared/dhparam.pem", dir.join("dhparam.pem")).unwrap();
    fs::create_dir(dir.join("extra")).unwrap();
    fs::write(dir.join("extra/notes.txt"), "notes").unwrap();
    install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("dhparam.pem")).unwrap(),
        "params"
    );
    assert_eq!(
        fs::read_to_string(dir.join("extra/notes.txt")).unwrap(),
        "notes"
    );
    install_set(&dir, &set("B"), &InstallOptions::default()).unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("dhparam.pem")).unwrap(),
        "params"
    );
}
