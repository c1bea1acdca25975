//! WebSocket frames: what clients send and what the server sends, as typed
//! values. Parsing never fails the session: anything that does not parse
//! becomes an [`error`](ServerFrame::Error) frame for the client.
//!
//! Every server frame is sent with `at`, the server's time (RFC 3339, ms).

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{
    AgentId, AssignedVia, InteractionId, OfferId, PresenceStatus, RescindReason, Role,
};

/// A command from a client, with its optional `req_id` echoed in the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    pub req_id: Option<Value>,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    Accept {
        offer_id: OfferId,
    },
    Reject {
        offer_id: OfferId,
    },
    SetPresence {
        status: PresenceStatus,
        #[serde(default)]
        reason: Option<String>,
    },
    Ping,
}

pub const COMMAND_TYPES: &[&str] = &["accept", "reject", "set_presence", "ping"];

/// Why a client frame could not be understood; becomes an `error` frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub req_id: Option<Value>,
    pub code: ErrorCode,
    pub message: String,
}

/// The `code` of an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    OfferGone,
    Forbidden,
    NotFound,
    OverCapacity,
    Unauthorized,
    Internal,
}

/// Largest text frame accepted from a client. Commands are tiny; anything
/// bigger is a mistake or an attack.
pub const MAX_CLIENT_FRAME: usize = 64 * 1024;

impl ClientFrame {
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        let bad = |req_id: Option<Value>, message: String| FrameError {
            req_id,
            code: ErrorCode::BadRequest,
            message,
        };
        let value: Value = serde_json::from_str(text)
            .map_err(|e| bad(None, format!("the frame is not JSON: {e}")))?;
        let Value::Object(mut obj) = value else {
            return Err(bad(
                None,
                "the frame must be a JSON object with a \"type\"".into(),
            ));
        };
        let req_id = obj.remove("req_id");
        let kind = match obj.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(_) => return Err(bad(req_id, "\"type\" must be a string".into())),
            None => return Err(bad(req_id, "the frame has no \"type\"".into())),
        };
        if !COMMAND_TYPES.contains(&kind.as_str()) {
            return Err(bad(
                req_id,
                format!(
                    "unknown command type `{kind}` (valid: {})",
                    COMMAND_TYPES.join(", ")
                ),
            ));
        }
        match Command::deserialize(Value::Object(obj)) {
            Ok(command) => Ok(ClientFrame { req_id, command }),
            Err(e) => Err(bad(req_id, format!("invalid `{kind}` command: {e}"))),
        }
    }
}

/// Who the session belongs to, as sent in `hello`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentInfo {
    pub id: AgentId,
    pub username: String,
    pub name: String,
    pub role: Role,
}

/// Presence as shown to the agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresenceView {
    pub status: PresenceStatus,
    pub reason: Option<String>,
}

/// A frame from the server. Later issues fill in the offer and interaction
/// frames; their shapes are fixed by the contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Hello {
        agent: AgentInfo,
        presence: PresenceView,
        heartbeat_secs: u64,
    },
    Offer {
        offer_id: OfferId,
        interaction_id: InteractionId,
        queue: String,
        account: String,
        subject: String,
        from: String,
        preview: String,
        expires_at: String,
    },
    OfferRescinded {
        offer_id: OfferId,
        interaction_id: InteractionId,
        reason: RescindReason,
    },
    Assigned {
        interaction_id: InteractionId,
        via: AssignedVia,
    },
    MessageAdded {
        interaction_id: InteractionId,
        message: Value,
    },
    InteractionUpdated {
        interaction: Value,
    },
    Presence {
        status: PresenceStatus,
        reason: Option<String>,
    },
    Ok {
        req_id: Option<Value>,
        #[serde(flatten)]
        result: Map<String, Value>,
    },
    Error {
        req_id: Option<Value>,
        code: ErrorCode,
        message: String,
    },
}

impl ServerFrame {
    pub fn ok(req_id: Option<Value>) -> Self {
        ServerFrame::Ok {
            req_id,
            result: Map::new(),
        }
    }

    pub fn error(req_id: Option<Value>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            req_id,
            code,
            message: message.into(),
        }
    }

    /// The frame's `type`, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerFrame::Hello { .. } => "hello",
            ServerFrame::Offer { .. } => "offer",
            ServerFrame::OfferRescinded { .. } => "offer_rescinded",
            ServerFrame::Assigned { .. } => "assigned",
            ServerFrame::MessageAdded { .. } => "message_added",
            ServerFrame::InteractionUpdated { .. } => "interaction_updated",
            ServerFrame::Presence { .. } => "presence",
            ServerFrame::Ok { .. } => "ok",
            ServerFrame::Error { .. } => "error",
        }
    }

    /// The JSON text sent on the wire, stamped with the server's time now.
    pub fn to_text(&self) -> String {
        #[derive(Serialize)]
        struct Stamped<'a> {
            #[serde(flatten)]
            frame: &'a ServerFrame,
            at: String,
        }
        let at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        // Serialising these types cannot fail (no maps with non-string keys,
        // no custom serialisers that error); fall back to an error frame
        // rather than panicking if that ever changes.
        serde_json::to_string(&Stamped {
            frame: self,
            at: at.clone(),
        })
        .unwrap_or_else(|e| {
            format!(
                r#"{{"type":"error","req_id":null,"code":"internal","message":"{e}","at":"{at}"}}"#
            )
        })
    }
}

impl From<FrameError> for ServerFrame {
    fn from(e: FrameError) -> Self {
        ServerFrame::Error {
            req_id: e.req_id,
            code: e.code,
            message: e.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_command() {
        let f = ClientFrame::parse(r#"{"type":"accept","offer_id":"7","req_id":1}"#).unwrap();
        assert_eq!(
            f.command,
            Command::Accept {
                offer_id: OfferId(7)
            }
        );
        assert_eq!(f.req_id, Some(Value::from(1)));
        let f = ClientFrame::parse(r#"{"type":"set_presence","status":"paused","reason":"lunch"}"#)
            .unwrap();
        assert_eq!(
            f.command,
            Command::SetPresence {
                status: PresenceStatus::Paused,
                reason: Some("lunch".into())
            }
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ping"}"#).unwrap().command,
            Command::Ping
        );
        assert!(ClientFrame::parse(r#"{"type":"reject","offer_id":"3"}"#).is_ok());
    }

    #[test]
    fn bad_frames_become_errors_that_keep_the_req_id() {
        let e = ClientFrame::parse(r#"{"type":"dance","req_id":"x"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(e.req_id, Some(Value::from("x")));
        assert!(
            e.message.contains("dance") && e.message.contains("set_presence"),
            "{}",
            e.message
        );

        let e = ClientFrame::parse(r#"{"type":"accept","req_id":5}"#).unwrap_err();
        assert_eq!(e.req_id, Some(Value::from(5)));
        assert!(e.message.contains("offer_id"), "{}", e.message);

        assert!(ClientFrame::parse("not json").is_err());
        assert!(ClientFrame::parse("[1,2]").is_err());
        assert!(ClientFrame::parse(r#"{"no":"type"}"#).is_err());
        assert!(ClientFrame::parse(r#"{"type":"set_presence","status":"asleep"}"#).is_err());
    }

    #[test]
    fn server_frames_carry_type_and_at() {
        let text = ServerFrame::Presence {
            status: PresenceStatus::Paused,
            reason: Some("lunch".into()),
        }
        .to_text();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "presence");
        assert_eq!(v["status"], "paused");
        let at = v["at"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok());
        assert_eq!(at.len(), "2026-01-01T00:00:00.000Z".len(), "{at}");

        let v: Value =
            serde_json::from_str(&ServerFrame::ok(Some(Value::from(9))).to_text()).unwrap();
        assert_eq!(v["type"], "ok");
        assert_eq!(v["req_id"], 9);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = ClientFrame::parse(&s);
        }
    }
}
