fn main() {
    // sqlx::migrate! embeds the files at compile time.
    println!("cargo:rerun-if-changed=migrations");
}
