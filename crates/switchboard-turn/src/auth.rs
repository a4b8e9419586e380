//! coturn REST-API usernames (`<expiry-unix-time>:<user>`): pure parsing.

/// A REST-API username split into its expiry and user parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RestUsername<'a> {
    /// Unix time after which the credential is refused.
    pub(crate) expiry: u64,
    /// The user part (may be empty: coturn accepts a bare timestamp).
    pub(crate) user: &'a str,
}

/// Parses `<expiry>:<user>` or a bare `<expiry>`, as coturn's `use-auth-secret` does.
/// Anything else (no leading decimal timestamp) is not a REST username.
pub(crate) fn parse_rest_username(username: &str) -> Option<RestUsername<'_>> {
    let (ts, user) = match username.split_once(':') {
        Some((ts, user)) => (ts, user),
        None => (username, ""),
    };
    if ts.is_empty() || ts.len() > 20 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(RestUsername {
        expiry: ts.parse().ok()?,
        user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_coturn_rest_usernames() {
        assert_eq!(
            parse_rest_username("1700000000:alice"),
            Some(RestUsername {
                expiry: 1_700_000_000,
                user: "alice"
            })
        );
        assert_eq!(
            parse_rest_username("1700000000:a:b"),
            Some(RestUsername {
                expiry: 1_700_000_000,
                user: "a:b"
            })
        );
        assert_eq!(
            parse_rest_username("1700000000"),
            Some(RestUsername {
                expiry: 1_700_000_000,
                user: ""
            })
        );
        for bad in [
            "",
            ":alice",
            "alice",
            "alice:1700000000",
            "-1:x",
            "+5:x",
            "1e9:x",
            "99999999999999999999999:x",
        ] {
            assert_eq!(parse_rest_username(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,64}") {
            let _ = parse_rest_username(&s);
        }
    }
}
