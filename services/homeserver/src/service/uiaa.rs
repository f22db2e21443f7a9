//! User-interactive authentication sessions.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use ruma::api::client::uiaa::{AuthFlow, AuthType, UiaaInfo};

use crate::service::users::random_string;

const SESSION_LIFETIME: Duration = Duration::from_secs(15 * 60);

struct Session {
    completed: Vec<AuthType>,
    started: Instant,
}

#[derive(Default)]
pub struct Uiaa {
    sessions: Mutex<HashMap<String, Session>>,
}

impl Uiaa {
    /// Starts a session and describes what must be completed.
    pub fn challenge(&self, flows: &[Vec<AuthType>], session: Option<&str>) -> UiaaInfo {
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, s| s.started.elapsed() < SESSION_LIFETIME);
        let id = match session.filter(|s| sessions.contains_key(*s)) {
            Some(id) => id.to_owned(),
            None => {
                let id = random_string(24);
                sessions.insert(
                    id.clone(),
                    Session {
                        completed: Vec::new(),
                        started: Instant::now(),
                    },
                );
                id
            }
        };
        let completed = sessions
            .get(&id)
            .map(|s| s.completed.clone())
            .unwrap_or_default();
        let mut info = UiaaInfo::new(flows.iter().map(|f| AuthFlow::new(f.clone())).collect());
        info.session = Some(id);
        info.completed = completed;
        info
    }

    /// Records a completed stage; returns whether any flow is now complete.
    pub fn complete(&self, session: &str, stage: AuthType, flows: &[Vec<AuthType>]) -> bool {
        let mut sessions = self.sessions.lock();
        let entry = sessions
            .entry(session.to_owned())
            .or_insert_with(|| Session {
                completed: Vec::new(),
                started: Instant::now(),
            });
        if !entry.completed.contains(&stage) {
            entry.completed.push(stage);
        }
        let done = flows
            .iter()
            .any(|flow| flow.iter().all(|s| entry.completed.contains(s)));
        if done {
            sessions.remove(session);
        }
        done
    }
}
