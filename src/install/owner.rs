//! Resolving owner and group names for installed files.
//!
//! Names are looked up in `/etc/passwd` and `/etc/group`; a number is taken as an id.

use std::fs;

/// Returns the uid of a user name or number.
pub fn resolve_user(name: &str) -> Result<u32, String> {
    resolve(name, "/etc/passwd", "user")
}

/// Returns the gid of a group name or number.
pub fn resolve_group(name: &str) -> Result<u32, String> {
    resolve(name, "/etc/group", "group")
}

// NOTE: users and groups that exist only in NSS sources such as LDAP are not found by
// name; give their numeric id instead.
fn resolve(name: &str, database: &str, kind: &str) -> Result<u32, String> {
    if let Ok(id) = name.parse::<u32>() {
        return Ok(id);
    }
    let text =
        fs::read_to_string(database).map_err(|error| format!("reading {database}: {error}"))?;
    lookup(&text, name).ok_or_else(|| {
        format!("{kind} {name:?} not found in {database}; create it or give a numeric id")
    })
}

/// Finds the id of `name` in the text of a passwd or group file (`name:x:id:...`).
fn lookup(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_ids() {
        let text = "root:x:0:0:root:/root:/bin/bash\nssl-cert:x:112:\n";
        assert_eq!(lookup(text, "root"), Some(0));
        assert_eq!(lookup(text, "ssl-cert"), Some(112));
        assert_eq!(lookup(text, "nobody"), None);
    }

    #[test]
    fn numbers_are_ids() {
        assert_eq!(resolve_group("4242"), Ok(4242));
        assert_eq!(resolve_user("0"), Ok(0));
        assert!(resolve_user("no-such-user-acme-dl").is_err());
    }
}
