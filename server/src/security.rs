//! The security settings of `tributary serve` (bootstrap key, TLS,
//! `--insecure`) and the rule that a server reachable from other hosts
//! needs keys and TLS unless told otherwise.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A secret given on the command line or in the environment; never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(..)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(text.to_owned()))
    }
}

/// Keys, TLS and the opt-out for trusted networks.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecurityConfig {
    /// An admin key of every namespace, kept in memory only (at least 32
    /// characters, e.g. `openssl rand -hex 32`). Giving one turns keys on:
    /// every call but health then needs `authorization: Bearer <key>`.
    #[arg(long, env = "TRIBUTARY_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<Secret>,
    /// A file holding the bootstrap admin key (surrounding whitespace is
    /// ignored), instead of --admin-key.
    #[arg(long, env = "TRIBUTARY_ADMIN_KEY_FILE", conflicts_with = "admin_key")]
    pub admin_key_file: Option<PathBuf>,
    /// The server's certificate chain (PEM); with --tls-key, the server
    /// speaks TLS only.
    #[arg(long, env = "TRIBUTARY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "TRIBUTARY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to; given,
    /// every connection needs a client certificate (mutual TLS).
    #[arg(long, env = "TRIBUTARY_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Listen on a non-loopback address without keys or TLS: only on a
    /// network where everyone who can reach the port may do everything.
    #[arg(long, env = "TRIBUTARY_INSECURE")]
    pub insecure: bool,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(
        "refusing to listen on {listen} without {missing}: anyone who can reach this address could register workflows, read every run's context and serve its tasks. Configure {how}, or pass --insecure (TRIBUTARY_INSECURE=true) if this network is trusted"
    )]
    Insecure {
        listen: SocketAddr,
        missing: &'static str,
        how: &'static str,
    },
    #[error("cannot read the bootstrap admin key from {path}: {source}")]
    AdminKeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SecurityConfig {
    /// The bootstrap admin key, from the flag or its file.
    pub fn bootstrap_key(&self) -> Result<Option<Secret>, SecurityError> {
        if let Some(key) = &self.admin_key {
            return Ok(Some(key.clone()));
        }
        let Some(path) = &self.admin_key_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| SecurityError::AdminKeyFile {
            path: path.clone(),
            source,
        })?;
        Ok(Some(Secret(text.trim().to_owned())))
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// Loopback keeps the zero-configuration start; any other address needs
    /// usable keys and TLS, or `--insecure`.
    pub fn check_exposure(&self, listen: SocketAddr, has_keys: bool) -> Result<(), SecurityError> {
        if listen.ip().is_loopback() || self.insecure {
            return Ok(());
        }
        let (missing, how) = match (has_keys, self.tls_enabled()) {
            (true, true) => return Ok(()),
            (false, false) => (
                "API keys and TLS",
                "--admin-key (TRIBUTARY_ADMIN_KEY) and --tls-cert/--tls-key (TRIBUTARY_TLS_CERT/TRIBUTARY_TLS_KEY)",
            ),
            (false, true) => (
                "API keys",
                "--admin-key (TRIBUTARY_ADMIN_KEY), or create keys with tributary key create",
            ),
            (true, false) => (
                "TLS (API keys would cross the network in clear text)",
                "--tls-cert/--tls-key (TRIBUTARY_TLS_CERT/TRIBUTARY_TLS_KEY)",
            ),
        };
        Err(SecurityError::Insecure {
            listen,
            missing,
            how,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_needs_nothing_and_other_addresses_name_what_is_missing() {
        let config = SecurityConfig::default();
        assert!(
            config
                .check_exposure("127.0.0.1:1".parse().expect("addr"), false)
                .is_ok()
        );
        assert!(
            config
                .check_exposure("[::1]:1".parse().expect("addr"), false)
                .is_ok()
        );
        let error = config
            .check_exposure("0.0.0.0:1".parse().expect("addr"), false)
            .expect_err("refused");
        assert!(
            error.to_string().contains("without API keys and TLS"),
            "{error}"
        );
        assert!(error.to_string().contains("--insecure"), "{error}");
        let error = config
            .check_exposure("0.0.0.0:1".parse().expect("addr"), true)
            .expect_err("refused");
        assert!(error.to_string().contains("without TLS"), "{error}");
        let insecure = SecurityConfig {
            insecure: true,
            ..SecurityConfig::default()
        };
        assert!(
            insecure
                .check_exposure("0.0.0.0:1".parse().expect("addr"), false)
                .is_ok()
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(..)");
    }
}
