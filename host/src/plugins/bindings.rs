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
}

pub use v0_1 as latest;
