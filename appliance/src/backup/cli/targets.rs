//! Which backup targets a command works on: the configured ones, or one
//! named on the command line (a folder, or an S3 bucket).

use anyhow::{Result, anyhow, bail};
use archipel_backup::{S3Config, S3Target};

use super::TargetArgs;
use crate::{
    backup::{OpenTarget, TargetConfig},
    config::Config,
};

/// The targets `args` names, or else every configured one.
pub(super) fn open_targets(
    config: Option<&Config>,
    args: &TargetArgs,
    for_create: bool,
) -> Result<Vec<OpenTarget>> {
    let configured: &[TargetConfig] = config.map_or(&[], |c| &c.backup.targets);
    if args.target.is_empty() {
        if configured.is_empty() {
            bail!(
                "no backup target: name one with --target (a directory, or s3://bucket/prefix){}",
                if for_create {
                    ", or configure `[[backup.targets]]`"
                } else {
                    ""
                }
            );
        }
        return configured.iter().map(TargetConfig::open).collect();
    }
    args.target
        .iter()
        .map(|spec| resolve_target(spec, configured, args))
        .collect()
}

pub(super) fn one_target(config: Option<&Config>, args: &TargetArgs) -> Result<OpenTarget> {
    let mut targets = open_targets(config, args, false)?;
    if targets.len() > 1 {
        let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        bail!(
            "several targets ({}): choose one with --target",
            names.join(", ")
        );
    }
    Ok(targets.remove(0))
}

fn resolve_target(
    spec: &str,
    configured: &[TargetConfig],
    args: &TargetArgs,
) -> Result<OpenTarget> {
    if let Some(target) = configured.iter().find(|t| t.name == spec) {
        return target.open();
    }
    if let Some(rest) = spec.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let variable = |name: &str| {
            std::env::var(name).map_err(|_| anyhow!("{spec}: set {name} for the S3 credentials"))
        };
        let mut config = S3Config::new(
            bucket,
            variable("AWS_ACCESS_KEY_ID")?,
            variable("AWS_SECRET_ACCESS_KEY")?,
        );
        config.endpoint.clone_from(&args.s3_endpoint);
        config.region.clone_from(&args.s3_region);
        config.prefix = prefix.trim_end_matches('/').to_owned();
        config.allow_http = args.s3_endpoint.as_deref().is_some_and(is_loopback_http);
        return Ok(OpenTarget {
            name: spec.to_owned(),
            target: Box::new(S3Target::new(&config)?),
            passphrase_file: None,
        });
    }
    if spec.contains('/') || spec.starts_with('.') {
        return Ok(OpenTarget {
            name: spec.to_owned(),
            target: Box::new(archipel_backup::DirTarget::new(spec)?),
            passphrase_file: None,
        });
    }
    let names: Vec<&str> = configured.iter().map(|t| t.name.as_str()).collect();
    bail!(
        "no target named `{spec}` in `[[backup.targets]]` ({}); a directory needs a `/` (./{spec})",
        if names.is_empty() {
            "none configured".to_owned()
        } else {
            format!("configured: {}", names.join(", "))
        }
    )
}

/// Plain HTTP is allowed only to a server on this machine.
fn is_loopback_http(endpoint: &str) -> bool {
    endpoint
        .strip_prefix("http://")
        .and_then(|rest| rest.split(['/', ':']).next())
        .and_then(|host| host.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback())
        || endpoint.starts_with("http://localhost")
}
