//! Host bindings, one module per supported version of the `plugboard:channel` WIT package.
//!
//! The support window is bounded on purpose: each version adds a module here and a branch
//! in [`crate::plugins::adapter`]'s version detection. Older versions, when there are some,
//! convert into `latest`'s types so the rest of the host knows one model.

/// `plugboard:channel@0.1.x`, from the frozen `wit/v0.1.0` directory.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "plugboard:channel/channel-adapter@0.1.0",
        // The serde form of these types is the JSON the CLI prints and the fixtures hold;
        // the guest derives the same, so native and component results compare equal.
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });

    pub use plugboard::channel::types;

    /// Export name prefix a component must carry to be loaded as a 0.1.x adapter.
    pub const ADAPTER_EXPORT_PREFIX: &str = "plugboard:channel/adapter@0.1.";
    /// The exact export name the bindings look up.
    pub const ADAPTER_EXPORT: &str = "plugboard:channel/adapter@0.1.0";
    /// Export name prefix a component must carry to be loaded as a 0.1.x transformer hook.
    pub const HOOK_EXPORT_PREFIX: &str = "plugboard:channel/transformer@0.1.";
    /// The exact hook export name the bindings look up.
    pub const HOOK_EXPORT: &str = "plugboard:channel/transformer@0.1.0";

    /// The `transformer-hook` world of the same package. Its `types` interface is the
    /// adapter bindings' one (`with`), so a `BotOutput` decoded by an adapter goes through a
    /// hook and into the renderer as one Rust type.
    pub mod hook {
        wasmtime::component::bindgen!({
            path: "../wit/v0.1.0",
            world: "plugboard:channel/transformer-hook@0.1.0",
            with: {
                "plugboard:channel/types": crate::plugins::bindings::v0_1::plugboard::channel::types,
            },
            additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
        });

        pub use exports::plugboard::channel::transformer::{
            HistoryTurn, InputAction, InputResult, SessionView, Speaker,
        };
    }
}

pub use v0_1 as latest;
