fn main() {
    // sqlx::migrate! embeds the files at compile time.
    println!("cargo:rerun-if-changed=migrations");
    // rust-embed compiles static/ in; a new or removed file there must rebuild too.
    println!("cargo:rerun-if-changed=static");
}
