//! `switchboard bench mesh-setup`: a mesh room of N native members on one server. Per run,
//! N−1 members join (a fresh room) and connect to each other; then the timed part: the last
//! member's join → every pair's data channel open (the newcomer's N−1 connections; the
//! others' connections to it). Also counted: the signaling frames of that last join, sent and
//! received by all members (the server's `joined`, `peerJoined`, `start`, and every relayed
//! offer, answer and candidate of the N−1 new pairs).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use switchboard_peer::{IcePolicy, MeshEvent, MeshPeer, PeerConfig, PeerEvent};
use tokio::task::JoinHandle;

use super::Summary;

/// Longest a member may take to open its connections.
const OPEN_WAIT: Duration = Duration::from_secs(30);

type Task = JoinHandle<Result<(), switchboard_peer::PeerError>>;

pub(super) struct Measured {
    ms: Vec<f64>,
    frames_sent: Vec<u64>,
    frames_received: Vec<u64>,
}

impl Measured {
    pub(super) fn human(&self, n: usize, path: &str) -> String {
        let s = Summary::of(&self.ms);
        format!(
            "mesh-setup {n} members ({path}), {} runs: last join → all {} pairs open: median {:.1} ms, p90 {:.1} ms, max {:.1} ms; signaling frames of that join: {} sent + {} received",
            self.ms.len(),
            n * (n - 1) / 2,
            s.median,
            s.p90,
            s.max,
            median(&self.frames_sent),
            median(&self.frames_received),
        )
    }

    pub(super) fn json(&self) -> serde_json::Value {
        let s = Summary::of(&self.ms);
        serde_json::json!({
            "median_ms": s.median,
            "p90_ms": s.p90,
            "max_ms": s.max,
            "frames_sent": median(&self.frames_sent),
            "frames_received": median(&self.frames_received),
        })
    }
}

fn median(xs: &[u64]) -> u64 {
    let mut v = xs.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

struct Member {
    mesh: MeshPeer,
    task: Task,
    /// Members whose data channel is open.
    open: HashSet<String>,
}

async fn join(url: &str, room: &str, ice: IcePolicy) -> anyhow::Result<Member> {
    let (mut mesh, driver) = MeshPeer::connect(PeerConfig {
        ice,
        ..PeerConfig::new(url, room)
    })
    .await
    .context("connecting a mesh member")?;
    let task = tokio::spawn(driver);
    loop {
        match tokio::time::timeout(OPEN_WAIT, mesh.next_event()).await {
            Ok(Some(MeshEvent::Joined { .. })) => break,
            Ok(Some(MeshEvent::ServerError(e))) => bail!("the server refused a member: {e}"),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => bail!("a member did not join"),
        }
    }
    Ok(Member {
        mesh,
        task,
        open: HashSet::new(),
    })
}

/// Reads `m`'s events until its data channels to `want` members are open.
async fn until_open(m: &mut Member, want: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + OPEN_WAIT;
    while m.open.len() < want {
        match tokio::time::timeout_at(deadline, m.mesh.next_event()).await {
            Ok(Some(MeshEvent::Member {
                peer,
                event: PeerEvent::Open,
            })) => {
                m.open.insert(peer);
            }
            Ok(Some(MeshEvent::MemberLeft(peer))) => {
                m.open.remove(&peer);
            }
            Ok(Some(_)) => {}
            Ok(None) => bail!("a member's session ended"),
            Err(_) => bail!(
                "{} of {want} connections open after {OPEN_WAIT:?}",
                m.open.len()
            ),
        }
    }
    Ok(())
}

pub(super) async fn measure(
    url: &str,
    ice: IcePolicy,
    n: usize,
    runs: usize,
) -> anyhow::Result<Measured> {
    if !(2..=32).contains(&n) {
        bail!("--members: a mesh room has 2 to 32 members");
    }
    let mut out = Measured {
        ms: Vec::new(),
        frames_sent: Vec::new(),
        frames_received: Vec::new(),
    };
    for run in 0..runs {
        let room = format!("bench-mesh-{n}-{}-{run}", std::process::id());
        let mut members = Vec::new();
        for _ in 0..n - 1 {
            members.push(join(url, &room, ice).await?);
        }
        let have = members.len();
        for m in &mut members {
            until_open(m, have - 1).await?;
        }
        let before: Vec<(u64, u64)> = members.iter().map(|m| m.mesh.signaling_frames()).collect();
        let t0 = Instant::now();
        members.push(join(url, &room, ice).await?);
        for m in &mut members {
            until_open(m, n - 1).await?;
        }
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let (mut sent, mut received) = (0, 0);
        for (i, m) in members.iter().enumerate() {
            let (s, r) = m.mesh.signaling_frames();
            let (s0, r0) = before.get(i).copied().unwrap_or((0, 0));
            sent += s - s0;
            received += r - r0;
        }
        eprintln!(
            "{n} members, run {run:>2}: last join → all pairs open {ms:.1} ms; {sent} frames sent, {received} received"
        );
        out.ms.push(ms);
        out.frames_sent.push(sent);
        out.frames_received.push(received);
        for m in members {
            m.mesh.hangup().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), m.task).await;
        }
    }
    Ok(out)
}
