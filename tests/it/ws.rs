//! WebSocket sessions: the handshake's token check, `hello`, presence per
//! agent across tabs, bad frames answered without closing, the heartbeat,
//! logout closing the socket, and shutdown closing with a close frame.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::app::{Options, next_frame, send_frame, spawn_app};

#[tokio::test]
async fn handshake_refuses_missing_and_bad_tokens_with_401() {
    let app = spawn_app(Options::default()).await;
    for url in [format!("ws://{}/ws", app.app.addr), app.app.ws_url("bogus")] {
        match tokio_tungstenite::connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                assert_eq!(res.status(), 401, "{url}")
            }
            Err(other) => panic!("expected an HTTP 401, got {other}"),
            Ok(_) => panic!("a socket was opened for {url}"),
        }
    }
    // A revoked token is refused too.
    let token = app.login("alice").await;
    app.send_json(Method::POST, &token, "/api/v1/logout", json!({}))
        .await;
    match tokio_tungstenite::connect_async(app.app.ws_url(&token)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        _ => panic!("a revoked token opened a socket"),
    }
}

#[tokio::test]
async fn hello_then_ping_and_presence_changes() {
    let app = spawn_app(Options::default()).await;
    let token = app.login("alice").await;
    let sup = app.login("sup").await;
    let (mut ws, hello) = app.ws(&token).await;
    assert_eq!(hello["agent"]["username"], "alice");
    assert_eq!(hello["agent"]["role"], "agent");
    assert_eq!(hello["presence"]["status"], "online");
    assert_eq!(hello["heartbeat_secs"], 15);
    let at = hello["at"].as_str().expect("every frame has at");
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    app.wait_presence(&sup, "alice", "online").await;

    send_frame(&mut ws, json!({"type": "ping", "req_id": "p1"})).await;
    let ok = next_frame(&mut ws).await;
    assert_eq!(ok["type"], "ok");
    assert_eq!(ok["req_id"], "p1");

    send_frame(
        &mut ws,
        json!({"type": "set_presence", "status": "paused", "reason": "lunch", "req_id": 2}),
    )
    .await;
    let (mut saw_presence, mut saw_ok) = (false, false);
    while !(saw_presence && saw_ok) {
        let f = next_frame(&mut ws).await;
        match f["type"].as_str() {
            Some("presence") => {
                assert_eq!(f["status"], "paused");
                assert_eq!(f["reason"], "lunch");
                saw_presence = true;
            }
            Some("ok") => {
                assert_eq!(f["req_id"], 2);
                assert_eq!(f["status"], "paused");
                saw_ok = true;
            }
            _ => panic!("unexpected frame {f}"),
        }
    }
    let entry = app.wait_presence(&sup, "alice", "paused").await;
    assert_eq!(entry["presence"]["reason"], "lunch");

    send_frame(
        &mut ws,
        json!({"type": "set_presence", "status": "online", "req_id": "on"}),
    )
    .await;
    // The `presence` broadcast and the `ok` answer may come in either order.
    let (a, b) = (next_frame(&mut ws).await, next_frame(&mut ws).await);
    let mut kinds = [a["type"].as_str().unwrap(), b["type"].as_str().unwrap()];
    kinds.sort();
    assert_eq!(kinds, ["ok", "presence"]);
    assert_eq!(a["status"], "online");
    assert_eq!(b["status"], "online");
    app.wait_presence(&sup, "alice", "online").await;

    // `offline` is not something one sets; closing is.
    send_frame(
        &mut ws,
        json!({"type": "set_presence", "status": "offline", "req_id": 3}),
    )
    .await;
    let err = next_frame(&mut ws).await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["code"], "bad_request");
    assert_eq!(err["req_id"], 3);
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_session_lives() {
    let app = spawn_app(Options::default()).await;
    let token = app.login("bob").await;
    let (mut ws, _) = app.ws(&token).await;

    let cases: Vec<(Message, Option<Value>)> = vec![
        (Message::Text("not json".into()), None),
        (Message::Text("[1,2,3]".into()), None),
        (
            Message::Text(json!({"type": "dance", "req_id": 7}).to_string().into()),
            Some(json!(7)),
        ),
        (
            Message::Text(json!({"type": "accept", "req_id": "a"}).to_string().into()),
            Some(json!("a")),
        ),
        (
            Message::Text(
                json!({"type": "set_presence", "status": "asleep"})
                    .to_string()
                    .into(),
            ),
            None,
        ),
        (Message::Binary(vec![0u8, 159, 146, 150].into()), None),
    ];
    for (msg, req_id) in cases {
        futures_util::SinkExt::send(&mut ws, msg.clone())
            .await
            .unwrap();
        let f = next_frame(&mut ws).await;
        assert_eq!(f["type"], "error", "{msg:?} → {f}");
        assert_eq!(f["code"], "bad_request", "{f}");
        assert!(f["message"].as_str().is_some_and(|m| !m.is_empty()));
        if let Some(id) = req_id {
            assert_eq!(f["req_id"], id);
        }
    }
    // An accept for an offer that does not exist is `offer_gone`.
    send_frame(
        &mut ws,
        json!({"type": "accept", "offer_id": "424242", "req_id": 9}),
    )
    .await;
    let f = next_frame(&mut ws).await;
    assert_eq!(f["code"], "offer_gone");
    assert_eq!(f["req_id"], 9);

    // Still alive.
    send_frame(&mut ws, json!({"type": "ping", "req_id": "still"})).await;
    let f = next_frame(&mut ws).await;
    assert_eq!(f["type"], "ok");
    assert_eq!(f["req_id"], "still");
}

#[tokio::test]
async fn presence_is_per_agent_across_tabs_and_survives_reconnect() {
    let app = spawn_app(Options::default()).await;
    let sup = app.login("sup").await;
    let token = app.login("alice").await;
    let (mut tab1, _) = app.ws(&token).await;
    let (mut tab2, hello2) = app.ws(&token).await;
    assert_eq!(hello2["presence"]["status"], "online");

    send_frame(
        &mut tab1,
        json!({"type": "set_presence", "status": "paused", "reason": "training"}),
    )
    .await;
    // Every tab gets the change.
    for tab in [&mut tab1, &mut tab2] {
        loop {
            let f = next_frame(tab).await;
            if f["type"] == "presence" {
                assert_eq!(f["status"], "paused");
                assert_eq!(f["reason"], "training");
                break;
            }
        }
    }
    // One tab closing leaves the agent present.
    tab1.close(None).await.unwrap();
    drop(tab1);
    send_frame(&mut tab2, json!({"type": "ping", "req_id": 1})).await;
    assert_eq!(next_frame(&mut tab2).await["type"], "ok");
    app.wait_presence(&sup, "alice", "paused").await;

    // The last one closing makes the agent offline…
    tab2.close(None).await.unwrap();
    drop(tab2);
    app.wait_presence(&sup, "alice", "offline").await;

    // …and coming back, they are still paused.
    let (_tab3, hello3) = app.ws(&token).await;
    assert_eq!(hello3["presence"]["status"], "paused");
    assert_eq!(hello3["presence"]["reason"], "training");
    app.wait_presence(&sup, "alice", "paused").await;
}

#[tokio::test]
async fn a_client_that_never_pongs_is_closed_and_goes_offline() {
    let app = spawn_app(Options {
        heartbeat_secs: 1,
        ..Options::default()
    })
    .await;
    let sup = app.login("sup").await;
    let token = app.login("alice").await;
    let (ws, hello) = app.ws(&token).await;
    assert_eq!(hello["heartbeat_secs"], 1);
    app.wait_presence(&sup, "alice", "online").await;
    // Stop reading: tungstenite answers pings only while it is read, so from
    // here on the server's pings go unanswered.
    let (_sink, mut stream) = ws.split();
    app.wait_presence(&sup, "alice", "offline").await;
    // The server closed the socket: reading now yields the close (after any
    // queued pings), or the end of the stream.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(msg) = stream.next().await {
            match msg {
                Ok(Message::Close(frame)) => return frame.map(|f| f.code),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the server closed the socket");
    if let Some(code) = closed {
        assert_eq!(code, CloseCode::Away);
    }
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_online() {
    let app = spawn_app(Options {
        heartbeat_secs: 1,
        ..Options::default()
    })
    .await;
    let sup = app.login("sup").await;
    let token = app.login("bob").await;
    let (mut ws, _) = app.ws(&token).await;
    // Keep reading (and so answering pings) across several heartbeats; the
    // app-level ping proves the socket still works at the end.
    let until = tokio::time::Instant::now() + Duration::from_millis(3500);
    while tokio::time::Instant::now() < until {
        match tokio::time::timeout_at(until, ws.next()).await {
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) => panic!("closed despite answering pings"),
            Ok(Some(Err(e))) => panic!("socket error {e}"),
            _ => {}
        }
    }
    send_frame(&mut ws, json!({"type": "ping", "req_id": "late"})).await;
    assert_eq!(next_frame(&mut ws).await["req_id"], "late");
    let entry = app.wait_presence(&sup, "bob", "online").await;
    assert_eq!(entry["presence"]["status"], "online");
}

#[tokio::test]
async fn logout_closes_that_tokens_sockets_only() {
    let app = spawn_app(Options::default()).await;
    let t1 = app.login("alice").await;
    let t2 = app.login("alice").await;
    let (mut ws1, _) = app.ws(&t1).await;
    let (mut ws2, _) = app.ws(&t2).await;
    app.send_json(Method::POST, &t1, "/api/v1/logout", json!({}))
        .await;
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws1.next().await {
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("closed after logout");
    assert_eq!(code, Some(4001));
    send_frame(&mut ws2, json!({"type": "ping", "req_id": 1})).await;
    assert_eq!(next_frame(&mut ws2).await["type"], "ok");
}

#[tokio::test]
async fn shutdown_sends_a_close_frame() {
    let app = spawn_app(Options::default()).await;
    let token = app.login("alice").await;
    let (mut ws, _) = app.ws(&token).await;
    let crate::support::app::TestApp { app: running, .. } = app;
    let stopper = tokio::task::spawn_blocking(move || running.stop());
    let code = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(f))) => return f.map(|f| f.code),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("a close frame on shutdown");
    assert_eq!(code, Some(CloseCode::Away));
    stopper.await.unwrap();
}
