//! The reqwest http executor against a local axum server (real time, short timeouts).
//! The conversation core's behaviours are specified through the chat's driver in
//! `chat::tests` (ordering, pacing, handover) and through `serve`'s tests (one commit per
//! step); the pure step's own properties are in [`pure`].

// ------------------------------------------------------------ reqwest against axum

mod network {
    use std::time::Duration;

    use axum::Json;
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    use serde_json::{Value, json};

    use super::super::*;
    use crate::flow::model::Method;
    use crate::flow::{HttpCall, HttpOutcome};

    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn call(method: Method, url: String, body: Option<Value>, timeout_ms: u64) -> HttpCall {
        HttpCall {
            request_id: "lookup#1".into(),
            method,
            url,
            headers: vec![("X-Api-Key".into(), "k-123".into())],
            body,
            timeout_ms,
        }
    }

    fn app() -> Router {
        Router::new()
            .route(
                "/echo",
                post(|headers: HeaderMap, Json(body): Json<Value>| async move {
                    let key = headers
                        .get("x-api-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    (StatusCode::CREATED, Json(json!({"got": body, "key": key})))
                }),
            )
            .route(
                "/text",
                get(|| async { (StatusCode::NOT_FOUND, "not json") }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
    }

    /// The test peers listen on loopback, which the default egress policy refuses.
    fn loopback_http() -> ReqwestHttp {
        ReqwestHttp::with_egress(crate::egress::Egress::allowing(&["127.0.0.1"]))
    }

    #[tokio::test]
    async fn reqwest_http_refuses_loopback_without_an_allow_list() {
        let base = serve(app()).await;
        let outcome = ReqwestHttp::new()
            .call(call(Method::Get, format!("{base}/text"), None, 2_000))
            .await;
        match outcome {
            HttpOutcome::Err(reason) => assert!(reason.contains("egress"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn reqwest_http_returns_status_and_json() {
        let base = serve(app()).await;
        let http = loopback_http();
        let outcome = http
            .call(call(
                Method::Post,
                format!("{base}/echo"),
                Some(json!({"a": 1})),
                2_000,
            ))
            .await;
        assert_eq!(
            outcome,
            HttpOutcome::Ok {
                status: 201,
                body: json!({"got": {"a": 1}, "key": "k-123"})
            }
        );
    }

    #[tokio::test]
    async fn reqwest_http_non_json_body_is_null() {
        let base = serve(app()).await;
        let outcome = loopback_http()
            .call(call(Method::Get, format!("{base}/text"), None, 2_000))
            .await;
        assert_eq!(
            outcome,
            HttpOutcome::Ok {
                status: 404,
                body: Value::Null
            }
        );
    }

    #[tokio::test]
    async fn reqwest_http_timeout_and_refused_are_errors() {
        let base = serve(app()).await;
        let outcome = loopback_http()
            .call(call(
                Method::Get,
                format!("{base}/slow?token=secret"),
                None,
                100,
            ))
            .await;
        assert_eq!(outcome, HttpOutcome::Err("timed out after 100 ms".into()));

        // A port nobody listens on (bound, then released).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let outcome = loopback_http()
            .call(call(
                Method::Get,
                format!("http://{addr}/x?token=secret"),
                None,
                1_000,
            ))
            .await;
        match outcome {
            HttpOutcome::Err(reason) => assert!(!reason.contains("secret"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}

/// The pure step: outcomes as values, no store, no channel, no clock, no sleeping.
mod pure {
    use std::time::Duration;

    use serde_json::json;

    use super::super::*;
    use crate::flow::tests::WHATSAPP as LIMITS;
    use crate::flow::{Flow, HttpCall, HttpOutcome};
    use crate::plugins::types::{BotOutput, Business, InboundMessage, MessageContent};
    use crate::transform::Transformers;

    const FLOW: &str = r#"{
      "schema_version": 1,
      "name": "pure-test",
      "start": "greet",
      "nodes": {
        "greet": { "type": "say", "messages": [{ "Text": "Hello" }], "next": "wait" },
        "wait": { "type": "ask", "store": "last", "next": "route" },
        "route": {
          "type": "branch",
          "cases": [{ "when": { "keyword": ["three"] }, "next": "three" }],
          "default": "echo"
        },
        "three": {
          "type": "say",
          "messages": [{ "Text": "one" }, { "Text": "two" }, { "Text": "three" }],
          "next": "wait"
        },
        "echo": { "type": "say", "messages": [{ "Text": "You said {{input.text}}" }], "next": "wait" }
      }
    }"#;

    const NOW: u64 = 1_700_000_000_000;

    /// A flow without http nodes never calls this.
    struct NoHttp;

    impl HttpExecutor for NoHttp {
        async fn call(&self, _call: HttpCall) -> HttpOutcome {
            HttpOutcome::Err("no http here".into())
        }
    }

    fn core(config: ConversationConfig) -> Core<NoHttp> {
        let flow = match Flow::from_json("pure-test.json", FLOW, &LIMITS) {
            Ok(flow) => flow,
            Err(e) => panic!("{e}"),
        };
        Core {
            config,
            flow: std::sync::Arc::new(flow),
            transformers: Transformers::default(),
            http: NoHttp,
        }
    }

    fn config() -> ConversationConfig {
        ConversationConfig {
            endpoint: "shop".into(),
            ..ConversationConfig::default()
        }
    }

    fn key() -> SessionKey {
        SessionKey::new("shop", "1555")
    }

    fn say(text: &str) -> StepInput {
        StepInput::Message {
            message: Box::new(InboundMessage {
                id: "wamid.1".into(),
                timestamp: 1_700_000_000,
                user: crate::plugins::types::User {
                    user_id: None,
                    phone: Some("1555".into()),
                    name: None,
                    username: None,
                },
                context: None,
                referral: None,
                content: MessageContent::Text(text.into()),
            }),
            business: Business {
                phone_number_id: "1065".into(),
                display_number: None,
                account_id: None,
            },
        }
    }

    fn texts(outcome: &StepOutcome) -> Vec<String> {
        outcome
            .outputs
            .iter()
            .map(|p| match &p.output {
                BotOutput::Text(t) => t.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_step_is_a_value_and_a_redone_step_is_the_same() {
        let core = core(config());
        let first = core.handle(&key(), None, say("hi"), NOW).await;
        assert!(first.started && first.error.is_none());
        assert_eq!(texts(&first), ["Hello"]);
        let record = first.record.clone().expect("a new session is saved");
        assert_eq!(record.last_input_ms, Some(NOW));
        // Redone from the same stored record at the same time: the same outcome.
        let a = core
            .handle(&key(), Some(record.clone()), say("x"), NOW + 1)
            .await;
        let b = core.handle(&key(), Some(record), say("x"), NOW + 1).await;
        assert!(!a.started);
        assert_eq!(texts(&a), ["You said x"]);
        assert_eq!(a.record, b.record);
        assert_eq!(a.outputs, b.outputs);
    }

    #[tokio::test]
    async fn pacing_is_a_gap_on_each_output_never_a_sleep() {
        let core = core(ConversationConfig {
            message_delay: Duration::from_secs(3600),
            typing_indicator: true,
            ..config()
        });
        let record = core.handle(&key(), None, say("hi"), NOW).await.record;
        // An hour's delay per output, yet the step returns at once (real time, no pause).
        let started = std::time::Instant::now();
        let outcome = core.handle(&key(), record, say("three"), NOW).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(texts(&outcome), ["one", "two", "three"]);
        assert!(outcome.outputs.iter().all(|p| p.gap_ms == 3_600_000));
        assert_eq!(outcome.typing_for.as_deref(), Some("wamid.1"));
    }

    #[tokio::test]
    async fn handover_is_notices_in_the_outcome_with_the_transcript() {
        let core = core(config());
        let record = core.handle(&key(), None, say("hi"), NOW).await.record;
        let outcome = core
            .handle(&key(), record, say("a real person please"), NOW + 5)
            .await;
        assert!(outcome.report.handover_started);
        assert_eq!(texts(&outcome), [config::DEFAULT_CONFIRMATION]);
        assert_eq!(outcome.notices.len(), 1);
        let started = &outcome.notices[0];
        assert_eq!(started.kind, HandoverKind::Started);
        let transcript: Vec<_> = started.transcript.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(
            transcript,
            [
                "hi",
                "Hello",
                "a real person please",
                config::DEFAULT_CONFIRMATION
            ]
        );
        let record = outcome.record.expect("saved");
        let until = record.handover.as_ref().expect("muted").until_ms;
        assert_eq!(until, NOW + 5 + 24 * 3600 * 1000);

        // The mute timer: nothing to save before the end, the `ended` notice after it.
        let early = core
            .handle(
                &key(),
                Some(record.clone()),
                StepInput::ExpireHandover,
                until - 1,
            )
            .await;
        assert!(early.record.is_none() && early.notices.is_empty());
        let ended = core
            .handle(&key(), Some(record), StepInput::ExpireHandover, until)
            .await;
        assert!(ended.record.expect("saved").handover.is_none());
        assert_eq!(ended.notices[0].kind, HandoverKind::Ended);
        assert_eq!(ended.notices[0].reason.as_deref(), Some("expired"));
    }

    #[tokio::test]
    async fn steps_that_change_nothing_save_nothing() {
        let core = core(config());
        let released = core.handle(&key(), None, StepInput::Release, NOW).await;
        assert!(matches!(
            released.error,
            Some(ConversationError::NotHandedOver(_))
        ));
        assert!(released.record.is_none());
        let k = key();
        let set = |record| {
            core.handle(
                &k,
                record,
                StepInput::SetContext {
                    name: "campaign".into(),
                    data: json!({"id": 7}),
                },
                NOW,
            )
        };
        let first = set(None).await;
        assert!(first.started);
        let again = set(first.record).await;
        assert!(again.record.is_none() && !again.started);
    }
}
