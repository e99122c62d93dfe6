//! Transformer hooks through the compiled components: the two examples of `flows/hooks/`
//! (card and phone masking, a signature line), chaining in order, the 50 ms default deadline
//! against a hostile hook, both failure policies, and the loaders refusing each other's
//! components.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plugboard::plugins::example_hooks::{MASK_PII, SIGNATURE};
use plugboard::plugins::test_guests::MISBEHAVING_HOOK;
use plugboard::plugins::types::{
    BotOutput, Choice, ChoicesOutput, InboundMessage, MarkReadOutput, MessageContent, User,
};
use plugboard::plugins::{
    AdapterPlugin, BUNDLED_WHATSAPP, FailureKind, HistoryTurn, HookPlugin, InputAction,
    PluginError, PluginLimits, SessionView, Speaker,
};
use plugboard::transform::{FailurePolicy, HookFailure, Transformers};
use plugboard_tests::{load_hook, runtime};

const SIGNED: &str = "\n\n— Plugboard support";

fn mask_pii() -> Arc<HookPlugin> {
    load_hook(MASK_PII, PluginLimits::hook_default())
}

fn signature() -> Arc<HookPlugin> {
    load_hook(SIGNATURE, PluginLimits::hook_default())
}

fn misbehaving() -> Arc<HookPlugin> {
    load_hook(MISBEHAVING_HOOK, PluginLimits::hook_default())
}

fn user() -> User {
    User {
        user_id: None,
        phone: Some("15551234567".to_string()),
        name: Some("Ada".to_string()),
        username: None,
    }
}

fn session() -> SessionView {
    SessionView {
        conversation_key: "wa_15551234567".to_string(),
        user: user(),
        data: vec![("order_id".to_string(), "\"A-17\"".to_string())],
        history: vec![HistoryTurn {
            speaker: Speaker::Bot,
            text: "How can I help?".to_string(),
        }],
    }
}

fn message(content: MessageContent) -> InboundMessage {
    InboundMessage {
        id: "wamid.test".to_string(),
        timestamp: 1_700_000_000,
        user: user(),
        context: None,
        referral: None,
        content,
    }
}

fn text(body: &str) -> InboundMessage {
    message(MessageContent::Text(body.to_string()))
}

fn out(body: &str) -> BotOutput {
    BotOutput::Text(body.to_string())
}

fn choices() -> BotOutput {
    BotOutput::Choices(ChoicesOutput {
        text: "Pick one".to_string(),
        choices: vec![Choice {
            id: "hours".to_string(),
            title: "Opening hours".to_string(),
            description: None,
        }],
        button_label: None,
    })
}

fn chain(hooks: Vec<Arc<HookPlugin>>, policy: FailurePolicy) -> Transformers {
    Transformers::new(hooks, policy)
}

/// The text the flow would see after the hooks (panics when the input was dropped).
fn input_text(transformers: &Transformers, body: &str) -> String {
    let outcome = transformers
        .apply_input(text(body), &session())
        .unwrap_or_else(|e| panic!("{body}: {e}"));
    match outcome.message.map(|m| m.content) {
        Some(MessageContent::Text(text)) => text,
        other => panic!("{body}: expected text, got {other:?}"),
    }
}

#[test]
fn mask_pii_masks_a_card_and_a_phone_number() {
    let hook = mask_pii();
    assert_eq!(hook.wit_version(), "0.1.0");
    assert_eq!(hook.limits().call_deadline, Duration::from_millis(50));
    let answer = hook
        .on_input(
            &text("My card is 4111 1111 1111 1111, call me on +49 170 1234567."),
            &session(),
        )
        .expect("the hook answers")
        .expect("the hook accepts text");
    let InputAction::Rewrite(rewritten) = answer.action else {
        panic!("expected a rewrite, got {:?}", answer.action);
    };
    assert_eq!(
        rewritten.content,
        MessageContent::Text(
            "My card is •••• •••• •••• 1111, call me on +•• ••• •••••67.".to_string()
        )
    );
    // Everything but the text is kept.
    assert_eq!(rewritten.id, "wamid.test");
    assert_eq!(rewritten.user, user());
    assert_eq!(
        answer.set_data,
        vec![("pii_masked".to_string(), "true".to_string())]
    );

    let transformers = chain(vec![hook], FailurePolicy::Abort);
    assert_eq!(
        input_text(&transformers, "4111-1111-1111-1111"),
        "••••-••••-••••-1111"
    );
    assert_eq!(
        input_text(&transformers, "call (555) 123-4567"),
        "call (•••) •••-••67"
    );
}

#[test]
fn mask_pii_leaves_ordinary_input_and_outputs_alone() {
    let transformers = chain(vec![mask_pii()], FailurePolicy::Abort);
    for body in [
        "Where is my order 12345?",
        "Opening hours on 2024-11-22 at 10:30, please",
        "4111 1111 1111 1112 is not a card (Luhn)",
        "",
    ] {
        let outcome = transformers
            .apply_input(text(body), &session())
            .expect(body);
        assert_eq!(outcome.message, Some(text(body)), "{body}");
        assert!(outcome.set_data.is_empty(), "{body}");
    }
    // Non-text input passes as it came.
    let choice = message(MessageContent::Revoke("wamid.old".to_string()));
    let outcome = transformers
        .apply_input(choice.clone(), &session())
        .expect("revoke");
    assert_eq!(outcome.message, Some(choice));
    // Outputs pass through, even ones with numbers.
    let outputs = vec![out("Call us on +49 170 1234567"), choices()];
    assert_eq!(
        transformers
            .apply_outputs(outputs.clone(), &session())
            .expect("outputs"),
        outputs
    );
}

#[test]
fn signature_appends_its_line_to_text_outputs_only() {
    let transformers = chain(vec![signature()], FailurePolicy::Abort);
    let mark_read = BotOutput::MarkRead(MarkReadOutput {
        message_id: "wamid.test".to_string(),
        typing: true,
    });
    let outputs = transformers
        .apply_outputs(
            vec![out("Hello"), choices(), mark_read.clone(), out("Bye")],
            &session(),
        )
        .expect("outputs");
    assert_eq!(
        outputs,
        vec![
            out(&format!("Hello{SIGNED}")),
            choices(),
            mark_read,
            out(&format!("Bye{SIGNED}")),
        ]
    );
    // Inputs pass through.
    assert_eq!(
        input_text(&transformers, "Hello 4111 1111 1111 1111"),
        "Hello 4111 1111 1111 1111"
    );
}

#[test]
fn hooks_chain_in_configured_order() {
    // Both examples together: the input is masked, the outputs are signed.
    let both = chain(vec![mask_pii(), signature()], FailurePolicy::Abort);
    assert_eq!(
        input_text(&both, "card 4111111111111111"),
        "card ••••••••••••1111"
    );
    assert_eq!(
        both.apply_outputs(vec![out("Done")], &session())
            .expect("outputs"),
        vec![out(&format!("Done{SIGNED}"))]
    );

    // Order matters: the test hook splits the text `split` in two and drops `drop`.
    // Split first, then sign: the signature hook sees (and signs) each piece.
    let split_then_sign = chain(vec![misbehaving(), signature()], FailurePolicy::Abort);
    assert_eq!(
        split_then_sign
            .apply_outputs(vec![out("split"), out("drop"), out("keep")], &session())
            .expect("outputs"),
        vec![
            out(&format!("split 1{SIGNED}")),
            out(&format!("split 2{SIGNED}")),
            out(&format!("keep{SIGNED}")),
        ]
    );
    // Sign first: the splitting hook no longer recognises its texts.
    let sign_then_split = chain(vec![signature(), misbehaving()], FailurePolicy::Abort);
    assert_eq!(
        sign_then_split
            .apply_outputs(vec![out("split"), out("drop")], &session())
            .expect("outputs"),
        vec![
            out(&format!("split{SIGNED}")),
            out(&format!("drop{SIGNED}"))
        ]
    );
}

#[test]
fn endless_hook_is_stopped_by_the_50ms_default_deadline() {
    let hook = misbehaving();
    let started = Instant::now();
    let error = match hook.on_input(&text("loop"), &session()) {
        Ok(answer) => panic!("expected a deadline, got {answer:?}"),
        Err(e) => e,
    };
    let elapsed = started.elapsed();
    assert_eq!(
        error.failure_kind(),
        Some(FailureKind::DeadlineExceeded),
        "{error}"
    );
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(30),
        "interrupted after only {elapsed:?}: not the deadline"
    );
    let text_error = error.to_string();
    assert!(
        text_error.contains("misbehaving_hook_guest"),
        "{text_error}"
    );
    assert!(
        text_error.contains("deadline exceeded in `on-input`"),
        "{text_error}"
    );

    // A panic is a trap with the guest's message; the hook answers normally afterwards.
    let panic = match hook.on_input(&text("panic"), &session()) {
        Ok(answer) => panic!("expected a trap, got {answer:?}"),
        Err(e) => e,
    };
    assert_eq!(panic.failure_kind(), Some(FailureKind::Trap), "{panic}");
    assert!(panic.to_string().contains("panics on purpose"), "{panic}");
    for _ in 0..2 {
        let answer = hook
            .on_input(&text("hello"), &session())
            .expect("the hook answers after failures")
            .expect("and keeps the input");
        assert_eq!(answer.action, InputAction::Keep);
    }
}

#[test]
fn continue_policy_goes_on_with_the_untransformed_input() {
    // The failing hook is skipped; the hooks after it still run.
    let transformers = chain(vec![misbehaving(), mask_pii()], FailurePolicy::Continue);
    let started = Instant::now();
    let outcome = transformers
        .apply_input(text("loop"), &session())
        .expect("continue");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(outcome.message, Some(text("loop")));
    assert_eq!(outcome.dropped, None);
    let outcome = transformers
        .apply_input(text("panic"), &session())
        .expect("continue");
    assert_eq!(outcome.message, Some(text("panic")));
    // And a normal input still goes through the whole chain.
    assert_eq!(
        input_text(&transformers, "4111 1111 1111 1111"),
        "•••• •••• •••• 1111"
    );
}

#[test]
fn abort_policy_returns_an_error_naming_the_hook() {
    let transformers = chain(vec![mask_pii(), misbehaving()], FailurePolicy::Abort);
    let started = Instant::now();
    let error = match transformers.apply_input(text("loop"), &session()) {
        Ok(outcome) => panic!("expected an error, got {outcome:?}"),
        Err(e) => e,
    };
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(error.hook, "misbehaving_hook_guest");
    assert_eq!(error.call, "on-input");
    assert!(matches!(error.failure, HookFailure::Plugin(_)), "{error:?}");
    assert_eq!(error.failure_kind(), Some(FailureKind::DeadlineExceeded));
    let message = error.to_string();
    assert!(
        message.starts_with("transformer hook `misbehaving_hook_guest` failed in `on-input`"),
        "{message}"
    );
    // The same chain passes ordinary input.
    assert_eq!(input_text(&transformers, "hi"), "hi");
}

#[test]
fn adapter_loader_refuses_a_hook_and_hook_loader_refuses_an_adapter() {
    let hook_bytes = std::fs::read(MASK_PII).expect("read the mask-pii hook");
    let error = match AdapterPlugin::load(runtime(), &hook_bytes, PluginLimits::default()) {
        Ok(plugin) => panic!("loaded hook as adapter {}", plugin.name()),
        Err(e) => e,
    };
    assert!(matches!(error, PluginError::WrongWorld { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("plugboard:channel/adapter@0.1.x"), "{text}");
    assert!(
        text.contains("plugboard:channel/transformer@0.1.0"),
        "{text}"
    );
    assert!(text.contains("a transformer hook"), "{text}");

    let error = match HookPlugin::load(
        runtime(),
        "whatsapp",
        BUNDLED_WHATSAPP,
        PluginLimits::hook_default(),
    ) {
        Ok(hook) => panic!("loaded adapter as hook {}", hook.name()),
        Err(e) => e,
    };
    assert!(matches!(error, PluginError::WrongWorld { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("plugboard:channel/transformer@0.1.x"),
        "{text}"
    );
    // The bundled adapter is built against 0.1.1.
    assert!(text.contains("plugboard:channel/adapter@0.1.1"), "{text}");
    assert!(text.contains("a channel adapter"), "{text}");
}
