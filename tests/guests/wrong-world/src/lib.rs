//! A well-formed component that exports the wrong world (`test:other/greeter`), built for
//! `wasm32-wasip2` by `host/build.rs`. The host must refuse it with a message naming what it
//! exports instead of `plugboard:channel/adapter@0.1.x`.

#![allow(clippy::crate_in_macro_def)]

wit_bindgen::generate!({
    inline: "
        package test:other@1.0.0;
        interface greeter { greet: func(name: string) -> string; }
        world other { export greeter; }
    ",
    world: "other",
});

struct Other;

impl exports::test::other::greeter::Guest for Other {
    fn greet(name: String) -> String {
        format!("hello {name}")
    }
}

export!(Other);
