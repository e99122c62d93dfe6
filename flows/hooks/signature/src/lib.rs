//! Example transformer hook: appends a signature line to every text output.
//!
//! `Text("Hello")` goes out as `Text("Hello\n\n— Plugboard support")`. Other outputs
//! (choices, lists, media, templates, …) pass through unchanged, as do inputs. A text that
//! already ends with the signature is left as it is, so configuring the hook twice does not
//! sign twice. Change [`SIGNATURE`] and rebuild to use your own line.

#![allow(clippy::crate_in_macro_def)]

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "plugboard:channel/transformer-hook@0.1.0",
    additional_derives: [PartialEq],
});

use plugboard::channel::types::BotOutput;

/// The line appended to text outputs (Markdown, like the text itself).
pub const SIGNATURE: &str = "— Plugboard support";

/// `text` with the signature appended after a blank line, unless it already ends with it.
pub fn sign(text: &str) -> String {
    if text.trim_end().ends_with(SIGNATURE) {
        text.to_string()
    } else if text.trim().is_empty() {
        SIGNATURE.to_string()
    } else {
        format!("{}\n\n{SIGNATURE}", text.trim_end())
    }
}

/// `on-output`: a text output signed; any other output as it came.
pub fn sign_output(output: BotOutput) -> Vec<BotOutput> {
    vec![match output {
        BotOutput::Text(text) => BotOutput::Text(sign(&text)),
        other => other,
    }]
}

/// The component's export glue (only in the wasm build: the export names do not link
/// natively).
#[cfg(target_arch = "wasm32")]
mod component {
    use super::exports::plugboard::channel::transformer::{
        Guest, InputAction, InputResult, SessionView,
    };
    use super::plugboard::channel::types::{BotOutput, InboundMessage};

    struct Signature;

    impl Guest for Signature {
        fn on_input(
            _message: InboundMessage,
            _session: SessionView,
        ) -> Result<InputResult, String> {
            Ok(InputResult {
                action: InputAction::Keep,
                set_data: Vec::new(),
            })
        }

        fn on_output(output: BotOutput, _session: SessionView) -> Result<Vec<BotOutput>, String> {
            Ok(super::sign_output(output))
        }

        fn on_execution_finished(
            _outputs: Vec<BotOutput>,
            _session: SessionView,
        ) -> Result<(), String> {
            Ok(())
        }
    }

    super::export!(Signature with_types_in super);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_once() {
        assert_eq!(sign("Hello"), "Hello\n\n— Plugboard support");
        assert_eq!(sign("Hello\n"), "Hello\n\n— Plugboard support");
        assert_eq!(sign(&sign("Hello")), sign("Hello"));
        assert_eq!(sign(""), SIGNATURE);
    }

    #[test]
    fn signs_text_outputs_only() {
        assert_eq!(
            sign_output(BotOutput::Text("Hi".to_string())),
            vec![BotOutput::Text(format!("Hi\n\n{SIGNATURE}"))]
        );
        let ask = BotOutput::LocationRequest("Where are you?".to_string());
        assert_eq!(sign_output(ask.clone()), vec![ask]);
    }
}
