//! The event log of a run: every [`Event`] of the [protocol](crate::protocol)
//! a run saw (the owner's lines, the workers' trace lines, the harness's own
//! events), each stamped with the milliseconds since the run started. The
//! checker judges a run from this log alone (and what the sandbox saw).

use serde::{Deserialize, Serialize};

use crate::protocol::Event;

/// An event with the time it was logged, in ms since the run started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logged {
    pub t_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_trace;

    #[test]
    fn events_are_one_json_object_with_a_tag() {
        let logged = Logged { t_ms: 5, event: Event::WorkerExit { pid: 7, signal: Some(9), code: None } };
        let line = serde_json::to_string(&logged).unwrap();
        assert_eq!(line, r#"{"t_ms":5,"event":"worker-exit","pid":7,"signal":9,"code":null}"#);
        assert_eq!(serde_json::from_str::<Logged>(&line).unwrap(), logged);
        assert_eq!(parse_trace("start 3 0 42"), Some(Event::TaskStarted { tag: 3, attempt: 0, pid: 42 }));
        assert_eq!(parse_trace("garbage"), None);
    }
}
