//! What the machine checks before `turn-server-proto` sees an authenticated request, and the
//! counting of refusals: just-in-time registration of REST users, quotas, the peer policy.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use turn_server_proto::api::TurnServerApi as _;
use turn_server_proto::types::attribute::XorPeerAddress;
use turn_server_proto::types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION};
use turn_server_proto::types::stun::attribute::{ErrorCode, Username};
use turn_server_proto::types::stun::message::{
    IntegrityAlgorithm, LongTermCredentials, Message, MessageClass, MessageIntegrityCredentials,
    MessageWriteVec,
};
use turn_server_proto::types::stun::prelude::{MessageWrite as _, MessageWriteExt as _};

use super::{Generation, ListenerKey, Now, Rest};
use crate::Stats;
use crate::auth::parse_rest_username;
use crate::policy::{PeerRefusal, canonical};

/// Registers REST usernames just in time, applies quotas to Allocate and the peer policy to
/// CreatePermission and ChannelBind. Returns an error reply to send instead of handing the
/// request over.
pub(super) fn precheck<S>(
    msg: &Message<'_>,
    g: &mut Generation,
    rest: &mut Rest<S>,
    now: Now,
    key: ListenerKey,
    client: SocketAddr,
) -> Option<Vec<u8>> {
    let username = msg.attribute::<Username>().ok()?;
    let name = username.username();
    let cfg = &rest.shared.config;
    let stats = &rest.shared.stats;
    let Some(parsed) = parse_rest_username(name) else {
        return None; // unknown user: the crate answers 401
    };
    if parsed.expiry <= now.unix {
        stats.refused_expired.fetch_add(1, Relaxed);
        rest.log.refused(
            now.mono,
            "expired",
            format_args!("TURN: refused {client}: credential {name:?} expired"),
        );
        return None; // never registered or already revoked: the crate answers 401
    }
    let password = switchboard_core::ice::rest_password(&cfg.secret, name);
    let creds: MessageIntegrityCredentials =
        LongTermCredentials::new(name.to_owned(), password.clone())
            .to_key(cfg.realm.clone())
            .into();
    // Only requests that carry a valid MESSAGE-INTEGRITY are judged here; the crate answers
    // the others (401 with a nonce, or 400). The user is registered only after its integrity
    // checked out: anyone can send a username with a future expiry, and registering those
    // would let unauthenticated requests fill the state table (and lock new clients out).
    let algo = msg.validate_integrity(&creds).ok()?;
    if g.users.insert(name.to_owned()) {
        stats.users_registered.fetch_add(1, Relaxed);
        g.server.add_user(name.to_owned(), password);
        g.revoke.push(Reverse((parsed.expiry, name.to_owned())));
    }
    let user = parsed.user;
    if msg.has_method(ALLOCATE) {
        // Allocations being opened count: they were charged when they were asked for.
        let by_user = rest.user_allocs.get(user).copied().unwrap_or(0);
        let by_ip = rest
            .ip_allocs
            .get(&canonical(client.ip()))
            .copied()
            .unwrap_or(0);
        let refusal = if by_user >= cfg.user_quota {
            Some(("user_quota", &stats.refused_user_quota))
        } else if by_ip >= cfg.ip_quota {
            Some(("ip_quota", &stats.refused_ip_quota))
        } else {
            None
        };
        if let Some((why, counter)) = refusal {
            counter.fetch_add(1, Relaxed);
            rest.log.refused(
                now.mono,
                why,
                format_args!(
                    "TURN: refused allocation for {client} (user {user:?}): {why} reached \
                     ({by_user} by this user, {by_ip} from this address)"
                ),
            );
            // 486 Allocation Quota Reached.
            return error_reply(msg, 486, &creds, algo);
        }
        g.pending_users.insert(client, user.to_owned());
    } else if msg.has_method(CREATE_PERMISSION) || msg.has_method(CHANNEL_BIND) {
        let tid = msg.transaction_id();
        let mut n = 0;
        while let Ok(attr) = msg.nth_attribute::<XorPeerAddress>(n) {
            n += 1;
            let peer = attr.addr(tid);
            // A permission is for an IP address (its port is meaningless, often 0): one that
            // hosts relays of this server is allowed, and each packet sent through it is
            // still checked with its real port (relay to relay only; never our own ports).
            let hosts_relay = msg.has_method(CREATE_PERMISSION)
                && rest
                    .relays
                    .keys()
                    .any(|r| canonical(r.ip()) == canonical(peer.ip()));
            if let Err(why) = cfg.policy.check(peer, &*rest)
                && !hosts_relay
            {
                count_peer_refusal(rest, now, why, client, peer, key);
                // 403 Forbidden, as coturn answers for a denied peer.
                return error_reply(msg, 403, &creds, algo);
            }
        }
    }
    None
}

pub(super) fn count_peer_refusal<S>(
    rest: &mut Rest<S>,
    now: Now,
    why: PeerRefusal,
    client: SocketAddr,
    peer: SocketAddr,
    key: ListenerKey,
) {
    rest.shared.stats.refused_peer(why).fetch_add(1, Relaxed);
    rest.log.refused(
        now.mono,
        why.as_str(),
        format_args!(
            "TURN: refused relay from {client} (via {}) to {peer}: {}",
            key.1,
            why.as_str()
        ),
    );
}

fn error_reply(
    msg: &Message<'_>,
    code: u16,
    creds: &MessageIntegrityCredentials,
    algo: IntegrityAlgorithm,
) -> Option<Vec<u8>> {
    let error = ErrorCode::builder(code).build().ok()?;
    let mut b = Message::builder_error(msg, MessageWriteVec::new());
    b.add_attribute(&error).ok()?;
    b.add_message_integrity(creds, algo).ok()?;
    b.add_fingerprint().ok()?;
    Some(b.finish())
}

/// Counts 401/441 answers to requests that carried a username (wrong password, revoked or
/// unknown user).
pub(super) fn count_auth_failure<S>(
    reply: &[u8],
    rest: &mut Rest<S>,
    now: Now,
    client: SocketAddr,
) {
    let Ok(msg) = Message::from_bytes(reply) else {
        return;
    };
    if !msg.has_class(MessageClass::Error) {
        return;
    }
    let Ok(code) = msg.attribute::<ErrorCode>() else {
        return;
    };
    if matches!(code.code(), 401 | 441) {
        rest.shared.stats.refused_auth.fetch_add(1, Relaxed);
        rest.log.refused(
            now.mono,
            "auth",
            format_args!(
                "TURN: refused {client}: bad credentials (error {})",
                code.code()
            ),
        );
    }
}

impl Stats {
    fn refused_peer(&self, why: PeerRefusal) -> &std::sync::atomic::AtomicU64 {
        match why {
            PeerRefusal::Loopback => &self.refused_peer_loopback,
            PeerRefusal::Private => &self.refused_peer_private,
            PeerRefusal::LinkLocal => &self.refused_peer_link_local,
            PeerRefusal::Multicast => &self.refused_peer_multicast,
            PeerRefusal::Unspecified => &self.refused_peer_unspecified,
            PeerRefusal::OwnPort => &self.refused_peer_own_port,
            PeerRefusal::OwnAddress => &self.refused_peer_own_address,
            PeerRefusal::Denied => &self.refused_peer_denied,
        }
    }
}
