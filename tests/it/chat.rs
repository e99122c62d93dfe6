//! `plugboard chat` driven in-process with a script as its input: real envelopes through
//! the compiled adapter, the conversation runtime and the support flow, replies as the
//! user sees them.

use std::path::Path;
use std::process::ExitCode;

fn chat(args: &[&str], script: &str) -> (ExitCode, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = ["plugboard", "chat"]
        .into_iter()
        .chain(args.iter().copied());
    let mut input = script.as_bytes();
    let code = plugboard::cli::run_with_input(argv, &mut input, false, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).expect("stdout is UTF-8"),
        String::from_utf8(err).expect("stderr is UTF-8"),
    )
}

fn support_flow() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../flows/support.json")
        .display()
        .to_string()
}

const GREETING: [&str; 3] = [
    "Hi Alex! How can we help?",
    "[ Opening hours ]  [ Order status ]  [ Questions ]",
    "  /button hours | order | faq",
];

#[test]
fn a_script_chats_through_the_support_flow() {
    let flow = support_flow();
    let script = "hello\n/button faq\n/list faq_shipping\n/button menu\nwhat is this\ntalk to a human\nare you there?\n";
    let (code, out, err) = chat(&["--flow", &flow], script);
    assert_eq!(code, ExitCode::SUCCESS, "stdout:\n{out}\nstderr:\n{err}");
    let mut expected: Vec<&str> = Vec::new();
    // hello → the greeting with its buttons.
    expected.extend(GREETING);
    // /button faq → the FAQ list.
    expected.extend([
        "*FAQ*",
        "Pick a question:",
        "[≡ Questions]",
        "  Popular",
        "    Returns (faq_returns): How do I return an item?",
        "    Shipping (faq_shipping): How long does delivery take?",
        "    Talk to a human (faq_human)",
        "  /list ID",
    ]);
    // /list faq_shipping → the answer and "anything else".
    expected.extend([
        "Orders ship within 1 business day; delivery takes 2 to 4 days.",
        "Anything else?",
        "[ Main menu ]  [ No, that's all ]",
        "  /button menu | done",
    ]);
    // /button menu → the greeting again; free text → the fallback, then the greeting.
    expected.extend(GREETING);
    expected.push("Sorry, I did not get that.");
    expected.extend(GREETING);
    // talk to a human → the handover confirmation; then the bot is muted and the input
    // goes to the agent.
    expected.extend([
        "Connecting you with a member of our team. They will reply here shortly.",
        "[handover started: keyword: talk to a human]",
        "[forwarded to the agent: are you there?]",
    ]);
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "stdout:\n{out}");
}

#[test]
fn media_location_and_unknown_commands() {
    let flow = support_flow();
    let script = "hi\n/location 52.37 4.90\n/frobnicate\n/quit\nnever read\n";
    let (code, out, _) = chat(&["--flow", &flow], script);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], GREETING);
    assert_eq!(
        lines[3],
        "Thanks, our nearest shop to you is on Main Street 1."
    );
    assert!(lines.contains(&"unknown command /frobnicate"), "{out}");
    assert!(
        lines.contains(&"  /quit                end the chat"),
        "{out}"
    );
    assert!(!out.contains("never read"));
    // Nothing after /quit: the help is the last thing printed.
    assert_eq!(lines.last(), Some(&"  /quit                end the chat"));
}

#[test]
fn an_image_is_routed_as_media() {
    let flow = support_flow();
    let (code, out, _) = chat(&["--flow", &flow], "hi\n/image my broken screen\n");
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[3],
        "Thanks for the image! A colleague will look at it."
    );
}

#[test]
fn a_broken_flow_exits_1_with_the_loader_s_reason() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugboard-chat-tests");
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    let file = dir.join("broken.json");
    std::fs::write(
        &file,
        r#"{"schema_version": 1, "name": "broken", "start": "a", "nodes": {
            "a": {"type": "goto", "next": "nowhere"}}}"#,
    )
    .expect("write flow");
    let (code, out, err) = chat(&["--flow", file.to_str().expect("UTF-8")], "hi\n");
    assert_eq!(code, ExitCode::from(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("broken.json"), "{err}");
    assert!(err.contains("nowhere"), "{err}");
}

#[test]
fn on_a_terminal_it_prompts_prefixes_and_honours_the_delay() {
    let flow = support_flow();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut input = "hi\n/button hours\n/quit\n".as_bytes();
    let started = std::time::Instant::now();
    let code = plugboard::cli::run_with_input(
        ["plugboard", "chat", "--flow", &flow, "--delay-ms", "150"],
        &mut input,
        true,
        &mut out,
        &mut err,
    );
    let elapsed = started.elapsed();
    let out = String::from_utf8(out).expect("UTF-8");
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    // Greeting, then hours + "anything else": two replies in one step are 150 ms apart.
    assert!(
        elapsed >= std::time::Duration::from_millis(150),
        "{elapsed:?}"
    );
    assert!(
        out.contains("you> bot> Hi Alex! How can we help?\n"),
        "{out}"
    );
    assert!(
        out.contains("bot> We are open Monday to Saturday, 9:00 to 18:00. Closed on Sundays.\n"),
        "{out}"
    );
    assert!(
        out.contains("bot> [ Main menu ]  [ No, that's all ]\n"),
        "{out}"
    );
    assert!(out.ends_with("you> "), "{out}");
}

/// Both failure policies end to end: a hook that panics on "panic" (the misbehaving hook
/// guest) in front of the support flow. `continue` answers as if there were no hook;
/// `abort` ends the step with an error naming the hook and sends nothing.
#[test]
fn hook_failure_policies_through_the_conversation_runtime() {
    let flow = support_flow();
    let hook = plugboard::plugins::test_guests::MISBEHAVING_HOOK;

    let (code, out, err) = chat(
        &[
            "--flow",
            &flow,
            "--hooks",
            hook,
            "--hook-policy",
            "continue",
        ],
        "panic\n",
    );
    assert_eq!(code, ExitCode::SUCCESS, "stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, GREETING, "stdout:\n{out}\nstderr:\n{err}");

    let (code, out, err) = chat(
        &["--flow", &flow, "--hooks", hook, "--hook-policy", "abort"],
        "panic\nhello\n",
    );
    assert_eq!(code, ExitCode::SUCCESS, "stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    // The failing input gets no reply, only the error; the next input is served normally.
    assert!(
        lines.first().is_some_and(|l| l.starts_with("! ")
            && l.contains("misbehaving_hook_guest")
            && l.contains("on-input")
            && l.contains("the misbehaving hook panics on purpose")),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert_eq!(&lines[1..], GREETING, "stdout:\n{out}\nstderr:\n{err}");
}

/// A one-shot HTTP server on loopback answering `{"v": "42"}`; counts connections.
fn one_shot_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let body = r#"{"v": "42"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, hits)
}

#[test]
fn http_nodes_reach_loopback_only_with_egress_allow() {
    let (port, hits) = one_shot_server();
    let dir = std::env::temp_dir().join(format!("plugboard-chat-egress-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let flow = dir.join("probe.json");
    std::fs::write(
        &flow,
        format!(
            r#"{{"schema_version": 1, "name": "probe", "start": "call", "nodes": {{
  "call": {{"type": "http", "method": "GET", "url": "http://127.0.0.1:{port}/{{{{input.text}}}}",
            "timeout_ms": 2000, "result": {{"/v": "v"}}, "next": "ok", "on_error": "bad"}},
  "ok": {{"type": "end", "messages": [{{"Text": "got {{{{context.v}}}}"}}]}},
  "bad": {{"type": "end", "messages": [{{"Text": "refused"}}]}}}}}}"#
        ),
    )
    .expect("write the flow");
    let flow = flow.display().to_string();

    let (code, out, err) = chat(&["--flow", &flow], "v\n");
    assert_eq!(code, ExitCode::SUCCESS, "stderr: {err}");
    assert_eq!(out.trim(), "refused", "without an allow list: {out}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);

    let (code, out, err) = chat(&["--flow", &flow, "--egress-allow", "127.0.0.1"], "v\n");
    assert_eq!(code, ExitCode::SUCCESS, "stderr: {err}");
    assert_eq!(out.trim(), "got 42", "allowed: {out}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}
