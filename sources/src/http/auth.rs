//! The HTTP source's `auth`: bearer tokens or basic credentials, compared in
//! constant time.

use axum::http::{header, HeaderMap};
use base64::Engine;

use super::AuthOptions;

/// Whether `headers` carry credentials that `auth` accepts (always, without `auth`).
pub(super) fn authorized(auth: Option<&AuthOptions>, headers: &HeaderMap) -> bool {
    let Some(auth) = auth else { return true };
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    match auth {
        AuthOptions::Bearer { tokens } => {
            scheme.eq_ignore_ascii_case("bearer")
                && tokens.iter().any(|t| {
                    constant_time_eq::constant_time_eq(t.as_bytes(), credentials.trim().as_bytes())
                })
        }
        AuthOptions::Basic { username, password } => {
            let expected = format!("{username}:{password}");
            scheme.eq_ignore_ascii_case("basic")
                && base64::engine::general_purpose::STANDARD
                    .decode(credentials.trim())
                    .is_ok_and(|given| {
                        constant_time_eq::constant_time_eq(&given, expected.as_bytes())
                    })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn bearer_and_basic_auth() {
        let bearer = AuthOptions::Bearer {
            tokens: vec!["t1".into(), "t2".into()],
        };
        assert!(authorized(Some(&bearer), &headers("Bearer t2")));
        assert!(!authorized(Some(&bearer), &headers("Bearer t3")));
        assert!(!authorized(Some(&bearer), &HeaderMap::new()));
        let basic = AuthOptions::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        assert!(authorized(Some(&basic), &headers("Basic dTpw")));
        assert!(!authorized(Some(&basic), &headers("Basic dTpx")));
        assert!(!authorized(Some(&basic), &headers("Bearer dTpw")));
        assert!(authorized(None, &HeaderMap::new()));
    }
}
