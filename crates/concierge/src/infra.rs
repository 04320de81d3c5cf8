//! `concierge infra inventory` and `concierge infra plan`: read a Hetzner Cloud project through
//! its API, print what it holds (the inventory table of seed 001), and compare it with the
//! deployment Concierge needs (the plan of seed 001, which `deploy/terraform` creates).
//!
//! Both commands only read (`GET`): Terraform makes the changes. The plan is a pure function of
//! the inventory and the desired deployment ([`plan`]), tested without a network. Resources are
//! matched by name, which Hetzner keeps unique per project and resource type.
//!
//! The token comes from `HCLOUD_TOKEN` (as for the `hcloud` CLI and the Terraform provider) or
//! from `--token-file`. It is sent only to the API base, over HTTPS unless that base is a
//! loopback address (tests), and it is never printed. Exit codes: 0 done, 1 the API failed,
//! 2 bad arguments.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use integrations::hetzner::{
    DEFAULT_API_BASE, FirewallRule, HetznerClient, HetznerError, Inventory, ResourceId,
    ResourceKind, Server,
};
use secrecy::SecretString;
use serde::{Serialize, Serializer};

use crate::config::Settings;
use crate::telemetry;

/// The variable the official `hcloud` CLI and Terraform provider read the token from.
pub const TOKEN_VAR: &str = "HCLOUD_TOKEN";
const EXIT_API: u8 = 1;
const EXIT_USAGE: u8 = 2;
/// Where a firewall rule "from anywhere" comes from, per address family.
const ANYWHERE: [&str; 2] = ["0.0.0.0/0", "::/0"];

#[derive(Debug, Subcommand)]
pub enum InfraCommand {
    /// List every resource of the project: servers, volumes, firewalls, SSH keys, networks,
    /// placement groups, load balancers, floating and primary IPs, certificates.
    Inventory {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Compare the project with the deployment of deploy/terraform: what would be created,
    /// what exists and matches, what exists but differs. Changes nothing.
    Plan {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        desired: Box<DesiredArgs>,
    },
}

/// How to reach the project.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// File holding the project's API token (default: the HCLOUD_TOKEN environment variable).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Hetzner Cloud API base URL (https://; http:// only for a loopback address).
    #[arg(long, value_name = "URL", default_value = DEFAULT_API_BASE)]
    pub api_base: String,
    /// Time limit of each API request, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout_secs: u64,
}

/// The deployment to compare with. The defaults are those of deploy/terraform (its
/// `terraform.tfvars` variables of the same names), which follows seed 001.
#[derive(Debug, Args)]
pub struct DesiredArgs {
    /// Terraform's `name`: resources are named `<name>-<environment>-...`.
    #[arg(long, value_name = "NAME", default_value = "concierge", value_parser = parse_name)]
    pub name: String,
    /// Terraform's `environment`.
    #[arg(long, value_name = "ENV", default_value = "prod",
          value_parser = clap::builder::PossibleValuesParser::new(["prod", "stage"]))]
    pub environment: String,
    /// Hetzner location of the servers, volume and load balancer (seed 001: nbg1).
    #[arg(long, value_name = "LOCATION", default_value = "nbg1", value_parser = parse_slug)]
    pub location: String,
    /// Type of the first (primary) server.
    #[arg(long, value_name = "TYPE", default_value = "ccx33", value_parser = parse_slug)]
    pub server_type: String,
    /// Image the servers are created from.
    #[arg(long, value_name = "IMAGE", default_value = "ubuntu-24.04", value_parser = parse_slug)]
    pub image: String,
    /// Size of the data volume, in GB (Hetzner allows 10 to 10240).
    #[arg(long, value_name = "GB", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(10..=10240))]
    pub volume_size: u64,
    /// Address allowed to reach SSH (port 22), as a CIDR or a single IP (repeatable). Without
    /// it the firewall has no SSH rule.
    #[arg(long = "ssh-allow", value_name = "CIDR", value_parser = Cidr::parse)]
    pub ssh_allow: Vec<Cidr>,
    /// The OpenSSH public key (`.pub`) to register; compared with the key in the project.
    #[arg(long, value_name = "PATH")]
    pub ssh_public_key_file: Option<PathBuf>,
    /// Application servers in all. More than one is Terraform's scale-out: a private
    /// network, the extra nodes and a load balancer in front of them.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=10))]
    pub app_nodes: u32,
    /// Type of the extra app nodes (with --app-nodes above 1).
    #[arg(long, value_name = "TYPE", default_value = "cpx31", value_parser = parse_slug)]
    pub app_node_server_type: String,
    /// Load balancer type (with --app-nodes above 1).
    #[arg(long, value_name = "TYPE", default_value = "lb11", value_parser = parse_slug)]
    pub load_balancer_type: String,
    /// Private network range (with --app-nodes above 1).
    #[arg(long, value_name = "CIDR", default_value = "10.0.0.0/16", value_parser = Cidr::parse)]
    pub network_cidr: Cidr,
    /// Expect Hetzner backups off on the primary server (seed 001 turns them on).
    #[arg(long)]
    pub no_backups: bool,
    /// Expect delete and rebuild protection off on servers and the load balancer (Terraform's
    /// `protection = false`; the volume is always protected).
    #[arg(long)]
    pub no_protection: bool,
}

pub async fn run(
    command: InfraCommand,
    env: &[(String, String)],
    json: bool,
) -> anyhow::Result<ExitCode> {
    // Warnings only, on stderr; `RUST_LOG=debug` shows each API request.
    let _telemetry = telemetry::init(&Settings::default(), false)?;
    match command {
        InfraCommand::Inventory { api } => {
            let client = match connect(&api, env) {
                Ok(client) => client,
                Err(message) => return Ok(usage(&message)),
            };
            let inventory = match client.inventory().await {
                Ok(inventory) => inventory,
                Err(err) => return Ok(api_failure(&err)),
            };
            if json {
                out!("{}", inventory_json(&inventory));
            } else {
                out!("{}", render_inventory(&inventory).trim_end());
            }
            Ok(ExitCode::SUCCESS)
        }
        InfraCommand::Plan { api, desired } => {
            let (want, warnings) = match desired.resolve() {
                Ok(resolved) => resolved,
                Err(message) => return Ok(usage(&message)),
            };
            let client = match connect(&api, env) {
                Ok(client) => client,
                Err(message) => return Ok(usage(&message)),
            };
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            let inventory = match client.inventory().await {
                Ok(inventory) => inventory,
                Err(err) => return Ok(api_failure(&err)),
            };
            let plan = plan(&inventory, &want);
            if json {
                out!(
                    "{}",
                    serde_json::json!({
                        "desired": want,
                        "items": plan.items,
                        "unmanaged": plan.unmanaged,
                        "summary": plan.summary(),
                        "warnings": warnings,
                    })
                );
            } else {
                out!("{}", render_plan(&plan, &want).trim_end());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

fn api_failure(err: &HetznerError) -> ExitCode {
    eprintln!("error: reading the Hetzner Cloud project failed: {err}");
    match err {
        HetznerError::Unauthorized => eprintln!(
            "hint: tokens belong to one project (Cloud Console > project > Security > API tokens); \
             check {TOKEN_VAR} or --token-file"
        ),
        HetznerError::RateLimited { .. } => {
            if let Some(wait) = err.retry_after(SystemTime::now()) {
                eprintln!("hint: try again in {} s", wait.as_secs().max(1));
            }
        }
        HetznerError::Timeout { .. } => {
            eprintln!("hint: raise --timeout-secs, or check the network path to the API");
        }
        _ => {}
    }
    ExitCode::from(EXIT_API)
}

/// The client for `api`, with the token from `--token-file` or `HCLOUD_TOKEN`. Errors are
/// bad-argument messages, none of which contains the token.
fn connect(api: &ApiArgs, env: &[(String, String)]) -> Result<HetznerClient, String> {
    check_api_base(&api.api_base)?;
    let token = read_token(api.token_file.as_deref(), env)?;
    HetznerClient::new(&api.api_base, token, Duration::from_secs(api.timeout_secs))
        .map_err(|err| err.to_string())
}

fn read_token(file: Option<&Path>, env: &[(String, String)]) -> Result<SecretString, String> {
    let token = if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("cannot read the token file {}: {err}", path.display()))?;
        let token = text.trim().to_owned();
        if token.is_empty() {
            return Err(format!("the token file {} is empty", path.display()));
        }
        token
    } else {
        let token = env
            .iter()
            .find(|(name, _)| name == TOKEN_VAR)
            .map(|(_, value)| value.trim().to_owned())
            .unwrap_or_default();
        if token.is_empty() {
            return Err(format!(
                "no Hetzner Cloud API token: set {TOKEN_VAR} or pass --token-file PATH \
                 (a read-only token is enough)"
            ));
        }
        token
    };
    Ok(SecretString::from(token))
}

/// Refuses a base that would send the token in clear to another machine, or that carries
/// credentials of its own.
fn check_api_base(base: &str) -> Result<(), String> {
    let (scheme, rest) = base
        .split_once("://")
        .ok_or_else(|| format!("--api-base {base:?} is not an http(s) URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("--api-base must not contain credentials".to_owned());
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err(format!("--api-base {base:?} has no host"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http"
            if host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) =>
        {
            Ok(())
        }
        "http" => Err(format!(
            "--api-base {base:?} would send the token unencrypted; use https:// \
             (http:// is accepted for loopback addresses only)"
        )),
        _ => Err(format!("--api-base {base:?} is not an http(s) URL")),
    }
}

/// Terraform's rule for `name`: a lowercase letter, then 1 to 40 letters, digits or dashes.
fn parse_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    let mut bytes = s.bytes();
    let valid = bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && (2..=41).contains(&s.len())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(s.to_owned())
    } else {
        Err("use a lowercase letter, then 1 to 40 lowercase letters, digits or dashes".into())
    }
}

fn parse_slug(s: &str) -> Result<String, String> {
    let s = s.trim().to_ascii_lowercase();
    let valid = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if valid {
        Ok(s)
    } else {
        Err("use letters, digits, '-', '.' and '_' only".into())
    }
}

/// An IPv4 or IPv6 network in CIDR notation, as firewall rules take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Strict parsing for user input: `198.51.100.7/32`, `2001:db8::/48`, or a bare address
    /// (a single host). Host bits must be zero, as the API requires.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let cidr = Self::parse_lenient(s).ok_or_else(|| {
            format!("{s:?} is not an IP address or CIDR network (198.51.100.7/32, 2001:db8::/48)")
        })?;
        let network = cidr.network();
        if network != cidr {
            return Err(format!(
                "{s} has host bits set: use {network} for the network or {}/{} for the single address",
                cidr.addr,
                cidr.max_prefix()
            ));
        }
        Ok(cidr)
    }

    /// Reads what the API returns without judging it.
    fn parse_lenient(s: &str) -> Option<Self> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr.parse::<IpAddr>().ok()?, Some(prefix.parse().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    fn max_prefix(self) -> u8 {
        if self.addr.is_ipv4() { 32 } else { 128 }
    }

    /// The same network with host bits cleared.
    fn network(self) -> Self {
        let addr = match self.addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        };
        Self {
            addr,
            prefix: self.prefix,
        }
    }

    /// The whole address family (`/0`).
    #[must_use]
    pub fn is_anywhere(self) -> bool {
        self.prefix == 0
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// An OpenSSH public key: its type and base64 body (the comment is not part of the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicKey {
    #[serde(rename = "type")]
    kind: String,
    #[serde(skip)]
    body: String,
    file: PathBuf,
}

impl PublicKey {
    /// Reads `ssh-ed25519 AAAA... comment` from the file. Never quotes the file, which could be
    /// a private key passed by mistake.
    fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            format!(
                "cannot read the SSH public key file {}: {err}",
                path.display()
            )
        })?;
        if text.contains("PRIVATE KEY") {
            return Err(format!(
                "{} is a private key: pass the public key (the .pub file) instead",
                path.display()
            ));
        }
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or_default();
        Self::parse_line(line)
            .map(|(kind, body)| Self {
                kind,
                body,
                file: path.to_owned(),
            })
            .ok_or_else(|| {
                format!(
                    "{} is not an OpenSSH public key (expected \"ssh-ed25519 AAAA... comment\")",
                    path.display()
                )
            })
    }

    fn parse_line(line: &str) -> Option<(String, String)> {
        let mut parts = line.split_whitespace();
        let kind = parts.next()?;
        let body = parts.next()?;
        let known_kind = ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"]
            .iter()
            .any(|p| kind.starts_with(p));
        let base64 = body.len() >= 16
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        (known_kind && base64).then(|| (kind.to_owned(), body.to_owned()))
    }

    /// Whether `registered` (as the API returns it) is the same key, whatever its comment.
    fn matches(&self, registered: &str) -> bool {
        Self::parse_line(registered.trim())
            .is_some_and(|(kind, body)| kind == self.kind && body == self.body)
    }
}

/// The deployment to compare the project with.
#[derive(Debug, Clone, Serialize)]
pub struct Desired {
    pub name: String,
    pub environment: String,
    pub location: String,
    pub server_type: String,
    pub image: String,
    pub volume_size_gb: u64,
    pub ssh_allow: Vec<Cidr>,
    pub ssh_public_key: Option<PublicKey>,
    pub backups: bool,
    pub protection: bool,
    pub app_nodes: u32,
    pub app_node_server_type: String,
    pub load_balancer_type: String,
    pub network_cidr: Cidr,
}

impl DesiredArgs {
    /// The desired deployment and warnings about it, or a bad-argument message.
    fn resolve(self) -> Result<(Desired, Vec<String>), String> {
        let ssh_public_key = self
            .ssh_public_key_file
            .as_deref()
            .map(PublicKey::read)
            .transpose()?;
        let ssh_allow: Vec<Cidr> = self
            .ssh_allow
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut warnings = Vec::new();
        if ssh_allow.is_empty() {
            warnings.push(
                "no --ssh-allow: the planned firewall has no SSH rule (port 22), so nobody can \
                 log in; pass --ssh-allow YOUR.IP.ADDRESS/32"
                    .to_owned(),
            );
        }
        for cidr in ssh_allow.iter().filter(|c| c.is_anywhere()) {
            warnings.push(format!(
                "--ssh-allow {cidr} opens SSH to the whole Internet; prefer your own address"
            ));
        }
        if ssh_public_key.is_none() {
            warnings
                .push("no --ssh-public-key-file: the SSH key is looked up by name only".to_owned());
        }
        Ok((
            Desired {
                name: self.name,
                environment: self.environment,
                location: self.location,
                server_type: self.server_type,
                image: self.image,
                volume_size_gb: self.volume_size,
                ssh_allow,
                ssh_public_key,
                backups: !self.no_backups,
                protection: !self.no_protection,
                app_nodes: self.app_nodes,
                app_node_server_type: self.app_node_server_type,
                load_balancer_type: self.load_balancer_type,
                network_cidr: self.network_cidr,
            },
            warnings,
        ))
    }
}

/// One planned server.
struct ServerSpec {
    name: String,
    server_type: String,
    backups: bool,
}

impl Desired {
    /// `<name>-<environment>`, Terraform's `local.prefix`.
    fn prefix(&self) -> String {
        format!("{}-{}", self.name, self.environment)
    }

    fn ssh_key_name(&self) -> String {
        format!("{}-key", self.prefix())
    }

    fn firewall_name(&self) -> String {
        format!("{}-firewall", self.prefix())
    }

    fn placement_group_name(&self) -> String {
        format!("{}-pg", self.prefix())
    }

    fn volume_name(&self) -> String {
        format!("{}-data", self.prefix())
    }

    fn network_name(&self) -> String {
        format!("{}-net", self.prefix())
    }

    fn load_balancer_name(&self) -> String {
        format!("{}-lb", self.prefix())
    }

    fn scale_out(&self) -> bool {
        self.app_nodes > 1
    }

    /// `<prefix>-1` (the primary: the volume, backups), then `<prefix>-2`, ... (app nodes
    /// of the scale-out, without backups, as Terraform makes them).
    fn servers(&self) -> Vec<ServerSpec> {
        (1..=self.app_nodes)
            .map(|i| ServerSpec {
                name: format!("{}-{i}", self.prefix()),
                server_type: if i == 1 {
                    self.server_type.clone()
                } else {
                    self.app_node_server_type.clone()
                },
                backups: i == 1 && self.backups,
            })
            .collect()
    }

    fn server_names(&self) -> Vec<String> {
        self.servers().into_iter().map(|s| s.name).collect()
    }

    /// Inbound: 22 from the allow-list, 80 and 443 and ICMP from anywhere. No outbound rule,
    /// so all outbound traffic is allowed.
    fn firewall_atoms(&self) -> BTreeSet<RuleAtom> {
        let mut atoms: BTreeSet<RuleAtom> = self
            .ssh_allow
            .iter()
            .map(|cidr| RuleAtom::inbound("tcp", Some("22"), &cidr.to_string()))
            .collect();
        for ip in ANYWHERE {
            atoms.insert(RuleAtom::inbound("tcp", Some("80"), ip));
            atoms.insert(RuleAtom::inbound("tcp", Some("443"), ip));
            atoms.insert(RuleAtom::inbound("icmp", None, ip));
        }
        atoms
    }
}

/// One address of one firewall rule: rules are compared address by address, so one rule for
/// `0.0.0.0/0, ::/0` equals two rules with one address each.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RuleAtom {
    direction: String,
    protocol: String,
    port: Option<String>,
    /// Canonical CIDR (the source of an inbound rule, the destination of an outbound one).
    ip: String,
}

impl RuleAtom {
    fn inbound(protocol: &str, port: Option<&str>, ip: &str) -> Self {
        Self {
            direction: "in".to_owned(),
            protocol: protocol.to_owned(),
            port: port.map(str::to_owned),
            ip: canonical_ip(ip),
        }
    }

    fn of(rules: &[FirewallRule]) -> BTreeSet<Self> {
        let mut atoms = BTreeSet::new();
        for rule in rules {
            let direction = rule.direction.trim().to_ascii_lowercase();
            let ips = if direction == "out" {
                &rule.destination_ips
            } else {
                &rule.source_ips
            };
            let ips: Vec<String> = if ips.is_empty() {
                vec![String::new()]
            } else {
                ips.iter().map(|ip| canonical_ip(ip)).collect()
            };
            for ip in ips {
                atoms.insert(Self {
                    direction: direction.clone(),
                    protocol: rule.protocol.trim().to_ascii_lowercase(),
                    port: rule.port.as_ref().map(|p| p.trim().to_owned()),
                    ip,
                });
            }
        }
        atoms
    }

    /// `in tcp 22`, `in icmp`: the rule without its addresses.
    fn head(&self) -> String {
        match &self.port {
            Some(port) => format!("{} {} {port}", self.direction, self.protocol),
            None => format!("{} {}", self.direction, self.protocol),
        }
    }

    fn preposition(&self) -> &'static str {
        if self.direction == "out" {
            "to"
        } else {
            "from"
        }
    }
}

fn canonical_ip(ip: &str) -> String {
    Cidr::parse_lenient(ip).map_or_else(|| ip.trim().to_ascii_lowercase(), |c| c.to_string())
}

/// Groups atoms back into readable rules, by direction, protocol and port number:
/// `in tcp 80 from 0.0.0.0/0, ::/0`.
fn describe_atoms<'a>(atoms: impl IntoIterator<Item = &'a RuleAtom>) -> Vec<String> {
    type Key = (String, String, u32, Option<String>);
    let mut grouped: BTreeMap<Key, (&RuleAtom, Vec<&str>)> = BTreeMap::new();
    for atom in atoms {
        let port_number = atom
            .port
            .as_deref()
            .and_then(|p| p.split('-').next()?.parse().ok())
            .unwrap_or(u32::MAX);
        let key = (
            atom.direction.clone(),
            atom.protocol.clone(),
            port_number,
            atom.port.clone(),
        );
        let entry = grouped.entry(key).or_insert_with(|| (atom, Vec::new()));
        if !atom.ip.is_empty() {
            entry.1.push(atom.ip.as_str());
        }
    }
    grouped
        .into_values()
        .map(|(atom, ips)| {
            if ips.is_empty() {
                atom.head()
            } else {
                format!("{} {} {}", atom.head(), atom.preposition(), ips.join(", "))
            }
        })
        .collect()
}

/// What the plan would do with one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// It does not exist: Terraform would create it.
    Create,
    /// It exists and matches.
    Keep,
    /// It exists (or something blocks creating it) but does not match.
    Differs,
}

/// One planned resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanItem {
    /// `ssh_key`, `firewall`, `placement_group`, `volume`, `server`, `network` or
    /// `load_balancer`.
    pub resource: &'static str,
    pub name: String,
    pub action: Action,
    /// The existing resource's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<ResourceId>,
    /// For `create`, what would be made; for `differs`, each difference; empty for `keep`.
    pub details: Vec<String>,
    /// Worth knowing, but no difference Terraform would act on (a stopped server, an image
    /// Terraform ignores once the server exists, a key not compared).
    pub notes: Vec<String>,
}

impl PlanItem {
    fn create(resource: &'static str, name: String, details: Vec<String>) -> Self {
        Self {
            resource,
            name,
            action: Action::Create,
            id: None,
            details,
            notes: Vec::new(),
        }
    }

    /// An existing resource: `keep` without differences, `differs` with some.
    fn existing(
        resource: &'static str,
        name: String,
        id: ResourceId,
        differences: Vec<String>,
        notes: Vec<String>,
    ) -> Self {
        Self {
            resource,
            name,
            action: if differences.is_empty() {
                Action::Keep
            } else {
                Action::Differs
            },
            id: Some(id),
            details: differences,
            notes,
        }
    }

    fn kind(&self) -> ResourceKind {
        match self.resource {
            "ssh_key" => ResourceKind::SshKeys,
            "firewall" => ResourceKind::Firewalls,
            "placement_group" => ResourceKind::PlacementGroups,
            "volume" => ResourceKind::Volumes,
            "network" => ResourceKind::Networks,
            "load_balancer" => ResourceKind::LoadBalancers,
            _ => ResourceKind::Servers,
        }
    }
}

/// A resource in the project that the plan does not manage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unmanaged {
    pub kind: ResourceKind,
    pub id: ResourceId,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub items: Vec<PlanItem>,
    pub unmanaged: Vec<Unmanaged>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub keep: usize,
    pub differs: usize,
}

impl Plan {
    #[must_use]
    pub fn summary(&self) -> Summary {
        let count = |a: Action| self.items.iter().filter(|i| i.action == a).count();
        Summary {
            create: count(Action::Create),
            keep: count(Action::Keep),
            differs: count(Action::Differs),
        }
    }
}

/// Compares the project with the desired deployment, roughly in the order Terraform creates
/// things: SSH key, firewall, placement group, volume, servers, then the scale-out's network
/// and load balancer.
#[must_use]
pub fn plan(inv: &Inventory, want: &Desired) -> Plan {
    let specs = want.servers();
    let servers: Vec<(&ServerSpec, Option<&Server>)> = specs
        .iter()
        .map(|spec| (spec, inv.servers.iter().find(|s| s.name == spec.name)))
        .collect();
    let existing: Vec<&Server> = servers.iter().filter_map(|(_, s)| *s).collect();
    let primary = servers.first().and_then(|(_, s)| *s);

    let mut items = vec![
        plan_ssh_key(inv, want),
        plan_firewall(inv, want, &existing),
        plan_placement_group(inv, want, &existing),
        plan_volume(inv, want, primary),
    ];
    for (spec, server) in &servers {
        items.push(plan_server(want, spec, *server));
    }
    if want.scale_out() {
        items.push(plan_network(inv, want, &existing));
        items.push(plan_load_balancer(inv, want, &existing));
    }

    let managed: BTreeSet<(ResourceKind, &str)> =
        items.iter().map(|i| (i.kind(), i.name.as_str())).collect();
    let server_ids: BTreeSet<ResourceId> = existing.iter().map(|s| s.id).collect();
    let mut unmanaged = Vec::new();
    for kind in ResourceKind::ALL {
        for (id, name) in inv.names(kind) {
            // A server's own primary IPs come and go with it.
            let owned_ip = kind == ResourceKind::PrimaryIps
                && inv.primary_ips.iter().any(|ip| {
                    ip.id == id && ip.assignee_id.is_some_and(|a| server_ids.contains(&a))
                });
            if !owned_ip && !managed.contains(&(kind, name)) {
                unmanaged.push(Unmanaged {
                    kind,
                    id,
                    name: name.to_owned(),
                });
            }
        }
    }
    Plan { items, unmanaged }
}

fn plan_ssh_key(inv: &Inventory, want: &Desired) -> PlanItem {
    let name = want.ssh_key_name();
    if let Some(key) = inv.ssh_keys.iter().find(|k| k.name == name) {
        return match &want.ssh_public_key {
            Some(wanted) if !wanted.matches(&key.public_key) => PlanItem::existing(
                "ssh_key",
                name,
                key.id,
                vec![format!(
                    "the registered key (fingerprint {}) is not the one in {}",
                    key.fingerprint,
                    wanted.file.display()
                )],
                Vec::new(),
            ),
            Some(_) => PlanItem::existing("ssh_key", name, key.id, Vec::new(), Vec::new()),
            None => PlanItem::existing(
                "ssh_key",
                name,
                key.id,
                Vec::new(),
                vec!["key not compared (no --ssh-public-key-file)".to_owned()],
            ),
        };
    }
    let Some(wanted) = &want.ssh_public_key else {
        return PlanItem::create(
            "ssh_key",
            name,
            vec!["needs the public key: pass --ssh-public-key-file".to_owned()],
        );
    };
    // Hetzner refuses a second copy of a key, whatever its name.
    if let Some(other) = inv.ssh_keys.iter().find(|k| wanted.matches(&k.public_key)) {
        return PlanItem::existing(
            "ssh_key",
            name,
            other.id,
            vec![format!(
                "this public key is already registered as {:?} (#{}), and Hetzner refuses \
                 duplicates: rename that key or import it into Terraform",
                other.name, other.id
            )],
            Vec::new(),
        );
    }
    PlanItem::create(
        "ssh_key",
        name,
        vec![format!(
            "{} key from {}",
            wanted.kind,
            wanted.file.display()
        )],
    )
}

fn plan_firewall(inv: &Inventory, want: &Desired, servers: &[&Server]) -> PlanItem {
    let name = want.firewall_name();
    let wanted = want.firewall_atoms();
    let Some(firewall) = inv.firewalls.iter().find(|f| f.name == name) else {
        let mut details = describe_atoms(&wanted);
        if want.ssh_allow.is_empty() {
            details.push("no SSH rule (no --ssh-allow)".to_owned());
        }
        details.push(format!("applied to {}", want.server_names().join(", ")));
        return PlanItem::create("firewall", name, details);
    };
    let existing = RuleAtom::of(&firewall.rules);
    let mut differences: Vec<String> = describe_atoms(existing.difference(&wanted))
        .into_iter()
        .map(|rule| format!("allows {rule}, which the plan does not"))
        .collect();
    differences.extend(
        describe_atoms(wanted.difference(&existing))
            .into_iter()
            .map(|rule| format!("does not allow {rule}")),
    );
    let applied = firewall.server_ids();
    for server in servers {
        let attached = applied.contains(&server.id)
            || server
                .public_net
                .firewalls
                .iter()
                .any(|f| f.id == firewall.id);
        if !attached {
            differences.push(format!("not applied to {} (#{})", server.name, server.id));
        }
    }
    PlanItem::existing("firewall", name, firewall.id, differences, Vec::new())
}

fn plan_placement_group(inv: &Inventory, want: &Desired, servers: &[&Server]) -> PlanItem {
    let name = want.placement_group_name();
    let Some(group) = inv.placement_groups.iter().find(|g| g.name == name) else {
        return PlanItem::create(
            "placement_group",
            name,
            vec!["type spread (each server on a different host)".to_owned()],
        );
    };
    let mut differences = Vec::new();
    if group.kind != "spread" {
        differences.push(format!("type is {}, want spread", group.kind));
    }
    for server in servers {
        let member = group.servers.contains(&server.id)
            || server
                .placement_group
                .as_ref()
                .is_some_and(|g| g.id == group.id);
        if !member {
            differences.push(format!(
                "{} (#{}) is not in it (a server joins a placement group only while off)",
                server.name, server.id
            ));
        }
    }
    PlanItem::existing("placement_group", name, group.id, differences, Vec::new())
}

fn plan_volume(inv: &Inventory, want: &Desired, primary: Option<&Server>) -> PlanItem {
    let name = want.volume_name();
    let primary_name = format!("{}-1", want.prefix());
    let Some(volume) = inv.volumes.iter().find(|v| v.name == name) else {
        return PlanItem::create(
            "volume",
            name,
            vec![
                format!(
                    "{} GB ext4 in {}, delete protection on",
                    want.volume_size_gb, want.location
                ),
                format!("attached to {primary_name}, mounted on /mnt/data by cloud-init"),
            ],
        );
    };
    let mut differences = Vec::new();
    if volume.size < want.volume_size_gb {
        differences.push(format!(
            "size is {} GB, want {} GB (a volume can grow, never shrink)",
            volume.size, want.volume_size_gb
        ));
    } else if volume.size > want.volume_size_gb {
        differences.push(format!(
            "size is {} GB, more than the {} GB wanted (a volume cannot shrink: raise --volume-size)",
            volume.size, want.volume_size_gb
        ));
    }
    if let Some(location) = &volume.location
        && location.name != want.location
    {
        differences.push(format!(
            "in {}, want {} (a volume cannot move)",
            location.name, want.location
        ));
    }
    if !volume.protection.delete {
        differences.push("delete protection is off, want on".to_owned());
    }
    if let Some(format) = volume.format.as_deref().filter(|f| *f != "ext4") {
        differences.push(format!("formatted {format}, want ext4"));
    }
    match (volume.server, primary) {
        (Some(attached), Some(server)) if attached == server.id => {}
        (Some(attached), Some(server)) => differences.push(format!(
            "attached to server #{attached}, want {} (#{})",
            server.name, server.id
        )),
        (None, Some(server)) => differences.push(format!(
            "not attached, want {} (#{})",
            server.name, server.id
        )),
        (Some(attached), None) => differences.push(format!(
            "attached to server #{attached}, want {primary_name} (to be created)"
        )),
        (None, None) => {}
    }
    PlanItem::existing("volume", name, volume.id, differences, Vec::new())
}

fn plan_server(want: &Desired, spec: &ServerSpec, server: Option<&Server>) -> PlanItem {
    let group = want.placement_group_name();
    let Some(server) = server else {
        let mut details = vec![
            format!(
                "{} in {} from {}, backups {}, protection {}",
                spec.server_type,
                want.location,
                want.image,
                on_off(spec.backups),
                on_off(want.protection)
            ),
            format!(
                "in {group}, behind {}, SSH key {}",
                want.firewall_name(),
                want.ssh_key_name()
            ),
        ];
        if want.scale_out() {
            details.push(format!("in the private network {}", want.network_name()));
        }
        details.push("cloud-init: Docker and Compose, UFW, Fail2Ban, a deploy user".to_owned());
        return PlanItem::create("server", spec.name.clone(), details);
    };
    let mut differences = Vec::new();
    let mut notes = Vec::new();
    if !server
        .server_type
        .name
        .eq_ignore_ascii_case(&spec.server_type)
    {
        differences.push(format!(
            "type is {}, want {} (a resize needs the server off)",
            server.server_type.name, spec.server_type
        ));
    }
    if let Some(location) = server.location_name()
        && location != want.location
    {
        differences.push(format!(
            "in {location}, want {} (a server cannot move)",
            want.location
        ));
    }
    if server.backups_enabled() != spec.backups {
        differences.push(format!(
            "backups are {}, want {}",
            on_off(server.backups_enabled()),
            on_off(spec.backups)
        ));
    }
    if server.protection.delete != want.protection {
        differences.push(format!(
            "delete protection is {}, want {}",
            on_off(server.protection.delete),
            on_off(want.protection)
        ));
    }
    if let Some(rebuild) = server.protection.rebuild
        && rebuild != want.protection
    {
        differences.push(format!(
            "rebuild protection is {}, want {}",
            on_off(rebuild),
            on_off(want.protection)
        ));
    }
    match &server.placement_group {
        Some(g) if g.name == group => {}
        Some(g) => differences.push(format!("in placement group {}, want {group}", g.name)),
        None => differences.push(format!("in no placement group, want {group}")),
    }
    match server.image_name() {
        Some(image) if !image.eq_ignore_ascii_case(&want.image) => notes.push(format!(
            "created from {image}, not {}: Terraform ignores the image of an existing server",
            want.image
        )),
        None => notes.push("created from a snapshot or backup (no image name)".to_owned()),
        Some(_) => {}
    }
    if server.status != "running" {
        notes.push(format!("status is {}", server.status));
    }
    PlanItem::existing("server", spec.name.clone(), server.id, differences, notes)
}

fn plan_network(inv: &Inventory, want: &Desired, servers: &[&Server]) -> PlanItem {
    let name = want.network_name();
    let Some(network) = inv.networks.iter().find(|n| n.name == name) else {
        return PlanItem::create(
            "network",
            name,
            vec![format!(
                "{} with a cloud subnet, joining {}",
                want.network_cidr,
                want.server_names().join(", ")
            )],
        );
    };
    let mut differences = Vec::new();
    let range = canonical_ip(&network.ip_range);
    if range != want.network_cidr.to_string() {
        differences.push(format!(
            "range is {range}, want {} (a network's range cannot change)",
            want.network_cidr
        ));
    }
    for server in servers {
        let joined = network.servers.contains(&server.id)
            || server.private_net.iter().any(|p| p.network == network.id);
        if !joined {
            differences.push(format!(
                "{} (#{}) is not attached to it",
                server.name, server.id
            ));
        }
    }
    PlanItem::existing("network", name, network.id, differences, Vec::new())
}

fn plan_load_balancer(inv: &Inventory, want: &Desired, servers: &[&Server]) -> PlanItem {
    let name = want.load_balancer_name();
    let Some(lb) = inv.load_balancers.iter().find(|l| l.name == name) else {
        return PlanItem::create(
            "load_balancer",
            name,
            vec![
                format!(
                    "{} in {}, TCP 80 and 443 with the PROXY protocol",
                    want.load_balancer_type, want.location
                ),
                format!(
                    "to {} over {}",
                    want.server_names().join(", "),
                    want.network_name()
                ),
            ],
        );
    };
    let mut differences = Vec::new();
    if let Some(kind) = &lb.load_balancer_type
        && !kind.name.eq_ignore_ascii_case(&want.load_balancer_type)
    {
        differences.push(format!(
            "type is {}, want {}",
            kind.name, want.load_balancer_type
        ));
    }
    if let Some(location) = &lb.location
        && location.name != want.location
    {
        differences.push(format!("in {}, want {}", location.name, want.location));
    }
    for port in [80, 443] {
        match lb.services.iter().find(|s| s.listen_port == port) {
            None => differences.push(format!("no service on port {port}")),
            // nginx behind the balancer reads the client address from the PROXY header.
            Some(service) if !service.proxyprotocol => differences.push(format!(
                "the service on port {port} does not send the PROXY protocol"
            )),
            Some(_) => {}
        }
    }
    let targets = lb.server_ids();
    for server in servers {
        if !targets.contains(&server.id) {
            differences.push(format!("does not target {} (#{})", server.name, server.id));
        }
    }
    if lb.protection.delete != want.protection {
        differences.push(format!(
            "delete protection is {}, want {}",
            on_off(lb.protection.delete),
            on_off(want.protection)
        ));
    }
    PlanItem::existing("load_balancer", name, lb.id, differences, Vec::new())
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// A table with aligned columns (widths in characters).
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or_default();
            let _ = write!(text, "{cell:<width$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, headers.to_vec());
    for row in rows {
        line(&mut out, row.iter().map(String::as_str).collect());
    }
    out
}

fn id_list(ids: &[ResourceId]) -> String {
    if ids.is_empty() {
        "-".to_owned()
    } else {
        ids.iter()
            .map(|id| format!("#{id}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn opt(value: Option<&str>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or("-").to_owned()
}

fn protection(delete: bool) -> String {
    if delete { "delete" } else { "-" }.to_owned()
}

/// The seed-001 table: one line per resource type, then the details of each non-empty type.
fn render_inventory(inv: &Inventory) -> String {
    const RULE: &str = "────────────────────────────────────────────────────────────────────────";
    let mut out = String::new();
    let total = inv.total();
    let _ = writeln!(out, "Hetzner Cloud project inventory: {total} resources\n");
    let rows: Vec<Vec<String>> = ResourceKind::ALL
        .iter()
        .map(|kind| {
            let names = inv.names(*kind);
            let shown: Vec<String> = names
                .iter()
                .take(4)
                .map(|(id, name)| format!("{name} (#{id})"))
                .collect();
            let mut notes = shown.join(", ");
            if names.len() > shown.len() {
                let _ = write!(notes, ", and {} more", names.len() - shown.len());
            }
            vec![
                kind.label().to_owned(),
                if names.is_empty() { "empty" } else { "present" }.to_owned(),
                names.len().to_string(),
                if names.is_empty() {
                    "-".to_owned()
                } else {
                    notes
                },
            ]
        })
        .collect();
    let summary = table(&["Resource type", "Status", "Count", "Names"], &rows);
    let mut lines = summary.lines();
    if let Some(header) = lines.next() {
        let _ = writeln!(out, "{header}\n{RULE}");
    }
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "{RULE}");
    if total == 0 {
        let _ = writeln!(
            out,
            "\nThe project is empty: no resource to collide with, nothing billed."
        );
        return out;
    }
    let mut section = |title: &str, headers: &[&str], rows: Vec<Vec<String>>, extra: String| {
        if rows.is_empty() {
            return;
        }
        let _ = write!(out, "\n{title}\n{}{extra}", table(headers, &rows));
    };
    section(
        "Servers",
        &[
            "ID",
            "NAME",
            "STATUS",
            "TYPE",
            "LOCATION",
            "IMAGE",
            "IPV4",
            "BACKUPS",
            "PROTECTION",
            "PLACEMENT GROUP",
        ],
        inv.servers
            .iter()
            .map(|s| {
                vec![
                    s.id.to_string(),
                    s.name.clone(),
                    s.status.clone(),
                    s.server_type.name.clone(),
                    opt(s.location_name()),
                    opt(s.image_name()),
                    opt(s.public_net.ipv4.as_ref().map(|ip| ip.ip.as_str())),
                    s.backup_window
                        .as_ref()
                        .map_or_else(|| "off".to_owned(), |w| format!("on ({w})")),
                    protection(s.protection.delete),
                    opt(s.placement_group.as_ref().map(|g| g.name.as_str())),
                ]
            })
            .collect(),
        String::new(),
    );
    section(
        "Volumes",
        &[
            "ID",
            "NAME",
            "SIZE",
            "SERVER",
            "LOCATION",
            "FORMAT",
            "PROTECTION",
        ],
        inv.volumes
            .iter()
            .map(|v| {
                vec![
                    v.id.to_string(),
                    v.name.clone(),
                    format!("{} GB", v.size),
                    v.server.map_or_else(|| "-".to_owned(), |s| format!("#{s}")),
                    opt(v.location.as_ref().map(|l| l.name.as_str())),
                    opt(v.format.as_deref()),
                    protection(v.protection.delete),
                ]
            })
            .collect(),
        String::new(),
    );
    let mut rules = String::new();
    for firewall in &inv.firewalls {
        let _ = writeln!(rules, "  {} rules:", firewall.name);
        let described = describe_atoms(&RuleAtom::of(&firewall.rules));
        if described.is_empty() {
            let _ = writeln!(rules, "    (none: all inbound traffic is dropped)");
        }
        for rule in described {
            let _ = writeln!(rules, "    {rule}");
        }
    }
    section(
        "Firewalls",
        &["ID", "NAME", "RULES", "APPLIED TO"],
        inv.firewalls
            .iter()
            .map(|f| {
                let mut targets: Vec<String> = f
                    .applied_to
                    .iter()
                    .map(|t| match (&t.server, &t.label_selector) {
                        (Some(s), _) => format!("server #{}", s.id),
                        (None, Some(l)) => format!("label {}", l.selector),
                        (None, None) => t.kind.clone(),
                    })
                    .collect();
                if targets.is_empty() {
                    targets.push("-".to_owned());
                }
                vec![
                    f.id.to_string(),
                    f.name.clone(),
                    f.rules.len().to_string(),
                    targets.join(", "),
                ]
            })
            .collect(),
        rules,
    );
    section(
        "SSH Keys",
        &["ID", "NAME", "TYPE", "FINGERPRINT"],
        inv.ssh_keys
            .iter()
            .map(|k| {
                vec![
                    k.id.to_string(),
                    k.name.clone(),
                    opt(k.public_key.split_whitespace().next()),
                    opt(Some(k.fingerprint.as_str())),
                ]
            })
            .collect(),
        String::new(),
    );
    section(
        "Networks",
        &["ID", "NAME", "IP RANGE", "SUBNETS", "SERVERS", "PROTECTION"],
        inv.networks
            .iter()
            .map(|n| {
                vec![
                    n.id.to_string(),
                    n.name.clone(),
                    opt(Some(n.ip_range.as_str())),
                    n.subnets.len().to_string(),
                    id_list(&n.servers),
                    protection(n.protection.delete),
                ]
            })
            .collect(),
        String::new(),
    );
    section(
        "Placement Groups",
        &["ID", "NAME", "TYPE", "SERVERS"],
        inv.placement_groups
            .iter()
            .map(|g| {
                vec![
                    g.id.to_string(),
                    g.name.clone(),
                    g.kind.clone(),
                    id_list(&g.servers),
                ]
            })
            .collect(),
        String::new(),
    );
    section(
        "Load Balancers",
        &[
            "ID",
            "NAME",
            "TYPE",
            "LOCATION",
            "IPV4",
            "TARGETS",
            "SERVICES",
            "PROTECTION",
        ],
        inv.load_balancers
            .iter()
            .map(|l| {
                let services: Vec<String> = l
                    .services
                    .iter()
                    .map(|s| format!("{} {}", s.protocol, s.listen_port))
                    .collect();
                vec![
                    l.id.to_string(),
                    l.name.clone(),
                    opt(l.load_balancer_type.as_ref().map(|t| t.name.as_str())),
                    opt(l.location.as_ref().map(|x| x.name.as_str())),
                    opt(l
                        .public_net
                        .as_ref()
                        .and_then(|p| p.ipv4.as_ref())
                        .map(|ip| ip.ip.as_str())),
                    l.targets.len().to_string(),
                    if services.is_empty() {
                        "-".to_owned()
                    } else {
                        services.join(", ")
                    },
                    protection(l.protection.delete),
                ]
            })
            .collect(),
        String::new(),
    );
    section(
        "Floating IPs",
        &["ID", "NAME", "TYPE", "IP", "HOME", "SERVER", "PROTECTION"],
        inv.floating_ips
            .iter()
            .map(|f| {
                vec![
                    f.id.to_string(),
                    opt(f.name.as_deref()),
                    f.kind.clone(),
                    f.ip.clone(),
                    opt(f.home_location.as_ref().map(|l| l.name.as_str())),
                    f.server.map_or_else(|| "-".to_owned(), |s| format!("#{s}")),
                    protection(f.protection.delete),
                ]
            })
            .collect(),
        String::new(),
    );
    section(
        "Primary IPs",
        &[
            "ID",
            "NAME",
            "TYPE",
            "IP",
            "LOCATION",
            "ASSIGNEE",
            "AUTO DELETE",
            "PROTECTION",
        ],
        inv.primary_ips
            .iter()
            .map(|p| {
                vec![
                    p.id.to_string(),
                    p.name.clone(),
                    p.kind.clone(),
                    p.ip.clone(),
                    opt(p.location_name()),
                    p.assignee_id.map_or_else(
                        || "-".to_owned(),
                        |a| format!("{} #{a}", p.assignee_type.as_deref().unwrap_or("server")),
                    ),
                    if p.auto_delete { "yes" } else { "no" }.to_owned(),
                    protection(p.protection.delete),
                ]
            })
            .collect(),
        String::new(),
    );
    section(
        "Certificates",
        &["ID", "NAME", "TYPE", "DOMAIN NAMES", "NOT VALID AFTER"],
        inv.certificates
            .iter()
            .map(|c| {
                vec![
                    c.id.to_string(),
                    c.name.clone(),
                    opt(c.kind.as_deref()),
                    if c.domain_names.is_empty() {
                        "-".to_owned()
                    } else {
                        c.domain_names.join(", ")
                    },
                    opt(c.not_valid_after.as_deref()),
                ]
            })
            .collect(),
        String::new(),
    );
    out
}

fn inventory_json(inv: &Inventory) -> serde_json::Value {
    let counts: BTreeMap<&str, usize> = ResourceKind::ALL
        .iter()
        .map(|k| (k.path(), inv.count(*k)))
        .collect();
    serde_json::json!({
        "total": inv.total(),
        "counts": counts,
        "resources": inv,
    })
}

fn resource_label(resource: &str) -> &str {
    match resource {
        "ssh_key" => "SSH key",
        "firewall" => "firewall",
        "placement_group" => "placement group",
        "volume" => "volume",
        "server" => "server",
        "network" => "network",
        "load_balancer" => "load balancer",
        other => other,
    }
}

fn render_plan(plan: &Plan, want: &Desired) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Plan for {}-* in {} ({} app node{}); read-only, nothing was changed.\n",
        want.prefix(),
        want.location,
        want.app_nodes,
        if want.app_nodes == 1 { "" } else { "s" }
    );
    let width = plan
        .items
        .iter()
        .map(|i| resource_label(i.resource).len())
        .max()
        .unwrap_or_default();
    for item in &plan.items {
        let (mark, verb) = match item.action {
            Action::Create => ("+", "create "),
            Action::Keep => ("=", "keep   "),
            Action::Differs => ("~", "differs"),
        };
        let id = item.id.map(|id| format!(" (#{id})")).unwrap_or_default();
        let _ = writeln!(
            out,
            "{mark} {verb}  {:<width$}  {}{id}",
            resource_label(item.resource),
            item.name
        );
        for detail in &item.details {
            let _ = writeln!(out, "      {detail}");
        }
        for note in &item.notes {
            let _ = writeln!(out, "      note: {note}");
        }
    }
    let s = plan.summary();
    let _ = writeln!(
        out,
        "\nPlan: {} to create, {} unchanged, {} differ{}.",
        s.create,
        s.keep,
        s.differs,
        if s.differs == 1 { "s" } else { "" }
    );
    if s.create + s.differs > 0 {
        let _ = writeln!(
            out,
            "Terraform in deploy/terraform makes these changes; this command never does."
        );
    }
    if !plan.unmanaged.is_empty() {
        let others: Vec<String> = plan
            .unmanaged
            .iter()
            .map(|u| format!("{}: {} (#{})", u.kind.label(), u.name, u.id))
            .collect();
        let _ = writeln!(
            out,
            "Not part of this plan, left alone: {}.",
            others.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::fake_hetzner as fake;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOfg3mVSWzv8mX3ajBZKA5Y5sAT1k8n1Z2Qp9wq3cN2j";

    fn inventory(parts: &[(&str, Vec<serde_json::Value>)]) -> Inventory {
        let mut json = serde_json::Map::new();
        for kind in ResourceKind::ALL {
            json.insert(kind.path().to_owned(), serde_json::json!([]));
        }
        for (key, items) in parts {
            json.insert((*key).to_owned(), serde_json::Value::Array(items.clone()));
        }
        let value = serde_json::Value::Object(json);
        Inventory {
            servers: serde_json::from_value(value["servers"].clone()).expect("servers"),
            volumes: serde_json::from_value(value["volumes"].clone()).expect("volumes"),
            firewalls: serde_json::from_value(value["firewalls"].clone()).expect("firewalls"),
            ssh_keys: serde_json::from_value(value["ssh_keys"].clone()).expect("ssh_keys"),
            networks: serde_json::from_value(value["networks"].clone()).expect("networks"),
            placement_groups: serde_json::from_value(value["placement_groups"].clone())
                .expect("placement_groups"),
            load_balancers: serde_json::from_value(value["load_balancers"].clone())
                .expect("load_balancers"),
            floating_ips: serde_json::from_value(value["floating_ips"].clone())
                .expect("floating_ips"),
            primary_ips: serde_json::from_value(value["primary_ips"].clone()).expect("primary_ips"),
            certificates: serde_json::from_value(value["certificates"].clone())
                .expect("certificates"),
        }
    }

    /// The command's defaults (deploy/terraform's), SSH from one address, with a key.
    fn desired() -> Desired {
        Desired {
            name: "concierge".to_owned(),
            environment: "prod".to_owned(),
            location: "nbg1".to_owned(),
            server_type: "ccx33".to_owned(),
            image: "ubuntu-24.04".to_owned(),
            volume_size_gb: 50,
            ssh_allow: vec![Cidr::parse("198.51.100.7").expect("cidr")],
            ssh_public_key: Some(PublicKey {
                kind: "ssh-ed25519".into(),
                body: KEY.split_whitespace().nth(1).expect("body").into(),
                file: "id_ed25519.pub".into(),
            }),
            backups: true,
            protection: true,
            app_nodes: 1,
            app_node_server_type: "cpx31".to_owned(),
            load_balancer_type: "lb11".to_owned(),
            network_cidr: Cidr::parse("10.0.0.0/16").expect("cidr"),
        }
    }

    fn firewall_rules() -> Vec<serde_json::Value> {
        vec![
            fake::tcp_rule_in("22", &["198.51.100.7/32"]),
            // One address per rule: still the same as one rule with both.
            fake::tcp_rule_in("80", &["0.0.0.0/0"]),
            fake::tcp_rule_in("80", &["::/0"]),
            fake::tcp_rule_in("443", &["::/0", "0.0.0.0/0"]),
            fake::icmp_rule_in(&["0.0.0.0/0", "::/0"]),
        ]
    }

    fn server(id: u64, name: &str, server_type: &str) -> serde_json::Value {
        let mut server = fake::server(id, name, server_type, "nbg1", "ubuntu-24.04");
        server["placement_group"] = fake::placement_group(30, "concierge-prod-pg", "spread", &[]);
        server["public_net"]["firewalls"] = serde_json::json!([{"id": 20, "status": "applied"}]);
        server["protection"] = serde_json::json!({"delete": true, "rebuild": true});
        server
    }

    /// The project exactly as deploy/terraform leaves it for `desired()`.
    fn matching() -> Vec<(&'static str, Vec<serde_json::Value>)> {
        let mut volume = fake::volume(40, "concierge-prod-data", 50, "nbg1", Some(10));
        volume["protection"]["delete"] = true.into();
        vec![
            ("servers", vec![server(10, "concierge-prod-1", "ccx33")]),
            ("volumes", vec![volume]),
            (
                "firewalls",
                vec![fake::firewall(
                    20,
                    "concierge-prod-firewall",
                    firewall_rules(),
                    &[10],
                )],
            ),
            (
                "ssh_keys",
                vec![fake::ssh_key(
                    50,
                    "concierge-prod-key",
                    &format!("{KEY} ops@laptop"),
                )],
            ),
            (
                "placement_groups",
                vec![fake::placement_group(
                    30,
                    "concierge-prod-pg",
                    "spread",
                    &[10],
                )],
            ),
            (
                "primary_ips",
                vec![fake::primary_ip(
                    60,
                    "primary_ip-60",
                    "203.0.113.10",
                    Some(10),
                )],
            ),
        ]
    }

    fn actions(plan: &Plan) -> Vec<(&'static str, Action)> {
        plan.items.iter().map(|i| (i.resource, i.action)).collect()
    }

    #[test]
    fn an_empty_project_creates_everything_in_terraform_order() {
        let plan = plan(&inventory(&[]), &desired());
        assert_eq!(
            actions(&plan),
            [
                ("ssh_key", Action::Create),
                ("firewall", Action::Create),
                ("placement_group", Action::Create),
                ("volume", Action::Create),
                ("server", Action::Create),
            ]
        );
        let firewall = &plan.items[1];
        assert_eq!(
            firewall.details,
            [
                "in icmp from 0.0.0.0/0, ::/0",
                "in tcp 22 from 198.51.100.7/32",
                "in tcp 80 from 0.0.0.0/0, ::/0",
                "in tcp 443 from 0.0.0.0/0, ::/0",
                "applied to concierge-prod-1",
            ]
        );
        assert_eq!(plan.items[4].name, "concierge-prod-1");
        assert!(plan.unmanaged.is_empty());
        assert_eq!(
            plan.summary(),
            Summary {
                create: 5,
                keep: 0,
                differs: 0
            }
        );
    }

    #[test]
    fn a_matching_project_is_kept() {
        let plan = plan(&inventory(&matching()), &desired());
        for item in &plan.items {
            assert_eq!(item.action, Action::Keep, "{item:?}");
            assert!(item.id.is_some());
        }
        // The server's own primary IP is not reported as foreign.
        assert!(plan.unmanaged.is_empty(), "{:?}", plan.unmanaged);
    }

    #[test]
    fn each_difference_is_reported() {
        let mut parts = matching();
        parts[0].1[0]["server_type"]["name"] = "cx22".into();
        parts[0].1[0]["backup_window"] = serde_json::Value::Null;
        parts[1].1[0]["size"] = 10.into();
        parts[1].1[0]["protection"]["delete"] = false.into();
        parts[2].1[0]["rules"][0] = fake::tcp_rule_in("22", &["0.0.0.0/0", "::/0"]);
        parts[3].1[0]["public_key"] =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDifferentKeyBody x".into();
        // Not differences: Terraform ignores the image of an existing server.
        parts[0].1[0]["image"]["name"] = "ubuntu-22.04".into();
        parts[0].1[0]["status"] = "off".into();
        let plan = plan(&inventory(&parts), &desired());

        let details = |resource: &str| {
            let item = plan
                .items
                .iter()
                .find(|i| i.resource == resource)
                .expect(resource);
            assert_eq!(item.action, Action::Differs, "{item:?}");
            item.details.clone()
        };
        assert_eq!(
            details("server"),
            [
                "type is cx22, want ccx33 (a resize needs the server off)",
                "backups are off, want on"
            ]
        );
        assert_eq!(
            details("volume"),
            [
                "size is 10 GB, want 50 GB (a volume can grow, never shrink)",
                "delete protection is off, want on"
            ]
        );
        assert_eq!(
            details("firewall"),
            [
                "allows in tcp 22 from 0.0.0.0/0, ::/0, which the plan does not",
                "does not allow in tcp 22 from 198.51.100.7/32"
            ]
        );
        assert!(details("ssh_key")[0].contains("is not the one in id_ed25519.pub"));
        assert_eq!(
            plan.items[4].notes,
            [
                "created from ubuntu-22.04, not ubuntu-24.04: Terraform ignores the image of an \
                 existing server",
                "status is off"
            ]
        );
        assert_eq!(
            plan.items
                .iter()
                .find(|i| i.resource == "placement_group")
                .map(|i| i.action),
            Some(Action::Keep)
        );
    }

    #[test]
    fn a_key_registered_under_another_name_blocks_creation() {
        let parts = vec![(
            "ssh_keys",
            vec![fake::ssh_key(7, "laptop", &format!("{KEY} me@laptop"))],
        )];
        let plan = plan(&inventory(&parts), &desired());
        let key = &plan.items[0];
        assert_eq!((key.action, key.id), (Action::Differs, Some(ResourceId(7))));
        assert!(key.details[0].contains("already registered as \"laptop\""));
        assert_eq!(plan.unmanaged.len(), 1);
    }

    #[test]
    fn more_app_nodes_add_servers_a_network_and_a_load_balancer() {
        let mut want = desired();
        want.app_nodes = 3;
        let mut parts = matching();
        parts[0].1.push(server(11, "concierge-prod-2", "cpx31"));
        parts[0].1[1]["backup_window"] = serde_json::Value::Null;
        parts[2].1[0]["applied_to"] = serde_json::json!([
            {"type": "server", "server": {"id": 10}},
            {"type": "server", "server": {"id": 11}},
        ]);
        parts[4].1[0]["servers"] = serde_json::json!([10, 11]);
        let mut lb = fake::load_balancer(70, "concierge-prod-lb", "lb11", "nbg1", &[10]);
        lb["protection"]["delete"] = true.into();
        parts.push(("load_balancers", vec![lb]));
        let mut network = fake::network(80, "concierge-prod-net", "10.0.0.0/16");
        network["servers"] = serde_json::json!([10, 11]);
        parts.push((
            "networks",
            vec![network, fake::network(81, "other", "10.1.0.0/16")],
        ));

        let plan = plan(&inventory(&parts), &want);

        assert_eq!(
            plan.items
                .iter()
                .map(|i| (i.name.as_str(), i.action))
                .collect::<Vec<_>>(),
            [
                ("concierge-prod-key", Action::Keep),
                ("concierge-prod-firewall", Action::Keep),
                ("concierge-prod-pg", Action::Keep),
                ("concierge-prod-data", Action::Keep),
                ("concierge-prod-1", Action::Keep),
                ("concierge-prod-2", Action::Keep),
                ("concierge-prod-3", Action::Create),
                ("concierge-prod-net", Action::Keep),
                ("concierge-prod-lb", Action::Differs),
            ]
        );
        assert_eq!(
            plan.items[8].details,
            ["does not target concierge-prod-2 (#11)"]
        );
        assert!(
            plan.items[6].details[0].starts_with("cpx31 in nbg1 from ubuntu-24.04, backups off")
        );
        assert_eq!(
            plan.unmanaged,
            [Unmanaged {
                kind: ResourceKind::Networks,
                id: ResourceId(81),
                name: "other".into()
            }]
        );
    }

    #[test]
    fn cidrs_are_strict_for_input_and_canonical() {
        assert_eq!(
            Cidr::parse("198.51.100.7").expect("ip").to_string(),
            "198.51.100.7/32"
        );
        assert_eq!(
            Cidr::parse("2001:DB8::/32").expect("v6").to_string(),
            "2001:db8::/32"
        );
        assert!(Cidr::parse("0.0.0.0/0").expect("any").is_anywhere());
        let err = Cidr::parse("198.51.100.7/24").expect_err("host bits");
        assert!(err.contains("198.51.100.0/24"), "{err}");
        for bad in ["", "example.org", "10.0.0.0/33", "::/129", "1.2.3.4/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(canonical_ip("2001:0db8:0000::/48"), "2001:db8::/48");
    }

    #[test]
    fn public_keys_compare_without_their_comment() {
        let (kind, body) = PublicKey::parse_line(KEY).expect("key");
        let key = PublicKey {
            kind,
            body,
            file: "k.pub".into(),
        };
        assert!(key.matches(&format!("{KEY} someone@else")));
        assert!(!key.matches("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7"));
        assert!(PublicKey::parse_line("not a key").is_none());
    }

    #[test]
    fn the_api_base_must_be_https_unless_loopback() {
        assert!(check_api_base("https://api.hetzner.cloud/v1").is_ok());
        assert!(check_api_base("http://127.0.0.1:8080/v1").is_ok());
        assert!(check_api_base("http://[::1]:8080/v1").is_ok());
        assert!(check_api_base("http://localhost/v1").is_ok());
        assert!(check_api_base("http://api.hetzner.cloud/v1").is_err());
        assert!(check_api_base("https://user:pw@api.hetzner.cloud/v1").is_err());
        assert!(check_api_base("api.hetzner.cloud").is_err());
    }

    #[test]
    fn the_inventory_table_lists_every_type() {
        let empty = render_inventory(&inventory(&[]));
        for kind in ResourceKind::ALL {
            assert!(empty.contains(kind.label()), "{kind:?}");
        }
        assert!(empty.contains("The project is empty"));
        let full = render_inventory(&inventory(&matching()));
        assert!(full.contains("concierge-prod-1 (#10)"), "{full}");
        assert!(full.contains("in tcp 22 from 198.51.100.7/32"), "{full}");
        assert!(full.contains("50 GB"), "{full}");
    }
}
