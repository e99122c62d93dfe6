//! A deliberately hostile transformer hook, built for `wasm32-wasip2` by `host/build.rs`.
//!
//! It exports the real `plugboard:channel/transformer@0.1.0` so the host accepts it, then
//! misbehaves on demand: `on-input` of the text `loop` never returns, of the text `panic`
//! panics (a trap). Every other input is kept. `on-output` splits the text `split` into
//! `split 1` and `split 2` and drops the text `drop` (so tests can see the chain order),
//! and floods the text `flood` into 65 outputs (over the host's cap); every other output
//! passes through.

#![allow(clippy::crate_in_macro_def)]

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "plugboard:channel/transformer-hook@0.1.0",
});

use exports::plugboard::channel::transformer::{Guest, InputAction, InputResult, SessionView};
use plugboard::channel::types::{BotOutput, InboundMessage, MessageContent};

struct MisbehavingHook;

impl Guest for MisbehavingHook {
    fn on_input(message: InboundMessage, _session: SessionView) -> Result<InputResult, String> {
        if let MessageContent::Text(text) = &message.content {
            match text.as_str() {
                "loop" => {
                    let mut n = 0u64;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                "panic" => panic!("the misbehaving hook panics on purpose"),
                _ => {}
            }
        }
        Ok(InputResult {
            action: InputAction::Keep,
            set_data: Vec::new(),
        })
    }

    fn on_output(output: BotOutput, _session: SessionView) -> Result<Vec<BotOutput>, String> {
        Ok(match output {
            BotOutput::Text(text) if text == "split" => vec![
                BotOutput::Text("split 1".to_string()),
                BotOutput::Text("split 2".to_string()),
            ],
            BotOutput::Text(text) if text == "drop" => Vec::new(),
            BotOutput::Text(text) if text == "flood" => (0..65)
                .map(|i| BotOutput::Text(format!("flood {i}")))
                .collect(),
            other => vec![other],
        })
    }

    fn on_execution_finished(
        _outputs: Vec<BotOutput>,
        _session: SessionView,
    ) -> Result<(), String> {
        Ok(())
    }
}

export!(MisbehavingHook);
