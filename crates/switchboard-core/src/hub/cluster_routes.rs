//! Cluster mode: where ids held by other nodes were last found (socket.io socket ids and
//! PeerJS ids), so that a relay to them is published straight to their node, as an Ant
//! Media relay is, instead of asking the registry each time.
//!
//! A route is learnt from the registry's answer to a relay it routed, and trusted until it
//! misses: the receiving node answers a relay for an id it does not hold (any more) with a
//! miss ([`NodeMessage::SioMiss`], [`NodeMessage::PjMiss`]), and the sender hears what it would
//! have heard from the registry had the id been gone when it sent (socket.io
//! `unknown_target`, PeerJS `EXPIRE`). A miss never sends the message on elsewhere: what
//! follows goes through the registry again, so no message overtakes one sent before it.
//! Routes to a node are dropped when it dies and all of them when this node was cut off.
//!
//! The table is bounded by [`super::Config::route_cache`]: when full, it is emptied (every
//! route is learnt again on its next relay) and [`super::ClusterStats::route_resets`]
//! counts it.
//!
//! [`NodeMessage::SioMiss`]: switchboard_proto::cluster::NodeMessage::SioMiss
//! [`NodeMessage::PjMiss`]: switchboard_proto::cluster::NodeMessage::PjMiss

use std::collections::HashMap;

use switchboard_proto::cluster::NodeId;

/// Ids held by other nodes: the node where each was last found.
#[derive(Debug, Default)]
pub(super) struct Routes {
    nodes: HashMap<Box<str>, NodeId>,
}

impl Routes {
    /// The node `id` was last found on.
    pub(super) fn get(&self, id: &str) -> Option<&NodeId> {
        self.nodes.get(id)
    }

    /// `id` was found on `node`. Returns whether the table was full and emptied first.
    pub(super) fn learn(&mut self, id: &str, node: &NodeId, max: usize) -> bool {
        if max == 0 {
            return false;
        }
        if let Some(known) = self.nodes.get_mut(id) {
            known.clone_from(node);
            return false;
        }
        let reset = self.nodes.len() >= max;
        if reset {
            self.nodes = HashMap::new();
        }
        self.nodes.insert(id.into(), node.clone());
        reset
    }

    /// The registry answered a relay to `id`: delivered to `node`, or not delivered (the
    /// route, if any, is forgotten). Returns whether the table was full and emptied.
    pub(super) fn answered(&mut self, id: &str, node: Option<&NodeId>, max: usize) -> bool {
        match node {
            Some(node) => self.learn(id, node, max),
            None => {
                self.forget_id(id);
                false
            }
        }
    }

    /// `id` was not found on `node`: forget that route (not a newer one).
    pub(super) fn forget(&mut self, id: &str, node: &NodeId) {
        if self.nodes.get(id) == Some(node) {
            self.nodes.remove(id);
        }
    }

    /// Forgets the route to `id`, wherever it led.
    pub(super) fn forget_id(&mut self, id: &str) {
        self.nodes.remove(id);
    }

    /// `node` died: forget every route to it.
    pub(super) fn forget_node(&mut self, node: &NodeId) {
        self.nodes.retain(|_, n| n != node);
    }

    /// Forgets every route.
    pub(super) fn clear(&mut self) {
        self.nodes = HashMap::new();
    }

    /// How many routes are known.
    pub(super) fn len(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> NodeId {
        NodeId::new(n).expect("a valid node id")
    }

    #[test]
    fn a_route_is_forgotten_only_where_it_led() {
        let mut r = Routes::default();
        assert!(!r.learn("a", &node("n1"), 10));
        r.forget("a", &node("n2"));
        assert_eq!(r.get("a"), Some(&node("n1")));
        assert!(!r.learn("a", &node("n2"), 10));
        r.forget("a", &node("n1"));
        assert_eq!(r.get("a"), Some(&node("n2")));
        r.forget("a", &node("n2"));
        assert_eq!(r.get("a"), None);
    }

    #[test]
    fn the_table_is_bounded_and_can_be_off() {
        let mut r = Routes::default();
        for i in 0..3 {
            assert!(!r.learn(&format!("id{i}"), &node("n1"), 3));
        }
        assert!(
            !r.learn("id0", &node("n2"), 3),
            "a known id is updated, not added"
        );
        assert!(r.learn("id3", &node("n1"), 3), "full: emptied first");
        assert_eq!(r.len(), 1);
        r.learn("id4", &node("n2"), 3);
        r.forget_node(&node("n1"));
        assert_eq!((r.get("id3"), r.len()), (None, 1));
        let mut off = Routes::default();
        assert!(!off.learn("a", &node("n1"), 0));
        assert_eq!(off.len(), 0);
    }
}
