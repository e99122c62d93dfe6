//! Host bindings, one module per supported version of the `plugboard:channel` WIT package.
//!
//! The support window is bounded on purpose: each version adds a module here and a branch
//! in the version dispatch of [`crate::plugins::adapter`] and [`crate::plugins::hook`].
//! `latest` is the model the rest of the host uses; components of an older version are
//! called through their own module and their values converted into `latest`'s types (see
//! [`crate::plugins::convert`]).
//!
//! - [`v0_1_0`]: `plugboard:channel@0.1.0`, from the frozen `wit/v0.1.0` directory (legacy).
//! - [`v0_1_1`]: `plugboard:channel@0.1.1`, from `wit/v0.1.1`: 0.1.0 plus account events.

/// Export name prefix a component must carry to be loaded as a 0.1.x adapter.
const ADAPTER_EXPORT_PREFIX_0_1: &str = "plugboard:channel/adapter@0.1.";
/// Export name prefix a component must carry to be loaded as a 0.1.x transformer hook.
const HOOK_EXPORT_PREFIX_0_1: &str = "plugboard:channel/transformer@0.1.";

/// `plugboard:channel@0.1.0`, from the frozen `wit/v0.1.0` directory. Legacy: its values
/// convert into [`latest`]'s.
pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "plugboard:channel/channel-adapter@0.1.0",
        // The serde form of these types is the JSON the CLI prints and the fixtures hold,
        // and the bridge to the latest types: it is the same in every 0.1.x version.
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });

    pub use plugboard::channel::types;

    /// The WIT package version of these bindings.
    pub const WIT_VERSION: &str = "0.1.0";
    pub const ADAPTER_EXPORT_PREFIX: &str = super::ADAPTER_EXPORT_PREFIX_0_1;
    /// The exact export name the bindings look up.
    pub const ADAPTER_EXPORT: &str = "plugboard:channel/adapter@0.1.0";
    pub const HOOK_EXPORT_PREFIX: &str = super::HOOK_EXPORT_PREFIX_0_1;
    /// The exact hook export name the bindings look up.
    pub const HOOK_EXPORT: &str = "plugboard:channel/transformer@0.1.0";

    /// The `transformer-hook` world of the same package, sharing this module's `types`.
    pub mod hook {
        wasmtime::component::bindgen!({
            path: "../wit/v0.1.0",
            world: "plugboard:channel/transformer-hook@0.1.0",
            with: {
                "plugboard:channel/types": crate::plugins::bindings::v0_1_0::plugboard::channel::types,
            },
            additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
        });

        pub use exports::plugboard::channel::transformer::{
            HistoryTurn, InputAction, InputResult, SessionView, Speaker,
        };
    }
}

/// `plugboard:channel@0.1.1`, from `wit/v0.1.1`: the latest version.
pub mod v0_1_1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.1",
        world: "plugboard:channel/channel-adapter@0.1.1",
        // The serde form of these types is the JSON the CLI prints and the fixtures hold;
        // the guest derives the same, so native and component results compare equal.
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });

    pub use plugboard::channel::types;

    /// The WIT package version of these bindings.
    pub const WIT_VERSION: &str = "0.1.1";
    pub const ADAPTER_EXPORT_PREFIX: &str = super::ADAPTER_EXPORT_PREFIX_0_1;
    /// The exact export name the bindings look up.
    pub const ADAPTER_EXPORT: &str = "plugboard:channel/adapter@0.1.1";
    pub const HOOK_EXPORT_PREFIX: &str = super::HOOK_EXPORT_PREFIX_0_1;
    /// The exact hook export name the bindings look up.
    pub const HOOK_EXPORT: &str = "plugboard:channel/transformer@0.1.1";

    /// The `transformer-hook` world of the same package. Its `types` interface is the
    /// adapter bindings' one (`with`), so a `BotOutput` decoded by an adapter goes through a
    /// hook and into the renderer as one Rust type.
    pub mod hook {
        wasmtime::component::bindgen!({
            path: "../wit/v0.1.1",
            world: "plugboard:channel/transformer-hook@0.1.1",
            with: {
                "plugboard:channel/types": crate::plugins::bindings::v0_1_1::plugboard::channel::types,
            },
            additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
        });

        pub use exports::plugboard::channel::transformer::{
            HistoryTurn, InputAction, InputResult, SessionView, Speaker,
        };
    }
}

pub use v0_1_1 as latest;
