//! Who is connected, who reads what, and the retained messages.
//!
//! One connection per identity: a second login of the same identity
//! replaces the first (MQTT's take-over, keyed by the proven identity, not
//! the client id). The table is behind one short lock taken per message;
//! nothing waits or sends while holding it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use rumqttc::QoS;
use tokio::sync::{Notify, mpsc};

use super::gate::Identity;

/// A message on its way to one connection.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) topic: Arc<str>,
    pub(crate) payload: Bytes,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
}

/// What the router holds of one connection.
#[derive(Debug, Clone)]
pub(crate) struct Attached {
    /// Tells this connection apart from a later one of the same identity.
    pub(crate) generation: u64,
    pub(crate) outbox: mpsc::Sender<Outgoing>,
    /// Closes the connection (take-over, revocation, slow reader).
    pub(crate) close: Arc<Notify>,
}

/// Where a published message goes.
#[derive(Debug)]
pub(crate) struct Recipient {
    pub(crate) identity: Identity,
    pub(crate) attached: Attached,
    pub(crate) qos: QoS,
}

#[derive(Debug, Default)]
pub(crate) struct Router {
    attached: HashMap<Identity, Attached>,
    /// Filter → subscribers with their QoS, for filters without wildcards.
    exact: HashMap<String, Vec<(Identity, QoS)>>,
    /// The others (the agent's few).
    wild: Vec<(String, Identity, QoS)>,
    retained: HashMap<String, (Bytes, QoS)>,
}

fn lower(a: QoS, b: QoS) -> QoS {
    if (a as u8) < (b as u8) { a } else { b }
}

impl Router {
    /// Attaches a connection; the one it replaces, if any, is returned (to
    /// be closed) and its subscriptions are dropped.
    pub(crate) fn attach(&mut self, identity: Identity, attached: Attached) -> Option<Attached> {
        let previous = self.attached.insert(identity.clone(), attached);
        if previous.is_some() {
            self.forget_subscriptions(&identity);
        }
        previous
    }

    /// Detaches a connection that ended, unless a later one replaced it.
    pub(crate) fn detach(&mut self, identity: &Identity, generation: u64) {
        if self.attached.get(identity).is_some_and(|attached| attached.generation == generation) {
            self.attached.remove(identity);
            self.forget_subscriptions(identity);
        }
    }

    /// The connection attached for `identity`.
    pub(crate) fn attached(&self, identity: &Identity) -> Option<&Attached> {
        self.attached.get(identity)
    }

    pub(crate) fn connections(&self) -> usize {
        self.attached.len()
    }

    fn forget_subscriptions(&mut self, identity: &Identity) {
        self.exact.retain(|_, subscribers| {
            subscribers.retain(|(who, _)| who != identity);
            !subscribers.is_empty()
        });
        self.wild.retain(|(_, who, _)| who != identity);
    }

    /// Subscribes (replacing the same filter's QoS) and returns the retained
    /// messages it matches.
    pub(crate) fn subscribe(&mut self, identity: &Identity, filter: &str, qos: QoS) -> Vec<Outgoing> {
        if rumqttc::has_wildcards(filter) {
            self.wild.retain(|(f, who, _)| !(f == filter && who == identity));
            self.wild.push((filter.to_owned(), identity.clone(), qos));
        } else {
            let subscribers = self.exact.entry(filter.to_owned()).or_default();
            subscribers.retain(|(who, _)| who != identity);
            subscribers.push((identity.clone(), qos));
        }
        self.retained
            .iter()
            .filter(|(topic, _)| rumqttc::matches(topic, filter))
            .map(|(topic, (payload, retained_qos))| Outgoing {
                topic: Arc::from(topic.as_str()),
                payload: payload.clone(),
                qos: lower(qos, *retained_qos),
                retain: true,
            })
            .collect()
    }

    pub(crate) fn unsubscribe(&mut self, identity: &Identity, filter: &str) {
        if let Some(subscribers) = self.exact.get_mut(filter) {
            subscribers.retain(|(who, _)| who != identity);
            if subscribers.is_empty() {
                self.exact.remove(filter);
            }
        }
        self.wild.retain(|(f, who, _)| !(f == filter && who == identity));
    }

    /// Keeps (or, with an empty payload, clears) a retained message.
    pub(crate) fn retain(&mut self, topic: &str, payload: &Bytes, qos: QoS) {
        if payload.is_empty() {
            self.retained.remove(topic);
        } else {
            self.retained.insert(topic.to_owned(), (payload.clone(), qos));
        }
    }

    /// The connections a message on `topic` reaches, at the QoS each gets.
    pub(crate) fn recipients(&self, topic: &str, qos: QoS) -> Vec<Recipient> {
        let exact = self.exact.get(topic).into_iter().flatten().map(|(who, sub)| (who, *sub));
        let wild = self.wild.iter().filter(|(filter, _, _)| rumqttc::matches(topic, filter)).map(|(_, who, sub)| (who, *sub));
        let mut recipients: Vec<Recipient> = Vec::new();
        for (identity, sub) in exact.chain(wild) {
            let Some(attached) = self.attached.get(identity) else { continue };
            // Overlapping subscriptions of one client get one copy.
            if let Some(known) = recipients.iter_mut().find(|r| &r.identity == identity) {
                if (sub as u8) > (known.qos as u8) {
                    known.qos = lower(sub, qos);
                }
                continue;
            }
            recipients.push(Recipient { identity: identity.clone(), attached: attached.clone(), qos: lower(sub, qos) });
        }
        recipients
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attached(generation: u64) -> (Attached, mpsc::Receiver<Outgoing>) {
        let (outbox, inbox) = mpsc::channel(4);
        (Attached { generation, outbox, close: Arc::default() }, inbox)
    }

    fn st(id: &str) -> Identity {
        Identity::Station(id.to_owned())
    }

    #[test]
    fn a_second_login_replaces_the_first_and_its_subscriptions() {
        let mut router = Router::default();
        let (first, _a) = attached(1);
        assert!(router.attach(st("st-1"), first).is_none());
        router.subscribe(&st("st-1"), "t/st-1/command", QoS::AtLeastOnce);
        let (second, _b) = attached(2);
        assert_eq!(router.attach(st("st-1"), second).map(|old| old.generation), Some(1));
        assert!(router.recipients("t/st-1/command", QoS::AtLeastOnce).is_empty(), "the old subscription went with it");
        router.detach(&st("st-1"), 1);
        assert_eq!(router.connections(), 1, "the end of the replaced connection does not detach its successor");
        router.detach(&st("st-1"), 2);
        assert_eq!(router.connections(), 0);
    }

    #[test]
    fn messages_reach_matching_subscribers_once_at_the_lower_qos() {
        let mut router = Router::default();
        let (agent, _a) = attached(1);
        router.attach(Identity::Agent, agent);
        router.subscribe(&Identity::Agent, "v/station/+/event", QoS::AtLeastOnce);
        router.subscribe(&Identity::Agent, "v/#", QoS::AtMostOnce);
        let recipients = router.recipients("v/station/st-1/event", QoS::AtLeastOnce);
        assert_eq!(recipients.len(), 1);
        assert_eq!(recipients[0].qos, QoS::AtLeastOnce);
        assert_eq!(router.recipients("v/station/st-1/event", QoS::AtMostOnce)[0].qos, QoS::AtMostOnce);
        assert!(router.recipients("w/station/st-1/event", QoS::AtLeastOnce).is_empty());
    }

    #[test]
    fn retained_messages_are_given_to_new_subscribers_and_cleared_by_an_empty_one() {
        let mut router = Router::default();
        router.retain("v/station/st-1/status", &Bytes::from_static(b"online"), QoS::AtLeastOnce);
        router.retain("v/station/st-2/status", &Bytes::from_static(b"online"), QoS::AtLeastOnce);
        router.retain("v/station/st-2/status", &Bytes::new(), QoS::AtLeastOnce);
        let (agent, _a) = attached(1);
        router.attach(Identity::Agent, agent);
        let retained = router.subscribe(&Identity::Agent, "v/station/+/status", QoS::AtLeastOnce);
        assert_eq!(retained.len(), 1);
        assert_eq!(&*retained[0].topic, "v/station/st-1/status");
        assert!(retained[0].retain);
    }
}
