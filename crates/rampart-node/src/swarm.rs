//! Networking glue: the libp2p behaviour and its construction.
//!
//! TCP + Noise + Yamux; identify; gossipsub carrying signed headers and
//! proofs (anonymous envelopes: the signature inside is the one checked,
//! once per distinct message) with explicit validation; request-response with the
//! [`FrameCodec`](crate::codec::FrameCodec) for payload push, pull and state
//! requests; an allow list holding exactly the roster, so connections from
//! anyone else are denied as soon as the Noise handshake names them.

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    Swarm, SwarmBuilder, allow_block_list, gossipsub, identify, noise, request_response, tcp, yamux,
};

use crate::codec::FrameCodec;
use crate::config::NodeConfig;
use crate::wire::WIRE_VERSION;

/// Why the swarm could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SwarmError {
    /// The transport could not be set up.
    #[error("transport: {0}")]
    Transport(String),
    /// The gossipsub configuration was refused.
    #[error("gossipsub: {0}")]
    Gossipsub(String),
    /// A listen address was refused.
    #[error("listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: libp2p::Multiaddr,
        /// Why.
        reason: String,
    },
}

/// Local-network discovery (feature `mdns`; on only when configured).
#[cfg(feature = "mdns")]
pub(crate) type Mdns = libp2p::swarm::behaviour::toggle::Toggle<libp2p::mdns::tokio::Behaviour>;
/// Without the `mdns` feature, a behaviour that does nothing.
#[cfg(not(feature = "mdns"))]
pub(crate) type Mdns = libp2p::swarm::dummy::Behaviour;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) rr: request_response::Behaviour<FrameCodec>,
    pub(crate) mdns: Mdns,
}

/// How long a dial may take, handshakes included: twice the round timeout,
/// at least 1 s and at most 30 s. A dial to a peer behind a dead link
/// fails after this instead of after the OS's minutes of SYN retries, so
/// the node keeps redialling and reaches the peer soon after the link is
/// back.
pub(crate) fn dial_timeout(round_timeout: Duration) -> Duration {
    (round_timeout * 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

#[cfg(feature = "mdns")]
fn mdns(cfg: &NodeConfig, key: &libp2p::identity::Keypair) -> Result<Mdns, std::io::Error> {
    Ok(if cfg.mdns {
        Some(libp2p::mdns::tokio::Behaviour::new(
            libp2p::mdns::Config::default(),
            key.public().to_peer_id(),
        )?)
    } else {
        None
    }
    .into())
}

#[cfg(not(feature = "mdns"))]
fn mdns(_: &NodeConfig, _: &libp2p::identity::Keypair) -> Result<Mdns, std::io::Error> {
    Ok(libp2p::swarm::dummy::Behaviour)
}

/// Protocol names carry the wire version and the job id.
pub(crate) fn topic(cfg: &NodeConfig) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!(
        "/rampart/{WIRE_VERSION}/{}/headers",
        cfg.job.to_hex()
    ))
}

fn rr_protocol(cfg: &NodeConfig) -> Result<libp2p::StreamProtocol, SwarmError> {
    libp2p::StreamProtocol::try_from_owned(format!(
        "/rampart/{WIRE_VERSION}/{}/payload",
        cfg.job.to_hex()
    ))
    .map_err(|e| SwarmError::Transport(e.to_string()))
}

/// Prefix of the job id in the identify agent string.
const AGENT_JOB: &str = " job=";

/// The identify agent string: the crate version and the job id, so that two
/// members of one roster running different jobs (a roster file edited at
/// one of them) learn it at connection time instead of seeing every
/// request fail with "protocol not supported".
pub(crate) fn agent_version(cfg: &NodeConfig) -> String {
    format!(
        "rampart-node/{}{AGENT_JOB}{}",
        env!("CARGO_PKG_VERSION"),
        cfg.job.to_hex()
    )
}

/// The job id a peer announced in its identify agent string (`None` when
/// it announced none, e.g. another libp2p program).
pub(crate) fn peer_job(agent: &str) -> Option<&str> {
    let (_, job) = agent.rsplit_once(AGENT_JOB)?;
    (job.len() == 64 && job.bytes().all(|b| b.is_ascii_hexdigit())).then_some(job)
}

pub(crate) fn build(cfg: &NodeConfig) -> Result<Swarm<Behaviour>, SwarmError> {
    let protocol = rr_protocol(cfg)?;
    // Everything published on gossip (a header, an equivocation proof)
    // carries its author's Ed25519 signature, which the validator checks
    // once per distinct header. Gossipsub's own envelope signature would
    // sign the same bytes again and is checked on every copy that arrives
    // (a message reaches a node from each of its mesh peers), before
    // duplicates are dropped: so messages travel anonymous, and a message's
    // id is the hash of its bytes (a forged envelope cannot claim an honest
    // message's id, as it could with the default sender + sequence number).
    let gossip_cfg = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::new(blake3::hash(&m.data).as_bytes())
        })
        .validate_messages()
        // Headers and proofs only; payloads never travel on gossip.
        .max_transmit_size(16 * 1024)
        .heartbeat_interval(Duration::from_millis(500))
        .build()
        .map_err(|e| SwarmError::Gossipsub(e.to_string()))?;
    let max_frame = cfg.max_frame;
    let timeout = cfg.round_timeout;
    let builder = SwarmBuilder::with_existing_identity(cfg.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| SwarmError::Transport(e.to_string()))?;
    // QUIC (feature `quic`): listen on `/ip4/…/udp/0/quic-v1` addresses and
    // dial peers' QUIC addresses; TLS 1.3 authenticates the same Ed25519 key.
    #[cfg(feature = "quic")]
    let builder = builder.with_quic();
    let mut swarm = builder
        .with_behaviour(|key| {
            let gossipsub =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_cfg)?;
            Ok(Behaviour {
                allow: allow_block_list::Behaviour::default(),
                identify: identify::Behaviour::new(
                    identify::Config::new(format!("/rampart/{WIRE_VERSION}"), key.public())
                        .with_agent_version(agent_version(cfg)),
                ),
                gossipsub,
                rr: request_response::Behaviour::with_codec(
                    FrameCodec::new(max_frame),
                    [(protocol, request_response::ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(timeout),
                ),
                mdns: mdns(cfg, key)?,
            })
        })
        .map_err(|e| SwarmError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .with_connection_timeout(dial_timeout(cfg.round_timeout))
        .build();
    for peer in &cfg.roster {
        swarm.behaviour_mut().allow.allow_peer(*peer);
    }
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic(cfg))
        .map_err(|e| SwarmError::Gossipsub(e.to_string()))?;
    for addr in &cfg.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| SwarmError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    for (peer, addr) in &cfg.bootstrap {
        swarm.add_peer_address(*peer, addr.clone());
    }
    Ok(swarm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_in_agent_strings() {
        let job = "ab".repeat(32);
        assert_eq!(
            peer_job(&format!("rampart-node/0.1.0 job={job}")),
            Some(job.as_str())
        );
        assert_eq!(peer_job("rust-libp2p/0.45"), None);
        assert_eq!(peer_job("rampart-node/0.1.0 job=xyz"), None);
    }
}
