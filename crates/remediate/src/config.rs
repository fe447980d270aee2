//! One typed configuration with the precedence defaults < file (`remediate.toml`) < environment
//! (`REMEDIATE_*`) < flags. clap merges environment and flags; the file fills what both left unset.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "REMEDIATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the SQLite database and the local signing key.
    #[arg(long, env = "REMEDIATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://FILE or postgres://USER@HOST:PORT/DB (default: SQLite in the data directory).
    #[arg(long, env = "REMEDIATE_DATABASE")]
    pub database: Option<String>,
    /// Public base URL used in links (@odata.nextLink, Location), e.g. https://remediate.example.com.
    #[arg(long, env = "REMEDIATE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest accepted request body in bytes (default 4 MiB).
    #[arg(long, env = "REMEDIATE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Database connections (default 8).
    #[arg(long, env = "REMEDIATE_DB_CONNECTIONS")]
    pub db_connections: Option<u32>,
    /// Milliseconds a database statement may run before it is stopped with 504 (default: the
    /// request timeout).
    #[arg(long, env = "REMEDIATE_STATEMENT_TIMEOUT_MS")]
    pub statement_timeout_ms: Option<u64>,
    /// Log format: text or json.
    #[arg(long, env = "REMEDIATE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Maximum characters of each run-state output/error field (default 65536).
    #[arg(long, env = "REMEDIATE_MAX_OUTPUT_CHARS")]
    pub max_output_chars: Option<usize>,
    /// Days run-history records are kept (default 90).
    #[arg(long, env = "REMEDIATE_HISTORY_RETENTION_DAYS")]
    pub history_retention_days: Option<u32>,
    /// Trusted OIDC issuer (repeatable; `{tenantid}` stands for the token's tid), e.g.
    /// https://login.microsoftonline.com/{tenantid}/v2.0.
    #[arg(
        long = "oidc-issuer",
        env = "REMEDIATE_OIDC_ISSUERS",
        value_delimiter = ','
    )]
    pub oidc_issuers: Vec<String>,
    /// Accepted OIDC audience (repeatable), e.g. https://graph.microsoft.com.
    #[arg(
        long = "oidc-audience",
        env = "REMEDIATE_OIDC_AUDIENCES",
        value_delimiter = ','
    )]
    pub oidc_audiences: Vec<String>,
    /// JWKS URL of the issuer, e.g. https://login.microsoftonline.com/common/discovery/v2.0/keys.
    #[arg(long, env = "REMEDIATE_OIDC_JWKS_URL")]
    pub oidc_jwks_url: Option<String>,
    /// JWKS file (instead of a URL).
    #[arg(long, env = "REMEDIATE_OIDC_JWKS_FILE")]
    pub oidc_jwks_file: Option<PathBuf>,
    /// Least seconds between JWKS refreshes triggered by unknown key ids (default 60).
    #[arg(long, env = "REMEDIATE_OIDC_REFRESH_SECS")]
    pub oidc_refresh_secs: Option<u64>,
    /// Largest accepted request headers in bytes (default 32768; 431 above).
    #[arg(long, env = "REMEDIATE_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Longest accepted path and query in bytes (default 16384; 414 above).
    #[arg(long, env = "REMEDIATE_MAX_URI_BYTES")]
    pub max_uri_bytes: Option<usize>,
    /// Longest accepted value of one query option (default 8192; 400 above).
    #[arg(long, env = "REMEDIATE_MAX_QUERY_OPTION_BYTES")]
    pub max_query_option_bytes: Option<usize>,
    /// Deepest accepted $filter / $expand nesting (default 32; 400 above).
    #[arg(long, env = "REMEDIATE_MAX_FILTER_DEPTH")]
    pub max_filter_depth: Option<usize>,
    /// Most keys in one $orderby (default 8; 400 above; a repeated key is always a 400).
    #[arg(long, env = "REMEDIATE_MAX_ORDERBY_KEYS")]
    pub max_orderby_keys: Option<usize>,
    /// Largest page; larger $top values are capped (default 1000).
    #[arg(long, env = "REMEDIATE_MAX_PAGE_SIZE")]
    pub max_page_size: Option<usize>,
    /// Most requests in one $batch (default 20; 400 above).
    #[arg(long, env = "REMEDIATE_MAX_BATCH_REQUESTS")]
    pub max_batch_requests: Option<usize>,
    /// Seconds one request may take (default 30; 504 after).
    #[arg(long, env = "REMEDIATE_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Requests processed at once (default 512; 503 with Retry-After beyond).
    #[arg(long, env = "REMEDIATE_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Open connections (default 4096; further ones wait in the backlog).
    #[arg(long, env = "REMEDIATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds for a request's head (request line and headers) to arrive, from the accept or from
    /// the first byte of a later request on a kept-alive connection (default 10; the connection is
    /// closed after).
    #[arg(long, env = "REMEDIATE_HEADER_READ_TIMEOUT_SECS")]
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds for a whole request body to arrive (default 30; 408 and the connection is closed).
    #[arg(long, env = "REMEDIATE_BODY_READ_TIMEOUT_SECS")]
    pub body_read_timeout_secs: Option<u64>,
    /// Least average rate of a request body after the grace period, in bytes per second (default
    /// 1024; 0 turns it off; 408 below it and the connection is closed).
    #[arg(long, env = "REMEDIATE_MIN_BODY_BYTES_PER_SEC")]
    pub min_body_bytes_per_sec: Option<u64>,
    /// Seconds a request body may take before the minimum rate applies (default 5).
    #[arg(long, env = "REMEDIATE_BODY_RATE_GRACE_SECS")]
    pub body_rate_grace_secs: Option<u64>,
    /// Seconds a kept-alive connection may wait for its next request before it is closed
    /// (default 60).
    #[arg(long, env = "REMEDIATE_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Enable Intune throttling (400 writes / 4000 requests per window per tenant, half per app) with this window in seconds (Intune: 20). Off when unset.
    #[arg(long, env = "REMEDIATE_THROTTLE_WINDOW_SECS")]
    pub throttle_window_secs: Option<u64>,
    /// Add 0..=N ms of latency to each request (default 0).
    #[arg(long, env = "REMEDIATE_INJECT_LATENCY_MS")]
    pub inject_latency_ms: Option<u64>,
    /// Answer this share of requests (0.0-1.0) with an injected 503 before they touch anything (default 0).
    #[arg(long, env = "REMEDIATE_INJECT_ERROR_RATE")]
    pub inject_error_rate: Option<f64>,
    /// Seed of the injected latency and errors (default 1).
    #[arg(long, env = "REMEDIATE_CHAOS_SEED")]
    pub chaos_seed: Option<u64>,
    /// Serve https with a certificate of the local CA that remediate creates once in the data
    /// directory (ca.pem; its key ca-key.pem never leaves it), for localhost, 127.0.0.1, ::1 and
    /// every --tls-name. `--tls=false` turns it off.
    #[arg(long, env = "REMEDIATE_TLS", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub tls: Option<bool>,
    /// Another name (DNS name or IP address) of the local CA's https certificate (repeatable).
    #[arg(long = "tls-name", env = "REMEDIATE_TLS_NAMES", value_delimiter = ',')]
    pub tls_names: Vec<String>,
    /// Serve https with this certificate chain (PEM) instead of the local CA's; read again on
    /// SIGHUP. Needs --tls-key.
    #[arg(long, env = "REMEDIATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert; read again on SIGHUP.
    #[arg(long, env = "REMEDIATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Also run an HTTP proxy on this address: CONNECT to graph.microsoft.com,
    /// login.microsoftonline.com and every --proxy-host is served by remediate (TLS from the
    /// local CA); other hosts are refused (403) unless --proxy-pass-through.
    #[arg(long, env = "REMEDIATE_PROXY_LISTEN")]
    pub proxy_listen: Option<SocketAddr>,
    /// Another host the proxy serves itself (repeatable).
    #[arg(
        long = "proxy-host",
        env = "REMEDIATE_PROXY_HOSTS",
        value_delimiter = ','
    )]
    pub proxy_hosts: Vec<String>,
    /// Let the proxy tunnel CONNECTs to every other host unchanged (never decrypted) instead of
    /// refusing them.
    #[arg(long, env = "REMEDIATE_PROXY_PASS_THROUGH", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub proxy_pass_through: Option<bool>,
    /// Serve `/metrics` (Prometheus text format, no token) on this address instead of the main
    /// listener, which then answers it as any unknown path; port 0 picks a free port.
    #[arg(long, env = "REMEDIATE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds an export job's download link stays valid after the job completes (default
    /// 21600: 6 hours, as Graph's).
    #[arg(long, env = "REMEDIATE_EXPORT_LINK_LIFETIME_SECS")]
    pub export_link_lifetime_secs: Option<u64>,
    /// The dashboard's OIDC sign-in: the issuer (its discovery document is
    /// `{issuer}/.well-known/openid-configuration`). Shows a "Sign in" button on `/login`.
    #[arg(long, env = "REMEDIATE_DASHBOARD_OIDC_ISSUER")]
    pub dashboard_oidc_issuer: Option<String>,
    /// The dashboard's client id at the OIDC issuer (the ID token's audience).
    #[arg(long, env = "REMEDIATE_DASHBOARD_OIDC_CLIENT_ID")]
    pub dashboard_oidc_client_id: Option<String>,
    /// The client secret, for a confidential client (a public client uses PKCE alone).
    #[arg(long, env = "REMEDIATE_DASHBOARD_OIDC_CLIENT_SECRET")]
    pub dashboard_oidc_client_secret: Option<String>,
    /// The redirect URI registered at the issuer: this server's `/oidc/callback` (default:
    /// `{public URL}/oidc/callback`).
    #[arg(long, env = "REMEDIATE_DASHBOARD_OIDC_REDIRECT")]
    pub dashboard_oidc_redirect: Option<String>,
    /// Configuration file (default: ./remediate.toml when it exists).
    #[arg(long, env = "REMEDIATE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `serve`'s flags alone, for parsing them outside the binary's command line.
#[derive(clap::Parser)]
#[command(name = "serve")]
struct ServeFlags {
    #[command(flatten)]
    serve: ServeArgs,
}

impl ServeArgs {
    /// Parse `remediate serve`'s flags (e.g. `["--listen", "127.0.0.1:0"]`), with the
    /// `REMEDIATE_*` environment filling what they leave unset, exactly as the binary does.
    pub fn from_flags<I, T>(flags: I) -> Result<ServeArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        let argv = std::iter::once(std::ffi::OsString::from("serve"))
            .chain(flags.into_iter().map(Into::into));
        ServeFlags::try_parse_from(argv).map(|flags| flags.serve)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database: Option<String>,
    public_url: Option<String>,
    max_body_bytes: Option<usize>,
    db_connections: Option<u32>,
    statement_timeout_ms: Option<u64>,
    log_format: Option<String>,
    history_retention_days: Option<u32>,
    max_output_chars: Option<usize>,
    oidc: Option<FileOidc>,
    max_header_bytes: Option<usize>,
    max_uri_bytes: Option<usize>,
    max_query_option_bytes: Option<usize>,
    max_filter_depth: Option<usize>,
    max_orderby_keys: Option<usize>,
    max_page_size: Option<usize>,
    max_batch_requests: Option<usize>,
    request_timeout_secs: Option<u64>,
    max_in_flight: Option<usize>,
    max_connections: Option<usize>,
    header_read_timeout_secs: Option<u64>,
    body_read_timeout_secs: Option<u64>,
    min_body_bytes_per_sec: Option<u64>,
    body_rate_grace_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    throttle_window_secs: Option<u64>,
    inject_latency_ms: Option<u64>,
    inject_error_rate: Option<f64>,
    chaos_seed: Option<u64>,
    metrics_listen: Option<SocketAddr>,
    export_link_lifetime_secs: Option<u64>,
    dashboard_oidc_issuer: Option<String>,
    dashboard_oidc_client_id: Option<String>,
    dashboard_oidc_client_secret: Option<String>,
    dashboard_oidc_redirect: Option<String>,
    tls: Option<bool>,
    tls_names: Option<Vec<String>>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    proxy_listen: Option<SocketAddr>,
    proxy_hosts: Option<Vec<String>>,
    proxy_pass_through: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct FileOidc {
    #[serde(default)]
    issuers: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
    jwks_url: Option<String>,
    jwks_file: Option<PathBuf>,
    refresh_secs: Option<u64>,
}

/// The resolved configuration of `remediate serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database: String,
    pub public_url: Option<String>,
    pub db_connections: u32,
    pub statement_timeout: std::time::Duration,
    pub log_json: bool,
    pub history_retention_days: u32,
    pub max_output_chars: usize,
    /// OIDC / Entra ID issuers, when configured.
    pub oidc: Option<remediate_api::auth::OidcConfig>,
    pub limits: remediate_api::guard::ServerLimits,
    pub realism: remediate_api::guard::Realism,
    /// `/metrics` on its own address (`--metrics-listen`); `None`: on the main listener.
    pub metrics_listen: Option<SocketAddr>,
    /// How long an export job's download link is valid (`--export-link-lifetime-secs`).
    pub export_link_lifetime: std::time::Duration,
    /// The dashboard's OIDC sign-in (`--dashboard-oidc-issuer` and its client).
    pub dashboard_oidc: Option<remediate_api::dashboard::OidcLogin>,
    /// https on the main listener, and where its certificate comes from.
    pub tls: Option<remediate_api::tls::TlsSource>,
    /// The proxy (`--proxy-listen`).
    pub proxy: Option<remediate_api::proxy::ProxyConfig>,
}

pub const DEFAULT_DATA_DIR: &str = "./remediate-data";

impl Config {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Config> {
        let file = load_file(args.config.as_deref())?;
        let (tls, proxy) = resolve_tls(&args, &file)?;
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let database = match args.database.or(file.database) {
            Some(url) => url,
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("remediate.db").display()
            ),
        };
        let log_format = args
            .log_format
            .or(file.log_format)
            .unwrap_or_else(|| "text".into());
        if log_format != "text" && log_format != "json" {
            anyhow::bail!("log format must be 'text' or 'json', not '{log_format}'");
        }
        let public_url = args.public_url.or(file.public_url);
        if let Some(url) = &public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                anyhow::bail!("the public URL must start with http:// or https://, got '{url}'");
            }
        }
        let max_body_bytes = args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(4 * 1024 * 1024);
        if max_body_bytes < 1024 {
            anyhow::bail!("max_body_bytes must be at least 1024");
        }
        let file_oidc = file.oidc.unwrap_or_default();
        let issuers = if args.oidc_issuers.is_empty() {
            file_oidc.issuers
        } else {
            args.oidc_issuers
        };
        let audiences = if args.oidc_audiences.is_empty() {
            file_oidc.audiences
        } else {
            args.oidc_audiences
        };
        let jwks_url = args.oidc_jwks_url.or(file_oidc.jwks_url);
        let jwks_file = args.oidc_jwks_file.or(file_oidc.jwks_file);
        let oidc = match (jwks_url, jwks_file) {
            (Some(_), Some(_)) => anyhow::bail!("give either an OIDC JWKS URL or a JWKS file, not both"),
            (None, None) if issuers.is_empty() && audiences.is_empty() => None,
            (None, None) => anyhow::bail!("OIDC issuers or audiences are set, but no JWKS (--oidc-jwks-url or --oidc-jwks-file)"),
            (url, file) => {
                let jwks = match (url, file) {
                    (Some(url), _) => remediate_api::auth::JwksSource::Url(url),
                    (_, Some(path)) => remediate_api::auth::JwksSource::File(path),
                    _ => unreachable!("one source is set"),
                };
                let config = remediate_api::auth::OidcConfig {
                    issuers,
                    audiences,
                    jwks,
                    min_refresh_interval: std::time::Duration::from_secs(args.oidc_refresh_secs.or(file_oidc.refresh_secs).unwrap_or(60)),
                };
                config.validate().map_err(|e| anyhow::anyhow!(e))?;
                Some(config)
            }
        };
        let dashboard_oidc = match args.dashboard_oidc_issuer.or(file.dashboard_oidc_issuer) {
            None => None,
            Some(issuer) => {
                let redirect = args
                    .dashboard_oidc_redirect
                    .or(file.dashboard_oidc_redirect)
                    .or_else(|| {
                        public_url
                            .as_ref()
                            .map(|u| format!("{}/oidc/callback", u.trim_end_matches('/')))
                    })
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--dashboard-oidc-issuer needs --dashboard-oidc-redirect (or --public-url)"
                        )
                    })?;
                let login = remediate_api::dashboard::OidcLogin {
                    issuer,
                    client_id: args
                        .dashboard_oidc_client_id
                        .or(file.dashboard_oidc_client_id)
                        .unwrap_or_default(),
                    client_secret: args
                        .dashboard_oidc_client_secret
                        .or(file.dashboard_oidc_client_secret)
                        .filter(|s| !s.is_empty()),
                    redirect_uri: redirect,
                };
                login.validate().map_err(|e| anyhow::anyhow!(e))?;
                Some(login)
            }
        };
        let defaults = remediate_api::guard::ServerLimits::default();
        macro_rules! pick {
            ($name:ident, $default:expr) => {
                args.$name.or(file.$name).unwrap_or($default)
            };
        }
        let positive = |name: &str, value: usize| {
            if value == 0 {
                anyhow::bail!("{name} must be at least 1")
            }
            Ok(value)
        };
        let seconds = |name: &str, value: u64, least: u64| {
            if !(least..=86_400).contains(&value) {
                anyhow::bail!("{name} must be between {least} and 86400, not {value}")
            }
            Ok(std::time::Duration::from_secs(value))
        };
        let limits = remediate_api::guard::ServerLimits {
            max_body_bytes,
            max_header_bytes: positive(
                "max_header_bytes",
                pick!(max_header_bytes, defaults.max_header_bytes),
            )?,
            max_uri_bytes: positive(
                "max_uri_bytes",
                pick!(max_uri_bytes, defaults.max_uri_bytes),
            )?,
            odata: remediate_odata::Limits {
                max_option_length: positive(
                    "max_query_option_bytes",
                    pick!(max_query_option_bytes, defaults.odata.max_option_length),
                )?,
                max_depth: positive(
                    "max_filter_depth",
                    pick!(max_filter_depth, defaults.odata.max_depth),
                )?,
                max_orderby_keys: positive(
                    "max_orderby_keys",
                    pick!(max_orderby_keys, defaults.odata.max_orderby_keys),
                )?,
                ..defaults.odata
            },
            max_page_size: positive(
                "max_page_size",
                pick!(max_page_size, defaults.max_page_size),
            )?,
            max_batch_requests: positive(
                "max_batch_requests",
                pick!(max_batch_requests, defaults.max_batch_requests),
            )?,
            request_timeout: std::time::Duration::from_secs(positive(
                "request_timeout_secs",
                pick!(request_timeout_secs, 30) as usize,
            )? as u64),
            max_in_flight: positive(
                "max_in_flight",
                pick!(max_in_flight, defaults.max_in_flight),
            )?,
            max_connections: positive(
                "max_connections",
                pick!(max_connections, defaults.max_connections),
            )?,
            header_read_timeout: seconds(
                "header_read_timeout_secs",
                pick!(
                    header_read_timeout_secs,
                    defaults.header_read_timeout.as_secs()
                ),
                1,
            )?,
            body_read_timeout: seconds(
                "body_read_timeout_secs",
                pick!(body_read_timeout_secs, defaults.body_read_timeout.as_secs()),
                1,
            )?,
            min_body_bytes_per_sec: pick!(min_body_bytes_per_sec, defaults.min_body_bytes_per_sec),
            body_rate_grace: seconds(
                "body_rate_grace_secs",
                pick!(body_rate_grace_secs, defaults.body_rate_grace.as_secs()),
                0,
            )?,
            idle_timeout: seconds(
                "idle_timeout_secs",
                pick!(idle_timeout_secs, defaults.idle_timeout.as_secs()),
                1,
            )?,
        };
        let error_rate = pick!(inject_error_rate, 0.0);
        if !(0.0..=1.0).contains(&error_rate) {
            anyhow::bail!("inject_error_rate must be between 0.0 and 1.0, not {error_rate}");
        }
        let realism = remediate_api::guard::Realism {
            throttle_window: match args.throttle_window_secs.or(file.throttle_window_secs) {
                Some(0) => anyhow::bail!("throttle_window_secs must be at least 1"),
                Some(secs) => Some(std::time::Duration::from_secs(secs)),
                None => None,
            },
            latency_ms: pick!(inject_latency_ms, 0),
            error_rate,
            seed: pick!(chaos_seed, 1),
        };
        Ok(Config {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir,
            database,
            public_url,
            db_connections: args
                .db_connections
                .or(file.db_connections)
                .unwrap_or(8)
                .max(1),
            statement_timeout: match args.statement_timeout_ms.or(file.statement_timeout_ms) {
                Some(0) => anyhow::bail!("statement_timeout_ms must be at least 1"),
                Some(ms) => std::time::Duration::from_millis(ms),
                None => limits.request_timeout,
            },
            log_json: log_format == "json",
            oidc,
            limits,
            realism,
            metrics_listen: args.metrics_listen.or(file.metrics_listen),
            dashboard_oidc,
            export_link_lifetime: match pick!(export_link_lifetime_secs, 6 * 3600) {
                secs @ 1..=604_800 => std::time::Duration::from_secs(secs),
                secs => anyhow::bail!(
                    "export_link_lifetime_secs must be between 1 and 604800, not {secs}"
                ),
            },
            max_output_chars: match args
                .max_output_chars
                .or(file.max_output_chars)
                .unwrap_or(64 * 1024)
            {
                0 => anyhow::bail!("max_output_chars must be at least 1"),
                n => n,
            },
            tls,
            proxy,
            history_retention_days: match args
                .history_retention_days
                .or(file.history_retention_days)
                .unwrap_or(90)
            {
                0 => anyhow::bail!("history_retention_days must be at least 1"),
                days => days,
            },
        })
    }
}

/// `tls*` and `proxy*`: flags and environment, else the file.
fn resolve_tls(
    args: &ServeArgs,
    file: &FileConfig,
) -> anyhow::Result<(
    Option<remediate_api::tls::TlsSource>,
    Option<remediate_api::proxy::ProxyConfig>,
)> {
    use remediate_api::tls::TlsSource;
    let list = |given: &Vec<String>, filed: &Option<Vec<String>>, what: &str| {
        let names: Vec<String> = if given.is_empty() {
            filed.clone().unwrap_or_default()
        } else {
            given.clone()
        };
        let names: Vec<String> = names.iter().map(|n| n.trim().to_owned()).collect();
        if let Some(bad) = names.iter().find(|n| {
            n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:*".contains(c))
        }) {
            anyhow::bail!("{what} '{bad}' is not a host name or IP address");
        }
        Ok(names)
    };
    let names = list(&args.tls_names, &file.tls_names, "tls_names:")?;
    let cert = args.tls_cert.clone().or(file.tls_cert.clone());
    let key = args.tls_key.clone().or(file.tls_key.clone());
    let enabled = args.tls.or(file.tls);
    let tls = match (cert, key) {
        (Some(_), Some(_)) if enabled == Some(false) => {
            anyhow::bail!("tls is off but tls_cert and tls_key are given")
        }
        (Some(_), Some(_)) if !names.is_empty() => anyhow::bail!(
            "tls_names names the local CA's certificate; with tls_cert and tls_key the names are the certificate's own"
        ),
        (Some(cert), Some(key)) => Some(TlsSource::Files { cert, key }),
        (Some(_), None) => anyhow::bail!("tls_cert needs tls_key (the certificate's private key)"),
        (None, Some(_)) => anyhow::bail!("tls_key needs tls_cert (the certificate chain)"),
        (None, None) if enabled == Some(true) => Some(TlsSource::LocalCa { names }),
        (None, None) if !names.is_empty() => {
            anyhow::bail!("tls_names is set but tls is off; add --tls")
        }
        (None, None) => None,
    };
    let hosts = list(&args.proxy_hosts, &file.proxy_hosts, "proxy_hosts:")?;
    let pass_through = args.proxy_pass_through.or(file.proxy_pass_through);
    let proxy = match args.proxy_listen.or(file.proxy_listen) {
        Some(listen) => Some(remediate_api::proxy::ProxyConfig {
            listen,
            hosts,
            pass_through: pass_through.unwrap_or(false),
        }),
        None if !hosts.is_empty() || pass_through == Some(true) => {
            anyhow::bail!(
                "proxy_hosts and proxy_pass_through need proxy_listen (--proxy-listen ADDR)"
            )
        }
        None => None,
    };
    Ok((tls, proxy))
}

fn load_file(explicit: Option<&Path>) -> anyhow::Result<FileConfig> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => {
            let default = PathBuf::from("remediate.toml");
            if !default.exists() {
                return Ok(FileConfig::default());
            }
            default
        }
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Parse a lifetime: seconds, or a number with s/m/h/d.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&text[..i], &text[i..]),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 3600, 90m, 12h or 7d"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "'{text}' has an unknown unit '{unit}'; use s, m, h or d"
            ))
        }
    };
    n.checked_mul(factor)
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("'{text}' is not a positive duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(flags: &[&str]) -> anyhow::Result<Config> {
        let mut all = vec!["--data-dir", "/nonexistent-remediate-test"];
        all.extend_from_slice(flags);
        Config::resolve(ServeArgs::from_flags(all).expect("flags parse"))
    }

    #[test]
    fn dashboard_oidc_flags_are_checked_and_the_redirect_defaults_to_the_public_url() {
        assert!(resolve(&[]).unwrap().dashboard_oidc.is_none());
        let login = resolve(&[
            "--dashboard-oidc-issuer",
            "https://idp.example/t/v2.0",
            "--dashboard-oidc-client-id",
            "app",
            "--public-url",
            "https://remediate.example/",
        ])
        .unwrap()
        .dashboard_oidc
        .unwrap();
        assert_eq!(
            login.redirect_uri,
            "https://remediate.example/oidc/callback"
        );
        assert_eq!(login.client_secret, None);
        assert!(!format!("{login:?}").contains("hunter2"));
        let message = |flags: &[&str]| resolve(flags).unwrap_err().to_string();
        assert!(message(&[
            "--dashboard-oidc-issuer",
            "https://idp.example",
            "--dashboard-oidc-client-id",
            "app"
        ])
        .contains("--dashboard-oidc-redirect"));
        assert!(message(&[
            "--dashboard-oidc-issuer",
            "https://idp.example",
            "--dashboard-oidc-redirect",
            "https://r.example/oidc/callback"
        ])
        .contains("--dashboard-oidc-client-id"));
        assert!(message(&[
            "--dashboard-oidc-issuer",
            "ftp://idp.example",
            "--dashboard-oidc-client-id",
            "app",
            "--dashboard-oidc-redirect",
            "https://r.example/oidc/callback"
        ])
        .contains("http(s)"));
        let secret = resolve(&[
            "--dashboard-oidc-issuer",
            "https://idp.example",
            "--dashboard-oidc-client-id",
            "app",
            "--dashboard-oidc-client-secret",
            "hunter2",
            "--dashboard-oidc-redirect",
            "https://r.example/oidc/callback",
        ])
        .unwrap()
        .dashboard_oidc
        .unwrap();
        assert_eq!(secret.client_secret.as_deref(), Some("hunter2"));
        assert!(
            !format!("{secret:?}").contains("hunter2"),
            "Debug hides the secret"
        );
    }
}
