//! Resource names (what Azure ML and Kubernetes accept) and relative paths from requests,
//! checked once at the boundary.

/// Checks an Azure ML asset or job name: letters, digits, `-` and `_`, starting with a
/// letter or digit, at most 255 characters.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if name.is_empty() || name.len() > 255 || !ok_start || !ok_chars {
        return Err(format!(
            "`{name}` is not a valid {kind} name: use 1-255 letters, digits, `-` or `_`, starting with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks a Kubernetes object name (DNS-1123 subdomain): lower-case letters, digits, `-` and
/// `.`, starting and ending with a letter or digit, at most 253 characters.
pub fn validate_k8s_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !b.is_empty()
        && b.len() <= 253
        && b.first().copied().is_some_and(edge)
        && b.last().copied().is_some_and(edge)
        && b.iter().all(|&c| edge(c) || c == b'-' || c == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid Kubernetes name: use lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit"
        ))
    }
}

/// A relative path from a request that stays where it is joined: not empty, no NUL, and only
/// normal components (no `..`, no root, no `.`).
pub fn inside_path(path: &str) -> Option<&std::path::Path> {
    let p = std::path::Path::new(path);
    let normal = p
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    (!path.is_empty() && !path.contains('\0') && normal).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_names() {
        assert!(validate_name("job", "sincere_tiger_1x2").is_ok());
        assert!(validate_name("job", "my-job").is_ok());
        assert!(validate_name("job", "").is_err());
        assert!(validate_name("job", "-x").is_err());
        assert!(validate_name("job", "a b").is_err());
        assert!(validate_name("job", "../etc").is_err());
    }

    #[test]
    fn k8s_names() {
        assert!(validate_k8s_name("cpu-small").is_ok());
        assert!(validate_k8s_name("CPU").is_err());
        assert!(validate_k8s_name("a-").is_err());
        assert!(validate_k8s_name("a_b").is_err());
    }

    #[test]
    fn request_paths_stay_inside() {
        assert!(inside_path("outputs/model.pkl").is_some());
        for bad in ["", "../x", "a/../../b", "/etc/passwd", "./a", "a\0b"] {
            assert!(inside_path(bad).is_none(), "{bad}");
        }
    }
}
