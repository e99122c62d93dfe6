//! The `plugboard` CLI, driven in-process through `plugboard::cli::run` with captured
//! stdout and stderr. Every run loads the bundled adapter (or `--plugin`) like the binary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plugboard::plugins::test_guests::{MISBEHAVING, WRONG_WORLD};
use plugboard_tests::{expected, fixture, native_specs_json};
use plugboard_whatsapp::types as native;
use serde_json::{Value, json};

struct Run {
    code: ExitCode,
    out: String,
    err: String,
}

impl Run {
    fn json_lines(&self) -> Vec<Value> {
        self.out
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
            })
            .collect()
    }

    #[track_caller]
    fn assert_code(&self, code: u8) {
        assert_eq!(
            self.code,
            ExitCode::from(code),
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.out,
            self.err
        );
    }
}

fn cli(args: &[&str]) -> Run {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("plugboard").chain(args.iter().copied());
    let code = plugboard::cli::run(argv, &mut out, &mut err);
    Run {
        code,
        out: String::from_utf8(out).expect("stdout is UTF-8"),
        err: String::from_utf8(err).expect("stderr is UTF-8"),
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A scratch file under cargo's per-target temp dir, unique per test.
fn scratch(name: &str, contents: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugboard-cli-tests");
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write scratch file");
    path
}

#[test]
fn decode_prints_one_event_per_line() {
    // Each CLI run compiles the component (~2 s in debug), so few runs: a mixed batch of
    // messages and statuses. Every fixture goes through the component in golden.rs.
    let file = fixture("inbound", "batch_messages_and_statuses");
    let run = cli(&["adapter", "decode", path_str(&file)]);
    run.assert_code(0);
    let want = expected(&file);
    let events = want["Ok"]["events"].as_array().expect("an Ok fixture");
    assert_eq!(events.len(), 4);
    assert_eq!(&run.json_lines(), events);
    assert_eq!(run.err, "", "nothing skipped, nothing on stderr");
}

#[test]
fn decode_reports_skipped_items_on_stderr() {
    let file = fixture("inbound", "skip_mixed_known_and_other_fields");
    let run = cli(&["adapter", "decode", path_str(&file)]);
    run.assert_code(0);
    let want = expected(&file);
    assert_eq!(
        &run.json_lines(),
        want["Ok"]["events"].as_array().expect("events")
    );
    let skipped_lines: Vec<String> = want["Ok"]["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| {
            format!(
                "skipped {}: {}",
                s["path"].as_str().expect("path"),
                s["reason"].as_str().expect("reason")
            )
        })
        .collect();
    assert_eq!(skipped_lines.len(), 2);
    assert_eq!(run.err.lines().collect::<Vec<_>>(), skipped_lines);
}

#[test]
fn decode_of_a_malformed_body_exits_1_with_the_reason() {
    let file = fixture("inbound", "malformed_truncated_json");
    let run = cli(&["adapter", "decode", path_str(&file)]);
    run.assert_code(1);
    assert_eq!(run.out, "");
    let reason = expected(&file)["Err"]["Malformed"]
        .as_str()
        .expect("a Malformed fixture")
        .to_string();
    assert_eq!(
        run.err.trim_end(),
        format!("error: the whatsapp adapter rejected the body: malformed: {reason}")
    );
    assert!(run.err.contains("rejected"));
}

#[test]
fn decode_of_a_missing_file_exits_1() {
    let missing = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-webhook-body.json");
    let run = cli(&["adapter", "decode", path_str(&missing)]);
    run.assert_code(1);
    assert_eq!(run.out, "");
    assert!(
        run.err
            .starts_with(&format!("error: cannot read {}", missing.display())),
        "{}",
        run.err
    );
}

#[test]
fn render_prints_the_expected_specs() {
    // A split text: several specs from one output, in order.
    let file = fixture("outbound", "text_split_long");
    let want = expected(&file);
    let specs = want["Ok"].as_array().expect("an Ok fixture");
    assert!(specs.len() > 1, "pick a fixture rendering several specs");
    let run = cli(&["adapter", "render", path_str(&file)]);
    run.assert_code(0);
    assert_eq!(&run.json_lines(), specs);
    assert_eq!(run.err, "");
}

#[test]
fn render_of_several_outputs_prints_all_in_order() {
    let case: Value = serde_json::from_slice(
        &std::fs::read(fixture("outbound", "text_plain")).expect("read fixture"),
    )
    .expect("JSON fixture");
    let context = case["context"].clone();
    let outputs = json!([
        {"Text": "First."},
        {"Reaction": {"message_id": "wamid.ABC", "emoji": "👍"}},
        {"MarkRead": {"message_id": "wamid.ABC", "typing": true}},
        {"Text": "Last."},
    ]);
    let input = json!({"context": context, "outputs": outputs});
    let file = scratch(
        "render-several.json",
        serde_json::to_string(&input).expect("JSON").as_bytes(),
    );
    let run = cli(&["adapter", "render", path_str(&file)]);
    run.assert_code(0);

    // What the native adapter renders for the same outputs, concatenated in order.
    let native_context: native::RenderContext =
        serde_json::from_value(context).expect("native context");
    let native_outputs: Vec<native::BotOutput> =
        serde_json::from_value(outputs).expect("native outputs");
    let mut want = Vec::new();
    for output in &native_outputs {
        let specs = native_specs_json(&plugboard_whatsapp::render(output, &native_context));
        want.extend(specs["Ok"].as_array().expect("renders").iter().cloned());
    }
    assert_eq!(want.len(), 4);
    assert_eq!(run.json_lines(), want);
    let types: Vec<&str> = want
        .iter()
        .map(|s| s["body"]["type"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(types, ["text", "reaction", "?", "text"], "{want:#?}");
}

#[test]
fn render_failures_exit_1() {
    // A refused output: the adapter's reason, naming the output index.
    let file = fixture("outbound", "err_no_recipient");
    let run = cli(&["adapter", "render", path_str(&file)]);
    run.assert_code(1);
    assert_eq!(run.out, "");
    let reason = expected(&file)["Err"]["Invalid"]
        .as_str()
        .expect("an Invalid fixture")
        .to_string();
    assert_eq!(
        run.err.trim_end(),
        format!("error: output 0: the whatsapp adapter refused it: invalid: {reason}")
    );

    // Not a render input at all.
    let bad = scratch(
        "render-bad.json",
        br#"{"context": 1, "output": {"Text": "x"}}"#,
    );
    let run = cli(&["adapter", "render", path_str(&bad)]);
    run.assert_code(1);
    assert_eq!(run.out, "");
    assert!(run.err.contains("not a render input"), "{}", run.err);

    // A context but nothing to render.
    let case: Value = serde_json::from_slice(
        &std::fs::read(fixture("outbound", "text_plain")).expect("read fixture"),
    )
    .expect("JSON fixture");
    let empty = scratch(
        "render-empty.json",
        serde_json::to_string(&json!({"context": case["context"]}))
            .expect("JSON")
            .as_bytes(),
    );
    let run = cli(&["adapter", "render", path_str(&empty)]);
    run.assert_code(1);
    assert!(
        run.err.contains(r#"no "output" or "outputs" to render"#),
        "{}",
        run.err
    );
}

#[test]
fn plugin_option_with_the_wrong_world_exits_1() {
    let file = fixture("inbound", "msg_text");
    let run = cli(&[
        "adapter",
        "decode",
        "--plugin",
        WRONG_WORLD,
        path_str(&file),
    ]);
    run.assert_code(1);
    assert_eq!(run.out, "");
    assert!(
        run.err
            .starts_with(&format!("error: cannot load {WRONG_WORLD}: ")),
        "{}",
        run.err
    );
    assert!(run.err.contains("does not export"), "{}", run.err);
    assert!(run.err.contains("test:other/greeter"), "{}", run.err);
}

#[test]
fn plugin_option_runs_another_adapter() {
    // The misbehaving guest decodes anything but its trigger words to nothing…
    let file = fixture("inbound", "msg_text");
    let run = cli(&[
        "adapter",
        "decode",
        "--plugin",
        MISBEHAVING,
        path_str(&file),
    ]);
    run.assert_code(0);
    assert_eq!((run.out.as_str(), run.err.as_str()), ("", ""));
    // …and its panic is a clean exit 1 naming the plugin, not a crash of the CLI.
    let panic = scratch("panic-body", b"panic");
    let run = cli(&[
        "adapter",
        "decode",
        "--plugin",
        MISBEHAVING,
        path_str(&panic),
    ]);
    run.assert_code(1);
    assert!(
        run.err
            .starts_with("error: plugin misbehaving 0.0.1: trapped in `decode`"),
        "{}",
        run.err
    );
}

#[test]
fn help_exits_0_and_usage_errors_exit_2() {
    let run = cli(&["--help"]);
    run.assert_code(0);
    assert!(run.out.contains("adapter"), "{}", run.out);
    assert_eq!(run.err, "");

    let run = cli(&["adapter", "decode", "--help"]);
    run.assert_code(0);
    assert!(run.out.contains("--plugin"), "{}", run.out);

    let run = cli(&[]);
    run.assert_code(2);
    assert_eq!(run.out, "");
    assert!(run.err.contains("Usage"), "{}", run.err);

    let run = cli(&["adapter", "decode"]);
    run.assert_code(2);
    assert!(run.err.contains("FILE"), "{}", run.err);

    let run = cli(&["adapter", "frobnicate", "x"]);
    run.assert_code(2);
}

#[test]
fn cli_and_library_agree_on_spec_json() {
    // The CLI's spec form is the golden form: method as its variant name, body parsed.
    let spec = plugboard::plugins::types::RequestSpec {
        method: plugboard::plugins::types::HttpMethod::Post,
        path: "1/messages".to_string(),
        body: r#"{"a":1}"#.to_string(),
    };
    assert_eq!(
        plugboard::cli::spec_json(&spec),
        json!({"method": "Post", "path": "1/messages", "body": {"a": 1}})
    );
    let not_json = plugboard::plugins::types::RequestSpec {
        body: "plain".to_string(),
        ..spec
    };
    assert_eq!(plugboard::cli::spec_json(&not_json)["body"], json!("plain"));
}
