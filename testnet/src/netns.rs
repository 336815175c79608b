//! Linux network namespaces as separate hosts: one namespace per node, each
//! with its own `eth0` and 10.77.0.x address, all cabled by veth pairs to
//! a bridge in a hub namespace. Nothing touches the host's own network:
//! the bridge and the hub ends of the cables live in the hub namespace.
//!
//! A node is cut off (a partition) by taking its cable down at the hub
//! (`ip link set down`), and healed by bringing it up again: its TCP
//! connections stall rather than fail, as when a real link drops.
//!
//! Namespace names carry the creating process id and a sequence number
//! (`rampart-<pid>-<seq>-hub`, `...-n<i>`), so parallel runs never collide;
//! [`Lab`] deletes its namespaces on drop, and [`Lab::create`] first
//! deletes those left by processes that no longer exist (a run killed
//! before its drop). Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and the
//! `ip` command of iproute2.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// Prefix of every namespace this module creates.
const PREFIX: &str = "rampart-";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Runs `ip` with `args`; an error carries its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Why namespaces cannot be created here, or `Ok` when they can: `ip` must
/// run and a probe namespace must be created and deleted.
pub fn available() -> Result<()> {
    let probe = format!(
        "{PREFIX}{}-{}-probe",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    );
    ip(&["netns", "add", &probe])?;
    ip(&["netns", "del", &probe])
}

/// Deletes the namespaces of processes that no longer run.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// A set of namespaces cabled to one bridge; deleted on drop.
#[derive(Debug)]
pub struct Lab {
    hub: String,
    nodes: Vec<String>,
}

impl Lab {
    /// Creates `n` node namespaces and the hub. Node `i` gets the address
    /// [`Lab::addr`]`(i)`/24 on its `eth0`; the hub end of its cable is
    /// `v<i>` in the hub namespace.
    pub fn create(n: usize) -> Result<Self> {
        sweep_stale();
        let base = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let mut lab = Self {
            hub: format!("{base}-hub"),
            nodes: Vec::with_capacity(n),
        };
        // From here on, drop deletes whatever was created.
        ip(&["netns", "add", &lab.hub])?;
        let hub = lab.hub.clone();
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("{base}-n{i}");
            ip(&["netns", "add", &ns])?;
            lab.nodes.push(ns.clone());
            let cable = format!("v{i}");
            ip(&[
                "-n", &hub, "link", "add", &cable, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &hub, "link", "set", &cable, "master", "br0", "up"])?;
            let addr = format!("{}/24", Self::addr(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    /// Number of node namespaces.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the lab has no node namespace.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The address of node `i`: 10.77.0.(10 + i).
    pub fn addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, 10u8.wrapping_add(i as u8))
    }

    /// The namespace of node `i`.
    pub fn namespace(&self, i: usize) -> &str {
        &self.nodes[i]
    }

    /// A command that runs `program` inside node `i`'s namespace
    /// (`ip netns exec`, which execs it: the child's pid is the program's).
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.nodes[i]]).arg(program);
        cmd
    }

    /// Cuts node `i` off: its cable goes down at the hub.
    pub fn cut(&self, i: usize) -> Result<()> {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "down"])
    }

    /// Reconnects node `i`.
    pub fn heal(&self, i: usize) -> Result<()> {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "up"])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of every cable.
        for ns in self.nodes.iter().chain(std::iter::once(&self.hub)) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct() {
        assert_eq!(Lab::addr(0), Ipv4Addr::new(10, 77, 0, 10));
        assert_ne!(Lab::addr(1), Lab::addr(2));
    }

    #[test]
    fn namespaces_are_created_cut_and_deleted() {
        if let Err(e) = available() {
            println!("skipped: network namespaces cannot be created here: {e:#}");
            return;
        }
        let lab = Lab::create(2).unwrap();
        let names: Vec<String> = (0..2).map(|i| lab.namespace(i).to_owned()).collect();
        let listed = || {
            String::from_utf8(
                Command::new("ip")
                    .args(["netns", "list"])
                    .output()
                    .unwrap()
                    .stdout,
            )
            .unwrap()
        };
        assert!(names.iter().all(|n| listed().contains(n.as_str())));
        let out = lab
            .command(0, "ip")
            .args(["-4", "addr", "show", "eth0"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("10.77.0.10/24"));
        lab.cut(1).unwrap();
        lab.heal(1).unwrap();
        drop(lab);
        assert!(names.iter().all(|n| !listed().contains(n.as_str())));
    }
}
