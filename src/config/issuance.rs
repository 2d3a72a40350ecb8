//! `[http]` and `[[oidc.issuers]]`: who may obtain certificates over HTTP, and how that endpoint
//! listens.
//!
//! Only the shape and the static checks live here (file:line errors). Verifying tokens is
//! `identity::oidc`; serving requests is `http`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{line_of, parse_duration, Checker, ConfigError};

/// Longest certificate lifetime an issuer may configure: a day. Agents should use minutes.
pub const MAX_CERT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Certificate lifetime when an issuer names none.
pub const DEFAULT_CERT_TTL: Duration = Duration::from_secs(600);

/// Token signature algorithms an issuer may allow. `none` and the HMAC family are absent on
/// purpose: an HMAC "key" taken from a JWKS is public, so anyone could sign with it.
pub const SUPPORTED_ALGS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Issuance settings: the HTTP endpoint and the trusted issuers.
#[derive(Debug, Clone, Default)]
pub struct IssuanceConfig {
    /// `[http]`: TLS, limits.
    pub http: HttpSettings,
    /// `[[oidc.issuers]]`: the only issuers whose tokens are accepted (never discovered from a token).
    pub issuers: Vec<IssuerConfig>,
}

/// `[http]`
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// PEM certificate chain and key; when set, the endpoint speaks only TLS.
    pub tls: Option<TlsFiles>,
    /// Plain HTTP on a non-loopback address: tokens would cross the network in clear, so it
    /// must be asked for by name.
    pub insecure_http: bool,
    /// Largest request body accepted; a certificate request is a public key and a signature.
    pub max_body_bytes: usize,
    /// Requests per minute from one source address (before any token is looked at).
    pub requests_per_minute_per_address: u32,
    /// Certificates per minute for one identity (a leaked client secret cannot mint thousands).
    pub certificates_per_minute_per_identity: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            tls: None,
            insecure_http: false,
            max_body_bytes: 16 * 1024,
            requests_per_minute_per_address: 60,
            certificates_per_minute_per_identity: 10,
        }
    }
}

/// PEM files for the endpoint's TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Who is behind an issuer's tokens: decides the certificate's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssuerKind {
    /// Workloads: no extensions at all (no pty, no forwarding).
    Agent,
    /// People (device flow): `permit-pty`, for the console and interactive shells.
    Human,
}

/// `[[oidc.issuers]]`
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// The exact `iss` value; discovery is fetched from here (https, or http on loopback).
    pub issuer: String,
    /// Must be one of the token's `aud` values (client id for ID tokens, resource for access tokens).
    pub audience: String,
    /// Agent or human.
    pub kind: IssuerKind,
    /// Claim naming the identity (`sub` by default); a leading `/` makes it a JSON pointer
    /// into nested claims (`/kubernetes.io/serviceaccount/name`).
    pub identity_claim: String,
    /// Prepended to the identity so two issuers cannot mint the same name.
    pub identity_prefix: String,
    /// Claim holding an array of group names (each becomes `group:NAME`); `None`: no groups.
    pub groups_claim: Option<String>,
    /// Certificate lifetime.
    pub ttl: Duration,
    /// Signature algorithms accepted from this issuer (pinned: a key cannot widen it).
    pub allowed_algs: Vec<String>,
    /// When a token names several audiences, its `azp` must be one of these (default: `audience`).
    pub authorized_parties: Vec<String>,
    /// Least time between two JWKS fetches triggered by an unknown `kid`.
    pub jwks_min_refresh: Duration,
}

/// The file's shape as serde reads it.
pub(super) mod raw {
    use super::*;

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Http {
        #[serde(default)]
        pub tls_cert: Option<PathBuf>,
        #[serde(default)]
        pub tls_key: Option<Spanned<PathBuf>>,
        #[serde(default)]
        pub insecure_http: bool,
        #[serde(default)]
        pub max_body_bytes: Option<Spanned<usize>>,
        #[serde(default)]
        pub requests_per_minute_per_address: Option<Spanned<u32>>,
        #[serde(default)]
        pub certificates_per_minute_per_identity: Option<Spanned<u32>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Oidc {
        #[serde(default)]
        pub issuers: Vec<Issuer>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Issuer {
        pub issuer: Spanned<String>,
        pub audience: Spanned<String>,
        pub kind: IssuerKind,
        #[serde(default)]
        pub identity_claim: Option<Spanned<String>>,
        #[serde(default)]
        pub identity_prefix: Option<Spanned<String>>,
        #[serde(default)]
        pub groups_claim: Option<Spanned<String>>,
        #[serde(default)]
        pub ttl: Option<Spanned<String>>,
        #[serde(default)]
        pub allowed_algs: Option<Spanned<Vec<Spanned<String>>>>,
        #[serde(default)]
        pub authorized_parties: Vec<String>,
        #[serde(default)]
        pub jwks_min_refresh: Option<Spanned<String>>,
    }
}

/// Validates `[http]` and `[[oidc.issuers]]`; `http_listen` is checked against TLS here.
pub(super) fn resolve(
    http: raw::Http,
    oidc: raw::Oidc,
    http_listen: Option<SocketAddr>,
    check: &Checker<'_>,
    base: &dyn Fn(&Path) -> PathBuf,
) -> Result<IssuanceConfig, ConfigError> {
    let defaults = HttpSettings::default();
    let tls = match (http.tls_cert, http.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: base(&cert),
            key: base(key.get_ref()),
        }),
        (None, None) => None,
        _ => {
            return Err(ConfigError::Invalid {
                path: check.path.to_path_buf(),
                line: line_of(check.text, check.text.find("tls_").unwrap_or(0)),
                message: "http: tls_cert and tls_key go together (set both or neither)".into(),
            })
        }
    };
    if let Some(addr) = http_listen {
        if tls.is_none() && !addr.ip().is_loopback() && !http.insecure_http {
            return Err(ConfigError::Invalid {
                path: check.path.to_path_buf(),
                line: line_of(check.text, check.text.find("http_listen").unwrap_or(0)),
                message: format!(
                    "server.http_listen: {addr} is not a loopback address and [http] has no \
                     tls_cert/tls_key; bearer tokens would cross the network in clear. Configure \
                     TLS, or set insecure_http = true under [http] if a TLS proxy sits in front"
                ),
            });
        }
    }
    let positive = |v: Option<Spanned<u32>>, key: &str, default: u32| match v {
        None => Ok(default),
        Some(v) if *v.get_ref() == 0 => Err(check.invalid(&v, key, "must be at least 1")),
        Some(v) => Ok(v.into_inner()),
    };
    let max_body_bytes = match http.max_body_bytes {
        None => defaults.max_body_bytes,
        Some(v) if !(1024..=1024 * 1024).contains(v.get_ref()) => {
            return Err(check.invalid(&v, "http.max_body_bytes", "must be 1024..=1048576"))
        }
        Some(v) => v.into_inner(),
    };
    let settings = HttpSettings {
        tls,
        insecure_http: http.insecure_http,
        max_body_bytes,
        requests_per_minute_per_address: positive(
            http.requests_per_minute_per_address,
            "http.requests_per_minute_per_address",
            defaults.requests_per_minute_per_address,
        )?,
        certificates_per_minute_per_identity: positive(
            http.certificates_per_minute_per_identity,
            "http.certificates_per_minute_per_identity",
            defaults.certificates_per_minute_per_identity,
        )?,
    };
    let mut issuers: Vec<IssuerConfig> = Vec::new();
    for (i, raw) in oidc.issuers.into_iter().enumerate() {
        let key = |field: &str| format!("oidc.issuers[{i}].{field}");
        let issuer = raw.issuer.get_ref().clone();
        if let Err(why) = check_issuer_url(&issuer) {
            return Err(check.invalid(&raw.issuer, &key("issuer"), &why));
        }
        if issuers.iter().any(|seen| seen.issuer == issuer) {
            return Err(check.invalid(&raw.issuer, &key("issuer"), "duplicate issuer"));
        }
        if raw.audience.get_ref().trim().is_empty() {
            return Err(check.invalid(&raw.audience, &key("audience"), "must not be empty"));
        }
        let claim = |v: &Option<Spanned<String>>, field: &str| -> Result<(), ConfigError> {
            match v {
                Some(v) if v.get_ref().is_empty() || v.get_ref() == "/" => {
                    Err(check.invalid(v, &key(field), "must name a claim"))
                }
                _ => Ok(()),
            }
        };
        claim(&raw.identity_claim, "identity_claim")?;
        claim(&raw.groups_claim, "groups_claim")?;
        let identity_prefix = match raw.identity_prefix {
            Some(p)
                if !p.get_ref().is_empty() && !crate::identity::ca::is_valid_name(p.get_ref()) =>
            {
                return Err(check.invalid(
                    &p,
                    &key("identity_prefix"),
                    "must match ^[a-z0-9_][a-z0-9._@-]{0,63}$",
                ))
            }
            Some(p) => p.into_inner(),
            None => String::new(),
        };
        let ttl = match &raw.ttl {
            None => DEFAULT_CERT_TTL,
            Some(v) => {
                let ttl = parse_duration(v.get_ref())
                    .map_err(|why| check.invalid(v, &key("ttl"), &why))?;
                if ttl > MAX_CERT_TTL {
                    return Err(check.invalid(v, &key("ttl"), "at most 24h"));
                }
                ttl
            }
        };
        let jwks_min_refresh = match &raw.jwks_min_refresh {
            None => Duration::from_secs(10),
            Some(v) => parse_duration(v.get_ref())
                .map_err(|why| check.invalid(v, &key("jwks_min_refresh"), &why))?,
        };
        let allowed_algs = match raw.allowed_algs {
            None => vec!["RS256".to_string()],
            Some(list) => {
                if list.get_ref().is_empty() {
                    return Err(check.invalid(&list, &key("allowed_algs"), "must not be empty"));
                }
                let mut algs = Vec::new();
                for (j, alg) in list.get_ref().iter().enumerate() {
                    if !SUPPORTED_ALGS.contains(&alg.get_ref().as_str()) {
                        return Err(check.invalid(
                            alg,
                            &key(&format!("allowed_algs[{j}]")),
                            &format!(
                                "unsupported algorithm; use one of {} (never none or HS*)",
                                SUPPORTED_ALGS.join(", ")
                            ),
                        ));
                    }
                    algs.push(alg.get_ref().clone());
                }
                algs
            }
        };
        let audience = raw.audience.into_inner();
        let authorized_parties = if raw.authorized_parties.is_empty() {
            vec![audience.clone()]
        } else {
            raw.authorized_parties
        };
        issuers.push(IssuerConfig {
            issuer,
            audience,
            kind: raw.kind,
            identity_claim: raw
                .identity_claim
                .map(Spanned::into_inner)
                .unwrap_or_else(|| "sub".to_string()),
            identity_prefix,
            groups_claim: raw.groups_claim.map(Spanned::into_inner),
            ttl,
            allowed_algs,
            authorized_parties,
            jwks_min_refresh,
        });
    }
    Ok(IssuanceConfig {
        http: settings,
        issuers,
    })
}

/// An issuer URL: `https://host[/path]`, or `http://` on a loopback host (tests, local providers).
fn check_issuer_url(issuer: &str) -> Result<(), String> {
    let rest = if let Some(rest) = issuer.strip_prefix("https://") {
        rest
    } else if let Some(rest) = issuer.strip_prefix("http://") {
        let host = rest.split(['/', ':']).next().unwrap_or("");
        let loopback = host == "localhost"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
            || rest.starts_with("[::1]");
        if !loopback {
            return Err("must be https:// (http:// only on a loopback host)".into());
        }
        rest
    } else {
        return Err("must be an https:// URL, exactly as the tokens' iss claim".into());
    };
    if rest.is_empty() || rest.starts_with('/') || issuer.contains(['?', '#', ' ']) {
        return Err("must be https://HOST[/PATH] without query or fragment".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str) -> Result<crate::config::Config, ConfigError> {
        let text = format!(
            "[server]\nssh_listen = \"127.0.0.1:2222\"\n{extra}\n[ca]\nprivate_key = \"ca\"\n\
             [vault]\nmaster_key_file = \"mk\"\n"
        );
        crate::config::Config::from_toml(&text, Path::new("/etc/gh/gatehouse.toml"))
    }

    fn issuer(fields: &str) -> String {
        format!(
            "[[oidc.issuers]]\nissuer = \"https://idp.example.com\"\naudience = \"gh\"\nkind = \"agent\"\n{fields}"
        )
    }

    fn refused(extra: &str) -> String {
        match load(extra) {
            Ok(_) => panic!("loaded: {extra}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn issuers_load_with_defaults() {
        let c = load(&issuer("")).unwrap();
        let i = &c.issuance.issuers[0];
        assert_eq!(i.identity_claim, "sub");
        assert_eq!(i.ttl, DEFAULT_CERT_TTL);
        assert_eq!(i.allowed_algs, ["RS256"]);
        assert_eq!(i.authorized_parties, ["gh"]);
        assert!(c.issuance.http.tls.is_none());
    }

    #[test]
    fn bad_issuance_settings_refused() {
        assert!(refused(&issuer("allowed_algs = [\"HS256\"]\n")).contains("allowed_algs[0]"));
        assert!(refused(&issuer("allowed_algs = [\"none\"]\n")).contains("never none"));
        assert!(refused(&issuer("ttl = \"25h\"\n")).contains("at most 24h"));
        let kind = refused(&issuer("").replace("\"agent\"", "\"robot\""));
        assert!(kind.contains("unknown variant"), "{kind}");
        let plain = refused("http_listen = \"0.0.0.0:8443\"\n");
        assert!(plain.contains("insecure_http"), "{plain}");
        load("http_listen = \"127.0.0.1:8443\"\n").unwrap();
        let dup = issuer("") + &issuer("");
        assert!(refused(&dup).contains("duplicate issuer"));
    }

    #[test]
    fn issuer_urls() {
        for good in [
            "https://token.actions.githubusercontent.com",
            "https://idp.example.com/realms/x",
            "http://127.0.0.1:4455",
            "http://localhost:8080/",
        ] {
            assert!(check_issuer_url(good).is_ok(), "{good}");
        }
        for bad in [
            "http://idp.example.com",
            "ftp://x",
            "https://",
            "https://x?y=1",
            "http://127.0.0.1.evil.com",
        ] {
            assert!(check_issuer_url(bad).is_err(), "{bad}");
        }
    }
}
