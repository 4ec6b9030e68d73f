//! The supervisor actor: keeps the health board of the node's actors.
//!
//! Actors run under actix `Supervisor`s, which restart an actor that stops (fails)
//! with the same address, so senders never notice. Each actor reports its lifecycle
//! here by message; the HTTP status page and `/metrics` ask for the board.

use std::collections::BTreeMap;
use std::time::Instant;

use actix::prelude::*;

/// What happened to an actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// The actor (re)started and is serving.
    Started,
    /// The actor failed and its supervisor is restarting it.
    Restarting,
    /// The component stopped and will not come back by itself (e.g. the HTTP server
    /// ended).
    Stopped,
}

/// An actor's lifecycle report.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Lifecycle {
    pub actor: &'static str,
    pub event: LifecycleEvent,
}

/// One row of the health board.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActorHealth {
    pub name: String,
    pub healthy: bool,
    pub restarts: u64,
    /// Unix seconds of the last (re)start.
    pub since: u64,
}

/// Ask for the health board.
#[derive(Message)]
#[rtype(result = "Health")]
pub struct GetHealth;

/// The health board and the node's uptime.
#[derive(Debug, Clone, serde::Serialize, actix::MessageResponse)]
pub struct Health {
    pub actors: Vec<ActorHealth>,
    pub uptime_secs: u64,
}

/// Keeps the board. Private state, messages only.
pub struct SupervisorActor {
    started: Instant,
    board: BTreeMap<&'static str, ActorHealth>,
}

impl SupervisorActor {
    /// A board expecting the named actors (they show unhealthy until they report).
    pub fn new(expected: &[&'static str]) -> Self {
        let board = expected
            .iter()
            .map(|n| {
                (*n, ActorHealth { name: n.to_string(), healthy: false, restarts: 0, since: 0 })
            })
            .collect();
        SupervisorActor { started: Instant::now(), board }
    }
}

impl Actor for SupervisorActor {
    type Context = Context<Self>;
}

impl Handler<Lifecycle> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: Lifecycle, _: &mut Context<Self>) {
        let now = crate::clock::Clock::system().now_secs();
        let row = self.board.entry(msg.actor).or_insert_with(|| ActorHealth {
            name: msg.actor.to_string(),
            healthy: false,
            restarts: 0,
            since: 0,
        });
        match msg.event {
            LifecycleEvent::Started => {
                row.healthy = true;
                row.since = now;
                tracing::info!(actor = msg.actor, restarts = row.restarts, "actor started");
            }
            LifecycleEvent::Restarting => {
                row.healthy = false;
                row.restarts += 1;
                tracing::warn!(actor = msg.actor, restarts = row.restarts, "actor restarting");
            }
            LifecycleEvent::Stopped => {
                row.healthy = false;
                tracing::info!(actor = msg.actor, "stopped");
            }
        }
    }
}

impl Handler<GetHealth> for SupervisorActor {
    type Result = Health;

    fn handle(&mut self, _: GetHealth, _: &mut Context<Self>) -> Health {
        Health {
            actors: self.board.values().cloned().collect(),
            uptime_secs: self.started.elapsed().as_secs(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The health board driven by lifecycle messages alone.
    use super::*;

    fn row(h: &Health, name: &str) -> (bool, u64) {
        let r = h.actors.iter().find(|a| a.name == name).unwrap();
        (r.healthy, r.restarts)
    }

    #[test]
    fn lifecycle_events_move_the_board() {
        actix::System::new().block_on(async {
            let sup = SupervisorActor::new(&["store", "http"]).start();
            let h = sup.send(GetHealth).await.unwrap();
            assert_eq!((row(&h, "store"), row(&h, "http")), ((false, 0), (false, 0)));
            let ev = |actor, event| Lifecycle { actor, event };
            sup.send(ev("store", LifecycleEvent::Started)).await.unwrap();
            sup.send(ev("http", LifecycleEvent::Started)).await.unwrap();
            sup.send(ev("store", LifecycleEvent::Restarting)).await.unwrap();
            let h = sup.send(GetHealth).await.unwrap();
            assert_eq!(row(&h, "store"), (false, 1), "restarting: unhealthy, counted");
            sup.send(ev("store", LifecycleEvent::Started)).await.unwrap();
            sup.send(ev("http", LifecycleEvent::Stopped)).await.unwrap();
            let h = sup.send(GetHealth).await.unwrap();
            assert_eq!(row(&h, "store"), (true, 1));
            assert_eq!(row(&h, "http"), (false, 0), "a stopped server is not healthy");
        });
    }
}
