//! Networking glue: the libp2p behaviour and its construction.
//!
//! TCP + Noise + Yamux; identify; gossipsub with signed messages and explicit
//! validation for headers and proofs; request-response with the
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

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) rr: request_response::Behaviour<FrameCodec>,
}

/// Protocol names carry the wire version and the job id.
pub(crate) fn topic(cfg: &NodeConfig) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("/rampart/1/{}/headers", cfg.job.to_hex()))
}

fn rr_protocol(cfg: &NodeConfig) -> Result<libp2p::StreamProtocol, SwarmError> {
    libp2p::StreamProtocol::try_from_owned(format!("/rampart/1/{}/payload", cfg.job.to_hex()))
        .map_err(|e| SwarmError::Transport(e.to_string()))
}

pub(crate) fn build(cfg: &NodeConfig) -> Result<Swarm<Behaviour>, SwarmError> {
    let protocol = rr_protocol(cfg)?;
    let gossip_cfg = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        // Headers and proofs only; payloads never travel on gossip.
        .max_transmit_size(16 * 1024)
        .heartbeat_interval(Duration::from_millis(500))
        .build()
        .map_err(|e| SwarmError::Gossipsub(e.to_string()))?;
    let max_frame = cfg.max_frame;
    let timeout = cfg.round_timeout;
    let mut swarm = SwarmBuilder::with_existing_identity(cfg.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| SwarmError::Transport(e.to_string()))?
        .with_behaviour(|key| {
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_cfg,
            )?;
            Ok(Behaviour {
                allow: allow_block_list::Behaviour::default(),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/rampart/1".into(),
                    key.public(),
                )),
                gossipsub,
                rr: request_response::Behaviour::with_codec(
                    FrameCodec::new(max_frame),
                    [(protocol, request_response::ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(timeout),
                ),
            })
        })
        .map_err(|e| SwarmError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
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
