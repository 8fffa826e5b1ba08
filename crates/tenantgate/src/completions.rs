//! What the shell and `--help` know about the CLI: `tenantgate completions SHELL`, the
//! environment block every command's help ends with, and value parsers that list a closed
//! set's allowed values (tenantgate-core's enums know nothing of clap: core does no I/O and
//! takes no CLI dependency, so the lists are built here from their `ALL`).

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Command, CommandFactory, FromArgMatches};
use tenantgate_core::{IsolationTier, PlanTier, Role};

/// The variables every command reads (`main.rs`: `init_tracing`, the allocator).
const ENV_ALWAYS: &str = "
  TENANTGATE_LOG                log filter in tracing's EnvFilter syntax, e.g. info or
                                warn,tenantgate_gateway=debug (default: info for serve,
                                warn for the other commands)
  TENANTGATE_LOG_FORMAT         json: one JSON object per log line; unset or anything
                                else: text
  MIMALLOC_ALLOW_THP            set: leave transparent huge pages to the allocator's own
                                default (unset: off for this process, to save memory)";

/// The variables of commands that load the configuration (`Config::load`, key files).
const ENV_CONFIG: &str = "
  TENANTGATE_CONFIG             the configuration file (TOML), as --config
  TENANTGATE_<SECTION>__<KEY>   overrides one configuration key (`__` between levels),
                                over the file: TENANTGATE_DATABASE__URL=postgres://...,
                                TENANTGATE_SERVER__LISTEN=0.0.0.0:8080,
                                TENANTGATE_SERVER__TLS__CERT_FILE=/etc/tenantgate/tls.crt
  TENANTGATE_SERVER_SECRET      the server secret (64 hex characters), instead of
                                server.secret_file
  TENANTGATE_MASTER_KEY         the local KMS master key (64 hex), instead of
                                encryption.master_key_file
  TENANTGATE_AUDIT_SIGNING_KEY  the audit checkpoint signing key (64 hex), instead of
                                audit.signing_key_file
  (providers' API keys)         the variables the configuration names in
                                providers[].api_key_env";

/// Commands that never load the configuration (they read only what their own options say).
fn reads_config(path: &[String]) -> bool {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    !matches!(
        p.as_slice(),
        ["prompt", ..] | ["audit", "verify"] | ["completions"] | ["bleed-test"]
    )
}

fn env_help(path: &[String]) -> String {
    // The blocks open with a newline so that their first line keeps its indentation.
    if reads_config(path) {
        format!("Environment:{ENV_CONFIG}{ENV_ALWAYS}")
    } else {
        format!("Environment:{ENV_ALWAYS}")
    }
}

/// `cmd` and every subcommand under it, each ending its help with the variables it reads.
fn with_env_help(cmd: Command, path: Vec<String>) -> Command {
    let help = env_help(&path);
    cmd.after_help(help.clone())
        .after_long_help(help)
        .mut_subcommands(|sub| {
            let mut p = path.clone();
            p.push(sub.get_name().to_owned());
            with_env_help(sub, p)
        })
}

/// The CLI's command tree as `--help` and the completions show it.
pub fn command<C: CommandFactory>() -> Command {
    with_env_help(C::command(), Vec::new())
}

/// `C::parse()`, with the environment block in every command's help.
pub fn parse<C: CommandFactory + FromArgMatches>() -> C {
    let matches = command::<C>().get_matches();
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `tenantgate completions SHELL`: the completion script on stdout. Install it where the shell
/// looks (docs/operations.md), e.g. `tenantgate completions bash >
/// /etc/bash_completion.d/tenantgate`.
pub fn print<C: CommandFactory>(shell: clap_complete::Shell) -> std::io::Result<()> {
    use std::io::Write;
    let mut cmd = command::<C>();
    let name = cmd.get_name().to_owned();
    // Made in memory first: clap_complete panics on a failed write, and a reader that stops
    // early (`| head`) is not an error.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// A parser accepting exactly `values`, by their names, listed as the allowed values in
/// `--help` and offered by the completions.
fn one_of<T>(values: &'static [T], name: fn(T) -> &'static str) -> impl TypedValueParser<Value = T>
where
    T: Copy + Send + Sync + 'static,
{
    PossibleValuesParser::new(values.iter().map(|v| name(*v))).try_map(move |s: String| {
        values
            .iter()
            .copied()
            .find(|v| name(*v) == s)
            .ok_or_else(|| format!("unknown value {s:?}"))
    })
}

pub fn plan() -> impl TypedValueParser<Value = PlanTier> {
    one_of(PlanTier::ALL, PlanTier::as_str)
}

pub fn isolation() -> impl TypedValueParser<Value = IsolationTier> {
    one_of(IsolationTier::ALL, IsolationTier::as_str)
}

/// The roles an API key can carry (`platform_admin` is an OIDC issuer's, never a key's).
pub fn key_role() -> impl TypedValueParser<Value = Role> {
    one_of(&[Role::TenantAdmin, Role::Member], Role::as_str)
}
